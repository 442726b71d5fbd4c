"""Moving alpha during training: `PEAScheduler` along a schedule during `fit`, `set_alpha`
for a custom training loop."""
import warnings

from pea_keras import flavor
from pea_keras import schedules as schedules_lib
from pea_keras.flavor import keras
from pea_keras.layer import PHASES
from pea_keras.surgery import pea_layers

__all__ = ["PEAScheduler", "set_alpha"]


def set_alpha(model, alpha, phase=None):
    """Set alpha of every PEALayer of `model` (nested models included): the custom-loop
    counterpart of `PEAScheduler`, e.g. `set_alpha(model, schedule(step))` before each step.

    Phase and retrace rule: with `phase=None` (the default) every layer chooses its branch
    from alpha at run time, so a step function traced once (`tf.function`, `jax.jit`) stays
    right for every alpha: call this between steps and never retrace. For the speed of
    `PEAScheduler` pass the phase alpha is in: "novel" (alpha == 0: g only), "blend", or
    "relu" (alpha == 1: exactly the ReLU network's graph). A phase is fixed into a training
    graph when it is traced, so retrace the step function (a new `tf.function`) each time
    the phase changes (twice a schedule at most); until then the old phase keeps running.
    Inference (`training=False`) always follows alpha. Under JAX, a stateless loop passes the
    variables itself: read the non-trainable variables again after this call.

    Returns:
        The number of PEALayers set (surrogate layers are left at alpha 1).

    Raises:
        ValueError: the model has no PEALayer, alpha is outside [0, 1], or `phase` is not
            one of "novel", "blend", "relu", None, or contradicts alpha.
    """
    layers = [layer for layer in pea_layers(model) if not layer.surrogate]  # Surrogates stay at alpha 1.
    if not layers:
        raise ValueError(f"set_alpha: model {model.name!r} has no scheduled PEALayer; wrap it with "
                         "pea_keras.wrap first.")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"set_alpha: alpha must be in [0, 1], got {alpha}.")
    if phase is not None and phase not in PHASES:
        raise ValueError(f"set_alpha: phase must be one of {', '.join(PHASES)} or None, got {phase!r}.")
    if (phase == "novel" and alpha != 0.0) or (phase == "relu" and alpha != 1.0):
        raise ValueError(f"set_alpha: phase {phase!r} computes only the "
                         f"{'novel activation' if phase == 'novel' else 'ReLU'} branch, which alpha={alpha} "
                         f"does not; use phase='blend' or None.")
    for layer in layers:
        layer.set_alpha(alpha)
        layer.enter_phase(phase)
    return len(layers)


class BothFlavorsCallback(keras.callbacks.Callback):
    """A Keras 3 callback that tf_keras' `fit` runs too: tf_keras' CallbackList asks every callback
    which batch hooks it implements, and a Keras 3 callback does not answer."""

    def _implements_train_batch_hooks(self):
        return True

    def _implements_test_batch_hooks(self):
        return False

    def _implements_predict_batch_hooks(self):
        return False


