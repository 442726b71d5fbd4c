"""How a training run writes to disk, so that a full disk or a kill never costs the run.

- Checkpoints: TensorFlow writes a checkpoint's files, then commits it by rewriting the small
  `checkpoints/checkpoint` state file atomically. The epoch's checkpoint is its last write (after
  the alpha trace, history.csv and TensorBoard), so a committed checkpoint always has its trace
  and history rows on disk. A kill at any moment leaves the previous committed checkpoint, which
  `--resume` continues from; what an unfinished save left is swept at the next start.
- Every other file (models, metrics, history, plots, the int8 file) is replaced atomically
  (pea_keras.files): the previous complete file stays until the new one is whole.
- A storage error (full disk, quota, read-only, permission) stops the run with StorageError: one
  line naming the path, what is intact and how to continue (`failure_message`).
- TensorBoard failing alone: see callbacks.tensorboard (reported, training goes on).
"""

import contextlib
import glob
import os
import re
import shutil

import tensorflow as tf

from pea_keras import files

CHECKPOINT_PREFIX = "ckpt"  # tf.train.CheckpointManager's.


def latest_epoch(ckpt_dir):
    """The epoch of the last committed checkpoint in `ckpt_dir`, or None."""
    latest = tf.train.latest_checkpoint(ckpt_dir) if os.path.isdir(ckpt_dir) else None
    return int(latest.rsplit("-", 1)[1]) if latest else None


def remove_unfinished(ckpt_dir):
    """Removes what killed or failed saves left in `ckpt_dir`: TensorFlow's `ckpt-N_temp`
    folders and the files of checkpoints newer than the committed one."""
    committed = latest_epoch(ckpt_dir) or 0
    for path in glob.glob(os.path.join(ckpt_dir, f"{CHECKPOINT_PREFIX}-*")):
        match = re.match(rf"{CHECKPOINT_PREFIX}-(\d+)(_temp|\.)", os.path.basename(path))
        if match and (match[2] == "_temp" or int(match[1]) > committed):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def save_checkpoint(manager, epoch):
    """Saves and commits the checkpoint of `epoch` (1-based) through `manager`. A storage error
    removes the unfinished files and is raised as an OSError naming the checkpoint."""
    prefix = os.path.join(manager.directory, f"{CHECKPOINT_PREFIX}-{epoch}")
    # Called once the files are written, before the manager commits them (the test hook's moment).
    options = tf.train.CheckpointOptions(experimental_write_callbacks=[
        lambda: files.fault_point("kill_during_checkpoint", epoch)])
    try:
        manager.save(checkpoint_number=epoch, options=options)
    except (tf.errors.OpError, OSError) as e:
        error = files.as_os_error(e, prefix)
        if error is None:
            raise
        remove_unfinished(manager.directory)
        raise error from e
    files.fault_point("kill_after_checkpoint", epoch)


def save_model(model, path):
    """`model.save(path)`, replacing an earlier file only once the new one is complete."""
    with files.atomic_path(path) as tmp:
        model.save(tmp)


def failure_message(error, ckpt_dir, models_dir=None):
    """The one line for a storage `error`, saying what is intact and how to continue; None when
    `error` is not a storage problem. `models_dir`: the run directory once its models are saved."""
    epoch = latest_epoch(ckpt_dir)
    if epoch is None:
        # Nothing a rerun would refuse to replace exists yet: the same command is the way on.
        return files.write_error_message(error, safe="no checkpoint was written yet",
                                         retry="run the same command again")
    if models_dir:
        safe = (f"the trained models in {files.shown(models_dir)} and the last complete checkpoint, "
                f"epoch {epoch}, are intact")
    else:
        safe = f"the last complete checkpoint, epoch {epoch}, is intact"
    return files.write_error_message(error, safe=safe, retry="run again with --resume")


@contextlib.contextmanager
def storage_errors_stop_the_run(ckpt_dir, progress):
    """Turns a storage error raised in the block into StorageError (`failure_message`); other
    errors pass unchanged. `progress` is a dict the block fills: "models_dir" once models are saved."""
    try:
        yield
    except (tf.errors.OpError, OSError) as e:
        message = failure_message(e, ckpt_dir, progress.get("models_dir"))
        if message is None:
            raise
        raise files.StorageError(message) from e
