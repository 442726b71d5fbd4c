"""Running the real ``pea-tflite`` console script from tests, in a fresh process."""
import os
import shutil
import subprocess
import sys

from fresh import HANG_S

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command():
    """The installed console script beside this Python (``python -m`` where none is installed)."""
    script = os.path.join(os.path.dirname(sys.executable), "pea-tflite")
    found = script if os.path.exists(script) else shutil.which("pea-tflite")
    return [found] if found else [sys.executable, "-m", "pea_keras.tflite"]


def env(pythonpath=()):
    """This tree first on the path (then the package installed elsewhere is not what runs)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, pythonpath), REPO]),
                TF_CPP_MIN_LOG_LEVEL="3")


def pea_tflite(*args, pythonpath=(), timeout=HANG_S):
    """``pea-tflite ARGS`` in a fresh process; ``pythonpath``: folders searched before this tree."""
    return subprocess.run([*command(), *map(str, args)], capture_output=True, text=True,
                          env=env(pythonpath), timeout=timeout)
