"""`wrap` and `strip`: the only place that rewrites model graphs.

Both rebuild a Functional or Sequential model layer by layer (nested models, shared
layers, multiple inputs and outputs included), in the flavour of the model passed in,
and copy the original weights; the original model is never modified.
"""
import collections
import warnings

from pea_keras import activations, flavor
from pea_keras.layer import is_pea_layer, layer_class

__all__ = ["wrap", "strip", "pea_layers"]

_RELU_ACTIVATIONS = {"relu": None, "relu6": 6.0}

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
    try:
        model.inputs
    except (AttributeError, ValueError):
        raise ValueError(f"Model {model.name!r} is not built: give it an Input or call it on data first.") from None
    if model.inputs is None:
        raise ValueError(f"Model {model.name!r} is not built: give it an Input or call it on data first.")


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


def _selector(layers):
    if layers is None:
        return lambda layer: True, set()
    if callable(layers):
        return layers, set()
    names = {layers} if isinstance(layers, str) else set(layers)
    return lambda layer: layer.name in names, names


def wrap(model, activation="silu", alpha=0.0, layers=None):
    """A new model in which every ReLU of `model` is a `PEALayer` blending it with `activation`.

    Handles ReLU/ReLU6 layers (any max_value and threshold), `Activation('relu'|'relu6')` and
    layers with a fused `activation='relu'|'relu6'`, which are split into the linear layer
    plus a PEALayer. Leaky ReLUs are left alone (with a warning). The result has the
    original weights and the flavour (Keras 3 or tf_keras) of `model`.

    Args:
        model: a built Functional or Sequential model, Keras 3 or tf_keras.
        activation: the novel activation `g`, a name from `pea_keras.activations` or a callable.
        alpha: initial weight of the ReLU branch (0: start with `g` only).
        layers: optional selection: layer names, or a predicate `layer -> bool`, applied to
            the ReLU layers and to the layers with a fused ReLU.
    """
    activations.get(activation)  # Fail early on an unknown name.
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    selected, names = _selector(layers)
    found, leaky = set(), []
    pea_class = layer_class(flavor.keras_of(model))

    def make_pea(max_value, threshold, origin, name):
        return pea_class(activation, max_value=max_value, threshold=threshold, alpha=alpha,
                         origin=origin, name=name)

    def swap(layer):
        relu = _relu_config(layer)
        fused = _fused_relu(layer)
        if isinstance(layer, flavor.keras_of(layer).layers.ReLU) and relu is None:
            leaky.append(layer.name)
        if (relu is None and fused is None) or not selected(layer):
            return None
        found.add(layer.name)
        if relu is not None:
            origin = {"class_name": type(layer).__name__, "config": _plain(layer.get_config())}
            return _Swap(make_pea(*relu, origin, layer.name))
        config = {**layer.get_config(), "activation": "linear"}
        pea = make_pea(_RELU_ACTIVATIONS[fused], 0.0, {"fused_into": layer.name, "activation": fused},
                       f"{layer.name}_pea")
        return _Swap(type(layer).from_config(config), pea, same_weights=True)

    wrapped = _Rebuilder(swap)(model)
    if leaky:
        warnings.warn(f"Left leaky ReLU layers unchanged (negative_slope != 0 is not a ReLU): {', '.join(leaky)}.",
                      stacklevel=2)
    if names - found:
        raise ValueError(f"layers= names no ReLU of the model: {', '.join(sorted(names - found))}.")
    if not found:
        why = "layers= selected none of them" if layers is not None else "it has none"
        raise ValueError(f"Found no ReLU to wrap in model {model.name!r} ({why}). PEA replaces ReLU, ReLU6, "
                         "Activation('relu') and activation='relu' in Dense/Conv layers; for other "
                         "activations use pea_keras.PEALayer directly in the model code.")
    return wrapped


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
    unfinished = [f"{layer.name} (alpha={float(layer.alpha.numpy()):.4f})" for layer in pea_layers(model)
                  if float(layer.alpha.numpy()) != 1.0]
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
