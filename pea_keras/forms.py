"""Every activation form PEA knows, and where a model computes one: the one table of its verbs.

`wrap` blends the ReLUs found here with a novel g, `relufy` blends every other activation found
here with ReLU, `strip` writes ReLUs back. An activation appears in a graph as a layer (ReLU,
Activation(name), also in a TimeDistributed), fused into a Dense/Conv layer (activation=name),
as a graph operation (keras.ops.silu, tf.nn.relu, ...), as a Lambda of a ReLU function, or as a
product: x * ReLU6(x + 3) / 6 (MobileNetV3's hard swish), x * sigmoid(x), and the gates of
squeeze-excite blocks, features * sigmoid(pooled features).
"""
import collections
import numbers

import keras
import tensorflow as tf
import tf_keras

from pea_keras import flavor
from pea_keras.layer import is_pea_layer

__all__ = ["Form", "Match", "match", "relu_match", "g_match", "activation_name", "products", "hard_sigmoid_gates",
           "is_leaky", "recurrent_relu", "may_hide_relu", "relu_ops_inside", "relu_op_function", "HardSigmoid",
           "with_activation"]

# What an activation computes. g None: a ReLU capped at max_value; else the name of its formula in
# `pea_keras.activations`. gate: a sigmoid-like activation, whose ReLU form is ReLU6(x + 3) / 6.
Form = collections.namedtuple("Form", "g max_value gate", defaults=(None, None, False))
_RELU, _RELU6 = Form(), Form(max_value=6.0)
_SIGMOID, _HARD_SIGMOID = Form("sigmoid", gate=True), Form("hard_sigmoid", gate=True)

# Activation names in either flavor's configs. tf_keras' hard_sigmoid is Keras 2's, clip(0.2 x + 0.5).
_NAMES = {"relu": _RELU, "relu6": _RELU6, "silu": Form("silu"), "swish": Form("silu"), "gelu": Form("gelu"),
          "hard_silu": Form("hard_swish"), "hard_swish": Form("hard_swish"), "mish": Form("mish"),
          "elu": Form("elu"), "selu": Form("selu"), "sigmoid": _SIGMOID, "hard_sigmoid": _HARD_SIGMOID}
_TF_KERAS_NAMES = {**_NAMES, "hard_sigmoid": Form("hard_sigmoid_keras2", gate=True)}
_LEAKY_NAMES = {"leaky_relu"}

# Graph operations: Keras 3's operation classes (keras.ops.*, keras.activations.* on a symbolic
# tensor), tf_keras' TFOpLambda symbols (tf.nn.*, tf_keras.activations.*). Gelu: by `approximate`.
_KERAS3_OPS = {"Relu": ("relu", _RELU), "Relu6": ("relu6", _RELU6), "Silu": ("silu", Form("silu")),
               "HardSilu": ("hard_silu", Form("hard_swish")), "Selu": ("selu", Form("selu")),
               "Sigmoid": ("sigmoid", _SIGMOID), "HardSigmoid": ("hard_sigmoid", _HARD_SIGMOID)}
_TF_KERAS_OPS = {"nn.relu": _RELU, "nn.relu6": _RELU6, "nn.silu": Form("silu"), "nn.selu": Form("selu"),
                 "nn.elu": Form("elu"), "math.sigmoid": _SIGMOID}

# How an activation is computed where a verb can take it over: "layer", "fused" (key: the name
# fused into a Dense/Conv layer), "op" (key: the operation, for `relu_op_function`), "lambda".
Match = collections.namedtuple("Match", "kind max_value threshold key g gate", defaults=(None, None, False))

