import warnings

import numpy as np
import pytest
from tiny_models import every_relu_inputs, every_relu_model, outputs, small_cnn

import pea_keras
from pea_keras import activations
from pea_keras.errors import UnfinishedScheduleError


def set_all_alpha(model, value):
    for layer in pea_keras.pea_layers(model):
        layer.set_alpha(value)


def max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def test_wrap_replaces_every_relu_and_keeps_outputs_at_alpha_1(k):
    model, n_relu = every_relu_model(k)
    with pytest.warns(UserWarning, match="leaky"):
        wrapped = pea_keras.wrap(model, alpha=1.0)
    assert wrapped is not model
    assert len(pea_keras.pea_layers(wrapped)) == n_relu
    assert pea_keras.flavor.keras_of(wrapped) is k
    x = every_relu_inputs()
    assert max_diff(outputs(model, x), outputs(wrapped, x)) <= 1e-6


def test_wrap_at_alpha_0_equals_model_with_g(k):
    model, _ = every_relu_model(k)
    with pytest.warns(UserWarning):
        wrapped = pea_keras.wrap(model, activation="mish", alpha=0.0)
    with_g, _ = every_relu_model(k, g=activations.get("mish").g)
    with_g.set_weights(model.get_weights())
    x = every_relu_inputs()
    assert max_diff(outputs(with_g, x), outputs(wrapped, x)) <= 1e-6


def test_wrap_leaves_original_untouched(k):
    model = small_cnn(k)
    before = [w.copy() for w in model.get_weights()]
    wrapped = pea_keras.wrap(model)
    for w in wrapped.weights:
        w.assign(w.numpy() + 1.0)
    assert [type(layer).__name__ for layer in model.layers][2] == "ReLU"
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_strip_restores_types_configs_and_outputs(k):
    model, _ = every_relu_model(k)
    with pytest.warns(UserWarning):
        wrapped = pea_keras.wrap(model, activation="gelu", alpha=0.3)
    with pytest.raises(ValueError, match=r"alpha != 1.*conv_pea \(alpha=0.3000\)"):
        pea_keras.strip(wrapped)
    set_all_alpha(wrapped, 1.0)
    stripped = pea_keras.strip(wrapped)
    assert not pea_keras.pea_layers(stripped)
    assert [type(layer) for layer in stripped.layers] == [type(layer) for layer in model.layers]
    assert [layer.get_config() for layer in stripped.layers] == [layer.get_config() for layer in model.layers]
    x = every_relu_inputs()
    assert max_diff(outputs(wrapped, x), outputs(stripped, x)) <= 1e-6
    assert max_diff(outputs(model, x), outputs(stripped, x)) <= 1e-6


def test_strip_force_deploys_the_relu_branch(k):
    wrapped = pea_keras.wrap(small_cnn(k), alpha=0.5)
    stripped = pea_keras.strip(wrapped, force=True)
    assert not pea_keras.pea_layers(stripped)


def test_strip_of_a_plain_model_is_a_copy(k):
    model = small_cnn(k)
    copy = pea_keras.strip(model)
    assert copy is not model
    x = np.ones((2, 8, 8, 1), "float32")
    np.testing.assert_array_equal(outputs(model, x)[0], outputs(copy, x)[0])


def test_wrap_selects_layers_by_name_or_predicate(k):
    model, _ = every_relu_model(k)
    with pytest.warns(UserWarning):
        by_name = pea_keras.wrap(model, layers=["conv", "shared"])
    assert sorted(layer.name for layer in pea_keras.pea_layers(by_name)) == ["conv_pea", "shared_pea"]
    with pytest.warns(UserWarning):
        by_kind = pea_keras.wrap(model, layers=lambda layer: isinstance(layer, k.layers.ReLU))
    assert len(pea_keras.pea_layers(by_kind)) == 3  # ReLU6, thresholded, and the nested ReLU.
    with pytest.raises(ValueError, match="names no ReLU of the model: nope"), pytest.warns(UserWarning):
        pea_keras.wrap(model, layers=["conv", "nope"])


