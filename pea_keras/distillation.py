"""Knowledge distillation in `fit`: the trained network also matches a teacher's soft targets.

    trainer = pea_keras.distillation.distiller(student, teacher, temperature=4.0, weight=0.5)
    trainer.compile(optimizer, loss, metrics)
    trainer.fit(data, callbacks=[pea_keras.PEAScheduler(), *trainer.teacher_updates])
    student  # trained in place; save, strip and deploy it as usual

The loss is `(1 - weight) * loss(y, student) + weight * T^2 * KL(softmax(teacher / T) ||
softmax(student / T))` over the last axis (classes; every pixel of a segmentation map), Hinton et
al.'s form. fit minimizes this total; Keras 3 logs it as `loss`, tf_keras logs the labels' part
(its compiled loss).

The teacher is a model with the student's inputs and logits (for PEA, the network trained with g
everywhere: `replace_relu`), frozen; or "self": an exponential moving average of the student's
weights evaluated as the g network (its PEA layers at alpha 0), updated after every step by
`trainer.teacher_updates`, so no teacher is trained beforehand. Either costs a teacher forward
pass per step ("self" also the average's update). Both Keras flavors; "self" on TensorFlow and
PyTorch (under JAX, fit's compiled step keeps the teacher's weights fixed).
"""
import warnings

import numpy as np

from pea_keras import flavor, numerics
from pea_keras.callbacks import BothFlavorsCallback
from pea_keras.surgery import pea_layers

__all__ = ["distiller", "kd_loss"]


