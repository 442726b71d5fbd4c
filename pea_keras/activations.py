"""The novel activations `g` that PEA blends with ReLU during training.

Each formula and its closed-form derivative is written once, against a small backend namespace:
`TF` (TensorFlow ops, for tf_keras and Keras 3 on TensorFlow) or `OPS` (`keras.ops`, every
Keras 3 backend). Any callable `x -> g(x)` is accepted as is (autodiff gives its gradient; for
JAX or PyTorch it must use `keras.ops`).

    act = activations.get("silu", activations.TF)
    act.name, act.g(x), act.g_prime(x)
"""
import dataclasses
from collections.abc import Callable

from pea_keras.numerics import INV_SQRT_2PI, OPS, SELU, SQRT_2, TANH_C, TF

__all__ = ["get", "names", "name_of", "Activation", "TF", "OPS"]


# Each formula: g(B, x) and its derivative g'(B, x).

def _silu(B, x):
    return x * B.sigmoid(x)


def _silu_grad(B, x):
    s = B.sigmoid(x)
    return s + B.sigmoid_grad(s, x)  # s * (1 + x * (1 - s))


def _gelu(B, x):
    """Exact GELU, x * Phi(x)."""
    return 0.5 * x * (1.0 + B.erf(x / SQRT_2))


def _gelu_grad(B, x):
    return 0.5 * (1.0 + B.erf(x / SQRT_2)) + x * INV_SQRT_2PI * B.exp(-0.5 * (x * x))


def _gelu_tanh(B, x):
    """GELU with the tanh approximation used by BERT and many vision transformers."""
    return 0.5 * x * (1.0 + _gelu_tanh_t(B, x))


def _gelu_tanh_t(B, x):
    return B.tanh(TANH_C * (x + 0.044715 * x * x * x))


def _gelu_tanh_grad(B, x):
    t = _gelu_tanh_t(B, x)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * TANH_C * (1.0 + 0.134145 * x * x)


def _mish(B, x):
    return x * B.tanh(B.softplus(x))


def _mish_grad(B, x):
    t = B.tanh(B.softplus(x))
    return t + x * B.sigmoid(x) * (1.0 - t * t)


def _hard_swish(B, x):
    """x * ReLU6(x + 3) / 6, as in MobileNetV3 (Keras calls it hard_silu)."""
    return x * B.relu6(x + 3.0) / 6.0


def _hard_swish_grad(B, x):
    inside = B.cast(B.logical_and(x > -3.0, x < 3.0), x.dtype)
    return inside * (2.0 * x + 3.0) / 6.0 + B.cast(x >= 3.0, x.dtype)


def _elu(B, x):
    return B.elu(x)


def _elu_grad(B, x):
    return B.where(x > 0, B.ones_like(x), B.exp(B.minimum(x, 0.0)))


def _selu(B, x):
    return B.selu(x)


def _selu_grad(B, x):
    alpha, scale = SELU
    return scale * B.where(x > 0, B.ones_like(x), alpha * B.exp(B.minimum(x, 0.0)))


def _sigmoid(B, x):
    """The gate of squeeze-excite blocks (EfficientNet), which `relufy` hands over to a hard sigmoid."""
    return B.sigmoid(x)


def _sigmoid_grad(B, x):
    s = B.sigmoid(x)
    return s * (1.0 - s)


def _hard_sigmoid(B, x):
    """ReLU6(x + 3) / 6: Keras 3's hard sigmoid and MobileNetV3's gate."""
    return B.relu6(x + 3.0) * (1.0 / 6.0)


def _hard_sigmoid_grad(B, x):
    return B.cast(B.logical_and(x > -3.0, x < 3.0), x.dtype) * (1.0 / 6.0)


def _hard_sigmoid_keras2(B, x):
    """clip(0.2 x + 0.5, 0, 1): tf_keras' (Keras 2's) hard sigmoid."""
    return B.clip(0.2 * x + 0.5, 0.0, 1.0)


def _hard_sigmoid_keras2_grad(B, x):
    return B.cast(B.logical_and(x > -2.5, x < 2.5), x.dtype) * 0.2


def _softplus(B, x):
    return B.softplus(x)


def _softplus_grad(B, x):
    return B.sigmoid(x)


_FORMULAS = {
    "silu": (_silu, _silu_grad),
    "gelu": (_gelu, _gelu_grad),
    "gelu_tanh": (_gelu_tanh, _gelu_tanh_grad),
    "mish": (_mish, _mish_grad),
    "hard_swish": (_hard_swish, _hard_swish_grad),
    "elu": (_elu, _elu_grad),
    "selu": (_selu, _selu_grad),
    "softplus": (_softplus, _softplus_grad),
    "sigmoid": (_sigmoid, _sigmoid_grad),
    "hard_sigmoid": (_hard_sigmoid, _hard_sigmoid_grad),
    "hard_sigmoid_keras2": (_hard_sigmoid_keras2, _hard_sigmoid_keras2_grad),
}
_ALIASES = {"swish": "silu", "hard_silu": "hard_swish"}


@dataclasses.dataclass(frozen=True)
class Activation:
    """One activation on one backend: `g` and its derivative `g_prime`, which is None for a
    callable without a closed form (autodiff)."""

    name: str | None
    g: Callable
    g_prime: Callable | None


def names():
    """Every accepted name, aliases included, sorted."""
    return sorted([*_FORMULAS, *_ALIASES])


def _canonical(name):
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _FORMULAS:
        raise ValueError(f"Unknown activation {name!r}; valid names: {', '.join(names())}, or a function "
                         "registered with @keras.saving.register_keras_serializable().")
    return key


def name_of(activation):
    """Canonical name of a registered name or a registered `g` (from `get(...).g`); None for
    other callables."""
    if isinstance(activation, str):
        return _canonical(activation)
    return getattr(activation, "_pea_activation", None)


def get(activation, backend=TF):
    """The `Activation` for a name or a callable, on `TF` or `OPS`. Unknown names raise."""
    if not (isinstance(activation, str) or callable(activation)):
        raise ValueError(f"activation must be a name or a callable, got {activation!r}.")
    key = name_of(activation)
    if key is None:
        return Activation(None, activation, None)
    cache_key = (key, backend.name)
    if cache_key not in _CACHE:
        _CACHE[cache_key] = _registered(key, backend)
    return _CACHE[cache_key]


_CACHE = {}


def _registered(key, backend):
    formula, derivative = _FORMULAS[key]

    def g(x):
        return formula(backend, x)

    def g_prime(x):
        return derivative(backend, x)

    g.__name__, g._pea_activation = key, key  # name_of(g) finds the name; Keras serialises by it.
    return Activation(key, g, g_prime)