def test_relu_branch_keeps_relu6_and_threshold(k):
    model = k.Sequential([k.Input((4,)), k.layers.ReLU(max_value=6.0, threshold=0.5)])
    layer = pea_keras.pea_layers(pea_keras.wrap(model))[0]
    assert (layer.max_value, layer.threshold) == (6.0, 0.5)
    assert layer.origin["class_name"] == "ReLU"


def test_wrap_rejects_subclassed_model(k):
    class Net(k.Model):
        def __init__(self):
            super().__init__()
            self.dense = k.layers.Dense(2, activation="relu")

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed model.*pea_keras.PEALayer"):
        pea_keras.wrap(net)


def test_wrap_rejects_model_without_relu(k):
    model = k.Sequential([k.Input((4,)), k.layers.Dense(2, activation="tanh")])
    with pytest.raises(ValueError, match="Found no ReLU to wrap"):
        pea_keras.wrap(model)


def test_wrap_rejects_bad_arguments(k):
    model = small_cnn(k)
    with pytest.raises(ValueError, match="Unknown activation 'swishy'; valid names: elu, gelu") as unknown:
        pea_keras.wrap(model, activation="swishy")
    assert str(unknown.value).endswith("or a function registered with "
                                       "@keras.saving.register_keras_serializable().")
    assert "any callable" not in str(unknown.value)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        pea_keras.wrap(model, alpha=1.5)


def test_replace_relu_equals_the_model_with_g_written_by_hand(k):
    model, _ = every_relu_model(k)
    with pytest.warns(UserWarning, match="leaky"):
        replaced = pea_keras.replace_relu(model, "mish")
    assert not pea_keras.pea_layers(replaced)
    with_g, _ = every_relu_model(k, g=activations.get("mish").g)
    with_g.set_weights(model.get_weights())
    assert [type(layer) for layer in replaced.layers] == [type(layer) for layer in with_g.layers]
    x = every_relu_inputs()
    assert max_diff(outputs(with_g, x), outputs(replaced, x)) <= 1e-6
    with pytest.warns(UserWarning):
        wrapped = pea_keras.wrap(model, "mish", alpha=0.0)
    assert max_diff(outputs(wrapped, x), outputs(replaced, x)) <= 1e-6


def test_wrap_of_a_non_model_is_a_type_error(k):
    with pytest.raises(TypeError, match="model must be a Keras model .*got int: 3"):
        pea_keras.wrap(3)
    with pytest.raises(TypeError, match="model must be a Keras model .*got ReLU"):
        pea_keras.replace_relu(k.layers.ReLU())


def _cube(x):
    return x * x * x


def test_callable_activation_round_trips_when_registered_and_is_refused_otherwise(k, tmp_path):
    message = (r"activation=<lambda> cannot be saved and loaded with the model\. "
               rf"Register it with @{k.__name__}\.saving\.register_keras_serializable")
    with pytest.raises(ValueError, match=message):
        pea_keras.wrap(small_cnn(k), activation=lambda x: x * 2.0)
    cube = k.saving.register_keras_serializable(package=f"pea_tests_{k.__name__}")(
        type(_cube)(_cube.__code__, globals(), f"cube_{k.__name__}"))
    wrapped = pea_keras.wrap(small_cnn(k), activation=cube, alpha=0.3)
    wrapped.save(tmp_path / "cube.keras")
    loaded = k.models.load_model(tmp_path / "cube.keras")
    assert pea_keras.pea_layers(loaded)[0].activation is cube
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(outputs(loaded, x)[0], outputs(wrapped, x)[0])


def test_leaky_relu_layers_are_left_alone_with_a_warning(k):
    L = k.layers
    model = k.Sequential([k.Input((4,)), L.Dense(4, activation="relu"), L.LeakyReLU(name="leaky"),
                          L.ReLU(negative_slope=0.2, name="sloped")])
    with pytest.warns(UserWarning, match=r"Left leaky ReLU layers unchanged .*: leaky, sloped\."):
        wrapped = pea_keras.wrap(model)
    assert [type(layer).__name__ for layer in wrapped.layers] == ["Dense", "PEALayer", "LeakyReLU", "ReLU"]


