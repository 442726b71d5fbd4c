"""`wrap`, `strip` and `replace_relu`: the only place that rewrites model graphs.

Both rebuild a Functional or Sequential model layer by layer (nested models, shared
layers, multiple inputs and outputs included), in the flavour of the model passed in,
and copy the original weights; the original model is never modified.
"""
import collections
import logging
import numbers
import warnings

from pea_keras import activations, flavor
from pea_keras.layer import is_pea_layer, layer_class

__all__ = ["wrap", "strip", "replace_relu", "pea_layers"]

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
    return type(layer).from_config(layer.get_config())


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
                swap.core.set_weights(original.get_weights())
        return new_model

    def swap_of(self, layer):
        if id(layer) not in self.swaps:
            if _is_model(layer):
                swap = _Swap(self.rebuild(layer))
            else:
                swap = self.swap(layer) or _Swap(_clone(layer), same_weights=True)
            self.swaps[id(layer)] = (layer, swap)
        return self.swaps[id(layer)][1]

    def rebuild(self, model):
        _check_rebuildable(model)
        k = flavor.keras_of(model)
        inputs = flavor.new_inputs(model)
        if flavor.is_sequential(model):
            layers = [new for layer in model.layers for new in self.swap_of(layer)[:2] if new is not None]
            return k.Sequential([*inputs, *layers], name=model.name)
        packed, outputs = flavor.replay(model, inputs, self.call)
        return k.Model(inputs=packed, outputs=outputs, name=model.name)

    def call(self, layer, *args, **kwargs):
        if not isinstance(layer, flavor.keras_of(layer).layers.Layer):
            return layer(*args, **kwargs)  # A stateless Keras 3 operation, e.g. keras.ops.add.
        core, post, _ = self.swap_of(layer)
        outputs = args[0] if core is None else core(*args, **kwargs)
        return outputs if post is None else post(outputs)


def _relu_config(layer):
    """(max_value, threshold) if `layer` is a ReLU or Activation('relu'/'relu6'), else None."""
    k = flavor.keras_of(layer)
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
    """The name of a ReLU activation fused into `layer` (Dense(activation='relu'), ...), else None."""
    k = flavor.keras_of(layer)
    if isinstance(layer, (k.layers.Activation, k.layers.ReLU)) or _is_model(layer):
        return None
    name = layer.get_config().get("activation")
    return name if isinstance(name, str) and name in _RELU_ACTIVATIONS else None


def _plain(config):
    """The config with numpy scalars (tf_keras' ReLU stores some) as Python numbers, for JSON."""
    return {key: value.tolist() if hasattr(value, "tolist") else value for key, value in config.items()}


def _is_leaky(layer):
    """A leaky ReLU: LeakyReLU, ReLU(negative_slope != 0), Activation('leaky_relu') or a fused one."""
    k = flavor.keras_of(layer)
    if isinstance(layer, k.layers.LeakyReLU):
        return True
    if _is_model(layer):
        return False
    config = layer.get_config()
    if isinstance(layer, k.layers.ReLU):
        return bool(float(config.get("negative_slope") or 0.0))
    return config.get("activation") in _LEAKY_ACTIVATIONS