def kd_loss(teacher_logits, student_logits, temperature, B=numerics.TF):
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), the mean over all but the last axis."""
    t = B.stop_gradient(teacher_logits) / temperature
    s = student_logits / temperature
    kl = B.sum(B.softmax(t) * (B.log_softmax(t) - B.log_softmax(s)), axis=-1)
    return temperature * temperature * B.mean(kl)


class _Hidden:
    """Keeps the teacher out of the trainer's tracked layers: its weights are not trained, saved or
    scheduled (PEAScheduler finds the student's PEA layers only)."""

    def __init__(self, model):
        self.model = model


class _DistillerMixin:
    """Trains `student` with a distillation loss against a teacher ({flavor})."""

    def __init__(self, student, teacher, temperature, weight, **kwargs):
        super().__init__(name=f"{student.name}_distiller", **kwargs)
        self.student = student
        self._teacher = _Hidden(teacher)
        self.temperature, self.weight = float(temperature), float(weight)
        self._B = numerics.of_layer(student)

    @property
    def teacher(self):
        return self._teacher.model

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        loss = super().compute_loss(x, y, y_pred, sample_weight, **kwargs)
        teacher = self._teacher.model(x, training=False)
        return (1.0 - self.weight) * loss + self.weight * kd_loss(teacher, y_pred, self.temperature, self._B)


_DISTILLERS = flavor.twin_classes(_DistillerMixin, "Model", "PEADistiller", register=False)


class EMATeacher(BothFlavorsCallback):
    """After every training step: teacher = decay * teacher + (1 - decay) * student, every weight
    but the teacher's alphas (which stay 0)."""

    def __init__(self, student, teacher, decay):
        super().__init__()
        alphas = {id(layer.alpha) for layer in pea_layers(teacher)}
        self.pairs = [(t, s) for t, s in zip(teacher.weights, student.weights) if id(t) not in alphas]
        self.decay = float(decay)
        self._update = self._assign
        if numerics.of_layer(student) is numerics.TF:
            import tensorflow as tf

            self._update = tf.function(self._assign)

    def _assign(self):
        for t, s in self.pairs:
            t.assign(self.decay * t + (1.0 - self.decay) * s)

    def on_train_batch_end(self, batch, logs=None):
        self._update()


def ema_teacher(student, decay=0.99):
    """(teacher, callback): a copy of `student` evaluated as the g network, and the callback that
    moves it toward the student after every step."""
    k = flavor.keras_of(student)
    if not pea_layers(student):
        raise ValueError("distillation from 'self' needs a PEA model (pea_keras.wrap): its teacher is the "
                         "student's average evaluated with g, alpha 0.")
    if flavor.backend_of(student) == "jax":
        raise ValueError("distillation from 'self' runs on TensorFlow and PyTorch: under JAX, fit's compiled "
                         "step keeps the teacher's weights fixed; give a teacher model instead.")
    teacher = k.models.clone_model(student)
    teacher.set_weights(student.get_weights())
    for layer in pea_layers(teacher):
        layer.set_alpha(0.0)
    teacher.trainable = False
    return teacher, EMATeacher(student, teacher, decay)


def _shapes(tensors):
    return [tuple(t.shape) for t in tensors]


def _fits(teacher_shapes, student_shapes):
    """Same count, ranks and sizes; a size unknown on either side (None) fits any."""
    return len(teacher_shapes) == len(student_shapes) and all(
        len(t) == len(s) and all(a is None or b is None or a == b for a, b in zip(t[1:], s[1:]))
        for t, s in zip(teacher_shapes, student_shapes))


def _text(shapes):
    return ", ".join(map(str, shapes))


def _check_teacher(teacher, student):
    """Raises ValueError unless `teacher` takes `student`'s inputs and gives its output shape (before
    training, not at the first step); warns when the teacher seems to output probabilities."""
    taken, given = _shapes(teacher.inputs), _shapes(student.inputs)
    if not _fits(taken, given):
        raise ValueError(f"the teacher's input {_text(taken)} does not match the student's {_text(given)}: "
                         "distillation feeds both the same batch.")
    taken, given = _shapes(teacher.outputs), _shapes(student.outputs)
    if not _fits(taken, given):
        raise ValueError(f"the teacher's output {_text(taken)} does not match the student's {_text(given)}: "
                         "distillation needs the same logits.")
    why = _probabilities(teacher, student)
    if why:
        warnings.warn(f"the teacher's outputs look like probabilities ({why}), not the logits distillation "
                      "softens; give a teacher without its final softmax or sigmoid", stacklevel=3)


def _probabilities(teacher, student):
    """Why `teacher`'s outputs look like probabilities: the activation its output layer ends in, or
    outputs on random inputs that are non-negative and sum to 1; "" if they do not."""
    layer = getattr(teacher.outputs[0], "_keras_history", [None])[0]
    name = getattr(getattr(layer, "activation", None), "__name__", None) or type(layer).__name__.lower()
    if name in ("softmax", "sigmoid"):
        return f"its output layer {layer.name} ends in {name}"
    shapes = _shapes(student.inputs)
    if any(None in shape[1:] for shape in shapes):
        return ""
    rng = np.random.default_rng(0)
    x = [rng.random((2, *shape[1:]), dtype=np.float32) for shape in shapes]
    y = flavor.numpy_copy(teacher(x if len(x) > 1 else x[0], training=False))
    if np.all(y >= 0) and np.allclose(y.sum(axis=-1), 1.0, atol=1e-3):
        return "on a batch they are non-negative and sum to 1"
    return ""


def distiller(student, teacher, temperature=4.0, weight=0.5, decay=0.99):
    """A model of `student`'s flavor that trains `student` (in place) with the distillation loss.

    Args:
        student: the model to train (PEA-wrapped, surrogate or plain).
        teacher: a model with the student's inputs and output shape, giving logits (a warning says
            when it seems to give probabilities), or "self" (an exponential moving average of the
            student, with `decay`, evaluated as the g network).
        temperature: T, > 0; weight: the distillation term's share of the loss, in [0, 1].

    Returns:
        The trainer; compile and fit it, and add `trainer.teacher_updates` to fit's callbacks.

    Raises:
        ValueError: a setting out of range, a teacher whose inputs or output do not match, or
            "self" without PEA layers or under JAX.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}.")
    callbacks = []
    if isinstance(teacher, str):
        if teacher != "self":
            raise ValueError(f"teacher must be a model or 'self', got {teacher!r}.")
        teacher, callback = ema_teacher(student, decay)
        callbacks.append(callback)
    else:
        _check_teacher(teacher, student)
    teacher.trainable = False
    trainer = _DISTILLERS.of(student)(student, teacher, temperature, weight)
    trainer.teacher_updates = callbacks
    return trainer
