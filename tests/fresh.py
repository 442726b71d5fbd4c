"""Fresh interpreters, as users run the product: nothing imported beforehand, the installed package."""
import os
import pathlib
import subprocess
import sys
import textwrap

TESTS = pathlib.Path(__file__).parent
# The formats a saved model comes in: Keras 3 `.keras`, and tf_keras `.keras`, `.h5` and SavedModel.
FORMATS = ("k3.keras", "tf.keras", "tf.h5", "tf_savedmodel")
# The one time limit of the tests' child processes: one still running after this long is hung. No
# test measures speed, and a loaded machine runs a child several times slower than an idle one.
HANG_S = 1800


def env(**extra):
    """The environment of a user's shell, quiet TensorFlow, the tests' helper modules importable."""
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(TESTS)) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu", **extra}


def fresh_python(code, *args, timeout=HANG_S, **extra_env):
    """Runs `code` (dedented) in a new interpreter; returns its stdout, failing on a non-zero exit."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            capture_output=True, text=True, env=env(**extra_env), timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def pea_tflite(*args, timeout=HANG_S, **extra_env):
    """The installed `pea-tflite` console script; (exit code, stdout, stderr)."""
    result = subprocess.run(["pea-tflite", *map(str, args)], capture_output=True, text=True,
                            env=env(**extra_env), timeout=timeout)
    return result.returncode, result.stdout, result.stderr
