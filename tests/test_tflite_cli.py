"""`pea-tflite convert` on the models and mistakes users bring, through the installed console script:
plain Keras 3 Functional models, several inputs, tf_keras SavedModels, MobileNetV3-Small on TFLite
Micro, and refusals that come before any conversion work, in one line, with nothing written."""
import pathlib
import re

import pytest
from fresh import fresh_python, pea_tflite

MODELS = """
    import sys
    import numpy as np
    import keras, tf_keras

    out = sys.argv[1]
    for k in (keras, tf_keras):
        L = k.layers
        a = L.Input((12, 12, 1))
        m = k.Model(a, L.Dense(10)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(a))))
        if k is keras:
            m.save(f"{out}/plain.keras")
            m.save_weights(f"{out}/plain.weights.h5")
        else:
            m.save(f"{out}/plain_savedmodel", save_format="tf")
    L = keras.layers
    b, c = L.Input((12, 12, 1), name="b"), L.Input((12, 12, 1), name="c")
    y = L.Conv2D(4, 3, activation="relu")(L.Concatenate()([b, c]))
    keras.Model([b, c], L.Dense(10)(L.GlobalAveragePooling2D()(y))).save(f"{out}/two_inputs.keras")
    free = L.Input((None, None, 1), name="image")
    keras.Model(free, L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(free))).save(f"{out}/any_size.keras")
    rng = np.random.default_rng(0)
    x = lambda: rng.uniform(0, 1, (128, 12, 12, 1)).astype("float32")
    np.save(f"{out}/calib.npy", x())
    np.save(f"{out}/wrong_shape.npy", x()[:, :10, :10])
    np.savez(f"{out}/two.npz", b=x(), c=x())
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    fresh_python(MODELS, out)
    return out


def _files(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("model, calib, target", [("plain.keras", "calib.npy", "micro"),
                                                  ("plain_savedmodel", "calib.npy", "micro"),
                                                  ("two_inputs.keras", "two.npz", "phone"),
                                                  ("two_inputs.keras", "two.npz", "micro")])
def test_plain_models_of_every_kind_convert(models, tmp_path, model, calib, target):
    out = tmp_path / "m.tflite"
    code, stdout, stderr = pea_tflite("convert", models / model, "-o", out, "--calib", models / calib,
                                      "--target", target)
    assert (code, stderr) == (0, "")
    assert stdout.startswith(f"wrote {out}: ") and "ReLU-only check: passed" in stdout


@pytest.mark.slow
def test_convert_of_a_model_file_imports_tensorflow_only_in_its_converter_child(models, tmp_path):
    # Python's import log of the pea-tflite process itself: its children's logs go to their own stderr.
    code, stdout, stderr = pea_tflite("convert", models / "plain.keras", "-o", tmp_path / "m.tflite",
                                      "--calib", models / "calib.npy", PYTHONPROFILEIMPORTTIME="1")
    assert code == 0 and "ReLU-only check: passed" in stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    assert "pea_keras.tflite.conversion" in imported
    assert not imported & {"tensorflow", "keras", "tf_keras"}, sorted(imported & {"tensorflow", "keras", "tf_keras"})


@pytest.mark.parametrize("args, first_line", [
    (["plain.keras", "-o", "{tmp}/missing/m.tflite"], "{tmp}/missing: output folder does not exist"),
    (["missing.keras", "-o", "{tmp}/missing/m.tflite"], "{tmp}/missing: output folder does not exist"),
    (["plain.keras", "-o", "{tmp}/m.tflite", "--calib", "wrong_shape.npy"],
     "--calib: npy:{models}/wrong_shape.npy: data shaped (128, 10, 10, 1) does not match the model input "
     "(N, 12, 12, 1)"),
    (["plain.weights.h5", "-o", "{tmp}/m.tflite"],
     "{models}/plain.weights.h5: holds weights only, no model (as save_weights writes): build the model in code "
     "and call its load_weights, or save the whole model with model.save"),
    (["any_size.keras", "-o", "{tmp}/m.tflite", "--calib", "calib.npy"],
     "the model input image has free dimensions (None, None, 1): a device runs one fixed input size, so build the "
     "model with it (keras.applications: input_shape=(224, 224, 3); keras.Input((224, 224, 3)))"),
    (["plain.keras", "-o", "{tmp}/m.tflite", "--calib", "tfds:mnist"],
     "--calib: tfds:mnist: TFDS dataset not available offline (prepare it first with `tfds build mnist`)"),
])
def test_mistakes_are_refused_before_converting(models, tmp_path, args, first_line):
    fill = {"tmp": tmp_path, "models": models}
    args = [str(models / a) if (models / a).exists() or a == "missing.keras" else a.format(**fill) for a in args]
    code, stdout, stderr = pea_tflite("convert", *args, TFDS_DATA_DIR=str(tmp_path / "tfds"))
    assert code == 1 and stdout == ""
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith("pea-tflite: error: " + first_line.format(**fill))
    assert _files(tmp_path) == []


@pytest.mark.slow
def test_mobilenet_v3_small_runs_on_tflite_micro(tmp_path):
    """Traced for batch 1: no run-time batch arithmetic (SHAPE/STRIDED_SLICE/PACK) that TFLite
    Micro cannot plan."""
    fresh_python("""
        import sys
        import keras, numpy as np
        from pea_keras.training.tasks.classification import archs
        archs.build("mobilenet_v3_small", keras, (32, 32, 1), 10).save(sys.argv[1] + "/v3.keras")
        np.save(sys.argv[1] + "/c.npy", np.random.default_rng(0).uniform(0, 1, (128, 32, 32, 1)).astype("float32"))
    """, tmp_path)
    code, stdout, stderr = pea_tflite("convert", tmp_path / "v3.keras", "-o", tmp_path / "v3.tflite",
                                      "--calib", tmp_path / "c.npy")
    assert (code, stderr) == (0, "")
    assert "load test passed: litert, micro" in stdout
    histogram = next(line for line in stdout.splitlines() if line.startswith("op histogram:"))
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & {op.split(" x")[0] for op in histogram[14:].split(", ")}


@pytest.mark.slow
def test_a_squeeze_excite_model_converts_only_with_allow_gates(models, tmp_path):
    fresh_python("""
        import sys
        import keras
        L = keras.layers
        a = L.Input((12, 12, 1))
        h = L.Conv2D(4, 3, padding="same", activation="relu")(a)
        s = L.Conv2D(4, 1)(L.Conv2D(2, 1, activation="relu")(L.GlobalAveragePooling2D(keepdims=True)(h)))
        gate = L.Rescaling(1 / 6)(L.ReLU(6.0)(L.Rescaling(1.0, offset=3.0)(s)))
        y = L.GlobalAveragePooling2D()(L.Multiply()([h, gate]))
        keras.Model(a, L.Dense(10)(y)).save(sys.argv[1] + "/se.keras")
    """, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    args = ("convert", tmp_path / "se.keras", "-o", out / "se.tflite", "--calib", models / "calib.npy")
    code, stdout, stderr = pea_tflite(*args)
    assert (code, stdout, _files(out)) == (1, "", [])
    assert stderr.startswith("pea-tflite: error: converted file is not ReLU-only: op ") and stderr.endswith(
        ": multiplies the feature map by relu6(x + 3) / 6 of its pooled channels (a squeeze-excite gate: a product "
        "of activations, not a ReLU network; --allow_gates accepts ReLU6 gates)\n")
    code, stdout, stderr = pea_tflite(*args, "--allow_gates")
    assert (code, stderr) == (0, ""), stderr
    assert re.search(r"^ReLU-only check: passed \(int8 compute, no non-ReLU activation; channel gate at op \d+ "
                     r"\(--allow_gates\)\)$", stdout, re.M), stdout
    assert pea_tflite("check", out / "se.tflite", "--int8", "--allow_gates")[0] == 0


def test_no_message_names_a_checkout():
    """Users of the installed package have no checkout: extras are named as `pea_keras[extra]`."""
    package = pathlib.Path(__file__).parent.parent / "pea_keras"
    found = [str(p) for p in package.rglob("*.py") if "pip install -e" in p.read_text()]
    assert found == []
