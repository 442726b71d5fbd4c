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
pass per step ("self" also the average's update). Both Keras flavours; "self" on TensorFlow and
PyTorch (under JAX, fit's compiled step keeps the teacher's weights fixed).
"""
from pea_keras import flavor, numerics
from pea_keras.callbacks import BothFlavoursCallback
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
    """Trains `student` with a distillation loss against a teacher ({flavour})."""

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


class EMATeacher(BothFlavoursCallback):
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


def distiller(student, teacher, temperature=4.0, weight=0.5, decay=0.99):
    """A model of `student`'s flavour that trains `student` (in place) with the distillation loss.

    Args:
        student: the model to train (PEA-wrapped, surrogate or plain).
        teacher: a model with the student's inputs and output shape, or "self" (an exponential
            moving average of the student, with `decay`, evaluated as the g network).
        temperature: T, > 0; weight: the distillation term's share of the loss, in [0, 1].

    Returns:
        The trainer; compile and fit it, and add `trainer.teacher_updates` to fit's callbacks.

    Raises:
        ValueError: a setting out of range, a teacher whose output does not match, or "self"
            without PEA layers or under JAX.
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
    elif tuple(teacher.output.shape[1:]) != tuple(student.output.shape[1:]):
        raise ValueError(f"the teacher's output {tuple(teacher.output.shape)} does not match the student's "
                         f"{tuple(student.output.shape)}: distillation needs the same logits.")
    teacher.trainable = False
    trainer = _DISTILLERS.of(student)(student, teacher, temperature, weight)
    trainer.teacher_updates = callbacks
    return trainer
