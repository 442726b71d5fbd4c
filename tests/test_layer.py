import numpy as np
import pytest
import tensorflow as tf
from tiny_models import small_cnn, small_data

import pea_keras
from pea_keras import activations
from pea_keras.layer import layer_class, relu

X = tf.constant(np.random.default_rng(1).normal(scale=4.0, size=(3, 5, 7)).astype("float32"))


def plain_formula(x, alpha, activation, max_value=None, threshold=0.0):
    return alpha * relu(x, max_value, threshold) + (1.0 - alpha) * activations.get(activation).g(x)


def grads(fn, x, weight):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(fn(x) * weight)
    return tape.gradient(y, x).numpy()


@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh", "mish", "hard_swish", "elu", "selu",
                                        "softplus"])
@pytest.mark.parametrize("max_value", [None, 6.0])
def test_values_and_gradients_equal_plain_formula(k, activation, max_value):
    weight = tf.constant(np.random.default_rng(2).normal(size=X.shape).astype("float32"))
    layer = layer_class(k)(activation, max_value=max_value)
    layer.build(X.shape)
    for alpha in (0.0, 0.3, 0.5, 0.9, 1.0):
        layer.set_alpha(alpha)
        expected = plain_formula(X, alpha, activation, max_value).numpy()
        expected_grads = grads(lambda x, a=alpha: plain_formula(x, a, activation, max_value), X, weight)
        for phase in (None, {0.0: "novel", 1.0: "relu"}.get(alpha, "blend")):
            layer.enter_phase(phase)
            np.testing.assert_allclose(layer(X, training=True).numpy(), expected, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(grads(lambda x: layer(x, training=True), X, weight), expected_grads,
                                       rtol=1e-5, atol=1e-5)


def hybrid_gradient(x, alpha, activation, max_value=None):
    """The ReLU branch with g's gradient: dy * (alpha * g'(x) [x < max_value] + (1 - alpha) * g'(x))."""
    g_prime = activations.get(activation).g_prime(x).numpy()
    capped = g_prime * (x.numpy() < max_value) if max_value is not None else g_prime
    return alpha * capped + (1.0 - alpha) * g_prime


@pytest.mark.parametrize("activation", ["silu", "gelu", "mish", "hard_swish", "elu"])
@pytest.mark.parametrize("max_value, threshold", [(None, 0.0), (6.0, 0.0), (6.0, 0.5)])
def test_relu_gradient_g_blends_forward_and_gives_the_relu_branch_g_prime(k, activation, max_value, threshold):
    """relu_gradient="g": the usual blend forward, g's gradient at alpha 0, the surrogate's at alpha 1."""
    weight = tf.constant(np.random.default_rng(5).normal(size=X.shape).astype("float32"))
    layer = layer_class(k)(activation, max_value=max_value, threshold=threshold, relu_gradient="g")
    layer.build(X.shape)
    # At alpha 0 exactly the ordinary layer's gradient (g's), at alpha 1 exactly the surrogate layer's.
    references = {0.0: layer_class(k)(activation, max_value=max_value, threshold=threshold, alpha=0.0),
                  1.0: layer_class(k)(activation, max_value=max_value, threshold=threshold, alpha=1.0,
                                      surrogate=True)}
    for alpha in (0.0, 0.3, 0.5, 0.9, 1.0):
        layer.set_alpha(alpha)
        expected = plain_formula(X, alpha, activation, max_value, threshold).numpy()
        expected_grads = hybrid_gradient(X, alpha, activation, max_value) * weight.numpy()
        for phase in (None, {0.0: "novel", 1.0: "relu"}.get(alpha, "blend")):
            layer.enter_phase(phase)
            for training in (True, False):
                np.testing.assert_allclose(layer(X, training=training).numpy(), expected, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(grads(lambda x: layer(x, training=True), X, weight), expected_grads,
                                       rtol=1e-5, atol=1e-5)
            if alpha in references:  # In the same phase, so the same graph computes g.
                references[alpha].enter_phase(phase)
                tol = 1e-6 if threshold and alpha == 0.0 else 0.0  # A threshold: the ordinary layer's autodiff.
                np.testing.assert_allclose(grads(lambda x: layer(x, training=True), X, weight),
                                           grads(lambda x, a=alpha: references[a](x, training=True), X, weight),
                                           rtol=tol, atol=tol)
    restored = layer_class(k).from_config(layer.get_config())
    assert restored.relu_gradient == "g" and restored.get_config() == layer.get_config()


def test_relu_gradient_g_without_xla_runs_op_by_op_with_the_same_gradient(k, monkeypatch):
    from pea_keras import layer as layer_module
    from pea_keras import numerics

    monkeypatch.setattr(numerics, "_xla", lambda tf: False)
    monkeypatch.setattr(layer_module, "_BLENDS", {})
    weight = tf.constant(np.random.default_rng(6).normal(size=X.shape).astype("float32"))
    layer = layer_class(k)("silu", max_value=6.0, alpha=0.3, relu_gradient="g")
    layer.enter_phase("blend")
    np.testing.assert_allclose(layer(X, training=True).numpy(), plain_formula(X, 0.3, "silu", 6.0).numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads(lambda x: layer(x, training=True), X, weight),
                               hybrid_gradient(X, 0.3, "silu", 6.0) * weight.numpy(), rtol=1e-5, atol=1e-5)
    forward, backward = layer_module._BLENDS[("tensorflow", "silu", 6.0, False, 0.0, "g")]
    assert not hasattr(backward, "get_concrete_function")


def test_relu_gradient_refuses_what_it_cannot_compute(k):
    with pytest.raises(ValueError, match="relu_gradient must be one of 'relu', 'g', got 'silu'"):
        layer_class(k)("silu", relu_gradient="silu")
    with pytest.raises(ValueError, match="relu_gradient='g' needs a registered activation"):
        layer_class(k)(lambda x: x * x, relu_gradient="g")
    with pytest.raises(ValueError, match=r"and a scheduled alpha \(trainable_alpha=False\)"):
        layer_class(k)("silu", trainable_alpha=True, relu_gradient="g")
    with pytest.raises(ValueError, match="it takes no max_value, threshold, surrogate or relu_gradient"):
        layer_class(k)("sigmoid", gate=True, relu_gradient="g")


def plain_gate(x, alpha, activation):
    return alpha * tf.nn.relu6(x + 3.0) / 6.0 + (1.0 - alpha) * activations.get(activation).g(x)


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid", "hard_sigmoid_keras2"])
def test_gate_values_and_gradients_equal_plain_formula(k, activation):
    """A gate's ReLU branch is the hard sigmoid ReLU6(x + 3) / 6."""
    weight = tf.constant(np.random.default_rng(3).normal(size=X.shape).astype("float32"))
    layer = layer_class(k)(activation, gate=True)
    layer.build(X.shape)
    for alpha in (0.0, 0.3, 1.0):
        layer.set_alpha(alpha)
        expected = plain_gate(X, alpha, activation).numpy()
        expected_grads = grads(lambda x, a=alpha: plain_gate(x, a, activation), X, weight)
        for phase in (None, {0.0: "novel", 1.0: "relu"}.get(alpha, "blend")):
            layer.enter_phase(phase)
            np.testing.assert_allclose(layer(X, training=True).numpy(), expected, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(grads(lambda x: layer(x, training=True), X, weight), expected_grads,
                                       rtol=1e-5, atol=1e-5)
    restored = layer_class(k).from_config(layer.get_config())
    assert restored.gate and restored.activation == activation
    with pytest.raises(ValueError, match=r"A gate's ReLU branch is ReLU6\(x \+ 3\) / 6: it takes no max_value"):
        layer_class(k)("sigmoid", max_value=6.0, gate=True)


def test_without_xla_the_blend_runs_op_by_op_with_the_same_values(k, monkeypatch):
    """Where TensorFlow has no XLA, the blend's fused loops are the same formulas run op by op."""
    from pea_keras import layer as layer_module
    from pea_keras import numerics

    monkeypatch.setattr(numerics, "_xla", lambda tf: False)
    monkeypatch.setattr(layer_module, "_BLENDS", {})
    weight = tf.constant(np.random.default_rng(2).normal(size=X.shape).astype("float32"))
    layer = layer_class(k)("silu", max_value=6.0, alpha=0.3)
    layer.enter_phase("blend")
    expected_grads = grads(lambda x: plain_formula(x, 0.3, "silu", 6.0), X, weight)
    np.testing.assert_allclose(layer(X, training=True).numpy(), plain_formula(X, 0.3, "silu", 6.0).numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads(lambda x: layer(x, training=True), X, weight), expected_grads,
                               rtol=1e-5, atol=1e-5)
    forward, backward = layer_module._BLENDS[("tensorflow", "silu", 6.0, False, 0.0, "relu")]
    assert not hasattr(forward, "get_concrete_function")  # Plain Python functions, no tf.function.


def test_custom_callable_and_threshold_use_autodiff(k):
    layer = layer_class(k)(lambda x: x * x, threshold=0.5, alpha=0.25)
    weight = tf.ones_like(X)
    expected = grads(lambda x: plain_formula(x, 0.25, lambda t: t * t, None, 0.5), X, weight)
    np.testing.assert_allclose(grads(layer, X, weight), expected, rtol=1e-6)


def test_alpha_is_a_non_trainable_scalar_variable(k):
    layer = layer_class(k)("silu", alpha=0.2)
    layer.build((None, 4))
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 1
    assert tuple(layer.alpha.shape) == () and float(layer.alpha.numpy()) == pytest.approx(0.2)


def test_trainable_alpha_gradient_and_clip(k):
    layer = layer_class(k)("silu", alpha=0.4, trainable_alpha=True)
    x = tf.constant(np.linspace(-3, 3, 11, dtype="float32"))
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    expected = tf.reduce_sum(relu(x) - activations.get("silu").g(x)).numpy()
    assert tape.gradient(y, layer.trainable_weights[0]).numpy() == pytest.approx(expected, rel=1e-5)
    layer.alpha.assign(1.7)
    np.testing.assert_allclose(layer(x).numpy(), relu(x).numpy())


def test_config_round_trips_every_argument(k):
    cls = layer_class(k)
    layer = cls("gelu_tanh", max_value=6.0, threshold=0.1, alpha=0.7, trainable_alpha=True,
                origin={"fused_into": "conv", "activation": "relu6"}, name="pea")
    config = layer.get_config()
    assert {key: config[key] for key in ("activation", "max_value", "threshold", "alpha", "trainable_alpha",
                                         "origin", "name")} == {
        "activation": "gelu_tanh", "max_value": 6.0, "threshold": 0.1, "alpha": 0.7, "trainable_alpha": True,
        "origin": {"fused_into": "conv", "activation": "relu6"}, "name": "pea"}
    assert cls.from_config(config).get_config() == config


def test_rejects_alpha_outside_unit_interval(k):
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got -0.5"):
        layer_class(k)("silu", alpha=-0.5)


def test_registered_under_the_same_name_in_both_flavors(k):
    assert k.saving.get_registered_name(layer_class(k)) == "pea_keras>PEALayer"
    assert type(layer_class(k)("silu")).__name__ == "PEALayer"


def save_formats(k):
    return [".keras"] + ([".h5", "savedmodel"] if k.__name__ == "tf_keras" else [])


def test_saved_mid_training_loads_without_custom_objects(k, tmp_path):
    model = pea_keras.wrap(small_cnn(k))
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = small_data()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0,
              callbacks=[pea_keras.PEAScheduler(pea_keras.schedules.Linear(0, 16))])
    expected = model.predict(x, verbose=0)
    assert float(pea_keras.pea_layers(model)[0].alpha.numpy()) == pytest.approx(7 / 16)
    for fmt in save_formats(k):
        path = str(tmp_path / f"model{fmt}") if fmt != "savedmodel" else str(tmp_path / "sm")
        model.save(path)
        loaded = k.models.load_model(path)
        layers = pea_keras.pea_layers(loaded)
        assert len(layers) == 2 and float(layers[0].alpha.numpy()) == pytest.approx(7 / 16), fmt
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_gradients_in_graph_mode(k, alpha):
    layer = layer_class(k)("mish", max_value=6.0, alpha=alpha)
    layer.build(X.shape)
    weight = tf.ones_like(X)
    graph = tf.function(lambda x: _tape_grad(layer, x))
    expected = grads(lambda x: plain_formula(x, alpha, "mish", 6.0), X, weight)
    np.testing.assert_allclose(graph(X).numpy(), expected, rtol=1e-5, atol=1e-5)


def _tape_grad(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(fn(x))
    return tape.gradient(y, x)


def test_isinstance_of_pealayer_holds_for_both_flavors(k):
    layer = layer_class(k)("silu")
    assert isinstance(layer, pea_keras.PEALayer)
    assert issubclass(type(layer), pea_keras.PEALayer)
    assert isinstance(layer, pea_keras.TFKerasPEALayer) == (k.__name__ == "tf_keras")
    assert not isinstance(k.layers.ReLU(), pea_keras.PEALayer)
    wrapped = pea_keras.wrap(small_cnn(k))
    assert [layer.name for layer in wrapped.layers if isinstance(layer, pea_keras.PEALayer)] == [
        layer.name for layer in pea_keras.pea_layers(wrapped)] and pea_keras.pea_layers(wrapped)


def test_enter_phase_is_the_documented_protocol(k):
    layer = layer_class(k)("silu", alpha=0.5)
    layer.build(X.shape)
    assert layer.phase is None
    layer.enter_phase("relu")  # Training graphs now compute only the ReLU branch ...
    np.testing.assert_array_equal(layer(X, training=True).numpy(), relu(X).numpy())
    np.testing.assert_allclose(layer(X, training=False).numpy(),  # ... inference still follows alpha.
                               plain_formula(X, 0.5, "silu").numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="phase must be one of novel, blend, relu or None, got 'gelu'"):
        layer.enter_phase("gelu")
    layer.enter_phase(None)
    assert layer.phase is None


@pytest.mark.parametrize("max_value", [None, 6.0])
@pytest.mark.parametrize("activation", ["silu", "gelu", "mish"])
def test_surrogate_is_relu_forward_and_g_prime_backward(k, activation, max_value):
    layer = layer_class(k)(activation, max_value=max_value, alpha=1.0, surrogate=True)
    layer.build(X.shape)
    weight = tf.constant(np.random.default_rng(4).normal(size=X.shape).astype("float32"))
    for training in (True, False):
        np.testing.assert_array_equal(layer(X, training=training).numpy(), relu(X, max_value).numpy())
    g_prime = activations.get(activation).g_prime(X).numpy()
    if max_value is not None:
        g_prime = g_prime * (X.numpy() < max_value)  # Above the cap, the cap's gradient: 0.
    np.testing.assert_allclose(grads(lambda x: layer(x, training=True), X, weight), g_prime * weight.numpy(),
                               rtol=1e-6, atol=1e-6)
    assert layer_class(k).from_config(layer.get_config()).surrogate


def test_surrogate_needs_a_closed_form_derivative_and_alpha_1(k):
    with pytest.raises(ValueError, match="needs a registered activation"):
        layer_class(k)(lambda x: x * x, alpha=1.0, surrogate=True)
    with pytest.raises(ValueError, match="and alpha 1"):
        layer_class(k)("silu", alpha=0.5, surrogate=True)