# Layers that apply their `activation` to their output, so it can move to a layer after them.
# Recurrent layers apply theirs inside the recurrence: it is part of the cell, not an output.
_OUTPUT_ACTIVATION_LAYERS = (
    "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
    "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    "LocallyConnected1D", "LocallyConnected2D")


def _name_form(name, layer):
    table = _TF_KERAS_NAMES if flavor.is_tf_keras(layer) else _NAMES
    return table.get(name) if isinstance(name, str) else None


def _is_model(layer):
    return isinstance(layer, flavor.keras_of(layer).Model)


def _inner(layer):
    """The layer a TimeDistributed applies at every step, else `layer` itself."""
    return layer.layer if isinstance(layer, flavor.keras_of(layer).layers.TimeDistributed) else layer


def activation_name(layer):
    """The activation an Activation layer applies or a Dense/Conv layer fuses (also in a
    TimeDistributed), else None."""
    layer = _inner(layer)
    k = flavor.keras_of(layer)
    classes = tuple(getattr(k.layers, name) for name in _OUTPUT_ACTIVATION_LAYERS if hasattr(k.layers, name))
    if not isinstance(layer, (k.layers.Activation, *classes)):
        return None
    name = layer.get_config().get("activation")
    return name if isinstance(name, str) else None


def _approximate(op, node_args):
    """Whether a GELU operation computes the tanh form."""
    args, kwargs = node_args
    value = kwargs.get("approximate", args[1] if len(args) > 1 else getattr(op, "approximate", False))
    return bool(value)


def _op_form(op):
    """(key, Form, threshold) of an activation graph operation, else None (layers and other ops)."""
    if flavor.is_tf_keras(op):
        symbol = getattr(op, "symbol", None) if type(op).__name__ == "TFOpLambda" else None
        if symbol == "nn.gelu" and op._inbound_nodes:
            gelu = "gelu_tanh" if _approximate(op, flavor.node_arguments(op, op._inbound_nodes[0])) else "gelu"
            return symbol, Form(gelu), 0.0
        return (symbol, _TF_KERAS_OPS[symbol], 0.0) if symbol in _TF_KERAS_OPS else None
    if flavor.is_layer(op) or not type(op).__module__.startswith("keras."):
        return None
    name, module = type(op).__name__, type(op).__module__
    if module.endswith("ops.nn"):
        if name == "Gelu":
            return "gelu", Form("gelu_tanh" if op.approximate else "gelu"), 0.0
        if name == "Elu" and float(op.alpha) == 1.0:
            return "elu", Form("elu"), 0.0
        if name in _KERAS3_OPS:
            key, form = _KERAS3_OPS[name]
            return key, form, 0.0
    if name == "ReLU" and module.endswith("activations.activations") and not float(op.negative_slope or 0.0):
        max_value = None if op.max_value is None else float(op.max_value)
        return "activations.relu", Form(max_value=max_value), float(op.threshold or 0.0)
    return None


def _relu_functions():
    table = {keras.ops.relu: None, keras.ops.relu6: 6.0, keras.activations.relu: None,
             keras.activations.relu6: 6.0, tf.nn.relu: None, tf.nn.relu6: 6.0, tf_keras.activations.relu: None}
    return {id(fn): max_value for fn, max_value in table.items()}


_RELU_FUNCTIONS = _relu_functions()


def _relu_layer(layer):
    """(max_value, threshold) of a ReLU layer without a negative slope (also in a TimeDistributed), else None."""
    layer = _inner(layer)
    if not isinstance(layer, flavor.keras_of(layer).layers.ReLU):
        return None
    config = layer.get_config()
    if float(config.get("negative_slope") or 0.0):
        return None
    max_value = config.get("max_value")
    return (None if max_value is None else float(max_value)), float(config.get("threshold") or 0.0)


def match(layer):
    """The `Match` of a layer or operation computing an activation of the table, else None."""
    op = _op_form(layer)
    if op is not None:
        key, form, threshold = op
        return Match("op", form.max_value, threshold, key, form.g, form.gate)
    if not flavor.is_layer(layer) or _is_model(layer):
        return None
    relu = _relu_layer(layer)
    if relu is not None:
        return Match("layer", *relu)
    name = activation_name(layer)
    form = _name_form(name, layer)
    if form is not None:
        kind = "layer" if isinstance(_inner(layer), flavor.keras_of(layer).layers.Activation) else "fused"
        return Match(kind, form.max_value, 0.0, name if kind == "fused" else None, form.g, form.gate)
    lambda_layer = isinstance(layer, flavor.keras_of(layer).layers.Lambda) and not layer.arguments
    if lambda_layer and id(layer.function) in _RELU_FUNCTIONS:
        return Match("lambda", _RELU_FUNCTIONS[id(layer.function)], 0.0)
    return None


def relu_match(layer):
    """The `Match` of a ReLU that `wrap` can take over, else None."""
    found = match(layer)
    return found if found is not None and found.g is None else None


def g_match(layer):
    """The `Match` of another activation (or gate) that `relufy` can take over, else None."""
    found = match(layer)
    return found if found is not None and found.g is not None else None


def relu_op_function(obj, key, max_value=None, threshold=0.0):
    """The function that puts the ReLU operation `key` (a `Match`'s) into a graph of `obj`'s flavor."""
    if flavor.is_tf_keras(obj):
        return {"nn.relu": tf.nn.relu, "nn.relu6": tf.nn.relu6}[key]
    if key == "activations.relu":
        return lambda x: keras.activations.relu(x, max_value=max_value, threshold=threshold)
    return {"relu": keras.ops.relu, "relu6": keras.ops.relu6}[key]


class HardSigmoid:
    """Puts ReLU6(x + 3) * (1 / 6) into a graph, as MobileNetV3 writes its gates: with a ReLU6
    layer named `name` (so TFLite has a RELU6 op) between two ops."""

    def __init__(self, k, name):
        self.layer = k.layers.ReLU(6.0, name=name)

    def __call__(self, x):
        shifted = x + 3.0
        gate = self.layer(shifted) * (1.0 / 6.0)
        for tensor, suffix in ((shifted, "plus_3"), (gate, "times_1_6")):
            flavor.name_op(tensor, f"{self.layer.name}_{suffix}")
        return gate


def with_activation(layer, activation):
    """A copy of a layer with a fused activation (also in a TimeDistributed) using `activation`."""
    if _inner(layer) is not layer:
        config = {key: value for key, value in layer.get_config().items() if key != "layer"}
        return type(layer)(with_activation(layer.layer, activation), **config)
    return type(layer).from_config({**layer.get_config(), "activation": activation})


def is_leaky(layer):
    """A leaky ReLU: LeakyReLU, ReLU(negative_slope != 0), Activation('leaky_relu') or a fused one."""
    k = flavor.keras_of(layer)
    if not flavor.is_layer(layer) or _is_model(layer):
        return False
    if isinstance(layer, k.layers.LeakyReLU):
        return True
    config = layer.get_config()
    if isinstance(layer, k.layers.ReLU):
        return bool(float(config.get("negative_slope") or 0.0))
    return config.get("activation") in _LEAKY_NAMES


def recurrent_relu(layer):
    """True for a recurrent layer (also in a Bidirectional or TimeDistributed) with a ReLU in its cell."""
    k = flavor.keras_of(layer)
    if not isinstance(_inner(layer), (k.layers.RNN, k.layers.Bidirectional)):
        return False
    for sub in flavor.layer_tree(layer):
        config = sub.get_config()
        if any(_name_form(config.get(key), sub) in (_RELU, _RELU6) for key in ("activation", "recurrent_activation")):
            return True
    return False


def may_hide_relu(layer):
    """A layer whose code wrap does not know: a Lambda, or a class from outside Keras and pea_keras."""
    for sub in flavor.layer_tree(layer):
        if isinstance(sub, flavor.keras_of(sub).layers.Lambda) or is_pea_layer(sub):
            return not is_pea_layer(sub)
        if type(sub).__module__.split(".")[0] not in ("keras", "tf_keras", "pea_keras"):
            return True
    return False


def relu_ops_inside(layer):
    """How many ReLU/ReLU6 ops a call of `layer` runs (traced on TensorFlow; 0 where it cannot be)."""
    return sum(op in ("Relu", "Relu6") for op in flavor.traced_op_types(layer))


def _nodes(model):
    """(operation, args, kwargs) of every node of `model` and of the models nested in it."""
    levels, seen = [model], set()
    while levels:
        level = levels.pop()
        for op in getattr(level, "operations", level.layers):  # Keras 3: layers and ops.
            if id(op) in seen:
                continue
            seen.add(id(op))
            if _is_model(op):
                levels.append(op)
                continue
            for node in op._inbound_nodes:
                yield (op, *flavor.node_arguments(op, node))


def _producer(tensor):
    """(operation, call args, call kwargs) of the node that made a symbolic tensor, else None."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    op, node_index = history[0], history[1]
    return (op, *flavor.node_arguments(op, op._inbound_nodes[node_index]))


def _same(a, b):
    """Whether two symbolic tensors are the same output of the same node."""
    ha, hb = getattr(a, "_keras_history", None), getattr(b, "_keras_history", None)
    return ha is not None and hb is not None and ha[0] is hb[0] and tuple(ha[1:]) == tuple(hb[1:])


def _constants(args, kwargs):
    return [float(a) for a in (*args, *kwargs.values()) if isinstance(a, numbers.Real) and not isinstance(a, bool)]


def _tensors(args, kwargs):
    return [a for a in (*args, *kwargs.values()) if hasattr(a, "_keras_history")]


def _is_add_of_3(producer):
    """x + 3 with a constant 3: tf_keras' TFOpLambda `__operators__.add`, Keras 3's `ops.add`."""
    return producer is not None and flavor.is_add_op(producer[0]) and 3.0 in _constants(*producer[1:])


def _is_sixth(producer):
    """t * (1 / 6) or t / 6 with a constant: the scale after a hard sigmoid's ReLU6."""
    if producer is None:
        return False
    op, args, kwargs = producer
    kind = _product_kind(op)
    constants = _constants(args, kwargs)
    return ((kind == "multiply" and any(abs(c - 1.0 / 6.0) < 1e-7 for c in constants))
            or (kind == "divide" and constants == [6.0]))


def _product_kind(op):
    """"multiply" or "divide" for an elementwise product or quotient written as an op or a Multiply layer."""
    if flavor.is_tf_keras(op):
        symbol = getattr(op, "symbol", None)
        return {"math.multiply": "multiply", "math.truediv": "divide", "math.divide": "divide"}.get(
            symbol, "multiply" if isinstance(op, tf_keras.layers.Multiply) else None)
    if isinstance(op, keras.layers.Multiply):
        return "multiply"
    if flavor.is_layer(op) or not type(op).__module__.endswith("ops.numpy"):
        return None
    return {"Multiply": "multiply", "TrueDivide": "divide", "Divide": "divide"}.get(type(op).__name__)


def _relu6_of_add3(op, args, kwargs):
    """x where a node computes ReLU6(x + 3) with a ReLU6 layer or op, else None."""
    found = relu_match(op)
    if found is None or found.kind == "fused" or (found.max_value, found.threshold) != (6.0, 0.0):
        return None
    tensors = _tensors(args, kwargs)
    added = _producer(tensors[0]) if tensors else None
    return _tensors(*added[1:])[0] if _is_add_of_3(added) else None


def _hard_sigmoid_input(tensor):
    """x where `tensor` is ReLU6(x + 3) / 6 (or * (1 / 6)), else None."""
    scaled = _producer(tensor)
    inner = _tensors(*scaled[1:]) if _is_sixth(scaled) else []
    relu6 = _producer(inner[0]) if len(inner) == 1 else None
    return _relu6_of_add3(*relu6) if relu6 is not None else None


_TF_RESHAPES = ("reshape", "expand_dims")


def _before_reshapes(tensor):
    """The tensor a chain of reshapes (a Reshape layer, keras.ops.reshape / expand_dims, tf.reshape /
    expand_dims) started from: a gate often reaches its product as (batch, 1, 1, channels)."""
    while True:
        producer = _producer(tensor)
        if producer is None:
            return tensor
        op, args, kwargs = producer
        if flavor.is_tf_keras(op):
            reshapes = isinstance(op, tf_keras.layers.Reshape) or getattr(op, "symbol", None) in _TF_RESHAPES
        else:
            reshapes = isinstance(op, keras.layers.Reshape) or (
                not flavor.is_layer(op) and type(op).__name__ in ("Reshape", "ExpandDims"))
        inputs = _tensors(args, kwargs)
        if not reshapes or len(inputs) != 1:
            return tensor
        tensor = inputs[0]


def hard_sigmoid_gates(model):
    """ids of the ReLU6 layers and ops computing hard sigmoids, ReLU6(x + 3) (/ 6 after them).

    MobileNetV3 (tf_keras.applications builds them from ReLU layers) multiplies features by
    these gates; with an unbounded g in their place the products grow block after block
    until they overflow. They are gates, not the network's ReLU nonlinearities.
    """
    return {id(op) for op, args, kwargs in _nodes(model) if _relu6_of_add3(op, args, kwargs) is not None}


# x * gate(x) computes g(x): gate -> g.
_GATED = {"sigmoid": "silu", "hard_sigmoid": "hard_swish"}


def products(model):
    """(activations, gates) of the model's products of two tensors.

    activations: id(product) -> (g, index of x among its operands) for x * ReLU6(x + 3) / 6
    (hard_swish) and x * sigmoid(x) (silu): the product computes g(x).
    gates: ids of the sigmoid-like layers and ops whose output multiplies other features (the
    gates of squeeze-excite and attention blocks).
    """
    found, gates = {}, set()
    for op, args, kwargs in _nodes(model):
        if _product_kind(op) != "multiply":
            continue
        operands = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else _tensors(args, kwargs)
        if len(operands) != 2 or len(_tensors(operands, {})) != 2:
            continue
        for i, operand in enumerate(operands):
            other = operands[1 - i]
            hard_sigmoid_of = _hard_sigmoid_input(operand)
            if hard_sigmoid_of is not None:  # A ReLU6 gate is ReLU already; of x, x * it is hard_swish(x).
                if _same(hard_sigmoid_of, other):
                    found[id(op)] = ("hard_swish", 1 - i)
                continue
            source = _before_reshapes(operand)
            producer = _producer(source)
            gate = g_match(producer[0]) if producer is not None else None
            if gate is None or not gate.gate:
                continue
            inputs = _tensors(*producer[1:]) if gate.kind != "fused" else []
            if source is operand and gate.g in _GATED and inputs and _same(inputs[0], other):
                found[id(op)] = (_GATED[gate.g], 1 - i)
            else:
                gates.add(id(producer[0]))
    return found, gates
