"""`wrap`, `strip` and `replace_relu`: the only place that rewrites model graphs.

Both rebuild a Functional or Sequential model layer by layer (nested models, shared
layers, multiple inputs and outputs included), in the flavour of the model passed in.
Every layer they do not replace is a copy holding what Keras saves of the original
(config, variables and assets, so adapted preprocessing layers keep their state); the
original model is never modified.
"""
import collections
import logging
import numbers
import tempfile
import warnings

from pea_keras import activations, flavor
from pea_keras.errors import UnfinishedScheduleError, first_line
from pea_keras.layer import is_pea_layer, layer_class

__all__ = ["wrap", "surrogate", "strip", "replace_relu", "pea_layers"]

_RELU_ACTIVATIONS = {"relu": None, "relu6": 6.0}
_LEAKY_ACTIVATIONS = {"leaky_relu"}
_log = logging.getLogger(__name__)

# How a layer of the original becomes layers of the rebuilt model: `core` takes its place
# (None: pass the input through), `post` is applied after it, `same_weights` says whether
# `core` takes over the original's weights.
_Swap = collections.namedtuple("_Swap", "core post same_weights", defaults=(None, False))


def _is_model(layer):
    return isinstance(layer, flavor.keras_of(layer).Model)


def _walk(model, seen=None):
    """Every layer of `model` and of the models nested in it, each once."""
    seen = set() if seen is None else seen
    for layer in model.layers:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        if _is_model(layer):
            yield from _walk(layer, seen)


def pea_layers(model):
    """Every PEALayer of `model`, nested models included."""
    return [layer for layer in _walk(model) if is_pea_layer(layer)]


def _clone(layer):
    """A new layer from `layer`'s config (its state comes later, from `_copy_state`).

    A Lambda is reused as it is: it holds only its function (which both models then call),
    and Keras 3 rebuilds a Python lambda from a config only under unsafe deserialization.
    """
    if isinstance(layer, flavor.keras_of(layer).layers.Lambda):
        return layer
    try:
        return type(layer).from_config(layer.get_config())
    except Exception as e:  # Any layer's from_config may fail its own way: name the layer.
        cause = [line for line in str(e).splitlines() if line.strip()]  # Keras nests the cause last.
        raise ValueError(f"Cannot copy layer {layer.name!r} ({type(layer).__name__}) from its get_config(), so "
                         f"the model cannot be rebuilt: {cause[-1].strip() if cause else first_line(e)}") from None


def _copy_state(source, target):
    """Give `target` (a copy of `source` from its config) what a Keras save keeps of `source`.

    Each layer of its tree (a wrapper's layer, an RNN's cell, ...) passes its variables
    through `save_own_variables`/`load_own_variables` and its assets (a lookup layer's
    vocabulary) through `save_assets`/`load_assets`: more than `get_weights()`, which misses
    an adapted vocabulary, and whose `set_weights` leaves an adapted Keras 3 Normalization
    with the mean and variance of no data.
    """
    if source is target:
        return
    sources, targets = flavor.layer_tree(source), flavor.layer_tree(target)
    if [type(layer) for layer in sources] != [type(layer) for layer in targets]:
        raise ValueError(f"Cannot copy layer {source.name!r} ({type(source).__name__}): the copy made from "
                         "its get_config() has other sublayers than the original.")
    for src, dst in zip(sources, targets):
        store = {}
        src.save_own_variables(store)
        # Copies, not the backend's arrays: JAX's fit donates a model's buffers, which must not
        # delete the original's weights (or another copy's).
        dst.load_own_variables({key: flavor.numpy_copy(value) for key, value in store.items()})
        if getattr(src, "is_adapted", False) and not hasattr(src, "save_assets"):
            flavor.finish_adapted_copy(dst)
        if hasattr(src, "save_assets"):
            with tempfile.TemporaryDirectory() as folder:
                src.save_assets(folder)
                dst.load_assets(folder)


def _check_rebuildable(model):
    if not (flavor.is_sequential(model) or flavor.is_functional(model)):
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is a subclassed model: its graph cannot be "
            "rewritten. Use pea_keras.PEALayer in place of ReLU in its code and pea_keras.PEAScheduler "
            "when training, or rebuild it as a Functional or Sequential model.")
    unbuilt = f"Model {model.name!r} is not built: give it an Input or call it on data first."
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        raise ValueError(unbuilt) from None
    if inputs is None:
        raise ValueError(unbuilt)


