"""The verbs that rewrite model graphs: `wrap`, `surrogate`, `replace_relu`, `relufy`, `strip`.

Each finds activations with `forms` (the one table of activation forms) and rebuilds the model
with `rebuild.Rebuilder`, in the flavor of the model passed in; the original is never modified.
"""
import logging
import warnings

from pea_keras import activations, flavor, forms, rebuild
from pea_keras.errors import UnfinishedScheduleError
from pea_keras.layer import check_relu_gradient, is_pea_layer, layer_class
from pea_keras.rebuild import OnFirstInput, OnOperand, Rebuilder, Swap, check_model, is_model, pea_layers, selector

__all__ = ["wrap", "surrogate", "strip", "replace_relu", "relufy", "pea_layers"]

_log = logging.getLogger(__name__)


def _check_activation_saves(activation, k):
    """A callable g must survive save/load, or the wrapped model saves but never loads."""
    if isinstance(activation, str) or activations.name_of(activation) is not None:
        return
    try:
        restored = k.saving.deserialize_keras_object(k.saving.serialize_keras_object(activation))
    except Exception:  # Each flavor fails differently (TypeError, ValueError, ...): all mean "not saved".
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
    """swap helper: the `forms.Match` of a layer or operation to replace, or None; fills `notes`."""
    gates = set() if include_gates else forms.hard_sigmoid_gates(model)

    def find(layer):
        if forms.is_leaky(layer):
            notes.leaky.append(layer.name)
            return None
        match = forms.relu_match(layer)
        if match is None:
            if flavor.is_layer(layer) and not is_model(layer) and forms.recurrent_relu(layer):
                notes.recurrent.append(layer.name)
            elif flavor.is_layer(layer) and not is_model(layer) and forms.may_hide_relu(layer):
                count = forms.relu_ops_inside(layer)
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


def wrap(model, activation="silu", alpha=0.0, layers=None, include_gates=False, trainable_alpha=False,
         relu_gradient="relu"):
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
    computes exactly what `model` computes; it has the flavor (Keras 3 or tf_keras) of `model`.

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
        relu_gradient: "g" gives the ReLU branch g's derivative as its gradient (see `PEALayer`):
            PEA while alpha < 1, the surrogate (`surrogate`) at alpha 1; needs a registered activation.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: an unknown or unsaveable activation, alpha outside [0, 1], a model that
            cannot be rebuilt (a layer that cannot be copied is named), no ReLU to wrap, or a
            model already wrapped.
    """
    return _wrap(model, activation, alpha, layers, include_gates, trainable_alpha, False, relu_gradient)


def _wrap(model, activation, alpha, layers, include_gates, trainable_alpha, surrogate, relu_gradient="relu"):
    check_model(model)
    activations.get(activation)  # Fail early on an unknown name.
    check_relu_gradient(relu_gradient)
    _check_activation_saves(activation, flavor.keras_of(model))
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    pea_class = layer_class(model)

    def make_pea(max_value, threshold, origin, name):
        return pea_class(activation, max_value=max_value, threshold=threshold, alpha=alpha,
                         trainable_alpha=trainable_alpha, surrogate=surrogate, origin=origin, name=name,
                         relu_gradient=relu_gradient)

    def replace(layer, match):
        if match.kind == "fused":
            pea = make_pea(match.max_value, 0.0, {"fused_into": layer.name, "activation": match.key},
                           f"{layer.name}_pea")
            return Swap(forms.with_activation(layer, "linear"), pea, same_weights=True)
        if match.kind == "layer":
            origin = {"class_name": type(layer).__name__, "config": rebuild.plain(layer.get_config())}
        elif match.kind == "op":
            origin = {"op": match.key}
        else:
            origin = {"lambda": getattr(layer.function, "__name__", "relu")}
        return Swap(OnFirstInput(make_pea(match.max_value, match.threshold, origin, layer.name)))

    return _swap_relus(model, layers, include_gates, replace)


def _swap_relus(model, layers, include_gates, replace):
    """`model` rebuilt with `replace(layer, match)` for every ReLU `wrap` takes (of `layers`);
    what was left is logged, a selection that found nothing raises."""
    selected, names = selector(layers)
    found, notes = set(), _Notes()
    find = _find_relus(model, selected, include_gates, notes)

    def swap(layer):
        match = find(layer)
        if match is None:
            return None
        found.add(layer.name)
        return replace(layer, match)

    rebuilt = Rebuilder(swap)(model)
    notes.report(found)
    _check_found(model, layers, names, found, notes)
    return rebuilt


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
        A model of `model`'s flavor with the original weights.

    Raises:
        TypeError, ValueError: as for `wrap`.
    """
    check_model(model)
    k = flavor.keras_of(model)
    g = activations.get(activation, activations.TF if flavor.runs_on_tensorflow(model) else activations.OPS).g

    def replace(layer, match):
        if match.kind == "fused":
            return Swap(forms.with_activation(layer, g), same_weights=True)
        return Swap(OnFirstInput(k.layers.Activation(g, name=layer.name)))

    return _swap_relus(model, layers, include_gates, replace)


