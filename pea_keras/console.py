"""What the command-line tools print: their own messages, not TensorFlow's log lines.

TensorFlow's native libraries log start-up facts ("oneDNN custom operations are on", "Could
not find cuda drivers") and run-time notes straight to file descriptor 2, whatever
TF_CPP_MIN_LOG_LEVEL says. `quiet` routes descriptor 2 through a filter that drops those
info and warning lines (native errors and fatal messages pass), hides dependencies'
Python warnings and absl log lines, and shows pea_keras' own warnings as one line:
``PROG: warning: ...``.

`signals_stop` makes SIGTERM (a scheduler, a preempted machine) stop a CLI as Ctrl-C does:
`Terminated`, a KeyboardInterrupt, raised where the program is, so every `finally` removes its
temporaries and ends its child processes; the CLI prints one line (`stopped`). Where an exception
would be lost or leave native code half set up (an import, a finalizer, TensorFlow's Python code,
which its C++ calls back into), the signal is delivered again a moment later, so it is never lost
and never shows a traceback; Ctrl-C is deferred the same way.
"""

import atexit
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
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


STOPS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
# Packages whose Python code their native code calls back into (building an error, converting a
# tensor, a py_function): an exception raised there can be replaced by another or crash the process.
_NATIVE_CALLERS = ("tensorflow", "numpy", "jax", "jaxlib", "torch")
# How long a stop waits for such a library's call to return (tracing a large model runs
# TensorFlow's Python for tens of seconds); after it, the stop waits only where a callback from
# native code is likely: an object being built (pybind11 builds TensorFlow's errors so) or NumPy.
GRACE_S = 1.0
_stop = {"signal": None, "raised": False, "since": 0.0}


def _package(frame):
    return str(frame.f_globals.get("__name__")).partition(".")[0]


def _deferred(frame):
    """Whether a stop must wait rather than be raised in `frame`: inside a finalizer (`__del__`, whose
    exceptions Python drops), an import (TensorFlow's start-up, after which the interpreter can crash
    on its way out) or a numerical library's own Python code (see GRACE_S)."""
    package, within_grace = _package(frame), time.monotonic() - _stop["since"] < GRACE_S
    if package == "numpy" or (package in _NATIVE_CALLERS and frame.f_code.co_name == "__init__"):
        return True
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        if within_grace and _package(frame) in _NATIVE_CALLERS:
            return True
        frame = frame.f_back
    return False


def _on_signal(signum, frame):
    if _stop["signal"] is None:  # The first one decides the word and the exit code.
        _stop.update(signal=signum, since=time.monotonic())
    if _stop["raised"]:  # Once: a second signal while stopping changes nothing.
        return
    if _deferred(frame):  # Delivered again shortly, until the program is where an exception stops it.
        _deliver_again(signum)
        return
    _stop["raised"] = True
    raise _the_stop()


def _the_stop():
    """The exception of the first signal that came: KeyboardInterrupt, or Terminated for SIGTERM."""
    return STOPS[_stop["signal"]]()


def _deliver_again(signum):
    def deliver():
        if signal.getsignal(signum) is _on_signal:
            os.kill(os.getpid(), signum)

    again = threading.Timer(0.05, deliver)
    again.daemon = True
    again.start()


def _unraisable(hook):
    """sys.unraisablehook, but a stop that C code or a finalizer dropped is not printed: it is
    delivered again, to stop the program where it can."""
    def report(unraisable):
        if _in_chain(unraisable.exc_value) is None or _stop["signal"] is None:
            return hook(unraisable)
        _stop["raised"] = False
        _deliver_again(_stop["signal"])
    return report


@contextlib.contextmanager
def signals_stop():
    """`with signals_stop():` Ctrl-C raises KeyboardInterrupt and SIGTERM `Terminated` in the main
    thread, once; inside an import, a finalizer or TensorFlow's own code, as soon as the program has
    left it (`check_stop` raises it too, for loops that native code runs)."""
    if threading.current_thread() is not threading.main_thread():  # Signals reach the main thread only.
        yield
        return
    _stop.update(signal=None, raised=False)
    # A signal the caller ignores (Ctrl-C for a shell script's background job) stays ignored.
    previous = {signum: signal.signal(signum, _on_signal) for signum in STOPS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        _stop.update(signal=None, raised=False)


def check_stop():
    """Raises the stop of a signal that came (for the loops of long work: a deferred one stops there)."""
    if _stop["signal"] is not None:
        _stop["raised"] = True
        raise _the_stop()


def _in_chain(error):
    """The KeyboardInterrupt that `error` is or came from, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def stop_of(error):
    """The KeyboardInterrupt (Ctrl-C, or SIGTERM's Terminated) that `error` is or came from, else
    None. After a signal, any error (not an exit) is its stop: C code that a signal interrupts may
    raise another error over it (a SystemError, pybind11's "MISMATCH ... REPLACED BY Terminated")."""
    found = _in_chain(error)
    if found is not None or not isinstance(error, Exception) or _stop["signal"] is None:
        return found
    return _the_stop()


def stopped(error):
    """("terminated", 143) for an error that comes from SIGTERM, else ("interrupted", 130): Ctrl-C;
    each CLI prints "PROG: WORD; what to do" and exits with the code (128 + the signal, as shells say)."""
    return ("terminated", 143) if isinstance(stop_of(error), Terminated) else ("interrupted", 130)