def hard_swish_model(k):
    """MobileNetV3's gates as tf_keras.applications builds them: x * ReLU6(x + 3) / 6."""
    L = k.layers
    inputs = k.Input((6, 6, 2))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = L.ReLU(6.0, name="body")(x)
    gate = L.ReLU(6.0, name="gate")(x + 3.0) * (1.0 / 6.0)
    x = L.Multiply()([x, gate])
    return k.Model(inputs, L.GlobalAveragePooling2D()(x))


def test_hard_sigmoid_gates_are_left_alone_unless_asked(k, caplog):
    model = hard_swish_model(k)
    with caplog.at_level("INFO", logger="pea_keras.surgery"):
        wrapped = pea_keras.wrap(model)
    assert [layer.name for layer in pea_keras.pea_layers(wrapped)] == ["body"]
    assert ("Left 1 ReLU6 hard-sigmoid gates (ReLU6(x + 3)) unchanged: gate. Pass include_gates=True"
            in caplog.text)
    assert [layer.name for layer in pea_keras.pea_layers(pea_keras.wrap(model, include_gates=True))] == [
        "body", "gate"]
    replaced = pea_keras.replace_relu(model, "silu")
    assert {type(layer).__name__ for layer in replaced.layers if layer.name in ("body", "gate")} == {
        "Activation", "ReLU"}


def test_adapted_normalization_is_carried_over(k, rng):
    """An adapted Normalization keeps its mean and variance in wrap and strip (Keras 3 lost them)."""
    L = k.layers
    x = rng.uniform(0, 255, size=(16, 6, 6, 1)).astype("float32")
    norm = L.Normalization()
    norm.adapt(x / 255.0)
    model = k.Sequential([k.Input((6, 6, 1)), L.Rescaling(1 / 255), norm, L.Conv2D(4, 3, activation="relu"),
                          L.Flatten(), L.Dense(3)])
    wrapped = pea_keras.wrap(model, alpha=1.0)
    assert max_diff(outputs(model, x), outputs(wrapped, x)) <= 1e-5
    assert max_diff(outputs(model, x), outputs(pea_keras.strip(wrapped), x)) <= 1e-5


