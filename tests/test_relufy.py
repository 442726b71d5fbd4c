"""relufy: a model with other activations becomes a PEA model that computes exactly it at alpha 0,
its ReLU network at alpha 1, and strips to ReLU/ReLU6 layers only."""
import functools
import warnings

import numpy as np
import pytest
import tensorflow as tf
from tiny_models import outputs

import pea_keras
from pea_keras import forms

RNG = np.random.default_rng(0)
IMAGES = RNG.normal(scale=2.0, size=(4, 8, 8, 3)).astype("float32")


def set_all_alpha(model, value):
    for layer in pea_keras.pea_layers(model):
        layer.set_alpha(value)


def max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(outputs(a, IMAGES), outputs(b, IMAGES)))


def activations_model(k, relu=False):
    """Activation layers and fused activations of every name relufy takes (tf_keras has no hard_silu)."""
    L = k.layers

    def act(name):
        return "relu" if relu else name

    inputs = k.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation=act("swish"), name="conv")(inputs)
    x = L.Activation(act("gelu"), name="gelu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation=act("elu"), name="depthwise")(x)
    x = L.SeparableConv2D(6, 3, padding="same", activation=act("selu"), name="separable")(x)
    x = L.Activation(act("mish"), name="mish")(x)
    x = L.Activation(act("silu" if k.__name__ == "keras" else "swish"), name="silu")(x)
    if k.__name__ == "keras":
        x = L.Activation(act("hard_silu"), name="hard_silu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inputs, L.Dense(3, activation="swish", name="dense")(x))  # An output: relufy keeps it.


def relu_reference(k, build, model):
    reference = build(k, relu=True)
    reference.set_weights(model.get_weights())
    return reference


def check_relufy(k, model, reference, n_pea, left=()):
    """relufy(model) equals model at alpha 0 and `reference` at alpha 1; strip leaves ReLU/ReLU6 only."""
    relufied = pea_keras.relufy(model)
    assert len(pea_keras.pea_layers(relufied)) == n_pea
    assert pea_keras.flavor.keras_of(relufied) is k
    assert max_diff(model, relufied) <= 1e-5
    set_all_alpha(relufied, 1.0)
    assert max_diff(reference, relufied) <= 1e-5
    assert max_diff(model, relufied) > 1e-4  # The ReLU network is another function.
    stripped = pea_keras.strip(relufied)
    assert max_diff(reference, stripped) <= 1e-5
    assert not pea_keras.pea_layers(stripped)
    kept = [getattr(op, "name", "") for op in getattr(stripped, "operations", stripped.layers)
            if forms.g_match(op) is not None]
    assert sorted(kept) == sorted(left)
    assert {forms.activation_name(layer) for layer in stripped.layers if layer.name not in left} <= {
        None, "linear", "relu"}
    return relufied, stripped


def test_activation_layers_and_fused_activations(k):
    model = activations_model(k)
    reference = relu_reference(k, activations_model, model)
    relufied, stripped = check_relufy(k, model, reference, 7 if k.__name__ == "keras" else 6, left=["dense"])
    assert [layer.name for layer in pea_keras.pea_layers(relufied)][:3] == ["conv_pea", "gelu", "depthwise_pea"]
    assert [layer.activation for layer in pea_keras.pea_layers(relufied)][:6] == [
        "silu", "gelu", "elu", "selu", "mish", "silu"]
    assert all(layer.alpha_value == 1.0 and not layer.gate for layer in pea_keras.pea_layers(relufied))
    # Fused ones come back fused as ReLU (the TFLite converter fuses them), the others as ReLU layers.
    assert [(type(layer).__name__, forms.activation_name(layer)) for layer in stripped.layers[1:5]] == [
        ("Conv2D", "relu"), ("ReLU", None), ("DepthwiseConv2D", "relu"), ("SeparableConv2D", "relu")]


def sequential_model(k, relu=False):
    L = k.layers
    return k.Sequential([k.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu" if relu else "gelu"),
                         L.Activation("relu" if relu else "elu"), L.Flatten(), L.Dense(2)])


def test_sequential_model(k):
    model = sequential_model(k)
    relufied, stripped = check_relufy(k, model, relu_reference(k, sequential_model, model), 2)
    assert pea_keras.flavor.is_sequential(relufied) and pea_keras.flavor.is_sequential(stripped)


def _ops(k):
    """(the flavor's activation functions that put a graph operation into a model, their g)."""
    if k.__name__ == "keras":
        return [(k.ops.silu, "silu"), (k.ops.gelu, "gelu_tanh"), (k.activations.gelu, "gelu"),
                (k.ops.hard_silu, "hard_swish"), (k.ops.elu, "elu"), (k.ops.selu, "selu"),
                (k.activations.silu, "silu")]
    return [(tf.nn.silu, "silu"), (tf.nn.swish, "silu"), (tf.nn.gelu, "gelu"),
            (lambda t: tf.nn.gelu(t, approximate=True), "gelu_tanh"), (tf.nn.elu, "elu"), (tf.nn.selu, "selu"),
            (k.activations.swish, "silu")]


def ops_model(k, relu=False):
    L = k.layers
    inputs = k.Input((8, 8, 3))
    x = inputs
    for i, (fn, _) in enumerate(_ops(k)):
        x = L.Conv2D(4, 1, name=f"conv{i}")(x)
        x = (L.ReLU() if relu else fn)(x)
    return k.Model(inputs, L.Conv2D(2, 1, name="out")(x))


def test_activation_ops_of_the_graph(k):
    model = ops_model(k)
    relufied, _ = check_relufy(k, model, relu_reference(k, ops_model, model), len(_ops(k)))
    assert [layer.activation for layer in pea_keras.pea_layers(relufied)] == [g for _, g in _ops(k)]


def structures_model(k, relu=False):
    """x * ReLU6(x + 3) / 6 as tf_keras' MobileNetV3 writes it, with the scale as a quotient, and
    x * sigmoid(x) with a Multiply layer and as an operation."""
    L = k.layers
    sigmoid = k.ops.sigmoid if k.__name__ == "keras" else tf.sigmoid
    inputs = k.Input((8, 8, 3))
    x = L.Conv2D(4, 1, name="c1")(inputs)
    x = L.ReLU()(x) if relu else L.Multiply(name="hs")([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
    x = L.Conv2D(4, 1, name="c2")(x)
    x = L.ReLU()(x) if relu else x * (L.ReLU(6.0)(x + 3.0) / 6.0)
    x = L.Conv2D(4, 1, name="c3")(x)
    x = L.ReLU()(x) if relu else L.Multiply(name="swish")([L.Activation("sigmoid")(x), x])
    x = L.Conv2D(4, 1, name="c4")(x)
    x = L.ReLU()(x) if relu else x * sigmoid(x)
    return k.Model(inputs, L.Conv2D(2, 1, name="out")(x))


def test_hard_swish_and_swish_written_as_products(k):
    model = structures_model(k)
    relufied, stripped = check_relufy(k, model, relu_reference(k, structures_model, model), 4)
    assert [layer.activation for layer in pea_keras.pea_layers(relufied)] == [
        "hard_swish", "hard_swish", "silu", "silu"]
    assert not [layer for layer in stripped.layers if isinstance(layer, k.layers.Multiply)]


def se_model(k, relu=False):
    """Squeeze-excite gates: sigmoid fused (EfficientNet), Activation('sigmoid'), Activation('hard_sigmoid')
    (each flavor's), a ReLU6(x + 3) / 6 gate (already ReLU), a graph op (keras.ops.hard_sigmoid,
    tf.sigmoid) and a sigmoid output (not a gate)."""
    L = k.layers

    def gate(x, name, activation):
        se = L.GlobalAveragePooling2D(keepdims=True)(x)
        se = L.Conv2D(2, 1, activation="relu")(se)
        if relu or activation == "relu6":
            se = L.ReLU(6.0, name=name)(L.Conv2D(4, 1, name=f"{name}_conv")(se) + 3.0) * (1.0 / 6.0)
        elif activation == "fused":
            se = L.Conv2D(4, 1, activation="sigmoid", name=f"{name}_conv")(se)
        elif activation == "op":
            se = (k.ops.hard_sigmoid if k.__name__ == "keras" else tf.sigmoid)(L.Conv2D(4, 1, name=f"{name}_conv")(se))
        else:
            se = L.Activation(activation, name=name)(L.Conv2D(4, 1, name=f"{name}_conv")(se))
        return L.multiply([x, se])

    inputs = k.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    for i, activation in enumerate(["fused", "sigmoid", "hard_sigmoid", "relu6", "op"]):
        x = gate(x, f"gate{i}", activation)
    logits = L.Dense(2, name="logits")(L.GlobalAveragePooling2D()(x))
    return k.Model(inputs, [logits, L.Activation("sigmoid", name="out")(logits)])


def test_squeeze_excite_gates_become_hard_sigmoid_gates(k, caplog):
    k.utils.set_random_seed(1)  # Random weights can put the two gates' networks within 1e-4 of each other.
    model = se_model(k)
    reference = relu_reference(k, se_model, model)
    with caplog.at_level("INFO", logger="pea_keras.surgery"):
        relufied, stripped = check_relufy(k, model, reference, 4, left=["out"])
    assert "relufy left 1 activations unchanged: out (sigmoid, a model output)." in caplog.text
    keras3 = k.__name__ == "keras"
    assert [(layer.name, layer.activation, layer.gate) for layer in pea_keras.pea_layers(relufied)][:3] == [
        ("gate0_conv_pea", "sigmoid", True), ("gate1", "sigmoid", True),
        ("gate2", "hard_sigmoid" if keras3 else "hard_sigmoid_keras2", True)]
    assert pea_keras.pea_layers(relufied)[3].activation == ("hard_sigmoid" if keras3 else "sigmoid")
    gates = [layer for layer in stripped.layers if isinstance(layer, k.layers.ReLU)]
    assert {layer.name for layer in gates} >= {"gate0_conv_pea", "gate1", "gate2", "gate3"}
    assert all(float(layer.max_value) == 6.0 for layer in gates if layer.name.startswith("gate"))
    assert [layer.name for layer in pea_keras.pea_layers(pea_keras.relufy(model, layers=["gate1"]))] == ["gate1"]


def gelu_se_model(k):
    """A fused gelu and a sigmoid squeeze-excite gate."""
    L = k.layers
    inputs = k.Input((8, 8, 3))
    x = L.Conv2D(4, 1, activation="gelu", name="conv")(inputs)
    se = L.Dense(4, activation="sigmoid", name="se")(L.GlobalAveragePooling2D()(x))
    return k.Model(inputs, L.GlobalAveragePooling2D()(L.Multiply()([x, L.Reshape((1, 1, 4))(se)])))


def test_gates_false_leaves_sigmoid_gates_alone(k, caplog):
    model = gelu_se_model(k)
    assert [layer.gate for layer in pea_keras.pea_layers(pea_keras.relufy(model))] == [False, True]
    with caplog.at_level("INFO", logger="pea_keras.surgery"):
        relufied = pea_keras.relufy(model, gates=False)
    assert [layer.name for layer in pea_keras.pea_layers(relufied)] == ["conv_pea"]
    assert "relufy left 1 activations unchanged: se (sigmoid, gates=False)." in caplog.text
    with pytest.raises(ValueError, match="Found no activation to hand over to ReLU"):
        pea_keras.relufy(se_model(k), gates=False)


def test_relu_gradient_g_reaches_every_layer_but_the_gates_and_saves(k, tmp_path):
    """relufy(relu_gradient="g"): g's derivative for the ReLU branch of every PEALayer; gates keep the hard
    sigmoid's gradient. The model saves and loads with it, and strips as any relufied model."""
    model = gelu_se_model(k)
    relufied = pea_keras.relufy(model, relu_gradient="g")
    assert [(layer.gate, layer.relu_gradient) for layer in pea_keras.pea_layers(relufied)] == [(False, "g"),
                                                                                               (True, "relu")]
    set_all_alpha(relufied, 0.4)
    relufied.save(tmp_path / "relufied.keras")
    loaded = k.models.load_model(tmp_path / "relufied.keras")
    assert [layer.relu_gradient for layer in pea_keras.pea_layers(loaded)] == ["g", "relu"]
    np.testing.assert_allclose(outputs(loaded, IMAGES)[0], outputs(relufied, IMAGES)[0], rtol=1e-6, atol=1e-6)
    set_all_alpha(loaded, 1.0)
    plain = pea_keras.relufy(model)
    set_all_alpha(plain, 1.0)
    stripped, plain_stripped = pea_keras.strip(loaded), pea_keras.strip(plain)
    assert [type(layer) for layer in stripped.layers] == [type(layer) for layer in plain_stripped.layers]
    assert max_diff(stripped, plain_stripped) == 0.0
    with pytest.raises(ValueError, match="^relu_gradient must be one of 'relu', 'g', got 'G'.$"):
        pea_keras.relufy(model, relu_gradient="G")


def test_selection_notes_and_errors(k, caplog):
    L = k.layers
    inputs = k.Input((4,))
    x = L.Dense(4, activation="tanh", name="squash")(inputs)
    x = L.Dense(4, activation="gelu", name="kept")(x)
    x = L.Activation("swish", name="chosen")(x)
    model = k.Model(inputs, L.Dense(2, activation="softmax", name="probs")(x))
    with caplog.at_level("INFO", logger="pea_keras.surgery"):
        relufied = pea_keras.relufy(model, layers=["chosen"])
    assert [layer.name for layer in pea_keras.pea_layers(relufied)] == ["chosen"]
    assert "relufy left 2 activations unchanged: squash (tanh), probs (softmax)." in caplog.text
    with pytest.raises(ValueError, match="^layers= names no activation relufy can hand over: nope."):
        pea_keras.relufy(model, layers=["chosen", "nope"])
    relu_model = k.Sequential([k.Input((4,)), L.Dense(3, activation="relu")])
    with pytest.raises(ValueError, match=r"^Found no activation to hand over to ReLU in model '\w+'\. .*"
                                         r"use pea_keras\.wrap"):
        pea_keras.relufy(relu_model)
    with pytest.raises(TypeError, match="model must be a Keras model"):
        pea_keras.relufy(L.Dense(2))


def test_relufied_model_saves_and_loads(k, tmp_path):
    model = se_model(k)
    relufied = pea_keras.relufy(model)
    set_all_alpha(relufied, 0.3)
    expected = outputs(relufied, IMAGES)
    relufied.save(tmp_path / "relufied.keras")
    loaded = k.models.load_model(tmp_path / "relufied.keras")
    assert [(layer.activation, layer.gate, layer.origin) for layer in pea_keras.pea_layers(loaded)] == [
        (layer.activation, layer.gate, layer.origin) for layer in pea_keras.pea_layers(relufied)]
    np.testing.assert_allclose(outputs(loaded, IMAGES)[0], expected[0], rtol=1e-6, atol=1e-6)
    set_all_alpha(loaded, 1.0)
    pea_keras.strip(loaded).save(tmp_path / "stripped.keras")  # The gates' ReLU6 and ops save too.
    stripped = k.models.load_model(tmp_path / "stripped.keras")
    assert max_diff(stripped, relu_reference(k, se_model, model)) <= 1e-5


APPLICATIONS = {
    "EfficientNetB0": (lambda A: A.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10), 65),
    "MobileNetV3Small": (lambda A: A.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10,
                                                      minimalistic=False), 19),
}


@pytest.mark.slow
@pytest.mark.parametrize("app", sorted(APPLICATIONS))
def test_applications_relufy_exactly_and_strip_to_relu(k, app):
    build, n_pea = APPLICATIONS[app]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "weights=None at 32x32" notes from Keras itself.
        model = build(k.applications)
    relufied = pea_keras.relufy(model)
    assert len(pea_keras.pea_layers(relufied)) == n_pea  # Swish and SE gates; hard swish (MobileNetV3).
    x = np.random.default_rng(0).uniform(0.0, 255.0, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(outputs(relufied, x)[0], outputs(model, x)[0], rtol=1e-5, atol=1e-6)
    set_all_alpha(relufied, 1.0)
    stripped = pea_keras.strip(relufied)
    np.testing.assert_allclose(outputs(stripped, x)[0], outputs(relufied, x)[0], rtol=1e-5, atol=1e-6)
    assert not pea_keras.pea_layers(stripped)
    assert not [op for op in getattr(stripped, "operations", stripped.layers) if forms.g_match(op) is not None]
    names = {forms.activation_name(layer) for layer in stripped.layers}
    assert names <= {None, "linear", "relu", "softmax"}
    assert [layer.name for layer in stripped.layers if forms.activation_name(layer) == "softmax"] == [
        stripped.layers[-1].name]


@pytest.mark.slow
def test_relufied_model_fine_tunes_to_relu_and_strips(k):
    """PEAScheduler moves every layer, gates included, from the model's activations to ReLU in a fine-tune."""
    model = se_model(k)
    relufied = pea_keras.relufy(model)
    relufied.compile("adam", ["mse", None])
    y = np.zeros((len(IMAGES), 2), "float32")
    relufied.fit(IMAGES, y, epochs=2, batch_size=2, verbose=0,
                 callbacks=[pea_keras.PEAScheduler(pea_keras.schedules.Linear(0, 3))])
    assert [layer.alpha_value for layer in pea_keras.pea_layers(relufied)] == [1.0] * 4
    stripped = pea_keras.strip(relufied)
    assert max_diff(relufied, stripped) <= 1e-5


def test_a_loaded_model_strips_in_a_fresh_process(k, tmp_path):
    """The stripped gate's ops take names of their own: a fresh process that loads a model with
    Keras' first auto-names ("multiply", "add") relufies and strips it."""
    from fresh import fresh_python

    inputs = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 1, activation="swish")(inputs)
    se = k.layers.Dense(4, activation="sigmoid")(k.layers.GlobalAveragePooling2D()(x))
    x = k.layers.Multiply(name="multiply")([x, k.layers.Reshape((1, 1, 4))(se)])
    x = k.layers.Add(name="add")([x, x])
    k.Model(inputs, k.layers.GlobalAveragePooling2D()(x)).save(tmp_path / "user.keras")
    printed = fresh_python("""
        import sys, pea_keras
        relufied = pea_keras.relufy(pea_keras.load_model(sys.argv[1]))
        pea_keras.set_alpha(relufied, 1.0)
        stripped = pea_keras.strip(relufied)
        print(len(stripped.layers), len(pea_keras.pea_layers(stripped)))
    """, tmp_path / "user.keras")
    assert printed.split()[1] == "0"


@pytest.mark.slow
@pytest.mark.parametrize("k_name", ["keras", "tf_keras"])
@pytest.mark.parametrize("app", ["EfficientNetB0", "MobileNetV3Large", "MobileNetV3Small"])
def test_applications_at_224_px_convert_to_int8_files_that_pass_the_check(app, k_name, tmp_path):
    """At their native size the gates act on 7x7 maps or larger: the relufied, stripped network of
    either flavour's application converts to a full-int8 file that `pea-tflite check --int8
    --allow_gates` passes, every gate named."""
    import importlib

    from fresh import pea_tflite

    from pea_keras.tflite import relu_only_violations

    apps = importlib.import_module(k_name).applications
    build = {"EfficientNetB0": apps.EfficientNetB0,  # MobileNetV3's default input is any size.
             "MobileNetV3Large": functools.partial(apps.MobileNetV3Large, minimalistic=False),
             "MobileNetV3Small": functools.partial(apps.MobileNetV3Small, minimalistic=False)}[app]
    # Logits out: TFLite Micro aborts on an int8 softmax of the huge logits of random weights.
    relufied = pea_keras.relufy(build(input_shape=(224, 224, 3), weights=None, classes=10,
                                      classifier_activation=None))
    set_all_alpha(relufied, 1.0)
    pea_keras.strip(relufied).save(tmp_path / "relu.keras")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 255, (4, 224, 224, 3)).astype("float32"))
    code, out, err = pea_tflite("convert", tmp_path / "relu.keras", "-o", tmp_path / "relu_int8.tflite",
                                "--calib", f"npy:{tmp_path / 'calib.npy'}", "--calib_any_range", "--allow_gates")
    assert code == 0, err[-3000:]
    assert relu_only_violations(str(tmp_path / "relu_int8.tflite"), int8=True, allow_gates=True) == []
    code, out, err = pea_tflite("check", tmp_path / "relu_int8.tflite", "--int8", "--allow_gates")
    gates = out.split("with channel gates at ops ")[1].split(" (--allow_gates)")[0].split(", ")
    assert (code, len(gates)) == (0, {"EfficientNetB0": 16, "MobileNetV3Large": 8, "MobileNetV3Small": 9}[app]), out