def _producer(tensor):
    """(operation, call args, call kwargs) of the node that made a symbolic tensor, else None."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    op, node_index = history[0], history[1]
    node = op._inbound_nodes[node_index]
    if flavor.is_tf_keras(op):
        return op, tuple(node.call_args), dict(node.call_kwargs)
    return op, tuple(node.arguments.args), dict(node.arguments.kwargs)


def _is_add_of_3(producer):
    """x + 3 with a constant 3: tf_keras' TFOpLambda `__operators__.add`, Keras 3's `ops.add`."""
    if producer is None:
        return False
    op, args, kwargs = producer
    if flavor.is_tf_keras(op):
        is_add = getattr(op, "symbol", None) in ("__operators__.add", "math.add")
    else:
        is_add = type(op).__name__ == "Add" and not isinstance(op, flavor.keras_of(op).layers.Layer)
    constants = [a for a in (*args, *kwargs.values()) if isinstance(a, numbers.Real)]
    return is_add and any(not isinstance(c, bool) and float(c) == 3.0 for c in constants)


def _gate_relu6s(model):
    """ids of the ReLU6 layers computing hard-sigmoid gates, ReLU6(x + 3) (/ 6 after them).

    MobileNetV3 (tf_keras.applications builds them from ReLU layers) multiplies features by
    these gates; with an unbounded g in their place the products grow block after block
    until they overflow. They are gates, not the network's ReLU nonlinearities.
    """
    gates = set()
    for level in [model, *(layer for layer in _walk(model) if _is_model(layer))]:
        for layer in level.layers:
            if _relu_config(layer) != (6.0, 0.0):
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


def _find_relus(model, selected, include_gates, leaky):
    """swap helper: (relu config, fused name) of a layer to replace, or None; collects leaky names."""
    gates = set() if include_gates else _gate_relu6s(model)
    skipped = []

    def find(layer):
        if _is_leaky(layer):
            leaky.append(layer.name)
            return None
        relu, fused = _relu_config(layer), _fused_relu(layer)
        if (relu is None and fused is None) or not selected(layer):
            return None
        if id(layer) in gates:
            skipped.append(layer.name)
            return None
        return relu, fused

    return find, skipped


def _report_skipped(leaky, gates):
    if leaky:
        warnings.warn(f"Left leaky ReLU layers unchanged (negative_slope != 0 is not a ReLU): "
                      f"{', '.join(leaky)}.", stacklevel=3)
    if gates:
        _log.info("Left %d ReLU6 hard-sigmoid gates (ReLU6(x + 3)) unchanged: %s. Pass include_gates=True "
                  "to replace them too.", len(gates), ", ".join(gates))


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


def wrap(model, activation="silu", alpha=0.0, layers=None, include_gates=False):
    """A new model in which every ReLU of `model` is a `PEALayer` blending it with `activation`.

    Handles ReLU/ReLU6 layers (any max_value and threshold), `Activation('relu'|'relu6')` and
    layers with a fused `activation='relu'|'relu6'`, which are split into the linear layer
    plus a PEALayer. Leaky ReLUs are left alone (with a warning), and so are ReLU6 layers
    that compute hard-sigmoid gates, ReLU6(x + 3) as in MobileNetV3 (logged at INFO level),
    unless `include_gates`. The result has the original weights and the flavour (Keras 3 or
    tf_keras) of `model`.

    Args:
        model: a built Functional or Sequential model, Keras 3 or tf_keras.
        activation: the novel activation `g`, a name from `pea_keras.activations` or a callable
            registered with `register_keras_serializable` (so the model can be loaded).
        alpha: initial weight of the ReLU branch (0: start with `g` only).
        layers: optional selection: layer names, or a predicate `layer -> bool`, applied to
            the ReLU layers and to the layers with a fused ReLU.
        include_gates: also blend the ReLU6 of hard-sigmoid/hard-swish gates.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: an unknown or unsaveable activation, alpha outside [0, 1], a model that
            cannot be rebuilt, or no ReLU to wrap.
    """
    _check_model(model)
    activations.get(activation)  # Fail early on an unknown name.
    _check_activation_saves(activation, flavor.keras_of(model))
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    selected, names = _selector(layers)
    found, leaky = set(), []
    find, gates = _find_relus(model, selected, include_gates, leaky)
    pea_class = layer_class(model)

    def make_pea(max_value, threshold, origin, name):
        return pea_class(activation, max_value=max_value, threshold=threshold, alpha=alpha,
                         origin=origin, name=name)

    def swap(layer):
        match = find(layer)
        if match is None:
            return None
        relu, fused = match
        found.add(layer.name)
        if relu is not None:
            origin = {"class_name": type(layer).__name__, "config": _plain(layer.get_config())}
            return _Swap(make_pea(*relu, origin, layer.name))
        config = {**layer.get_config(), "activation": "linear"}
        pea = make_pea(_RELU_ACTIVATIONS[fused], 0.0, {"fused_into": layer.name, "activation": fused},
                       f"{layer.name}_pea")
        return _Swap(type(layer).from_config(config), pea, same_weights=True)

    wrapped = _Rebuilder(swap)(model)
    _report_skipped(leaky, gates)
    _check_found(model, layers, names, found)
    return wrapped


def _check_found(model, layers, names, found):
    if names - found:
        raise ValueError(f"layers= names no ReLU of the model: {', '.join(sorted(names - found))}.")
    if not found:
        why = "layers= selected none of them" if layers is not None else "it has none"
        raise ValueError(f"Found no ReLU to wrap in model {model.name!r} ({why}). PEA replaces ReLU, ReLU6, "
                         "Activation('relu') and activation='relu' in Dense/Conv layers; for other "
                         "activations use pea_keras.PEALayer directly in the model code.")


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
    activations.get(activation)
    g = activations.get(activation) if flavor.runs_on_tensorflow(model) else activations.get_ops(activation)
    selected, names = _selector(layers)
    found, leaky = set(), []
    find, gates = _find_relus(model, selected, include_gates, leaky)

    def swap(layer):
        match = find(layer)
        if match is None:
            return None
        found.add(layer.name)
        if match[0] is not None:
            return _Swap(k.layers.Activation(g, name=layer.name))
        return _Swap(type(layer).from_config({**layer.get_config(), "activation": g}), same_weights=True)

    replaced = _Rebuilder(swap)(model)
    _report_skipped(leaky, gates)
    _check_found(model, layers, names, found)
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

    Fused activations go back into their Dense/Conv layers, so `strip(wrap(m))` has the
    layer types and configs of `m` and the TFLite converter fuses the ReLU again.
    Raises ValueError if any alpha is not 1 (the novel branch still matters), unless
    `force=True`. A model without PEALayer comes back as a copy.
    """
    _check_model(model)
    unfinished = [f"{layer.name} (alpha={layer.alpha_value:.4f})" for layer in pea_layers(model)
                  if layer.alpha_value != 1.0]
    if unfinished and not force:
        raise ValueError("Cannot strip: these PEALayers still use the novel activation (alpha != 1): "
                         f"{', '.join(unfinished)}. Finish the schedule, or pass force=True to deploy "
                         "the ReLU branch anyway (its accuracy will differ).")
    fused = _fused_targets(model)
    k = flavor.keras_of(model)

    def swap(layer):
        if id(layer) in fused:
            config = {**layer.get_config(), "activation": fused[id(layer)]}
            return _Swap(type(layer).from_config(config), same_weights=True)
        if not is_pea_layer(layer):
            return None
        origin = layer.origin or {}
        if "fused_into" in origin:
            return _Swap(None)
        if "class_name" in origin:
            return _Swap(getattr(k.layers, origin["class_name"]).from_config(origin["config"]))
        return _Swap(k.layers.ReLU(max_value=layer.max_value, threshold=layer.threshold, name=layer.name))

    return _Rebuilder(swap)(model)