def test_relu_inside_recurrent_layers_is_left_alone_with_one_warning(k, rng):
    L = k.layers
    model = k.Sequential([k.Input((5, 3)), L.LSTM(4, activation="relu", return_sequences=True, name="lstm"),
                          L.Bidirectional(L.SimpleRNN(4, activation="relu"), name="birnn"),
                          L.Dense(2, activation="relu", name="head")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = pea_keras.wrap(model, alpha=1.0)
    assert [str(w.message) for w in caught] == [
        "Left the ReLU inside recurrent layers unchanged (it acts inside the recurrence, not on the layer's "
        "output): lstm, birnn."]
    assert [type(layer).__name__ for layer in wrapped.layers] == ["LSTM", "Bidirectional", "Dense", "PEALayer"]
    assert wrapped.layers[0].get_config()["activation"] == "relu"
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    assert max_diff(outputs(model, x), outputs(wrapped, x)) <= 1e-6
    only_recurrent = k.Sequential([k.Input((5, 3)), L.GRU(4, activation="relu", name="gru")])
    with pytest.raises(ValueError, match=r"^Found no ReLU to wrap in model '\w+' \(its ReLUs are inside "
                                         r"recurrent layers, which keep them: gru\)"):
        pea_keras.wrap(only_recurrent)


def _relu_ops(k):
    """The flavor's ReLU functions that put a ReLU op (not a layer) into a graph."""
    import tensorflow as tf

    return (k.ops.relu, k.ops.relu6, k.activations.relu) if k.__name__ == "keras" else (
        tf.nn.relu, tf.nn.relu6, k.activations.relu)


def relu_op_model(k):
    L = k.layers
    relu, relu6, activations_relu = _relu_ops(k)
    inputs = k.Input((5, 4))
    h = relu(L.Dense(4, name="d1")(inputs))
    h = relu6(L.Dense(4, name="d2")(h))
    h = activations_relu(L.Dense(4, name="d3")(h))
    h = L.Lambda(k.activations.relu, name="lam")(L.Dense(4, name="d4")(h))
    h = L.TimeDistributed(L.Dense(4, activation="relu"), name="td_dense")(h)
    h = L.TimeDistributed(L.ReLU(), name="td_relu")(h)
    return k.Model(inputs, L.Dense(2, name="out")(h))


def test_relu_ops_and_time_distributed_relus_are_wrapped_and_stripped_back(k, rng):
    model = relu_op_model(k)
    wrapped = pea_keras.wrap(model, alpha=1.0)
    assert len(pea_keras.pea_layers(wrapped)) == 6
    assert [layer.name for layer in pea_keras.pea_layers(wrapped)][3:] == ["lam", "td_dense_pea", "td_relu"]
    assert [layer.max_value for layer in pea_keras.pea_layers(wrapped)] == [None, 6.0, None, None, None, None]
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    assert max_diff(outputs(model, x), outputs(wrapped, x)) <= 1e-6
    stripped = pea_keras.strip(wrapped)
    assert max_diff(outputs(model, x), outputs(stripped, x)) <= 1e-6
    types = [type(layer).__name__ for layer in model.layers]
    assert [type(layer).__name__ for layer in stripped.layers] == [{"Lambda": "ReLU"}.get(t, t) for t in types]
    if k.__name__ == "keras":  # The ops come back as ops.
        assert [type(op).__name__ for op in stripped.operations if not isinstance(op, k.layers.Layer)] == [
            "Relu", "Relu6", "ReLU"]
    replaced = pea_keras.replace_relu(model, "silu")
    assert sum(isinstance(layer, k.layers.Activation) for layer in replaced.layers) == 5


def test_relu_hidden_in_a_lambda_is_named(k, rng):
    L = k.layers
    relu = _relu_ops(k)[0]
    inputs = k.Input((4,))
    hidden = L.Lambda(lambda t: relu(t) + 1.0, name="shifted_relu")(L.Dense(3)(inputs))
    model = k.Model(inputs, hidden)
    with pytest.raises(ValueError, match=r"^Found no ReLU to wrap in model '\w+' \(found 1 ReLU op that is not a "
                                         r"layer: shifted_relu \(in a Lambda\); wrap cannot rewrite the code"):
        pea_keras.wrap(model)
    both = k.Model(inputs, [hidden, L.Dense(2, activation="relu")(inputs)])
    with pytest.warns(UserWarning, match=r"^Left ReLU ops unchanged: found 1 ReLU op that is not a layer: "
                                         r"shifted_relu \(in a Lambda\)"):
        wrapped = pea_keras.wrap(both, alpha=1.0)
    x = rng.normal(size=(3, 4)).astype("float32")
    assert max_diff(outputs(both, x), outputs(wrapped, x)) <= 1e-6


def test_a_python_lambda_layer_is_kept_and_wraps(k, rng):
    """Keras 3 cannot rebuild a Python lambda from its config without unsafe deserialization:
    wrap keeps the Lambda itself (it holds only its function)."""
    L = k.layers
    model = k.Sequential([k.Input((4,)), L.Lambda(lambda t: t * 2.0 - 1.0, name="affine"),
                          L.Dense(3, activation="relu")])
    wrapped = pea_keras.wrap(model, alpha=1.0)
    assert wrapped.get_layer("affine") is model.get_layer("affine")
    x = rng.normal(size=(3, 4)).astype("float32")
    assert max_diff(outputs(model, x), outputs(wrapped, x)) <= 1e-6
    assert max_diff(outputs(model, x), outputs(pea_keras.strip(wrapped), x)) <= 1e-6


def test_wrapping_a_wrapped_model_says_it_is_already_wrapped(k):
    wrapped = pea_keras.wrap(small_cnn(k))
    with pytest.raises(ValueError, match=r"^Model 'small_cnn' is already wrapped: it has 2 PEALayers "
                                         r"\(conv2d\w*_pea, re_lu\w*\) and no ReLU left to wrap\."):
        pea_keras.wrap(wrapped)


def test_a_layer_that_cannot_be_copied_is_named(k):
    class Unconfigurable(k.layers.Layer):
        def __init__(self, scale, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, x):
            return x * self.scale

        def get_config(self):  # Forgets `scale`: from_config cannot rebuild the layer.
            return {key: value for key, value in super().get_config().items()}

    model = k.Sequential([k.Input((4,)), Unconfigurable(2.0, name="scaled"), k.layers.Dense(2, activation="relu")])
    with pytest.raises(ValueError, match=r"^Cannot copy layer 'scaled' \(Unconfigurable\) from its get_config\(\), "
                                         r"so the model cannot be rebuilt: .*scale"):
        pea_keras.wrap(model)


def test_strip_refusal_names_force_true_only(k):
    wrapped = pea_keras.wrap(small_cnn(k), alpha=0.5)
    with pytest.raises(UnfinishedScheduleError) as refused:
        pea_keras.strip(wrapped)
    assert "force=True" in str(refused.value) and "--force_strip" not in str(refused.value)
    assert isinstance(refused.value, ValueError) and len(refused.value.unfinished) == 2


def test_surrogate_model_is_the_relu_network_with_g_gradients_and_strips_back(k):
    model, count = every_relu_model(k)
    with pytest.warns(UserWarning):
        sur = pea_keras.surrogate(model, activation="silu")
    layers = pea_keras.pea_layers(sur)
    assert len(layers) == count and all(layer.surrogate and layer.alpha_value == 1.0 for layer in layers)
    x = every_relu_inputs()
    assert max_diff(outputs(model, x), outputs(sur, x)) <= 1e-6
    stripped = pea_keras.strip(sur)  # Alpha is 1: no force needed.
    assert [layer.get_config() for layer in stripped.layers] == [layer.get_config() for layer in model.layers]
    callback = pea_keras.PEAScheduler(lambda step: 0.5)
    callback.set_model(sur)
    with pytest.raises(ValueError, match="surrogate layers .* train it without PEAScheduler"):
        callback.on_train_begin()
    with pytest.raises(ValueError, match="has no scheduled PEALayer"):
        pea_keras.set_alpha(sur, 0.5)
    with pytest.raises(ValueError, match="surrogate needs a registered activation"):
        pea_keras.surrogate(small_cnn(k), activation=lambda t: t)


def test_wrap_relu_gradient_g_is_the_surrogate_model_at_alpha_1_and_saves_and_strips(k, tmp_path):
    """wrap(relu_gradient="g") at alpha 1 trains exactly as surrogate(); it saves, loads and strips as ever."""
    import tensorflow as tf

    model, count = every_relu_model(k)
    with pytest.warns(UserWarning, match="leaky"):
        hybrid, sur = pea_keras.wrap(model, relu_gradient="g"), pea_keras.surrogate(model)
    layers = pea_keras.pea_layers(hybrid)
    assert len(layers) == count and all(layer.relu_gradient == "g" and not layer.surrogate for layer in layers)
    set_all_alpha(hybrid, 1.0)
    x = every_relu_inputs()

    def weight_grads(m):
        with tf.GradientTape() as tape:
            loss = sum(tf.reduce_sum(y * y) for y in m([tf.constant(t) for t in x], training=True))
        return [g.numpy() for g in tape.gradient(loss, m.trainable_variables)]

    assert max_diff(weight_grads(hybrid), weight_grads(sur)) <= 1e-6
    set_all_alpha(hybrid, 0.5)
    hybrid.save(tmp_path / "hybrid.keras")
    loaded = k.models.load_model(tmp_path / "hybrid.keras")
    assert [layer.relu_gradient for layer in pea_keras.pea_layers(loaded)] == ["g"] * count
    assert max_diff(outputs(loaded, x), outputs(hybrid, x)) <= 1e-6
    set_all_alpha(loaded, 1.0)
    stripped = pea_keras.strip(loaded)
    assert [layer.get_config() for layer in stripped.layers] == [layer.get_config() for layer in model.layers]
    with pytest.raises(ValueError, match="^relu_gradient must be one of 'relu', 'g', got 'relu6'.$"):
        pea_keras.wrap(small_cnn(k), relu_gradient="relu6")