class _Rebuilder:
    """Rebuilds models with `swap(layer) -> _Swap | None` deciding each layer's replacement."""

    def __init__(self, swap):
        self.swap = swap
        self.swaps = {}  # id(original layer) -> (original, _Swap); shared layers are swapped once.

    def __call__(self, model):
        new_model = self.rebuild(model)
        for original, swap in self.swaps.values():
            if swap.same_weights:
                _copy_state(original, swap.core)
        return new_model

    def swap_of(self, layer):
        if id(layer) not in self.swaps:
            if _is_model(layer):
                swap = _Swap(self.rebuild(layer))
            elif not flavor.is_layer(layer):  # A stateless Keras 3 operation, e.g. keras.ops.add.
                swap = self.swap(layer) or _Swap(layer)
            else:
                swap = self.swap(layer) or _Swap(_clone(layer), same_weights=True)
            self.swaps[id(layer)] = (layer, swap)
        return self.swaps[id(layer)][1]

    def rebuild(self, model):
        _check_rebuildable(model)
        k = flavor.keras_of(model)
        inputs = flavor.new_inputs(model)
        if flavor.is_sequential(model):
            layers = [new.layer if isinstance(new, _OnFirstInput) else new
                      for layer in model.layers for new in self.swap_of(layer)[:2] if new is not None]
            return k.Sequential([*inputs, *layers], name=model.name)
        packed, outputs = flavor.replay(model, inputs, self.call)
        return k.Model(inputs=packed, outputs=outputs, name=model.name)

    def call(self, layer, *args, **kwargs):
        core, post, _ = self.swap_of(layer)
        outputs = args[0] if core is None else core(*args, **kwargs)
        return outputs if post is None else post(outputs)


# How a ReLU is computed where wrap can take it over: "layer" (ReLU, Activation('relu'), or
# either in a TimeDistributed), "fused" (activation='relu' of a Dense/Conv layer, `key` its
# name), "op" (a graph operation: keras.ops.relu, tf.nn.relu, ..., `key` from flavor.relu_op),
# "lambda" (a Lambda of a ReLU function).
_Match = collections.namedtuple("_Match", "kind max_value threshold key", defaults=(None,))

