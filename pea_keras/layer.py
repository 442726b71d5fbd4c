"""`PEALayer`: alpha * ReLU(x) + (1 - alpha) * g(x), with alpha a scheduled variable.

The same implementation serves Keras 3 (`PEALayer`) and tf_keras (`TFKerasPEALayer`,
whose class name is also "PEALayer"); both are registered as serializable under the
package "pea_keras", so saved models load without `custom_objects`.
"""
import warnings

import keras
import tensorflow as tf
import tf_keras

from pea_keras import activations

__all__ = ["PEALayer", "TFKerasPEALayer", "is_pea_layer", "relu"]

_warned_unscheduled = False


def relu(x, max_value=None, threshold=0.0):
    """Keras' ReLU (both flavours compute exactly this): thresholded, optionally capped."""
    if threshold != 0:
        x = x * tf.cast(x > threshold, x.dtype)
    elif max_value == 6:
        return tf.nn.relu6(x)
    else:
        x = tf.nn.relu(x)
    if max_value is not None:
        x = tf.clip_by_value(x, tf.zeros((), x.dtype), tf.cast(max_value, x.dtype))
    return x


def _relu_gradient(dy, x, max_value):
    """dy * relu'(x) in one fused op where TF has one (the ops ReLU and ReLU6 use)."""
    if max_value is None:
        return tf.raw_ops.ReluGrad(gradients=dy, features=x)
    if max_value == 6:
        return tf.raw_ops.Relu6Grad(gradients=dy, features=x)
    return dy * tf.cast((x > 0) & (x < max_value), x.dtype)


PHASES = ("novel", "blend", "relu")


def _select(alpha, relu_branch, g_branch, blend, phase=None):
    """Only the ReLU branch at alpha == 1, only g at alpha == 0.

    With a known `phase` the branch is chosen while tracing and the graph has no
    conditional at all: a plain ReLU network at alpha == 1. Otherwise a conditional on
    alpha chooses at run time, which is always right but costs time and memory per layer.
    """
    if phase is not None:
        return {"relu": relu_branch, "novel": g_branch, "blend": blend}[phase]()
    return tf.cond(alpha >= 1.0, relu_branch, lambda: tf.cond(alpha <= 0.0, g_branch, blend))


def _ensemble(x, alpha, relu_fn, max_value, g, g_prime, phase=None):
    """The ensemble as one op whose gradient needs only x and alpha.

    Autodiff of the plain formula keeps both branch outputs, g's intermediates and the
    products for the backward pass; this keeps only x and recomputes the derivatives,
    which is what makes blending cheap in memory.
    """

    @tf.custom_gradient
    def ensemble(x):
        y = _select(alpha, lambda: relu_fn(x), lambda: g(x),
                    lambda: alpha * relu_fn(x) + (1.0 - alpha) * g(x), phase)

        def grad(dy):
            return _select(alpha, lambda: _relu_gradient(dy, x, max_value), lambda: dy * g_prime(x),
                           lambda: _relu_gradient(alpha * dy, x, max_value) + dy * ((1.0 - alpha) * g_prime(x)),
                           phase)

        return y, grad

    return ensemble(x)


