"""Nothing questionable reaches a device: pea-tflite checks its inputs before converting, turns a
converter crash into one line, converts multi-input models, stays quiet and answers --help at once."""
import os
import stat
import sys

import numpy as np
import pytest
from fresh import HANG_S, cli_run, pea_tflite, run, start

from pea_keras.tflite import inspect, quantization

SHAPE = (8, 8, 1)


def plain_cnn(shape=SHAPE):
    import keras

    L = keras.layers
    return keras.Sequential([keras.Input(shape), L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "plain.keras"
    plain_cnn().save(path)
    return path


def calibration(n=120):
    return np.random.default_rng(0).random((n, *SHAPE), dtype=np.float32)


@pytest.mark.parametrize("make, message", [
    (lambda x: np.where(np.arange(len(x))[:, None, None, None] == 7, np.inf, x),
     "1 of 120 samples hold NaN or infinite values (first: sample 7)"),
    (lambda x: np.full_like(x, np.nan), "120 of 120 samples hold NaN or infinite values"),
    (lambda x: (x * 255).astype(np.uint8), "uint8 values"),
])
def test_bad_calibration_is_refused_before_conversion(model_file, tmp_path, capsys, make, message):
    np.save(tmp_path / "calib.npy", make(calibration()))
    code, _, err = cli_run(capsys, "convert", model_file, "-o", tmp_path / "m.tflite", "--calib",
                           tmp_path / "calib.npy")
    assert code == 1 and err.count("\n") == 1 and err.startswith("pea-tflite: error:"), err
    assert message in err
    assert sorted(os.listdir(tmp_path)) == ["calib.npy"]


def test_a_converter_crash_is_one_error_not_a_segfault(tmp_path):
    # The converter itself segfaults on a calibration holding inf (the checks above keep users away
    # from this; here the crash is provoked on purpose, below them).
    x = calibration(16)
    x[3, 0, 0, 0] = np.inf
    model = plain_cnn()
    quantization.export_saved_model(model, str(tmp_path / "sm"))
    name = quantization.model_inputs(model)[0][0]
    with pytest.raises(quantization.TFLiteError, match=r"the TFLite converter crashed \(SIG[A-Z]+\)"):
        quantization.convert_saved_model(str(tmp_path / "sm"), {name: x})


def test_a_crash_while_loading_the_model_blames_the_file_not_the_calibration(tmp_path):
    """Code a trusted file runs while loading can crash the child: the one line says so."""
    import keras

    crash = lambda x: [__import__("os").environ.get("CRASH_ON_LOAD") and  # noqa: E731
                       __import__("os").kill(__import__("os").getpid(), 11), x][1]
    x = keras.Input(SHAPE)
    y = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Lambda(crash, name="payload")(x)))
    keras.Model(x, y).save(tmp_path / "crash.keras")
    result = pea_tflite("convert", tmp_path / "crash.keras", "-o", tmp_path / "m.tflite", "--trust_model_code",
                        "--target", "phone", CRASH_ON_LOAD="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "pea-tflite: error: loading the model file crashed (SIGSEGV), before any conversion: code the "
        "file runs while loading (--trust_model_code) or a damaged file (rerun with --verbose for the log)")
    assert not (tmp_path / "m.tflite").exists()


def test_integer_calibration_is_scaled_when_asked(model_file, tmp_path, capsys):
    np.save(tmp_path / "u8.npy", (calibration() * 255).astype(np.uint8))
    code, _, err = cli_run(capsys, "convert", model_file, "-o", tmp_path / "m.tflite", "--calib",
                           tmp_path / "u8.npy", "--target", "phone")
    assert code == 1 and err.count("\n") == 1 and not (tmp_path / "m.tflite").exists()
    assert err.endswith("where the model takes float inputs (images in [0, 1]); convert them (e.g. x / 255) "
                        "or pass the divisor --calib_scale 255\n"), err
    code, _, err = cli_run(capsys, "convert", model_file, "-o", tmp_path / "m.tflite", "--calib",
                           tmp_path / "u8.npy", "--calib_scale", "255", "--target", "phone")
    assert code == 0, err
    scale = inspect(tmp_path / "m.tflite").tensors[0].scale  # The float input's quantize step.
    assert inspect(tmp_path / "m.tflite").inputs[0].dtype == "FLOAT32"
    assert scale is None or len(scale) <= 1


def test_digits_are_not_used_for_a_model_they_do_not_fit(tmp_path, capsys):
    plain_cnn((32, 32, 3)).save(tmp_path / "rgb.keras")
    code, _, err = cli_run(capsys, "convert", tmp_path / "rgb.keras", "-o", tmp_path / "m.tflite")
    assert code == 1 and err.count("\n") == 1
    assert "do not fit a model input (N, 32, 32, 3)" in err and "--calib" in err
    assert not (tmp_path / "m.tflite").exists()