def _fused_targets(model):
    """id(layer) -> activation name for layers whose fused ReLU a PEALayer took out."""
    targets = {}
    for level in [model, *(layer for layer in rebuild.walk(model) if is_model(layer))]:
        by_name = {layer.name: layer for layer in level.layers}
        for layer in level.layers:
            origin = getattr(layer, "origin", None) if is_pea_layer(layer) else None
            if origin and "fused_into" in origin and origin["fused_into"] in by_name:
                targets[id(by_name[origin["fused_into"]])] = origin["activation"]
    return targets


def strip(model, force=False):
    """A new plain-ReLU model with the same weights: every PEALayer becomes its ReLU branch.

    Fused activations go back into their Dense/Conv layers and ReLU ops back into the graph,
    so `strip(wrap(m))` has the layer types and configs of `m` (a Lambda of a ReLU function
    comes back as a ReLU layer) and the TFLite converter fuses the ReLU again. Of a relufied
    model, every activation becomes a ReLU (fused ones `activation='relu'`) and every gate
    ReLU6(x + 3) * (1 / 6) with a ReLU6 layer, never the original activation.
    Raises `pea_keras.errors.UnfinishedScheduleError` (a ValueError) if any alpha is not 1
    (the novel branch still matters), unless `force=True`. A model without PEALayer comes
    back as a copy.
    """
    check_model(model)
    unfinished = [f"{layer.name} (alpha={layer.alpha_value:.4f})" for layer in pea_layers(model)
                  if layer.alpha_value != 1.0]
    if unfinished and not force:
        raise UnfinishedScheduleError(unfinished, "Finish the schedule, or pass force=True to deploy the ReLU "
                                                  "branch anyway (its accuracy will differ).")
    fused = _fused_targets(model)
    k = flavor.keras_of(model)

    def swap(layer):
        if id(layer) in fused:
            return Swap(forms.with_activation(layer, fused[id(layer)]), same_weights=True)
        if not is_pea_layer(layer):
            return None
        origin = layer.origin or {}
        if layer.gate:
            return Swap(OnFirstInput(forms.HardSigmoid(k, layer.name)))
        if "fused_into" in origin:
            return Swap(None)
        if "class_name" in origin:
            return Swap(getattr(k.layers, origin["class_name"]).from_config(origin["config"]))
        if "op" in origin:
            return Swap(forms.relu_op_function(model, origin["op"], layer.max_value, layer.threshold))
        return Swap(k.layers.ReLU(max_value=layer.max_value, threshold=layer.threshold, name=layer.name))

    return Rebuilder(swap)(model)


