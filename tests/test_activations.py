import numpy as np
import pytest
import tensorflow as tf

from pea_keras import activations

EXPECTED = {
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: x * 0.5 * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0, 1),
}
X = np.linspace(-6, 6, 97).astype("float32")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_values_match_reference_formulas(name):
    np.testing.assert_allclose(activations.get(name).g(tf.constant(X)).numpy(),
                               EXPECTED[name](X.astype("float64")), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_closed_form_derivatives_match_autodiff(name):
    x = tf.constant(X + 0.01)  # Off the kinks of hard_swish.
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = activations.get(name).g(x)
    np.testing.assert_allclose(activations.get(name).g_prime(x).numpy(), tape.gradient(y, x).numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_keras_ops_formulas_equal_tensorflow_ones(name):
    """The one formula on both namespaces: keras.ops (JAX, PyTorch) computes what TensorFlow does."""
    x = tf.constant(X + 0.01)
    tf_act, ops_act = activations.get(name, activations.TF), activations.get(name, activations.OPS)
    np.testing.assert_allclose(np.asarray(ops_act.g(x)), tf_act.g(x).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ops_act.g_prime(x)), tf_act.g_prime(x).numpy(), rtol=1e-5, atol=1e-6)


def test_aliases_and_case():
    assert activations.get("Swish") is activations.get("silu")
    assert activations.get("hard_silu") is activations.get("hard_swish")
    assert activations.name_of("SWISH") == "silu"
    assert activations.name_of(activations.get("mish", activations.OPS).g) == "mish"
    assert {"silu", "swish", "gelu", "gelu_tanh", "mish", "hard_swish", "hard_silu", "elu", "selu",
            "softplus"} <= set(activations.names())


def test_callables_pass_through():
    def square(x):
        return x * x

    act = activations.get(square)
    assert act.g is square and act.name is None
    assert act.g_prime is None
    assert activations.name_of(square) is None


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown activation 'relu2'; valid names: elu, gelu, gelu_tanh"):
        activations.get("relu2")
    with pytest.raises(ValueError, match="name or a callable"):
        activations.get(3)
