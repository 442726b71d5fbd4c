"""The one place that tells Keras 3 (`keras`) from Keras 2 (`tf_keras`), and Keras 3's backends.

TF 2.21 ships both. A model's flavor follows its classes, never `TF_USE_LEGACY_KERAS`,
so both flavors can live in one process. Keras 3 runs on TensorFlow, JAX or PyTorch
(`KERAS_BACKEND`); tf_keras always runs on TensorFlow. This module also hides the two
flavors' different functional-graph internals behind `replay`, and builds the twin
classes (one per flavor) of the package's serializable objects with `twin_classes`.
"""
import types

import numpy as np

import pea_keras

pea_keras.check_backend_installed()  # Before Keras 3 imports a backend package that is missing.

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from keras.src.models.functional import Functional as _Functional  # noqa: E402
from tf_keras.src.engine.keras_tensor import KerasTensor as _TFKerasTensor  # noqa: E402

ops = keras.ops  # Keras 3's backend-neutral ops, for the modules that compute on any backend.

__all__ = ["keras_of", "is_tf_keras", "is_sequential", "is_functional", "replay", "new_inputs", "backend_of",
           "runs_on_tensorflow", "twin_classes", "Twins", "is_layer", "layer_tree", "node_arguments", "is_add_op",
           "traced_op_types", "finish_adapted_copy", "in_saved_model_trace"]


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
    """(Keras 3 class, tf_keras class) of one concept; `of(x)` picks the one matching `x`'s flavor."""

    def __new__(cls, keras3, tf_keras_):
        return super().__new__(cls, (keras3, tf_keras_))

    def of(self, obj):
        """The twin for `obj`: a model, layer, class, or the module `keras` / `tf_keras`."""
        return self[1] if is_tf_keras(obj) else self[0]


def optimizer_step(model):
    """The optimizer's step of a model in `fit`. Under JAX, fit keeps the live values in the
    trainer's state while the model's variables are emptied: the step is read from there instead
    of syncing every variable each batch."""
    state = getattr(model, "_jax_state", None)
    if state and not getattr(model, "_jax_state_synced", True) and state.get("optimizer_variables"):
        iterations = model.optimizer.iterations
        index = next((i for i, v in enumerate(model.optimizer.variables) if v is iterations), None)
        if index is not None:
            return int(np.asarray(state["optimizer_variables"][index]))
        model.jax_state_sync()
    return int(model.optimizer.iterations.numpy())


def sync_trainer_state(model):
    """Puts a JAX `fit`'s trainer state back into the model's variables (no-op elsewhere), so a
    variable assigned now is what the next step reads."""
    if getattr(model, "_jax_state", None) is not None and hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


def twin_classes(mixin, base, name, package="pea_keras", register=True, doc=None):
    """Two classes named `name`, `mixin` on `keras.<base>` and on `tf_keras.<base>`.

    Both carry the same class name, so both serialize as "<package>>name" and a file saved by
    either flavor loads in that flavor without `custom_objects`. The shared behaviour lives in
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
        flavor = "Keras 3" if k is keras else "tf_keras"
        namespace = {"__module__": mixin.__module__, "__qualname__": name,
                     "__doc__": (doc or mixin.__doc__ or "").replace("{flavor}", flavor)}
        cls = type(mixin)(name, (mixin, parent), namespace)
        if register:
            k.saving.register_keras_serializable(package=package)(cls)
        classes.append(cls)
    return Twins(*classes)


def numpy_copy(value):
    """A variable's value as a numpy array of its own, on any backend. Through each framework's
    own `.numpy()`: numpy 2 warns about the `__array__` of TensorFlow and PyTorch tensors."""
    if isinstance(value, keras.Variable):
        value = value.value  # The backend's tensor.
    if hasattr(value, "detach"):  # PyTorch
        value = value.detach().cpu()
    if hasattr(value, "numpy"):  # TensorFlow, PyTorch
        value = value.numpy()
    return np.array(value, copy=True)


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


def name_op(tensor, name):
    """Names the Keras 3 operation that made the symbolic `tensor`: `x + 3` takes Keras' next
    auto-name ("add"), which a model loaded in this process may already use. (tf_keras makes its
    op layers' names unique itself.)"""
    operation = getattr(getattr(tensor, "_keras_history", None), "operation", None)
    if operation is not None and not is_layer(operation):
        operation.name = name


def is_layer(obj):
    """True for a layer of either flavor; False for a Keras 3 operation such as `keras.ops.relu`."""
    return isinstance(obj, keras_of(obj).layers.Layer)


def layer_tree(layer):
    """`layer` and every layer inside it (a wrapper's layer, an RNN's cell, ...), in a fixed order."""
    return list(layer._flatten_layers(include_self=True, recursive=True))


def is_add_op(op):
    """Whether a node's operation is `x + y` written as an op, not an `Add` layer: tf_keras'
    TFOpLambda `__operators__.add` / `math.add`, Keras 3's `ops.add` operation."""
    if is_tf_keras(op):
        return getattr(op, "symbol", None) in ("__operators__.add", "math.add")
    return type(op).__name__ == "Add" and not isinstance(op, keras_of(op).layers.Layer)


def node_arguments(layer, node):
    """(args, kwargs) a graph node called `layer` (a layer or a Keras 3 operation) with."""
    if is_tf_keras(layer):
        return tuple(node.call_args), dict(node.call_kwargs)
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


def traced_op_types(layer):
    """The TensorFlow op types ("Relu", "MatMul", ...) a call of `layer` runs: its first call in
    the model, traced. Empty where it cannot be traced (Keras 3 on JAX or PyTorch, an unbuilt layer)."""
    if not runs_on_tensorflow(layer) or not layer._inbound_nodes:
        return []
    args, kwargs = node_arguments(layer, layer._inbound_nodes[0])
    symbolic = _TFKerasTensor if is_tf_keras(layer) else keras.KerasTensor

    def spec(x):
        return tf.TensorSpec(x.shape, x.dtype) if isinstance(x, symbolic) else x

    try:
        specs = tf.nest.map_structure(spec, (args, kwargs))
        graph = tf.function(lambda a, kw: layer(*a, **kw)).get_concrete_function(*specs).graph
    except Exception:  # Tracing is a best-effort look inside: anything failing means "cannot tell".
        return []
    graph_def = graph.as_graph_def()
    return [node.op for node in (*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def))]


def finish_adapted_copy(layer):
    """Derive an adapted tf_keras preprocessing layer's state from its loaded variables, as
    `adapt` does (Discretization's bins come from its summary only there), and mark it adapted."""
    layer.finalize_state()
    layer._is_adapted = True


def in_saved_model_trace(layer):
    """True while tf_keras traces `layer` to write a SavedModel (it traces training=True too)."""
    if not is_tf_keras(layer):
        return False
    from tf_keras.src.engine import base_layer_utils

    return bool(base_layer_utils.call_context().saving)
