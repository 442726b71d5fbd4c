"""Running the product as users do: fresh interpreters with nothing imported beforehand, the installed
console scripts, and `pea-tflite`'s main in this process where a test needs no new one."""
import collections
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

TESTS = pathlib.Path(__file__).parent
REPO = TESTS.parent
# The formats a saved model comes in: Keras 3 `.keras`, and tf_keras `.keras`, `.h5` and SavedModel.
FORMATS = ("k3.keras", "tf.keras", "tf.h5", "tf_savedmodel")
# The one time limit of the tests' child processes: one still running after this long is hung. No
# test measures speed, and a loaded machine runs a child several times slower than an idle one.
HANG_S = 1800
# What a command answered; unpacks as (code, out, err).
Result = collections.namedtuple("Result", "returncode stdout stderr")


def env(path=(), **extra):
    """The environment of a user's shell: this interpreter's console scripts first, quiet TensorFlow on the CPU,
    this tree (not a copy installed elsewhere) and the tests' helper modules importable. `path`: folders
    searched before this tree; an `extra` variable of None is removed."""
    pythonpath = [*map(str, path), str(REPO), os.environ.get("PYTHONPATH"), str(TESTS)]
    shell = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
             "PYTHONPATH": os.pathsep.join(filter(None, pythonpath)), "TF_CPP_MIN_LOG_LEVEL": "3",
             "JAX_PLATFORMS": "cpu", **extra}
    return {name: value for name, value in shell.items() if value is not None}


def run(*argv, cwd=None, path=(), timeout=HANG_S, **extra_env):
    """`argv` in a child process of `env(path, **extra_env)`, to its end."""
    done = subprocess.run(list(map(str, argv)), cwd=cwd, capture_output=True, text=True,
                          env=env(path, **extra_env), timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


def start(*argv, cwd=None, path=(), **extra_env):
    """`argv` in a child process of `env(path, **extra_env)` that keeps running; text pipes."""
    return subprocess.Popen(list(map(str, argv)), cwd=cwd, env=env(path, **extra_env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def fresh_python(code, *args, **options):
    """Runs `code` (dedented) in a new interpreter; returns its stdout, failing on a non-zero exit."""
    result = run(sys.executable, "-c", textwrap.dedent(code), *args, **options)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def pea_tflite(*args, **options):
    """The installed `pea-tflite` console script in a child process (`run`'s options)."""
    return run("pea-tflite", *args, **options)


def cli_run(capsys, *argv):
    """`pea-tflite ARGV`, its main in this process."""
    from pea_keras.tflite import cli

    with pytest.raises(SystemExit) as exited:
        cli.main([str(a) for a in argv])
    return Result(exited.value.code, *capsys.readouterr())