class _PEAMixin:
    """Behaviour shared by both flavours' PEALayer."""

    def __init__(self, activation="silu", max_value=None, threshold=0.0, alpha=0.0,
                 trainable_alpha=False, origin=None, **kwargs):
        super().__init__(**kwargs)
        self._g = activations.get(activation)
        self._g_prime = activations.derivative(activation)
        name = activations.name_of(activation)
        self.activation = name if name is not None else activation
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        if max_value is not None and max_value <= 0:
            raise ValueError(f"max_value must be positive or None, got {max_value}.")
        self.max_value = None if max_value is None else float(max_value)
        self.threshold = float(threshold)
        self.initial_alpha = alpha
        self.trainable_alpha = bool(trainable_alpha)
        # What this layer replaced, so `strip` can restore it exactly.
        self.origin = dict(origin) if origin else None
        # Set by PEAScheduler while it drives alpha: the phase ("novel", "blend", "relu")
        # the training graph is traced for. None: choose at run time from alpha.
        self.training_phase = None
        self.supports_masking = True

    @property
    def activation_name(self):
        return self.activation if isinstance(self.activation, str) else getattr(
            self.activation, "__name__", repr(self.activation))

    def build(self, input_shape):
        clip = (lambda a: tf.clip_by_value(a, 0.0, 1.0)) if self.trainable_alpha else None
        self.alpha = self.add_weight(
            name="alpha", shape=(), dtype="float32", trainable=self.trainable_alpha,
            initializer=self._keras.initializers.Constant(self.initial_alpha), constraint=clip)
        super().build(input_shape)

    def set_alpha(self, value):
        self.alpha.assign(float(value))

    def relu(self, x):
        return relu(x, self.max_value, self.threshold)

    def call(self, inputs, training=None):
        global _warned_unscheduled
        phase = self.training_phase if training else None
        if training and phase is None and not self.trainable_alpha and not _warned_unscheduled:
            _warned_unscheduled = True
            warnings.warn("Training a PEA model without pea_keras.PEAScheduler: alpha stays where it is "
                          "(0 = novel activation only) and the model will not end as a ReLU network. "
                          "Add callbacks=[pea_keras.PEAScheduler()] to fit().", stacklevel=2)
        x = inputs
        alpha = tf.cast(tf.convert_to_tensor(self.alpha), x.dtype)
        if self.trainable_alpha:
            alpha = tf.clip_by_value(alpha, 0.0, 1.0)
            return alpha * self.relu(x) + (1.0 - alpha) * self._g(x)
        if phase == "relu":
            return self.relu(x)  # Exactly the ReLU layer's graph, gradient included.
        if phase == "novel":
            return self._g(x)
        if self._g_prime is None or self.threshold != 0:  # No closed-form gradient: autodiff.
            return _select(alpha, lambda: self.relu(x), lambda: self._g(x),
                           lambda: alpha * self.relu(x) + (1.0 - alpha) * self._g(x), phase)
        return _ensemble(x, alpha, self.relu, self.max_value, self._g, self._g_prime, phase)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        activation = self.activation
        if not isinstance(activation, str):
            activation = self._keras.saving.serialize_keras_object(activation)
        return {**super().get_config(), "activation": activation, "max_value": self.max_value,
                "threshold": self.threshold, "alpha": self.initial_alpha,
                "trainable_alpha": self.trainable_alpha, "origin": self.origin}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("activation"), dict):
            config["activation"] = cls._keras.saving.deserialize_keras_object(config["activation"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="pea_keras")
class PEALayer(_PEAMixin, keras.layers.Layer):
    """Progressive ensemble of ReLU and a novel activation `g` (Keras 3).

    Args:
        activation: name from `pea_keras.activations.names()` or a callable, the `g`.
        max_value, threshold: the ReLU branch's configuration (ReLU6: max_value=6).
        alpha: initial ReLU weight; `PEAScheduler` moves it during training.
        trainable_alpha: ablation, learn alpha (clipped to [0, 1]) instead of scheduling it.
        origin: what the layer replaced; set by `wrap`, used by `strip`.

    At alpha == 1 only the ReLU branch is computed, at alpha == 0 only `g`.
    """

    _keras = keras


class TFKerasPEALayer(_PEAMixin, tf_keras.layers.Layer):
    __doc__ = PEALayer.__doc__.replace("(Keras 3)", "(tf_keras)")
    _keras = tf_keras


# Both flavours save the layer as "pea_keras>PEALayer".
TFKerasPEALayer.__name__ = TFKerasPEALayer.__qualname__ = "PEALayer"
tf_keras.saving.register_keras_serializable(package="pea_keras")(TFKerasPEALayer)


def is_pea_layer(layer):
    return isinstance(layer, _PEAMixin)


def layer_class(keras_module):
    """The PEALayer class of a Keras flavour."""
    return TFKerasPEALayer if keras_module is tf_keras else PEALayer
