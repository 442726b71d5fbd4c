"""What every benchmark shares: this checkout importable, quiet TensorFlow, the Keras flavors, and the
time, command and machine a results file records."""
import datetime
import os
import platform
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
RESULTS = os.path.join(REPO, "docs", "results")
FLAVORS = {"3": "keras", "2": "tf_keras"}  # --keras 3 / 2, as train.py spells them.


def child_env(**extra):
    """The environment of a benchmark's child process: this checkout first on the path, quiet TensorFlow."""
    path = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def in_fresh_process(fn, *args):
    """fn(*args) in a new Python process, its result or its exception: a long worker's memory stays that of
    one job (a process keeps every finished run's graphs; EfficientNetB0's reached 8.6 GB and was killed),
    a job that is killed costs that job alone (`BrokenProcessPool` here), and a worker that is stopped
    takes its job with it."""
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_end_with_parent) as pool:
        return pool.submit(fn, *args).result()


def _end_with_parent():
    """Linux: SIGTERM to this process when the process that started it ends (PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def now(timestamp=None):
    """UTC to the second, ISO 8601: now, or at `timestamp` (time.time())."""
    when = datetime.datetime.now(datetime.UTC) if timestamp is None else (
        datetime.datetime.fromtimestamp(timestamp, datetime.UTC))
    return when.isoformat(timespec="seconds")


def command():
    """How this benchmark was started, as typed."""
    return "python " + " ".join(sys.argv)


def machine():
    """What a result was measured on."""
    import tensorflow as tf

    return {"machine": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__}


def quiet_tensorflow(threads=0):
    """No warnings or absl log lines; `threads` (0: TensorFlow's default) intra- and inter-op threads."""
    warnings.filterwarnings("ignore")
    import tensorflow as tf
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def add_threads_argument(parser):
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: TensorFlow's default)")


def add_worker_arguments(parser):
    """--worker I/N and --stop_at HH:MM, for benchmarks whose workers share one resumable results file."""
    parser.add_argument("--worker", default="0/1", type=lambda t: tuple(map(int, t.split("/"))), metavar="I/N",
                        help="this worker's share of the jobs: every N-th from the I-th (start 0/2 and 1/2 "
                             "on 2 cores)")
    parser.add_argument("--stop_at", default="", type=_today_at, help="UTC time HH:MM after which no new job starts")


def _today_at(text):
    """The timestamp of HH:MM UTC today (0 for '')."""
    if not text:
        return 0
    hour, minute = map(int, text.split(":"))
    return datetime.datetime.now(datetime.UTC).replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()


def quick_paths(args, *names):
    """Points the files named `names` of `args` at their `_quick` twins (a smoke run keeps the real ones)."""
    for name in names:
        root, ext = os.path.splitext(getattr(args, name))
        setattr(args, name, f"{root}_quick{ext}")


def pyplot():
    """matplotlib.pyplot drawing to files (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
