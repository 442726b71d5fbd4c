"""The run directory: where a run writes, and the rules that keep earlier runs safe.

A new run never replaces an earlier run or its int8 file unless --overwrite says so;
--resume continues a run only with the flags it started with; the int8 file in --tflite_dir
is named after the run directory, so runs with distinct --output_dir never collide; one process
at a time owns a run directory and its int8 file (`owned`).
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil

from pea_keras import console, files
from pea_keras.errors import UsageError, UserError
from pea_keras.training import config as config_lib
from pea_keras.training import reporting, storage

CHECKPOINTS = "checkpoints"
RUN_FLAGS = "run_flags.json"


class RunFinished(UserError):
    """--resume of a run that has finished (its metrics.json is written): there is nothing to do."""


def tflite_path(config):
    """<tflite_dir>/<run directory name or --tflite_name>_int8.tflite: unique per run directory."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.tflite_name or os.path.basename(config.run_dir())).strip("-")
    return os.path.realpath(os.path.join(config.tflite_dir, f"{name}_int8.tflite"))


@contextlib.contextmanager
def owned(configs, folder=None):
    """`with owned([config]):` this process owns the run's directory and int8 file until the block
    ends; while another process writes either, files.BusyError at once, before anything is written.
    --compare passes its two runs and their common `folder`, which it owns (each run owns its own
    files while it trains). --strategy multiworker locks nothing: its workers share the folder.

    A stop (Ctrl-C, SIGTERM) in the block, once this process began writing one of the runs (its
    run_flags.json is new), carries `next_step(configs)` on its KeyboardInterrupt for the command's
    one line; before that, the same command is the way on."""
    config = configs[0]
    locks = [(os.path.realpath(folder) if folder else config.run_dir(), "--output_dir", True)]
    if config.export and folder is None:
        locks.append((tflite_path(config), "--tflite_name", False))
    with contextlib.ExitStack() as stack:
        if config.strategy != "multiworker":
            _refuse_a_file(locks[0][0])  # Its message, not the lock's.
            for path, flag, is_folder in locks:
                stack.enter_context(files.lock(path, f"choose another {flag}", folder=is_folder))
        before = [_stamp(c) for c in configs]
        try:
            yield
        except BaseException as e:
            if console.stop_of(e) is not None and [_stamp(c) for c in configs] != before:
                e.next_step = next_step(configs)
            raise


def _stamp(config):
    with contextlib.suppress(OSError):
        written = os.stat(os.path.join(config.run_dir(), RUN_FLAGS))
        return written.st_ino, written.st_mtime_ns
    return None


def next_step(configs):
    """What to run after a stop of the runs `configs` (one, or --compare's two) that had begun
    writing: --resume where a checkpoint or a finished half exists, else the same command."""
    if not configs[0].trains_on_tensorflow():
        return f"runs on {configs[0].backend} keep no checkpoints: run it again with --overwrite to start over"
    if any(has_progress(c.run_dir()) for c in configs):
        return "continue from the last epoch's checkpoint with the same flags plus --resume"
    return "no checkpoint was written yet: run the same command again"


def has_progress(run_dir):
    """A committed checkpoint or metrics.json: what --resume continues (or reads back)."""
    return (os.path.exists(os.path.join(run_dir, reporting.METRICS))
            or storage.latest_epoch(os.path.join(run_dir, CHECKPOINTS)) is not None)


def earlier_outputs(config):
    """Files of an earlier run that this run would replace (a checkpoints folder without a
    committed checkpoint holds nothing to keep: a run stopped before its first epoch ended)."""
    run_dir = config.run_dir()
    found = [p for p in (os.path.join(run_dir, reporting.METRICS),) if os.path.exists(p)]
    if storage.latest_epoch(os.path.join(run_dir, CHECKPOINTS)) is not None:
        found.append(os.path.join(run_dir, CHECKPOINTS))
    if config.export and os.path.exists(tflite_path(config)):
        found.append(tflite_path(config))
    return found


def check(config):
    """Refuses, before anything is written: a file where the run directory should be, an earlier
    run without --overwrite or --resume, --resume without a checkpoint or with changed flags."""
    run_dir = config.run_dir()
    _refuse_a_file(run_dir)
    if config.export:
        files.write_target(tflite_path(config))  # Refuses a device node or FIFO, even with --overwrite.
    if config.resume:
        import tensorflow as tf

        if not tf.train.latest_checkpoint(os.path.join(run_dir, CHECKPOINTS)):
            raise UsageError(f"--resume: no checkpoint in {os.path.join(run_dir, CHECKPOINTS)}")
        check_resume_flags(config, run_dir)
        if os.path.exists(os.path.join(run_dir, reporting.METRICS)):
            raise RunFinished(f"{run_dir} has finished (its {reporting.METRICS} is written): nothing to "
                              "resume; to train it again, pass --overwrite instead of --resume")
    elif not config.overwrite and earlier_outputs(config):
        raise UsageError(f"{earlier_outputs(config)[0]} exists from an earlier run; pass --overwrite to "
                         "replace it, or --resume to continue that run")


def _refuse_a_file(run_dir):
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UsageError(f"--output_dir {run_dir} is a file, not a directory")


def check_resume_flags(config, run_dir):
    """Refuses --resume with flags that would change the training (the path spelling may differ)."""
    path = os.path.join(run_dir, RUN_FLAGS)
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    current = dataclasses.asdict(config)
    changed = sorted(k for k, v in saved.items() if k not in config_lib.RESUMABLE and current.get(k, v) != v)
    if changed:
        raise UsageError("--resume with different flags than the interrupted run: " + ", ".join(
            f"--{k} {saved[k]} -> {current[k]}" for k in changed))


def prepare(config, run_dir):
    """Creates `run_dir` (clearing an earlier run's training state unless resuming), sweeps what
    killed writes left, and records the run's flags."""
    if not config.resume and os.path.isdir(run_dir):  # metrics.json too: the run is unfinished again.
        for name in (CHECKPOINTS, "logs", reporting.HISTORY, reporting.ALPHA_TRACE, reporting.METRICS):
            path = os.path.join(run_dir, name)
            if name == "logs" and os.path.isdir(path):  # Emptied in place: it may be a link or a mount.
                for entry in os.scandir(path):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
            elif os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
    os.makedirs(run_dir, exist_ok=True)
    files.remove_stale_temporaries(run_dir, recursive=True)
    storage.remove_unfinished(os.path.join(run_dir, CHECKPOINTS))
    reporting.write_json(os.path.join(run_dir, RUN_FLAGS), dataclasses.asdict(config))


def size_bytes(path):
    """Bytes of a file, or of every file under a directory (a SavedModel)."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path) if os.path.exists(path) else 0
