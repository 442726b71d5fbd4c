"""The one primitive that rewrites model graphs: `Rebuilder`, used by every verb of `surgery`.

It rebuilds a Functional or Sequential model layer by layer (nested models, shared layers,
multiple inputs and outputs included), in the flavor of the model passed in. Every layer it
does not replace is a copy holding what Keras saves of the original (config, variables and
assets, so adapted preprocessing layers keep their state); the original model is never modified.
"""
import collections
import tempfile

from pea_keras import flavor
from pea_keras.errors import first_line
from pea_keras.layer import is_pea_layer

__all__ = ["Rebuilder", "Swap", "OnFirstInput", "OnOperand", "pea_layers", "walk", "is_model", "check_model",
           "selector", "plain"]

# How a layer of the original becomes layers of the rebuilt model: `core` takes its place
# (None: pass the input through), `post` is applied after it, `same_weights` says whether
# `core` takes over the original's weights.
Swap = collections.namedtuple("Swap", "core post same_weights", defaults=(None, False))


def is_model(layer):
    return isinstance(layer, flavor.keras_of(layer).Model)


def walk(model, seen=None):
    """Every layer of `model` and of the models nested in it, each once."""
    seen = set() if seen is None else seen
    for layer in model.layers:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        if is_model(layer):
            yield from walk(layer, seen)


def pea_layers(model):
    """Every PEALayer of `model`, nested models included."""
    return [layer for layer in walk(model) if is_pea_layer(layer)]


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


class Rebuilder:
    """Rebuilds models with `swap(layer) -> Swap | None` deciding each layer's replacement."""

    def __init__(self, swap):
        self.swap = swap
        self.swaps = {}  # id(original layer) -> (original, Swap); shared layers are swapped once.

    def __call__(self, model):
        new_model = self.rebuild(model)
        for original, swap in self.swaps.values():
            if swap.same_weights:
                _copy_state(original, swap.core)
        return new_model

    def swap_of(self, layer):
        if id(layer) not in self.swaps:
            if is_model(layer):
                swap = Swap(self.rebuild(layer))
            elif not flavor.is_layer(layer):  # A stateless Keras 3 operation, e.g. keras.ops.add.
                swap = self.swap(layer) or Swap(layer)
            else:
                swap = self.swap(layer) or Swap(_clone(layer), same_weights=True)
            self.swaps[id(layer)] = (layer, swap)
        return self.swaps[id(layer)][1]

    def rebuild(self, model):
        _check_rebuildable(model)
        k = flavor.keras_of(model)
        inputs = flavor.new_inputs(model)
        if flavor.is_sequential(model):
            layers = [new.layer if isinstance(new, OnFirstInput) else new
                      for layer in model.layers for new in self.swap_of(layer)[:2] if new is not None]
            return k.Sequential([*inputs, *layers], name=model.name)
        packed, outputs = flavor.replay(model, inputs, self.call)
        return k.Model(inputs=packed, outputs=outputs, name=model.name)

    def call(self, layer, *args, **kwargs):
        core, post, _ = self.swap_of(layer)
        outputs = args[0] if core is None else core(*args, **kwargs)
        return outputs if post is None else post(outputs)


def plain(config):
    """The config with numpy scalars (tf_keras' ReLU stores some) as Python numbers, for JSON."""
    if isinstance(config, dict):
        return {key: plain(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [plain(value) for value in config]
    return config.tolist() if hasattr(config, "tolist") else config


def check_model(model):
    k = flavor.keras_of(model)
    if not isinstance(model, k.Model):
        raise TypeError(f"model must be a Keras model (keras.Model or tf_keras.Model), got "
                        f"{type(model).__name__}: {model!r:.60}.")


def selector(layers):
    if layers is None:
        return lambda layer: True, set()
    if callable(layers):
        return layers, set()
    names = {layers} if isinstance(layers, str) else set(layers)
    return lambda layer: layer.name in names, names


class OnFirstInput:
    """An element-wise layer in place of a node: called on the node's tensor only (passed
    positionally or, as in tf.nn.relu(features=h), by name), without the replaced layer's own
    arguments (a TimeDistributed's mask). Sequential rebuilds take the layer itself."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, *args, **kwargs):
        return self.layer(args[0] if args else next(iter(kwargs.values())))


class OnOperand:
    """A layer in place of a product node that computes g(x): called on the operand x only."""

    def __init__(self, layer, index):
        self.layer, self.index = layer, index

    def __call__(self, *args, **kwargs):
        operands = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else [
            a for a in (*args, *kwargs.values()) if hasattr(a, "shape")]
        return self.layer(operands[self.index])

