"""The results file of a resumable benchmark, shared by its workers: read-modify-write under an
exclusive lock, replaced atomically, so a killed worker never leaves half a file."""
import contextlib
import copy
import fcntl
import hashlib
import json
import os
import tempfile


@contextlib.contextmanager
def locked(path):
    """Holds an exclusive lock named after `path` (a file beside it would be replaced with it)."""
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    with open(os.path.join(tempfile.gettempdir(), f"pea-compact-lock-{digest}"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read(path, empty):
    """The store at `path`, or a copy of `empty` when there is none yet."""
    if not os.path.exists(path):
        return copy.deepcopy(empty)
    with open(path) as f:
        return json.load(f)


def update(path, empty, change):
    """Applies `change(store)` under the lock and writes the store back; returns it."""
    from pea_keras import files

    with locked(path):
        store = read(path, empty)
        change(store)
        files.atomic_write_json(path, store)
        return store