# Layers that apply their `activation` to their output, so it can move to a layer after them.
# Recurrent layers apply theirs inside the recurrence: it is part of the cell, not an output.
_OUTPUT_ACTIVATION_LAYERS = (
    "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
    "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    "LocallyConnected1D", "LocallyConnected2D")


def _layer_classes(layer, names):
    k = flavor.keras_of(layer)
    return tuple(getattr(k.layers, name) for name in names if hasattr(k.layers, name))


def _inner(layer):
    """The layer a TimeDistributed applies at every step, else `layer` itself."""
    return layer.layer if isinstance(layer, flavor.keras_of(layer).layers.TimeDistributed) else layer


def _relu_config(layer):
    """(max_value, threshold) if `layer` is a ReLU or Activation('relu'/'relu6') (also in a
    TimeDistributed), else None."""
    k = flavor.keras_of(layer)
    layer = _inner(layer)
    if isinstance(layer, k.layers.ReLU):
        config = layer.get_config()
        if float(config.get("negative_slope") or 0.0):
            return None
        max_value = config.get("max_value")
        return (None if max_value is None else float(max_value)), float(config.get("threshold") or 0.0)
    if isinstance(layer, k.layers.Activation):
        name = layer.get_config().get("activation")
        if name in _RELU_ACTIVATIONS:
            return _RELU_ACTIVATIONS[name], 0.0
    return None


def _fused_relu(layer):
    """The name of a ReLU activation fused into `layer` (Dense(activation='relu'), also in a
    TimeDistributed), else None."""
    layer = _inner(layer)
    if not isinstance(layer, _layer_classes(layer, _OUTPUT_ACTIVATION_LAYERS)):
        return None
    name = layer.get_config().get("activation")
    return name if isinstance(name, str) and name in _RELU_ACTIVATIONS else None


def _with_activation(layer, activation):
    """A copy of a layer with a fused activation (also in a TimeDistributed) using `activation`."""
    if _inner(layer) is not layer:
        config = {key: value for key, value in layer.get_config().items() if key != "layer"}
        return type(layer)(_with_activation(layer.layer, activation), **config)
    return type(layer).from_config({**layer.get_config(), "activation": activation})


def _relu_match(layer):
    """The `_Match` of a layer or operation computing a ReLU that wrap can take over, else None."""
    op = flavor.relu_op(layer)
    if op is not None:
        key, max_value, threshold = op
        return _Match("op", max_value, threshold, key)
    if not flavor.is_layer(layer) or _is_model(layer):
        return None
    relu = _relu_config(layer)
    if relu is not None:
        return _Match("layer", *relu)
    fused = _fused_relu(layer)
    if fused is not None:
        return _Match("fused", _RELU_ACTIVATIONS[fused], 0.0, fused)
    if isinstance(layer, flavor.keras_of(layer).layers.Lambda) and not layer.arguments:
        relu = flavor.relu_function(layer.function)
        if relu is not None:
            return _Match("lambda", *relu)
    return None


def _plain(config):
    """The config with numpy scalars (tf_keras' ReLU stores some) as Python numbers, for JSON."""
    if isinstance(config, dict):
        return {key: _plain(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [_plain(value) for value in config]
    return config.tolist() if hasattr(config, "tolist") else config


def _is_leaky(layer):
    """A leaky ReLU: LeakyReLU, ReLU(negative_slope != 0), Activation('leaky_relu') or a fused one."""
    k = flavor.keras_of(layer)
    if not flavor.is_layer(layer) or _is_model(layer):
        return False
    if isinstance(layer, k.layers.LeakyReLU):
        return True
    config = layer.get_config()
    if isinstance(layer, k.layers.ReLU):
        return bool(float(config.get("negative_slope") or 0.0))
    return config.get("activation") in _LEAKY_ACTIVATIONS


def _recurrent_relu(layer):
    """True for a recurrent layer (also in a Bidirectional or TimeDistributed) with a ReLU in its cell."""
    k = flavor.keras_of(layer)
    if not isinstance(_inner(layer), (k.layers.RNN, k.layers.Bidirectional)):
        return False
    for sub in flavor.layer_tree(layer):
        config = sub.get_config()
        if any(config.get(key) in _RELU_ACTIVATIONS for key in ("activation", "recurrent_activation")):
            return True
    return False


def _may_hide_relu(layer):
    """A layer whose code wrap does not know: a Lambda, or a class from outside Keras and pea_keras."""
    for sub in flavor.layer_tree(layer):
        if isinstance(sub, flavor.keras_of(sub).layers.Lambda) or is_pea_layer(sub):
            return not is_pea_layer(sub)
        if type(sub).__module__.split(".")[0] not in ("keras", "tf_keras", "pea_keras"):
            return True
    return False


def _producer(tensor):
    """(operation, call args, call kwargs) of the node that made a symbolic tensor, else None."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    op, node_index = history[0], history[1]
    return (op, *flavor.node_arguments(op, op._inbound_nodes[node_index]))


def _is_add_of_3(producer):
    """x + 3 with a constant 3: tf_keras' TFOpLambda `__operators__.add`, Keras 3's `ops.add`."""
    if producer is None:
        return False
    op, args, kwargs = producer
    is_add = flavor.is_add_op(op)
    constants = [a for a in (*args, *kwargs.values()) if isinstance(a, numbers.Real)]
    return is_add and any(not isinstance(c, bool) and float(c) == 3.0 for c in constants)


def _gate_relu6s(model):
    """ids of the ReLU6 layers and ops computing hard-sigmoid gates, ReLU6(x + 3) (/ 6 after them).

    MobileNetV3 (tf_keras.applications builds them from ReLU layers) multiplies features by
    these gates; with an unbounded g in their place the products grow block after block
    until they overflow. They are gates, not the network's ReLU nonlinearities.
    """
    gates = set()
    for level in [model, *(layer for layer in _walk(model) if _is_model(layer))]:
        for layer in getattr(level, "operations", level.layers):  # Keras 3: layers and ops.
            match = _relu_match(layer)
            if match is None or match.kind == "fused" or (match.max_value, match.threshold) != (6.0, 0.0):
                continue
            for node in layer._inbound_nodes:
                tensors = node.input_tensors
                first = tensors[0] if isinstance(tensors, (list, tuple)) else tensors
                if _is_add_of_3(_producer(first)):
                    gates.add(id(layer))
    return gates


def _check_activation_saves(activation, k):
    """A callable g must survive save/load, or the wrapped model saves but never loads."""
    if isinstance(activation, str) or activations.name_of(activation) is not None:
        return
    try:
        restored = k.saving.deserialize_keras_object(k.saving.serialize_keras_object(activation))
    except Exception:  # Each flavour fails differently (TypeError, ValueError, ...): all mean "not saved".
        restored = None
    if restored is not activation:
        name = getattr(activation, "__name__", repr(activation))
        raise ValueError(
            f"activation={name} cannot be saved and loaded with the model. Register it with "
            f"@{k.__name__}.saving.register_keras_serializable() (a named function, not a lambda), or "
            f"pass a name: {', '.join(activations.names())}.")


class _Notes:
    """What wrap and replace_relu leave alone, reported once per call."""

    def __init__(self):
        self.leaky, self.gates, self.recurrent, self.hidden = [], [], [], []

    def report(self, found):
        if self.leaky:
            warnings.warn(f"Left leaky ReLU layers unchanged (negative_slope != 0 is not a ReLU): "
                          f"{', '.join(self.leaky)}.", stacklevel=3)
        if self.gates:
            _log.info("Left %d ReLU6 hard-sigmoid gates (ReLU6(x + 3)) unchanged: %s. Pass include_gates=True "
                      "to replace them too.", len(self.gates), ", ".join(self.gates))
        if found and self.recurrent:
            warnings.warn(f"Left the ReLU inside recurrent layers unchanged (it acts inside the recurrence, "
                          f"not on the layer's output): {', '.join(self.recurrent)}.", stacklevel=3)
        if found and self.hidden:
            warnings.warn(f"Left ReLU ops unchanged: {self.hidden_text()}; wrap rewrites ReLU layers and the "
                          "graph's ReLU ops, not the code inside other layers.", stacklevel=3)

    def hidden_text(self):
        count = sum(n for _, _, n in self.hidden)
        what = "ReLU ops that are not layers" if count > 1 else "ReLU op that is not a layer"
        where = ", ".join(f"{name} ({f'{n} in ' if n > 1 else 'in '}a {kind})" for name, kind, n in self.hidden)
        return f"found {count} {what}: {where}"


def _find_relus(model, selected, include_gates, notes):
    """swap helper: the `_Match` of a layer or operation to replace, or None; fills `notes`."""
    gates = set() if include_gates else _gate_relu6s(model)

    def find(layer):
        if _is_leaky(layer):
            notes.leaky.append(layer.name)
            return None
        match = _relu_match(layer)
        if match is None:
            if flavor.is_layer(layer) and not _is_model(layer) and _recurrent_relu(layer):
                notes.recurrent.append(layer.name)
            elif flavor.is_layer(layer) and not _is_model(layer) and _may_hide_relu(layer):
                count = flavor.relu_ops_inside(layer)
                if count:
                    notes.hidden.append((layer.name, type(layer).__name__, count))
            return None
        if not selected(layer):
            return None
        if id(layer) in gates:
            notes.gates.append(layer.name)
            return None
        return match

    return find


def _check_model(model):
    k = flavor.keras_of(model)
    if not isinstance(model, k.Model):
        raise TypeError(f"model must be a Keras model (keras.Model or tf_keras.Model), got "
                        f"{type(model).__name__}: {model!r:.60}.")


def _selector(layers):
    if layers is None:
        return lambda layer: True, set()
    if callable(layers):
        return layers, set()
    names = {layers} if isinstance(layers, str) else set(layers)
    return lambda layer: layer.name in names, names


class _OnFirstInput:
    """An element-wise layer in place of a node: called on the node's tensor only (passed
    positionally or, as in tf.nn.relu(features=h), by name), without the replaced layer's own
    arguments (a TimeDistributed's mask). Sequential rebuilds take the layer itself."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, *args, **kwargs):
        return self.layer(args[0] if args else next(iter(kwargs.values())))


def wrap(model, activation="silu", alpha=0.0, layers=None, include_gates=False, trainable_alpha=False):
    """A new model in which every ReLU of `model` is a `PEALayer` blending it with `activation`.

    Handles ReLU/ReLU6 layers (any max_value and threshold), `Activation('relu'|'relu6')`,
    layers with a fused `activation='relu'|'relu6'` (Dense, EinsumDense, Conv layers), which
    are split into the linear layer plus a PEALayer, any of these inside `TimeDistributed`,
    and ReLU operations of the graph: `keras.ops.relu`/`relu6`, `keras.activations.relu`,
    `tf.nn.relu`/`relu6` (tf_keras), and a `Lambda` of one of these functions.
    Left alone: leaky ReLUs (with a warning); the ReLU inside recurrent layers (LSTM, GRU,
    SimpleRNN, ConvLSTM, also in Bidirectional: it acts inside the recurrence, with a
    warning); ReLU ops inside other layers' code (a Lambda doing more, a custom layer: named
    in a warning, found by tracing on TensorFlow); ReLU6 layers that compute hard-sigmoid
    gates, ReLU6(x + 3) as in MobileNetV3 (logged at INFO level), unless `include_gates`.
    Every other layer is copied with what a Keras save keeps of it, so at alpha 1 the result
    computes exactly what `model` computes; it has the flavour (Keras 3 or tf_keras) of `model`.

    Args:
        model: a built Functional or Sequential model, Keras 3 or tf_keras.
        activation: the novel activation `g`, a name from `pea_keras.activations` or a callable
            registered with `register_keras_serializable` (so the model can be loaded).
        alpha: initial weight of the ReLU branch (0: start with `g` only).
        layers: optional selection: layer names, or a predicate `layer -> bool`, applied to
            the ReLU layers and to the layers with a fused ReLU.
        include_gates: also blend the ReLU6 of hard-sigmoid/hard-swish gates.
        trainable_alpha: the learned-ensemble ablation: alpha a trained weight of each layer
            (clipped to [0, 1]) instead of scheduled; such a model strips only with force=True.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: an unknown or unsaveable activation, alpha outside [0, 1], a model that
            cannot be rebuilt (a layer that cannot be copied is named), no ReLU to wrap, or a
            model already wrapped.
    """
    return _wrap(model, activation, alpha, layers, include_gates, trainable_alpha, surrogate=False)


def _wrap(model, activation, alpha, layers, include_gates, trainable_alpha, surrogate):
    _check_model(model)
    activations.get(activation)  # Fail early on an unknown name.
    _check_activation_saves(activation, flavor.keras_of(model))
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    selected, names = _selector(layers)
    found, notes = set(), _Notes()
    find = _find_relus(model, selected, include_gates, notes)
    pea_class = layer_class(model)

    def make_pea(max_value, threshold, origin, name):
        return pea_class(activation, max_value=max_value, threshold=threshold, alpha=alpha,
                         trainable_alpha=trainable_alpha, surrogate=surrogate, origin=origin, name=name)

    def swap(layer):
        match = find(layer)
        if match is None:
            return None
        found.add(layer.name)
        if match.kind == "fused":
            pea = make_pea(match.max_value, 0.0, {"fused_into": layer.name, "activation": match.key},
                           f"{layer.name}_pea")
            return _Swap(_with_activation(layer, "linear"), pea, same_weights=True)
        if match.kind == "layer":
            origin = {"class_name": type(layer).__name__, "config": _plain(layer.get_config())}
        elif match.kind == "op":
            origin = {"op": match.key}
        else:
            origin = {"lambda": getattr(layer.function, "__name__", "relu")}
        return _Swap(_OnFirstInput(make_pea(match.max_value, match.threshold, origin, layer.name)))

    wrapped = _Rebuilder(swap)(model)
    notes.report(found)
    _check_found(model, layers, names, found, notes)
    return wrapped


def surrogate(model, activation="silu", layers=None, include_gates=False):
    """A new model whose ReLUs compute ReLU forward and `activation`'s derivative backward.

    Surrogate gradients (SUGAR, "The Resurrection of the ReLU", arXiv 2505.22074): the network
    is the ReLU network at every step, only its gradient is g's, so there is no schedule and
    nothing extra in the forward pass. The layers are PEALayers at alpha 1 with
    `surrogate=True`: train without `PEAScheduler`, then `strip` gives the ReLU network (the
    same function: strip only restores the original layers). Arguments and errors as for `wrap`;
    `activation` must be a registered name (its closed-form derivative is the gradient).
    """
    if not isinstance(activation, str) and activations.name_of(activation) is None:
        raise ValueError("surrogate needs a registered activation, whose closed-form derivative is the gradient: "
                         f"{', '.join(activations.names())}.")
    return _wrap(model, activation, 1.0, layers, include_gates, trainable_alpha=False, surrogate=True)


def _check_found(model, layers, names, found, notes):
    if names - found:
        raise ValueError(f"layers= names no ReLU of the model: {', '.join(sorted(names - found))}.")
    if found:
        return
    wrapped = [layer.name for layer in pea_layers(model)]
    if wrapped:
        shown = ", ".join(wrapped[:5]) + (", ..." if len(wrapped) > 5 else "")
        raise ValueError(f"Model {model.name!r} is already wrapped: it has {len(wrapped)} PEALayers ({shown}) "
                         "and no ReLU left to wrap. Wrap the original model instead, or strip this one first.")
    if layers is not None:
        why = "layers= selected none of them"
    elif notes.hidden:
        why = f"{notes.hidden_text()}; wrap cannot rewrite the code inside a layer"
    elif notes.recurrent:
        why = (f"its ReLUs are inside recurrent layers, which keep them: {', '.join(notes.recurrent)}")
    else:
        why = "it has none"
    raise ValueError(f"Found no ReLU to wrap in model {model.name!r} ({why}). PEA replaces ReLU, ReLU6, "
                     "Activation('relu'), activation='relu' in Dense/Conv layers and ReLU ops of the graph "
                     "(keras.ops.relu, tf.nn.relu); elsewhere use pea_keras.PEALayer in the model code.")


def replace_relu(model, activation="silu", layers=None, include_gates=False):
    """A new model with `activation` (g) in place of every ReLU that `wrap` would blend.

    The g-only reference network: the same graph and weights with plain activation layers
    (`Activation(g)`, or g fused back into Dense/Conv), no PEALayer, so it trains and runs
    at the speed of any model with that activation. It equals `wrap(model, activation)` at
    alpha = 0. ReLU6 caps and thresholds are dropped with the ReLU (g replaces it whole).

    Args:
        model, activation, layers, include_gates: as for `wrap`.

    Returns:
        A model of `model`'s flavour with the original weights.

    Raises:
        TypeError, ValueError: as for `wrap`.
    """
    _check_model(model)
    k = flavor.keras_of(model)
    g = activations.get(activation, activations.TF if flavor.runs_on_tensorflow(model) else activations.OPS).g
    selected, names = _selector(layers)
    found, notes = set(), _Notes()
    find = _find_relus(model, selected, include_gates, notes)

    def swap(layer):
        match = find(layer)
        if match is None:
            return None
        found.add(layer.name)
        if match.kind == "fused":
            return _Swap(_with_activation(layer, g), same_weights=True)
        return _Swap(_OnFirstInput(k.layers.Activation(g, name=layer.name)))

    replaced = _Rebuilder(swap)(model)
    notes.report(found)
    _check_found(model, layers, names, found, notes)
    return replaced


def _fused_targets(model):
    """id(layer) -> activation name for layers whose fused ReLU a PEALayer took out."""
    targets = {}
    for level in [model, *(layer for layer in _walk(model) if _is_model(layer))]:
        by_name = {layer.name: layer for layer in level.layers}
        for layer in level.layers:
            origin = getattr(layer, "origin", None) if is_pea_layer(layer) else None
            if origin and "fused_into" in origin and origin["fused_into"] in by_name:
                targets[id(by_name[origin["fused_into"]])] = origin["activation"]
    return targets


def strip(model, force=False):
    """A new plain-ReLU model with the same weights: every PEALayer becomes the ReLU it replaced.

    Fused activations go back into their Dense/Conv layers and ReLU ops back into the graph,
    so `strip(wrap(m))` has the layer types and configs of `m` (a Lambda of a ReLU function
    comes back as a ReLU layer) and the TFLite converter fuses the ReLU again.
    Raises `pea_keras.errors.UnfinishedScheduleError` (a ValueError) if any alpha is not 1
    (the novel branch still matters), unless `force=True`. A model without PEALayer comes
    back as a copy.
    """
    _check_model(model)
    unfinished = [f"{layer.name} (alpha={layer.alpha_value:.4f})" for layer in pea_layers(model)
                  if layer.alpha_value != 1.0]
    if unfinished and not force:
        raise UnfinishedScheduleError(unfinished, "Finish the schedule, or pass force=True to deploy the ReLU "
                                                  "branch anyway (its accuracy will differ).")
    fused = _fused_targets(model)
    k = flavor.keras_of(model)

    def swap(layer):
        if id(layer) in fused:
            return _Swap(_with_activation(layer, fused[id(layer)]), same_weights=True)
        if not is_pea_layer(layer):
            return None
        origin = layer.origin or {}
        if "fused_into" in origin:
            return _Swap(None)
        if "class_name" in origin:
            return _Swap(getattr(k.layers, origin["class_name"]).from_config(origin["config"]))
        if "op" in origin:
            return _Swap(flavor.relu_op_function(model, origin["op"], layer.max_value, layer.threshold))
        return _Swap(k.layers.ReLU(max_value=layer.max_value, threshold=layer.threshold, name=layer.name))

    return _Rebuilder(swap)(model)
