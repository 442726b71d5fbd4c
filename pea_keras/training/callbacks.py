"""The callbacks of a training run besides PEAScheduler: the alpha trace, history.csv, the epoch
checkpoint and TensorBoard that survives its own storage errors.

Like PEAScheduler they are `BothFlavorsCallback`s: one class serves both flavors' `fit`
(TensorBoard: one that drives each flavor's own).
"""

import contextlib
import csv
import os
import sys

from pea_keras import console, files, surgery
from pea_keras.callbacks import BothFlavorsCallback
from pea_keras.training import reporting, storage


class AlphaTrace(BothFlavorsCallback):
    """Records alpha every `stride` steps into `trace` (steps, alphas) and saves it each epoch
    to the run directory (the plot and metrics.json read it; --resume continues it)."""

    def __init__(self, run_dir, trace, stride):
        super().__init__()
        self.run_dir, self.trace, self.stride = run_dir, trace, stride
        self._layers = []

    def on_train_begin(self, logs=None):
        self._layers = surgery.pea_layers(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if not self._layers:
            return
        step = int(self.model.optimizer.iterations.numpy()) - 1  # The step that just ran.
        if step % self.stride == 0:
            self.trace[0].append(step)
            self.trace[1].append(float(self._layers[0].alpha.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        if self._layers:
            reporting.save_alpha_trace(self.run_dir, *self.trace)


class StopOnSignal(BothFlavorsCallback):
    """Stops training at the next batch after Ctrl-C or SIGTERM whose exception was deferred out of
    TensorFlow's code or dropped by native code (`console.check_stop`)."""

    def on_train_batch_end(self, batch, logs=None):
        console.check_stop()


class EpochCheckpoint(BothFlavorsCallback):
    """Saves model, optimizer and the finished-epoch counter after every epoch, so --resume
    continues with the same alpha and learning rate (the shuffled data stream restarts, so a
    resumed run is not bit-identical to one never interrupted)."""

    def __init__(self, manager, epoch_var):
        super().__init__()
        self.manager, self.epoch_var = manager, epoch_var

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_var.assign(epoch + 1)
        storage.save_checkpoint(self.manager, epoch + 1)


class HistoryCSV(BothFlavorsCallback):
    """history.csv, one row per epoch (the columns of CSVLogger). Each epoch rewrites the small
    file atomically, so a kill or a full disk never leaves half a row; with `append` (--resume)
    it continues the rows already there."""

    def __init__(self, path, append=False):
        super().__init__()
        self.path, self.rows, self.columns = path, [], None
        if append and os.path.exists(path):
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns, self.rows = reader.fieldnames, list(reader)

    def _implements_train_batch_hooks(self):
        return False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.columns is None:
            self.columns = ["epoch", *sorted(logs)]
        self.rows.append({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.columns[1:]}})
        with files.atomic_output(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)


class GuardedTensorBoard(BothFlavorsCallback):
    """The flavor's TensorBoard callback, driven through this one: a storage error in its event files
    stops only the logging (see `tensorboard`)."""

    def __init__(self, board, warnings):
        super().__init__()
        self.board, self.warnings, self.failure = board, warnings, None

    def _forward(self, name, *args):
        import tensorflow as tf

        if self.failure:
            return
        try:
            getattr(self.board, name)(*args)
        except (tf.errors.OpError, OSError) as e:
            what = files.what_failed(e, path=files.error_path(e) or self.board.log_dir)
            if what is None:
                raise
            self._stop(what)

    def _stop(self, what):
        self.failure = (f"TensorBoard logging stopped: {what}; training goes on without "
                        "TensorBoard logs (checkpoints, models and metrics are not affected)")
        self.warnings.append(self.failure)
        print(f"{console.prog('pea-train')}: warning: {self.failure}", file=sys.stderr, flush=True)
        for writer in getattr(self.board, "_writers", {}).values():
            with contextlib.suppress(Exception):  # Its buffered events cannot be written either.
                writer.close()

    def set_model(self, model):
        super().set_model(model)
        self._forward("set_model", model)

    def set_params(self, params):
        super().set_params(params)
        self.board.set_params(params)


def _forwarder(name):
    def hook(self, *args, **kwargs):
        self._forward(name, *args)

    hook.__name__ = name
    return hook


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_test_begin",
              "on_test_end", "on_train_batch_begin", "on_train_batch_end"):
    setattr(GuardedTensorBoard, _hook, _forwarder(_hook))


def tensorboard(k, log_dir, warnings):
    """`k`'s TensorBoard callback (update_freq="epoch"), except that a storage error in its event
    files (a full or read-only log folder) stops only the logging: one line on stderr
    ("PROG: warning: TensorBoard logging stopped: ..."), the same text appended to `warnings`
    (metrics.json keeps it), and training goes on.

    Why not stop: a long training is worth more than its charts, and the run loses nothing else
    (checkpoints, models and metrics are separate files; if the whole disk is full, the epoch's
    checkpoint fails next and stops the run with the usual message). Event files are append-only
    logs, not replaced atomically: TensorBoard reads up to a cut last record.
    """
    return GuardedTensorBoard(k.callbacks.TensorBoard(log_dir, update_freq="epoch"), warnings)
