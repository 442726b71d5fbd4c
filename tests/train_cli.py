"""Running train.py from tests: its main in this process, or the script in a child process."""
import sys

from fresh import HANG_S, REPO, run

sys.path.insert(0, str(REPO))


def call_main(*args):
    """train.py's main in this process, with its flags parsed from `args`."""
    import train

    train.FLAGS.unparse_flags()
    try:
        return train.main(train.parse_flags(["train.py", *args]))
    finally:
        train.FLAGS.unparse_flags()


def run_script(*args, timeout=HANG_S, **options):
    """A script of the repository (train.py) in a child process, run from the repository."""
    return run(sys.executable, *args, cwd=REPO, timeout=timeout, **options)


def refusal(tmp_path, capsys, *args):
    """The one error line of train.py's main refusing `args` (exit status 2 asserted)."""
    rc = call_main(*args, f"--output_dir={tmp_path / 'run'}", f"--tflite_dir={tmp_path}", "--verbose=0")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("train.py: error:"), err
    return err[0]
