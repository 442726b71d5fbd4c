"""The novel activations `g` that PEA blends with ReLU during training.

One registry maps names (and aliases) to `g` and, where it has a closed form, to its
derivative `g'`. The derivative lets `PEALayer` blend with a gradient that keeps only
its input for the backward pass instead of every intermediate of both branches.
Any callable `tf.Tensor -> tf.Tensor` is accepted as is (autodiff gives its gradient).

`get` and `derivative` give TensorFlow functions (tf_keras, and Keras 3 on TensorFlow);
`get_ops` and `derivative_ops` the same formulas written with `keras.ops`, which run on
every Keras 3 backend (JAX, PyTorch). Callables are passed through by both: a callable
meant for JAX or PyTorch must itself use `keras.ops`.
"""
import math

import tensorflow as tf

from pea_keras.flavor import ops

__all__ = ["get", "names", "derivative", "name_of", "get_ops", "derivative_ops"]

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_C = math.sqrt(2.0 / math.pi)
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def silu(x):
    return x * tf.sigmoid(x)


def _silu_grad(x):
    s = tf.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def gelu(x):
    """Exact GELU, x * Phi(x)."""
    return 0.5 * x * (1.0 + tf.math.erf(x / _SQRT_2))


def _gelu_grad(x):
    cdf = 0.5 * (1.0 + tf.math.erf(x / _SQRT_2))
    return cdf + x * _INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x))


def gelu_tanh(x):
    """GELU with the tanh approximation used by BERT and many vision transformers."""
    return 0.5 * x * (1.0 + tf.tanh(_TANH_C * (x + 0.044715 * x * x * x)))


def _gelu_tanh_grad(x):
    t = tf.tanh(_TANH_C * (x + 0.044715 * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _TANH_C * (1.0 + 0.134145 * x * x)


def mish(x):
    return x * tf.tanh(tf.math.softplus(x))


def _mish_grad(x):
    t = tf.tanh(tf.math.softplus(x))
    return t + x * tf.sigmoid(x) * (1.0 - t * t)


def hard_swish(x):
    """x * ReLU6(x + 3) / 6, as in MobileNetV3 (Keras calls it hard_silu)."""
    return x * tf.nn.relu6(x + 3.0) / 6.0


def _hard_swish_grad(x):
    inside = tf.cast((x > -3.0) & (x < 3.0), x.dtype)
    return inside * (2.0 * x + 3.0) / 6.0 + tf.cast(x >= 3.0, x.dtype)


def elu(x):
    return tf.nn.elu(x)


def _elu_grad(x):
    return tf.where(x > 0, tf.ones_like(x), tf.exp(tf.minimum(x, 0.0)))


def selu(x):
    return tf.nn.selu(x)


def _selu_grad(x):
    return _SELU_SCALE * tf.where(x > 0, tf.ones_like(x), _SELU_ALPHA * tf.exp(tf.minimum(x, 0.0)))


def softplus(x):
    return tf.math.softplus(x)


_ACTIVATIONS = {
    "silu": (silu, _silu_grad),
    "gelu": (gelu, _gelu_grad),
    "gelu_tanh": (gelu_tanh, _gelu_tanh_grad),
    "mish": (mish, _mish_grad),
    "hard_swish": (hard_swish, _hard_swish_grad),
    "elu": (elu, _elu_grad),
    "selu": (selu, _selu_grad),
    "softplus": (softplus, tf.sigmoid),
}


def _ops_table():
    """The registry's formulas in `keras.ops`, name -> (g, g')."""

    def silu(x):
        return x * ops.sigmoid(x)

    def silu_grad(x):
        s = ops.sigmoid(x)
        return s * (1.0 + x * (1.0 - s))

    def gelu(x):
        return 0.5 * x * (1.0 + ops.erf(x / _SQRT_2))

    def gelu_grad(x):
        return 0.5 * (1.0 + ops.erf(x / _SQRT_2)) + x * _INV_SQRT_2PI * ops.exp(-0.5 * ops.square(x))

    def gelu_tanh(x):
        return 0.5 * x * (1.0 + ops.tanh(_TANH_C * (x + 0.044715 * x * x * x)))

    def gelu_tanh_grad(x):
        t = ops.tanh(_TANH_C * (x + 0.044715 * x * x * x))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _TANH_C * (1.0 + 0.134145 * x * x)

    def mish(x):
        return x * ops.tanh(ops.softplus(x))

    def mish_grad(x):
        t = ops.tanh(ops.softplus(x))
        return t + x * ops.sigmoid(x) * (1.0 - t * t)

    def hard_swish(x):
        return x * ops.relu6(x + 3.0) / 6.0

    def hard_swish_grad(x):
        inside = ops.cast(ops.logical_and(x > -3.0, x < 3.0), x.dtype)
        return inside * (2.0 * x + 3.0) / 6.0 + ops.cast(x >= 3.0, x.dtype)

    def elu(x):
        return ops.where(x > 0, x, ops.exp(ops.minimum(x, 0.0)) - 1.0)

    def elu_grad(x):
        return ops.where(x > 0, ops.ones_like(x), ops.exp(ops.minimum(x, 0.0)))

    def selu(x):
        return _SELU_SCALE * ops.where(x > 0, x, _SELU_ALPHA * (ops.exp(ops.minimum(x, 0.0)) - 1.0))

    def selu_grad(x):
        return _SELU_SCALE * ops.where(x > 0, ops.ones_like(x), _SELU_ALPHA * ops.exp(ops.minimum(x, 0.0)))

    return {"silu": (silu, silu_grad), "gelu": (gelu, gelu_grad), "gelu_tanh": (gelu_tanh, gelu_tanh_grad),
            "mish": (mish, mish_grad), "hard_swish": (hard_swish, hard_swish_grad), "elu": (elu, elu_grad),
            "selu": (selu, selu_grad), "softplus": (ops.softplus, ops.sigmoid)}


_OPS = _ops_table()
_ALIASES = {"swish": "silu", "hard_silu": "hard_swish"}


def names():
    """Every accepted name, aliases included, sorted."""
    return sorted([*_ACTIVATIONS, *_ALIASES])


def _canonical(name):
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; valid names: {', '.join(names())}, or a function "
                         "registered with @keras.saving.register_keras_serializable().")
    return key


def get(activation):
    """Resolve a name or a callable to the novel activation `g`."""
    if callable(activation):
        return activation
    if not isinstance(activation, str):
        raise ValueError(f"activation must be a name or a callable, got {activation!r}.")
    return _ACTIVATIONS[_canonical(activation)][0]


def derivative(activation):
    """g' for a registered activation (name or function), None for other callables."""
    key = name_of(activation)
    return None if key is None else _ACTIVATIONS[key][1]


def get_ops(activation):
    """`get` for every Keras 3 backend: the registered `g` in `keras.ops`; callables as they are."""
    if callable(activation):
        key = name_of(activation)
        return activation if key is None else _OPS[key][0]
    get(activation)  # The same errors as get().
    return _OPS[_canonical(activation)][0]


def derivative_ops(activation):
    """`derivative` in `keras.ops`: g' for a registered activation, None for other callables."""
    key = name_of(activation) if callable(activation) or isinstance(activation, str) else None
    return None if key is None else _OPS[key][1]


def name_of(activation):
    """Canonical registry name of a name or registered function; None for other callables."""
    if isinstance(activation, str):
        return _canonical(activation)
    for table in (_ACTIVATIONS, _OPS):
        for key, (fn, _) in table.items():
            if fn is activation:
                return key
    return None