class PEAScheduler(BothFlavorsCallback):
    """Sets alpha from the optimizer's step at the start of every training batch.

    Reading the optimizer's iteration counter (not counting batches) makes a run restored
    from a checkpoint continue at the right alpha, and under `tf.distribute` the value is
    assigned in cross-replica context, so every replica sees the same alpha.
    The training graph is traced for the current phase (novel only, blending, ReLU only)
    and traced again when the phase changes (at most twice a run), so that it carries no
    conditional: once alpha reaches 1 a training step costs what a plain ReLU step costs.
    It drives the layers only through `PEALayer.enter_phase` and their alpha variable, and
    works on every Keras 3 backend (TensorFlow, JAX, PyTorch) and with tf_keras.
    At the start of `fit` it warns if the layers' alpha is not what the schedule gives at
    the restored optimizer step: a model reloaded from a format that does not keep the
    optimizer step (tf_keras SavedModel or H5) would otherwise move alpha back silently.
    `pea_alpha` is added to the batch and epoch logs: put this callback before
    `CSVLogger` or `TensorBoard` in the list so they record it. Works with Keras 3 and
    tf_keras models alike.

    Args:
        schedule: `schedule(step) -> alpha`; default: `schedules.default(epochs * steps)`
            built from the arguments of `fit`.
        verbose: 1 prints alpha at the end of each epoch.
    """

    def __init__(self, schedule=None, verbose=0):
        super().__init__()
        if schedule is not None and not callable(schedule):
            raise ValueError(f"schedule must be callable step -> alpha, got {schedule!r}.")
        self.schedule = schedule
        self.verbose = verbose
        self.alpha = None
        self._layers = []

    def on_train_begin(self, logs=None):
        found = pea_layers(self.model)
        self._layers = [layer for layer in found if not layer.surrogate]
        if found and not self._layers:
            raise ValueError("PEAScheduler: the model's PEALayers are surrogate layers (pea_keras.surrogate), "
                             "whose alpha stays 1; train it without PEAScheduler.")
        if not self._layers:
            raise ValueError("PEAScheduler: the model has no PEALayer; wrap it with pea_keras.wrap first.")
        if self.schedule is None:
            self.schedule = self._default_schedule()
        self.alpha = self.phase = None
        self._check_restored_alpha()

    def _check_restored_alpha(self):
        step = self._step()
        alpha = float(self.schedule(step))
        layers = [layer for layer in self._layers if not layer.trainable_alpha]
        current = sorted({layer.alpha_value for layer in layers})
        # Alpha moved by training (not the value the layers were made with) that the schedule disagrees with.
        trained = any(abs(layer.alpha_value - layer.initial_alpha) > 1e-6 for layer in layers)
        # The last batch before a save set alpha at its start, one step before the restored step.
        expected = (alpha, float(self.schedule(step - 1))) if step > 0 else (alpha,)
        if trained and any(min(abs(value - e) for e in expected) > 1e-6 for value in current):
            shown = ", ".join(f"{value:.4f}" for value in current)
            warnings.warn(
                f"PEAScheduler: the model's alpha is {shown} but the schedule gives {alpha:.4f} at "
                f"optimizer step {step}, so this fit moves alpha there. If the model was saved mid-schedule "
                "in a format that does not keep the optimizer step (tf_keras SavedModel or H5 reload at "
                "step 0), resume from a .keras file or checkpoint instead, or set the step before fit: "
                "model.optimizer.iterations.assign(<steps already trained>).", stacklevel=2)

    def _step(self):
        return flavor.optimizer_step(self.model)

    def _assign_alpha(self, alpha):
        flavor.sync_trainer_state(self.model)  # fit then reads the variables again, new alpha included.
        for layer in self._layers:
            layer.set_alpha(alpha)

    def _default_schedule(self):
        epochs, steps = (self.params or {}).get("epochs"), (self.params or {}).get("steps")
        if not epochs or not steps:
            raise ValueError("PEAScheduler() needs fit() to know its steps per epoch to build the default "
                             "schedule; pass steps_per_epoch to fit() or a schedule, e.g. "
                             "PEAScheduler(pea_keras.schedules.Cosine.over(total_steps)).")
        return schedules_lib.default(epochs * steps)

    def on_train_batch_begin(self, batch, logs=None):
        step = self._step()
        alpha = float(self.schedule(step))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"schedule returned alpha={alpha}, outside [0, 1].")
        if alpha != self.alpha:
            self._assign_alpha(alpha)
            self.alpha = alpha
            self._enter_phase(self._phase(alpha, step))

    def _phase(self, alpha, step):
        if alpha >= 1.0:
            return "relu"
        # A schedule that leaves 0 at the next step blends now rather than trace twice.
        if alpha <= 0.0 and self.schedule(step + 1) <= 0.0:
            return "novel"
        return "blend"

    def _enter_phase(self, phase):
        if phase == self.phase:
            return
        for layer in self._layers:
            layer.enter_phase(phase)
        self.phase = phase
        # fit() calls model.train_function each step (every backend): retrace it for the phase.
        self.model.make_train_function(force=True)

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None and self.alpha is not None:
            logs["pea_alpha"] = self.alpha

    def on_epoch_end(self, epoch, logs=None):
        if self.alpha is None:
            return
        if logs is not None:
            logs["pea_alpha"] = self.alpha
        if self.verbose:
            print(f"Epoch {epoch + 1}: pea_alpha = {self.alpha:.4f}")

    def on_train_end(self, logs=None):
        for layer in self._layers:
            layer.enter_phase(None)
        self.model.train_function = None  # Traced for a phase: do not let a later fit reuse it.
        if self.alpha is not None and self.alpha < 1.0:
            warnings.warn(f"Training ended with pea_alpha = {self.alpha:.4f} < 1: the novel branch is still "
                          "active, so pea_keras.strip() will refuse this model. Train longer or end the "
                          "schedule earlier (e.g. Cosine.over(total_steps, end=0.75)).", stacklevel=2)
