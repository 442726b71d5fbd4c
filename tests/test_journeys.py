"""The documented flows as users run them: separate programs, the installed console scripts, and
models saved by the user's own scripts; nothing imported into the test process carries over."""
import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest
from fresh import HANG_S, REPO, TESTS, fresh_python, pea_tflite, run

pytestmark = pytest.mark.slow


def deploy_journey(model, tmp_path, calib="digits", **extra_env):
    """convert -> check --int8 -> inspect -> inspect --resolver -> run --runtime both -> bench."""
    out = tmp_path / "deploy" / "model.tflite"
    out.parent.mkdir()

    def cli(*args):
        return pea_tflite(*args, **extra_env)

    code, stdout, stderr = cli("convert", model, "-o", out, "--calib", calib)
    assert (code, stderr) == (0, ""), stderr
    assert stdout.splitlines()[0].startswith(f"wrote {out}: ")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["model.tflite"] + [f"model_{part}" for part in ("model_data.cc", "model_data.h", "op_resolver.h",
                                                          "model_settings.h", "test_data.cc", "test_data.h")])
    assert cli("check", out, "--int8")[:2] == (0, f"{out}: ReLU-only int8\n")
    code, stdout, stderr = cli("inspect", out)
    assert (code, stderr) == (0, "") and "CONV_2D" in stdout
    code, stdout, stderr = cli("inspect", out, "--resolver")
    assert (code, stderr) == (0, "") and "MicroMutableOpResolver" in stdout and "resolver.AddConv2D(" in stdout
    code, stdout, stderr = cli("run", out, "--data", "digits:test", "--runtime", "both", "--limit", "60")
    assert (code, stderr) == (0, ""), stderr
    assert "litert  top-1" in stdout and "micro   top-1" in stdout
    assert stdout.splitlines()[2].split(", ")[0].split()[0] == "0"  # Per class, by the digits' names.
    reference = next(line for line in stdout.splitlines() if "vs LiteRT reference kernels" in line)
    assert float(reference.split("max output difference ")[1].split()[0]) <= 1.0, reference
    code, stdout, stderr = cli("bench", out, "--runs", "3")
    assert (code, stderr) == (0, ""), stderr
    assert "median" in stdout and "TFLite Micro arena" in stdout
    return out


def test_train_then_convert_its_saved_model(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    result = run(sys.executable, REPO / "train.py", "--arch", "tiny", "--epochs", "1", "--steps_per_epoch", "8",
                 "--verbose", "2", "--noaugment", "--output_dir", run_dir, "--tflite_dir", tmp_path / "tflite",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["augmentation"]["reason"] == "augment=none"  # The earlier spelling still works.
    assert "Augmentation: no crop, no flips: augment=none" in result.stdout.splitlines()
    # The run ends by saying what the int8 file needs on a microcontroller, and where it fits.
    device = metrics["tflite"]["device"]
    assert device["flash_bytes"] == metrics["sizes"]["tflite_int8_bytes"] and device["ram_bytes"] > 0
    lines = result.stdout.splitlines()
    assert lines[-5].startswith("on a microcontroller: flash ") and "(TFLite Micro arena)" in lines[-5]
    assert lines[-4:-1] == ["  256 KB flash / 64 KB RAM (small Cortex-M0+/M4): fits",
                            "  1 MB flash / 256 KB RAM (mid-range Cortex-M4/M33): fits",
                            "  2 MB flash / 512 KB RAM (large Cortex-M7/M55): fits"]
    out = deploy_journey(run_dir / "pea_model.keras", tmp_path)
    # The README's `pea-tflite convert <run>/pea_model.keras --calib digits` calibrates on the images
    # train.py calibrated on: the same file, byte for byte.
    assert out.read_bytes() == (tmp_path / "tflite" / "t_int8.tflite").read_bytes()


USER_SCRIPT = """
    import sys
    import numpy as np
    import {k} as keras
    import pea_keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(h)))
    model = pea_keras.wrap(keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling2D()(h))), activation="silu")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, digits.target, epochs=2, batch_size=64, verbose=0, callbacks=[pea_keras.PEAScheduler()])
    model.save(sys.argv[1])
"""


@pytest.mark.parametrize("flavor, suffix", [("keras", ".keras"), ("tf_keras", ".keras"), ("tf_keras", ".h5")])
def test_a_model_the_user_wraps_trains_and_saves_converts(tmp_path, flavor, suffix):
    path = tmp_path / f"mine{suffix}"
    fresh_python(USER_SCRIPT.format(k=flavor), path)
    deploy_journey(path, tmp_path)


def test_a_model_trained_under_jax_converts(tmp_path):
    pytest.importorskip("jax")
    path = tmp_path / "jax.keras"
    fresh_python(USER_SCRIPT.format(k="keras"), path, KERAS_BACKEND="jax")
    deploy_journey(path, tmp_path)


def test_keras_backend_of_the_user_does_not_reach_the_converter(tmp_path):
    """A user whose shell says KERAS_BACKEND=jax still converts: pea-tflite runs on TensorFlow."""
    pytest.importorskip("jax")
    path = tmp_path / "k3.keras"
    fresh_python(USER_SCRIPT.format(k="keras"), path)
    out = tmp_path / "m.tflite"
    code, _, stderr = pea_tflite("convert", path, "-o", out, KERAS_BACKEND="jax")
    assert (code, stderr) == (0, ""), stderr
    assert json.loads(pea_tflite("inspect", out, "--json")[1])["size_bytes"] == os.path.getsize(out)


def with_this_environment(venv):
    """A new virtual environment whose dependencies are this interpreter's: the system's packages
    (--system-site-packages), and where this interpreter runs in a virtual environment itself, that
    environment's too (which --system-site-packages does not reach), after the new one's own."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True, timeout=HANG_S)
    if sys.prefix != sys.base_prefix:
        own = sysconfig.get_paths("venv", vars={"base": str(venv), "platbase": str(venv)})
        parent = dict.fromkeys(sysconfig.get_paths()[name] for name in ("purelib", "platlib"))
        # Folders only: the parent's .pth files (its editable install of this checkout) are not run.
        pathlib.Path(own["purelib"], "parent_environment.pth").write_text("".join(f"{p}\n" for p in parent))
    return venv


def test_the_wheel_gives_a_user_everything_without_the_checkout(tmp_path):
    """Built and installed like a release (a wheel, not editable), used from a folder of the user's."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    tmp_path / "dist", REPO], check=True, capture_output=True, timeout=HANG_S)
    wheel = next((tmp_path / "dist").glob("pea_keras-*.whl"))
    venv = with_this_environment(tmp_path / "venv")
    # Only the tests' helpers on the path: a checkout on PYTHONPATH would shadow the installed package.
    installed = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(TESTS)}
    assert run(venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", wheel,
               **installed).returncode == 0
    user = tmp_path / "work"
    user.mkdir()
    where = run(venv / "bin" / "python", "-c", "import pea_keras; print(pea_keras.__file__)", cwd=user, **installed)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    result = run("pea-train", "--arch", "tiny", "--epochs", "1", "--steps_per_epoch", "8",
                 "--calibration_examples", "64", "--verbose", "0", cwd=user, **installed)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert (user / "tflite" / "tiny_pea_digits_int8.tflite").is_file()  # Defaults under the working folder.
    deploy_journey(user / "runs" / "tiny_pea_digits" / "pea_model.keras", tmp_path, **installed)
    code, source, _ = pea_tflite("micro-main", **installed)
    assert code == 0 and source == (REPO / "pea_keras" / "tflite" / "micro" / "main.cc").read_text()
