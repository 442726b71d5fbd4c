"""Running train.py from tests: its main in this process, or the script in a child process."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def call_main(*args):
    """train.py's main in this process, with its flags parsed from `args`."""
    import train

    train.FLAGS.unparse_flags()
    try:
        return train.main(train.parse_flags(["train.py", *args]))
    finally:
        train.FLAGS.unparse_flags()


def run_script(*args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
