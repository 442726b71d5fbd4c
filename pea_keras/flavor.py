"""The one place that tells Keras 3 (`keras`) from Keras 2 (`tf_keras`), and Keras 3's backends.

TF 2.21 ships both. A model's flavour follows its classes, never `TF_USE_LEGACY_KERAS`,
so both flavours can live in one process. Keras 3 runs on TensorFlow, JAX or PyTorch
(`KERAS_BACKEND`); tf_keras always runs on TensorFlow. This module also hides the two
flavours' different functional-graph internals behind `replay`, and builds the twin
classes (one per flavour) of the package's serializable objects with `twin_classes`.
"""
import types

import pea_keras

pea_keras.check_backend_installed()  # Before Keras 3 imports a backend package that is missing.

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from keras.src.models.functional import Functional as _Functional  # noqa: E402

ops = keras.ops  # Keras 3's backend-neutral ops, for the modules that compute on any backend.

__all__ = ["keras_of", "is_tf_keras", "is_sequential", "is_functional", "replay", "new_inputs", "backend_of",
           "runs_on_tensorflow", "twin_classes", "Twins"]


def is_tf_keras(obj):
    """True for tf_keras objects, classes or the `tf_keras` module itself (Keras 2), False for Keras 3."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__.split(".")[0] == "tf_keras"
    cls = obj if isinstance(obj, type) else type(obj)
    return any(c.__module__.split(".")[0] == "tf_keras" for c in cls.__mro__)


def keras_of(obj):
    """The Keras module (`keras` or `tf_keras`) that `obj` (an object, class or module) belongs to."""
    return tf_keras if is_tf_keras(obj) else keras


def backend_of(obj):
    """The backend that computes `obj`: "tensorflow" for tf_keras, else Keras 3's backend."""
    return "tensorflow" if is_tf_keras(obj) else keras.backend.backend()


def runs_on_tensorflow(obj):
    """True where `obj`'s tensors are TensorFlow tensors, so TF-only fast paths apply."""
    return backend_of(obj) == "tensorflow"


class Twins(tuple):
    """(Keras 3 class, tf_keras class) of one concept; `of(x)` picks the one matching `x`'s flavour."""

    def __new__(cls, keras3, tf_keras_):
        return super().__new__(cls, (keras3, tf_keras_))

    def of(self, obj):
        """The twin for `obj`: a model, layer, class, or the module `keras` / `tf_keras`."""
        return self[1] if is_tf_keras(obj) else self[0]


def twin_classes(mixin, base, name, package="pea_keras", register=True, doc=None):
    """Two classes named `name`, `mixin` on `keras.<base>` and on `tf_keras.<base>`.

    Both carry the same class name, so both serialize as "<package>>name" and a file saved by
    either flavour loads in that flavour without `custom_objects`. The shared behaviour lives in
    `mixin` (which must not subclass any Keras class); `base` is a dotted path such as
    "layers.Layer", "losses.Loss" or "callbacks.Callback".

    Returns:
        `Twins(keras3_class, tf_keras_class)`; unpack it or call `.of(model)`.
    """
    classes = []
    for k in (keras, tf_keras):
        parent = k
        for part in base.split("."):
            parent = getattr(parent, part)
        flavour = "Keras 3" if k is keras else "tf_keras"
        namespace = {"__module__": mixin.__module__, "__qualname__": name,
                     "__doc__": (doc or mixin.__doc__ or "").replace("{flavour}", flavour)}
        cls = type(mixin)(name, (mixin, parent), namespace)
        if register:
            k.saving.register_keras_serializable(package=package)(cls)
        classes.append(cls)
    return Twins(*classes)


def is_sequential(model):
    return isinstance(model, keras_of(model).Sequential)


def is_functional(model):
    """A graph network (Functional, or a built Sequential in tf_keras) whose nodes can be replayed."""
    if is_tf_keras(model):
        return bool(getattr(model, "_is_graph_network", False))
    return isinstance(model, _Functional)


def new_inputs(model):
    """Fresh symbolic inputs matching `model`'s, with the same names, shapes and dtypes."""
    k = keras_of(model)
    inputs = []
    for x in model.inputs:
        layer = x._keras_history[0]
        inputs.append(k.Input(batch_shape=tuple(x.shape), dtype=x.dtype, name=layer.name))
    return inputs


def _pack_inputs(model, flat):
    struct = model._nested_inputs if is_tf_keras(model) else model._inputs_struct
    return tf.nest.pack_sequence_as(struct, flat)


class _Reused(list):
    """tf_keras pops a reference tensor once per use; replay may read one any number of times."""

    def pop(self, *args):
        return self[0]


def replay(model, inputs, call):
    """Run `model`'s graph on new symbolic `inputs`, calling `call(layer, *args, **kwargs)`
    at every node instead of the layer itself. Returns (packed inputs, outputs)."""
    if not is_tf_keras(model):
        outputs = model._run_through_graph(inputs, operation_fn=lambda op: op, call_fn=call)
        return _pack_inputs(model, inputs), outputs
    tensors = {str(id(x)): _Reused([y]) for x, y in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(t not in tensors for t in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            outputs = call(node.layer, *args, **kwargs)
            for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[x_id] = _Reused([y])
    outputs = [tensors[str(id(x))][0] for x in model.outputs]
    return _pack_inputs(model, inputs), tf.nest.pack_sequence_as(model._nested_outputs, outputs)
