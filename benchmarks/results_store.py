"""The results file of a resumable benchmark, shared by its workers: read-modify-write under an
exclusive lock, replaced atomically, so a killed worker never leaves half a file."""
import contextlib
import copy
import fcntl
import hashlib
import json
import os
import tempfile
import time
import traceback


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


def work(path, empty, jobs, name, run, ready=lambda store, job: True, stop_at=0, write=None,
         recorded=lambda store: None):
    """Runs `run(job)` for each of `jobs`, in order, whose `name(job)` the store at `path` has neither under "runs"
    nor under "failed" (shared with the other workers): its record under runs (then `recorded(store)`), or its error
    under failed (the other jobs go on). A job not yet `ready(store, job)` waits for what other workers are
    measuring. Ends when no job is left or after `stop_at` (a timestamp; 0: never); `write(path, change)` writes
    the store (default `update`)."""
    write = write or (lambda where, change: update(where, empty, change))
    while True:
        with locked(path):
            store = read(path, empty)
        pending = [j for j in jobs if name(j) not in store["runs"] and name(j) not in store.get("failed", {})]
        if not pending or (stop_at and time.time() >= stop_at):
            print(f"[{os.getpid()}] {len(pending)} jobs left", flush=True)
            return
        job = next((j for j in pending if ready(store, j)), None)
        if job is None:
            time.sleep(15)
            continue
        try:
            result = run(job)
        except Exception as e:  # noqa: BLE001 (recorded, not retried: the other jobs go on)
            traceback.print_exc()
            write(path, lambda s, e=e, job=job: s.setdefault("failed", {}).__setitem__(
                name(job), f"{type(e).__name__}: {str(e).strip()[:300]}"))
            continue
        write(path, lambda s, job=job, result=result: (s["runs"].__setitem__(name(job), result), recorded(s)))
