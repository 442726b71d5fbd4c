"""The one place that tells Keras 3 (`keras`) from Keras 2 (`tf_keras`).

TF 2.21 ships both. A model's flavour follows its classes, never `TF_USE_LEGACY_KERAS`,
so both flavours can live in one process. This module also hides the two flavours'
different functional-graph internals behind `replay`.
"""
import keras
import tensorflow as tf
import tf_keras

__all__ = ["keras_of", "is_tf_keras", "is_sequential", "is_functional", "replay", "new_inputs"]


def is_tf_keras(obj):
    """True for tf_keras objects or classes (Keras 2), False for Keras 3 ones."""
    cls = obj if isinstance(obj, type) else type(obj)
    return any(c.__module__.split(".")[0] == "tf_keras" for c in cls.__mro__)


def keras_of(obj):
    """The Keras module (`keras` or `tf_keras`) that `obj` belongs to."""
    return tf_keras if is_tf_keras(obj) else keras


def is_sequential(model):
    return isinstance(model, keras_of(model).Sequential)


def is_functional(model):
    """A graph network (Functional, or a built Sequential in tf_keras) whose nodes can be replayed."""
    if is_tf_keras(model):
        return bool(getattr(model, "_is_graph_network", False))
    return isinstance(model, keras.src.models.functional.Functional)


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