def relufy(model, layers=None, gates=True, relu_gradient="relu"):
    """A new model computing what `model` computes, in which PEA can hand every activation over to ReLU.

    Every activation of a form in `pea_keras.forms` that is not a ReLU becomes a `PEALayer` at
    alpha 0 whose g is that activation: silu/swish, gelu (exact and tanh), hard_swish/hard_silu,
    mish, elu and selu as `Activation` layers, fused into Dense/Conv layers, as graph operations
    (keras.ops.silu, tf.nn.gelu, ...) or written as x * ReLU6(x + 3) / 6 (MobileNetV3) or
    x * sigmoid(x). With `gates`, the sigmoid and hard-sigmoid gates whose output multiplies
    other features (squeeze-excite blocks) become gate PEALayers, whose ReLU branch is
    ReLU6(x + 3) / 6. Train with `PEAScheduler`, then `strip` gives the ReLU network. Left alone,
    and named in one INFO log: activations that are outputs of the model, sigmoids that are not
    gates, and every activation PEA cannot blend (softmax, tanh, ...).

    Args:
        model: a built Functional or Sequential model, Keras 3 or tf_keras.
        layers: optional selection: layer names, or a predicate `layer -> bool`.
        gates: also hand sigmoid gates over to hard sigmoids.
        relu_gradient: "g" gives the ReLU branch of every PEALayer but the gates g's derivative as its
            gradient (see `PEALayer`); gates keep the hard sigmoid's.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: a model that cannot be rebuilt, `layers=` naming no such activation, or no
            activation to hand over.
    """
    check_model(model)
    check_relu_gradient(relu_gradient)
    selected, names = selector(layers)
    pea_class, k = layer_class(model), flavor.keras_of(model)
    products, gate_ids = forms.products(model)
    outputs = {id(getattr(x, "_keras_history", [None])[0]) for x in model.outputs}
    found, left = set(), []

    def make_pea(g, name, gate=False, origin=None):
        relu = {"class_name": "ReLU", "config": rebuild.plain(k.layers.ReLU(name=name).get_config())}
        return pea_class(g, alpha=0.0, gate=gate, origin=origin or relu, name=name,
                         relu_gradient="relu" if gate else relu_gradient)

    def swap(layer):
        if id(layer) in products and selected(layer):
            found.add(layer.name)
            g, index = products[id(layer)]
            return Swap(OnOperand(make_pea(g, layer.name), index))
        match = forms.g_match(layer)
        if match is None:
            name = forms.activation_name(layer) if flavor.is_layer(layer) else None
            if name not in (None, "linear") and forms.relu_match(layer) is None and not forms.is_leaky(layer):
                left.append(f"{layer.name} ({name})")
            return None
        if not selected(layer):
            return None
        if id(layer) in outputs or (match.gate and (not gates or id(layer) not in gate_ids)):
            why = ("a model output" if id(layer) in outputs else "not a gate" if id(layer) not in gate_ids
                   else "gates=False")
            left.append(f"{layer.name} ({match.key or match.g}, {why})")
            return None
        found.add(layer.name)
        if match.kind == "fused":
            origin = {"fused_into": layer.name, "activation": "linear" if match.gate else "relu"}
            pea = make_pea(match.g, f"{layer.name}_pea", match.gate, origin)
            return Swap(forms.with_activation(layer, "linear"), pea, same_weights=True)
        return Swap(OnFirstInput(make_pea(match.g, layer.name, match.gate, {"gate": match.g} if match.gate else None)))

    relufied = Rebuilder(swap)(model)
    if left:
        _log.info("relufy left %d activations unchanged: %s.", len(left), ", ".join(left))
    if names - found:
        raise ValueError(f"layers= names no activation relufy can hand over: {', '.join(sorted(names - found))}.")
    if not found:
        raise ValueError(f"Found no activation to hand over to ReLU in model {model.name!r}. relufy takes "
                         "silu/swish, gelu, hard_swish, mish, elu, selu and sigmoid gates; a ReLU model needs "
                         "none (use pea_keras.wrap to train it with a novel activation).")
    return relufied
