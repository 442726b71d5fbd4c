"""What the command-line tools print: their own messages, not TensorFlow's log lines.

TensorFlow's native libraries log start-up facts ("oneDNN custom operations are on", "Could
not find cuda drivers") and run-time notes straight to file descriptor 2, whatever
TF_CPP_MIN_LOG_LEVEL says. `quiet` routes descriptor 2 through a filter that drops those
info and warning lines (native errors and fatal messages pass), hides dependencies'
Python warnings and absl log lines, and shows pea_keras' own warnings as one line:
``PROG: warning: ...``.

`sigterm_stops` makes SIGTERM (a scheduler, a preempted machine) stop a CLI as Ctrl-C does:
`Terminated`, a KeyboardInterrupt, raised where the program is, so every `finally` removes its
temporaries and ends its child processes; the CLI prints one line (`stopped`).
"""

import atexit
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import warnings

# Native log lines that are noise to a user: abseil's I/W lines, TensorFlow's CPU notes and
# LiteRT's INFO lines ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.").
_NOISE = re.compile(r"^(?:[IW]\d{4} |E\d{4} .*(?:cuInit|cuda)|WARNING: All log messages before "
                    r"absl::InitializeLog|To enable the following instructions:|INFO: |\s*$)")


def _filter(read_fd, out):
    with os.fdopen(read_fd, "rb") as pipe:
        for line in pipe:
            if not _NOISE.match(line.decode(errors="replace")):
                out.write(line)
                out.flush()


_filtering = False


_program = None


def set_prog(name):
    """Name the program for messages, as the command line that started it spelled it."""
    global _program
    _program = name


def prog(default):
    """The name the user typed for this program (`train.py`, `pea-train`, a benchmark), for messages."""
    if _program:
        return _program
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else default


def quiet(prog, verbose=False):
    """Call first thing in a CLI, before TensorFlow is imported (once per process; later calls
    only set the log level). With `verbose`, everything shows."""
    global _filtering
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "2"
    if verbose or _filtering:
        return
    _filtering = True
    logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS' and TensorFlow's Python WARNING lines.
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"pea_keras\b")
    warnings.showwarning = lambda message, *_: print(f"{prog}: warning: {message}", file=sys.stderr)
    sys.stderr.flush()
    original = os.fdopen(os.dup(2), "wb")
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_filter, args=(read_fd, original), daemon=True)
    thread.start()

    def flush():  # At exit: close our end so the filter sees EOF and writes what is left.
        sys.stderr.flush()
        os.dup2(original.fileno(), 2)
        thread.join(timeout=5)

    atexit.register(flush)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program was, so that it stops as on Ctrl-C."""


_sigterm = {"received": False, "raised": False}


def _in_finalizer(frame):
    """Whether `frame` runs inside a `__del__`, where Python prints and drops any exception."""
    while frame is not None and frame.f_code.co_name != "__del__":
        frame = frame.f_back
    return frame is not None


def _on_sigterm(signum, frame):
    _sigterm["received"] = True
    if not _sigterm["raised"] and not _in_finalizer(frame):  # Once: a second one while stopping waits.
        _sigterm["raised"] = True
        raise Terminated()


@contextlib.contextmanager
def sigterm_stops():
    """`with sigterm_stops():` SIGTERM raises `Terminated` in the main thread. One raised where it
    cannot stop the program (a finalizer) is raised again by `check_terminated`."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_terminated():
    """Raises `Terminated` if a SIGTERM came (for the loops of long work: a lost one stops there)."""
    if _sigterm["received"]:
        _sigterm["raised"] = True
        raise Terminated()


def stopped(error):
    """("terminated", 143) for a SIGTERM's `Terminated`, else ("interrupted", 130): Ctrl-C; each CLI
    prints "PROG: WORD; what to do" and exits with the code (128 + the signal, as shells report)."""
    return ("terminated", 143) if isinstance(error, Terminated) else ("interrupted", 130)
