"""The callbacks of a training run besides PEAScheduler: the alpha trace and the epoch checkpoint.

Like PEAScheduler they are `BothFlavoursCallback`s: one class serves both flavours' `fit`.
"""

from pea_keras import surgery
from pea_keras.callbacks import BothFlavoursCallback
from pea_keras.training import reporting


class AlphaTrace(BothFlavoursCallback):
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


class EpochCheckpoint(BothFlavoursCallback):
    """Saves model, optimizer and the finished-epoch counter after every epoch, so --resume
    continues with the same alpha, learning rate and data position."""

    def __init__(self, manager, epoch_var):
        super().__init__()
        self.manager, self.epoch_var = manager, epoch_var

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