def test_a_model_with_two_inputs_calibrates_from_an_npz_by_input_name(tmp_path, capsys):
    import keras

    image, extra = keras.Input(SHAPE, name="image"), keras.Input((3,), name="extra")
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    y = keras.layers.Concatenate()([x, keras.layers.Dense(4, activation="relu")(extra)])
    keras.Model([image, extra], keras.layers.Dense(3)(y)).save(tmp_path / "two.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", extra=rng.random((120, 3), dtype=np.float32),
             image=rng.random((120, *SHAPE), dtype=np.float32))
    code, out, err = cli_run(capsys, "convert", tmp_path / "two.keras", "-o", tmp_path / "two.tflite",
                             "--calib", f"npz:{tmp_path / 'calib.npz'}", "--target", "phone")
    assert code == 0, err
    shapes = sorted(tuple(t.shape) for t in inspect(tmp_path / "two.tflite").inputs)
    assert shapes == [(1, 3), (1, 8, 8, 1)]
    code, _, err = cli_run(capsys, "convert", tmp_path / "two.keras", "-o", tmp_path / "x.tflite", "--target", "phone")
    assert code == 1 and "2 inputs reads its data from an .npz" in err


@pytest.mark.parametrize("argv, message", [
    (["bench", "m.tflite", "--runs", "0"], "argument --runs: expected an integer >= 1, got 0"),
    (["bench", "m.tflite", "--threads", "0"], "argument --threads: expected an integer >= 1, got 0"),
    (["run", "m.tflite", "--data", "digits", "--limit", "0"], "argument --limit: expected an integer >= 1"),
    (["convert", "m.keras", "-o", "x.tflite", "--force"], "unrecognized option --force"),
])
def test_argument_mistakes_exit_2_with_one_line(capsys, argv, message):
    code, _, err = cli_run(capsys, *argv)
    assert code == 2 and err.splitlines()[-1] == f"pea-tflite: error: {message}" or message in err, err


@pytest.mark.parametrize("argv, usage", [
    (["convert", "--bogus", "x"], "usage: pea-tflite convert [-h] -o OUT.tflite"),
    (["--bogus", "convert"], "usage: pea-tflite [-h] [--verbose] COMMAND ..."),
    (["check", "m.tflite", "--int8", "--bogus=1"],
     "usage: pea-tflite check [-h] [--strict] [--allow_gates] [--int8] FILE.tflite"),
])
def test_an_unknown_option_is_named_with_the_usage(argv, usage):
    # Not the required argument it displaced (`convert --bogus x`: MODEL is x, -o is missing).
    result = pea_tflite(*argv, timeout=300)
    lines = result.stderr.splitlines()
    assert (result.returncode, result.stdout) == (2, "")
    assert lines[0].startswith(usage) and lines[-1] == "pea-tflite: error: unrecognized option --bogus", lines


def _script(*args, cwd):
    return run(sys.executable, *args, cwd=cwd, TF_CPP_MIN_LOG_LEVEL=None)


def test_help_answers_without_tensorflow(tmp_path):
    result = _script("-X", "importtime", "-m", "pea_keras.tflite", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "convert" in result.stdout
    assert "tensorflow" not in result.stderr  # -X importtime lists every imported module.


@pytest.mark.slow
def test_a_normal_conversion_prints_no_log_lines_and_respects_the_umask(model_file, tmp_path):
    np.save(tmp_path / "calib.npy", calibration())
    old = os.umask(0o022)
    try:
        result = _script("-m", "pea_keras.tflite", "convert", str(model_file), "-o", "m.tflite",
                         "--calib", "calib.npy", cwd=tmp_path)
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("wrote m.tflite")
    for name in ("m.tflite", "m_model_data.cc", "m_model_data.h", "model_data.cc"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    from pea_keras.tflite import quantize

    path = tmp_path_factory.mktemp("tflite") / "plain.tflite"
    path.write_bytes(quantize(plain_cnn(), calibration(8)))
    return path


@pytest.mark.parametrize("command", [["check"], ["inspect"], ["run", "--data", "digits"], ["bench"]])
def test_a_truncated_or_unreachable_file_is_named_in_one_line(tflite_file, tmp_path, command):
    cut, loop = tmp_path / "cut.tflite", tmp_path / "loop.tflite"
    cut.write_bytes(tflite_file.read_bytes()[: tflite_file.stat().st_size // 2])
    loop.symlink_to(loop)
    for path, problem in ((cut, "truncated or corrupt, not a valid TFLite flatbuffer"),
                          (loop, "too many levels of symbolic links")):
        result = pea_tflite(command[0], path, *command[1:], timeout=300)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"pea-tflite: error: {path}: {problem}\n"


@pytest.mark.parametrize("flags", [[], ["--json"], ["--resolver"]])
def test_a_reader_that_leaves_ends_the_output_quietly(tflite_file, flags):
    """The pipe's reader is gone before pea-tflite writes (closed at once): exit 0, no message."""
    proc = start("pea-tflite", "inspect", tflite_file, *flags)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=HANG_S) == 0 and err == ""


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """A float file of 557 operators: its --json report (85 kB) overflows a pipe's 64 kB buffer,
    so `head` leaves while pea-tflite is still writing."""
    import tensorflow as tf

    def deep(x):
        for i in range(300):
            x = tf.nn.relu(x * (1.0 + i / 1000) + float(i % 7))
        return x

    f = tf.function(deep, input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    path = tmp_path_factory.mktemp("long") / "deep.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert())
    return path


def test_inspect_into_head_exits_0(long_file):
    result = run("bash", "-o", "pipefail", "-c", f"pea-tflite inspect {long_file} --json | head -n 2")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == ["{", f' "size_bytes": {long_file.stat().st_size},']
