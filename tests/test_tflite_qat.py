"""pea-tflite convert --qat_epochs: quantization-aware fine-tuning (tfmot) gives a ReLU-only
int8 file no worse than post-training quantization. Runs through the CLI in a child
process: importing tfmot flips TF_USE_LEGACY_KERAS for its whole process."""
import importlib

import pytest
from fresh import pea_tflite

from pea_keras.data.digits import load_digits_split
from pea_keras.tflite import convert, evaluate, relu_only_violations

DIGITS = load_digits_split(8, channels=1)


def qat_cnn(k):
    """Conv -> BN -> ReLU: the pattern tfmot's default 8-bit scheme quantizes."""
    L = k.layers
    return k.Sequential([k.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same"),
                         L.BatchNormalization(momentum=0.9), L.ReLU(), L.MaxPooling2D(),
                         L.Conv2D(16, 3, padding="same", activation="relu"),
                         L.Flatten(), L.Dense(10, activation="softmax")])


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["tf_keras", "keras"])
def test_qat_file_is_relu_only_and_not_worse_than_ptq(flavor, tmp_path):
    k = importlib.import_module(flavor)
    k.utils.set_random_seed(0)
    model = qat_cnn(k)
    model.compile(k.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(*DIGITS["train"], epochs=4, batch_size=64, verbose=0)
    path = tmp_path / ("model.h5" if flavor == "tf_keras" else "model.keras")
    model.save(path)
    convert(model, tmp_path / "ptq.tflite", DIGITS["train"][0][:300], require_runtimes=("litert",))
    qat = pea_tflite("convert", path, "-o", tmp_path / "qat.tflite", "--target", "phone", "--io", "int8",
                     "--qat_epochs", "2", "--train_data", "digits")
    assert qat.returncode == 0, qat.stderr[-2000:]
    assert "QAT 2 epochs" in qat.stdout
    assert relu_only_violations(tmp_path / "qat.tflite", int8=True) == []
    x, y = DIGITS["test"]
    acc = {name: evaluate(tmp_path / f"{name}.tflite", x, y, runtime="litert")["litert_accuracy"]
           for name in ("ptq", "qat")}
    assert acc["ptq"] > 0.8
    assert acc["qat"] >= acc["ptq"] - 0.03, acc


@pytest.mark.slow
def test_qat_unsupported_layer_is_a_one_line_error(tmp_path):
    import tf_keras

    L = tf_keras.layers
    model = tf_keras.Sequential([tf_keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                                 L.BatchNormalization(), L.Flatten(), L.Dense(10)])
    model.save(tmp_path / "bn.h5")
    out = tmp_path / "bn.tflite"
    r = pea_tflite("convert", tmp_path / "bn.h5", "-o", out, "--qat_epochs", "1")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("pea-tflite: error: QAT: tfmot cannot quantize") and "Traceback" not in r.stderr
    assert not out.exists()
