"""pea-tflite convert/run: trained PEA model -> int8 file that keeps the Keras accuracy on
LiteRT and TFLite Micro; C array; refusals and one-line errors with nothing left behind."""
import importlib
import re

import numpy as np
import pytest
from fresh import cli_run

import pea_keras
from pea_keras.data.digits import load_digits_split
from pea_keras.tflite import evaluate, inspect, predict, relu_only_violations

DIGITS = load_digits_split(8, channels=1)


def tiny_cnn(k):
    L = k.layers
    return k.Sequential([k.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", activation="relu"),
                         L.BatchNormalization(momentum=0.9), L.ReLU(), L.MaxPooling2D(),
                         L.Conv2D(16, 3, padding="same"), L.ReLU(),
                         L.Flatten(), L.Dense(10, activation="softmax")])


@pytest.fixture(scope="module", params=["keras", "tf_keras"])
def trained(request, tmp_path_factory):
    """A SiLU-PEA model trained until alpha = 1, saved in its flavor's format."""
    k = importlib.import_module(request.param)
    k.utils.set_random_seed(0)
    model = pea_keras.wrap(tiny_cnn(k), activation="silu")
    model.compile(k.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x, y = DIGITS["train"]
    model.fit(x, y, epochs=6, batch_size=64, verbose=0, callbacks=[pea_keras.PEAScheduler()])
    assert all(float(np.asarray(layer.alpha)) == 1.0 for layer in pea_keras.pea_layers(model))
    path = tmp_path_factory.mktemp(request.param) / ("model.keras" if k.__name__ == "keras" else "model.h5")
    model.save(path)
    return model, path


def top1(probs, y):
    return float(np.mean(np.argmax(probs, -1) == y))


def test_trained_pea_model_converts_relu_only_and_keeps_accuracy(trained, tmp_path, capsys):
    model, path = trained
    out = tmp_path / "model.tflite"
    code, text, err = cli_run(capsys, "convert", path, "-o", out, "--calib", "digits")
    assert code == 0, err
    assert "CONV_2D" in text and "TFLite Micro tensor arena:" in text and "stripped 3 PEA layers" in text
    assert relu_only_violations(out, int8=True) == []
    info = inspect(out)
    assert [t.dtype for t in info.inputs + info.outputs] == ["INT8", "INT8"]
    assert int(re.search(r"tensor arena: (\d+) bytes", text).group(1)) > 0
    x, y = DIGITS["test"]
    keras_acc = top1(np.asarray(model(x, training=False)), y)
    result = evaluate(out, x, y, runtime="both")
    assert keras_acc > 0.8
    assert abs(result["litert_accuracy"] - keras_acc) <= 0.02
    assert result["max_diff_ok"] and result["agreement"] >= 0.99  # Within a step of the softmax's input.
    # The TFLite Micro kit next to the file (micro preset), named after its stem; the C array
    # holds exactly the file's bytes.
    for suffix in ("_model_data.h", "_op_resolver.h", "_model_settings.h", "_test_data.cc", "_test_data.h"):
        assert (tmp_path / f"model{suffix}").exists() and f"wrote {tmp_path / ('model' + suffix)}" in text
    cc = (tmp_path / "model_model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_model_data[]" in cc
    body = cc.split("{", 1)[1].split("}", 1)[0]
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == out.read_bytes()
    assert f"g_model_model_data_size = {out.stat().st_size};" in cc
    header = (tmp_path / "model_model_data.h").read_text()
    assert "extern const unsigned int g_model_model_data_size;" in header


def test_run_reports_both_runtimes(trained, tmp_path, capsys):
    _, path = trained
    out = tmp_path / "m.tflite"
    assert cli_run(capsys, "convert", path, "-o", out, "--target", "phone")[0] == 0
    info = inspect(out)
    assert [t.dtype for t in info.inputs + info.outputs] == ["FLOAT32", "FLOAT32"]
    assert not (tmp_path / "m_model_data.cc").exists() and not list(tmp_path.glob("*.h"))
    code, text, _ = cli_run(capsys, "run", out, "--data", "digits", "--limit", "60")
    assert code == 0 and "litert  top-1" in text and "micro   top-1" in text and "agreement" in text
    code, text, _ = cli_run(capsys, "bench", out, "--runs", "3")
    assert code == 0 and re.search(r"median \d+\.\d+ ms over 3 runs; TFLite Micro arena \d+ bytes", text)


@pytest.mark.slow
def test_alpha_below_one_is_refused_unless_forced(tmp_path, capsys):
    import keras

    model = pea_keras.wrap(tiny_cnn(keras), activation="gelu", alpha=0.5)
    path = tmp_path / "half.keras"
    model.save(path)
    out = tmp_path / "half.tflite"
    code, _, err = cli_run(capsys, "convert", path, "-o", out)
    assert code == 1 and "alpha" in err and "--force_strip" in err and err.count("\n") == 1
    assert err.startswith("pea-tflite: error: cannot deploy: these PEALayers still use the novel activation")
    assert "force=True" not in err  # The library's argument is not a flag of this command.
    assert not out.exists()
    # Overwriting files is not permission to deploy a blend: that takes its own flag.
    assert cli_run(capsys, "convert", path, "-o", out, "--overwrite")[0] == 1 and not out.exists()
    assert cli_run(capsys, "convert", path, "-o", out, "--force_strip", "--c_array", tmp_path / "c")[0] == 0
    assert relu_only_violations(out, int8=True) == []
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "half_model_data.cc", "half_model_data.h", "half_model_settings.h", "half_op_resolver.h",
        "half_test_data.cc", "half_test_data.h"]


def test_predict_dequantizes_on_both_runtimes(tmp_path):
    import keras

    model = tiny_cnn(keras)
    conv = pea_keras.tflite.convert(model, tmp_path / "p.tflite", DIGITS["train"][0][:64])
    x = DIGITS["test"][0][:8]
    litert, micro = predict(conv.path, x), predict(conv.path, x, runtime="micro")
    assert litert.dtype == np.float32 and litert.shape == (8, 10)
    step = inspect(conv.path).outputs[0].scale[0]
    assert np.max(np.abs(litert - micro)) <= step + 1e-7
    assert np.max(np.abs(litert - np.asarray(model(x)))) < 0.1


def _left(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def plain_model(tmp_path):
    import keras

    path = tmp_path / "plain.keras"
    tiny_cnn(keras).save(path)
    return path


def test_bad_inputs_fail_with_one_line_and_leave_nothing(plain_model, tmp_path, capsys):
    tmp = plain_model.parent
    (tmp / "notes.txt").write_text("not a model")
    (tmp / "fake.keras").write_text("not a zip")
    np.save(tmp / "wrong.npy", np.zeros((10, 5, 5, 1), np.float32))
    np.save(tmp / "huge.npy", DIGITS["train"][0][:120] * 1e6)
    (tmp / "exists.tflite").write_bytes(b"keep me")
    before = _left(tmp)
    cases = [
        (["convert", tmp / "missing.keras", "-o", tmp / "a.tflite"], "no such file"),
        (["convert", tmp / "notes.txt", "-o", tmp / "a.tflite"], "not a Keras model"),
        (["convert", tmp / "fake.keras", "-o", tmp / "a.tflite"], "not a Keras .keras archive"),
        (["convert", plain_model, "-o", tmp / "a.tflite", "--calib", tmp / "wrong.npy"],
         "does not match the model input (N, 8, 8, 1)"),
        (["convert", plain_model, "-o", tmp / "a.tflite", "--calib", tmp / "huge.npy"],
         "huge.npy: values span [0, 1e+06], more than 4x the range [0, 1] of the images models here take: int8 "
         "would leave the real inputs a few steps; rescale the data (integers: --calib_scale 255), or pass "
         "--calib_any_range for a model that takes such inputs\n"),
        (["convert", plain_model, "-o", tmp / "exists.tflite"], "exists (pass --overwrite"),
        (["convert", plain_model, "-o", tmp / "a.tflite", "--calib", "tfds:no_such_dataset_xyz:train"],
         "not available offline"),
        (["run", tmp / "exists.tflite", "--data", "digits"], "not a TFLite flatbuffer"),
    ]
    for argv, message in cases:
        code, _, err = cli_run(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("pea-tflite: error:") and err.count("\n") == 1, err
        assert message in err, err
    assert _left(tmp) == before
    assert (tmp / "exists.tflite").read_bytes() == b"keep me"


def test_help_reads_well(capsys):
    code, out, _ = cli_run(capsys, "--help")
    assert code == 0 and all(c in out for c in ("convert", "inspect", "check", "run", "bench"))
    for command in ("convert", "inspect", "check", "run", "bench"):
        code, out, _ = cli_run(capsys, command, "--help")
        assert code == 0 and out.startswith("usage: pea-tflite " + command)
