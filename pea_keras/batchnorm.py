"""`reestimate_batchnorm`: batch-normalisation statistics of the network a model now computes.

A BatchNormalization layer's moving mean and variance describe the activations it saw while
training. After `strip` they are the statistics of the blend (or of g, after `relufy`), not of the
ReLU network that is deployed: every layer after the first changed activation normalises with
slightly wrong figures. Recomputing them on training data, with forward passes in training mode
and a cumulative average in place of the moving one, is the standard repair after an architecture
change (as PyTorch's `swa_utils.update_bn` does); it trains no weight.
"""


from pea_keras import flavor

__all__ = ["reestimate_batchnorm"]


def batchnorm_layers(model):
    """Every BatchNormalization layer of `model` (nested models and wrappers included), each once."""
    k = flavor.keras_of(model)
    seen, found = set(), []
    for layer in flavor.layer_tree(model):
        if isinstance(layer, k.layers.BatchNormalization) and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


def _inputs_of(batch):
    """The model inputs of a batch: `x` of an `(x, y)` or `(x, y, weights)` tuple, else the batch."""
    return batch[0] if isinstance(batch, tuple) else batch


def reestimate_batchnorm(model, data, batches=100):
    """Sets every BatchNormalization layer's moving mean and variance of `model` to their average
    over `batches` batches of `data`, computed with the model as it now is; returns how many
    batches were used.

    Each batch runs the model forward in training mode (so each layer normalises with the batch's
    own statistics, as in training) with the layers' momentum set so that the moving statistics
    become the running average of all batches so far; weights are not changed and the momentum
    is put back. Use training data (augmented as in training, or not: both are standard).

    Args:
        model: a Keras model (either flavor, any Keras 3 backend).
        data: an iterable of batches (`tf.data.Dataset`, a generator, a list of arrays), each an
            input array or an `(x, y)` tuple; a dataset that repeats forever is fine.
        batches: the most batches to use (a few hundred images suffice for compact networks).

    Raises:
        ValueError: `batches` below 1, or `data` holds no batch.
    """
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}.")
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    if hasattr(data, "as_numpy_iterator"):  # tf.data: arrays every backend takes.
        data = data.as_numpy_iterator()
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for batch in data:
            used += 1
            for layer in layers:  # The n-th batch weighs 1/n: a cumulative average.
                layer.momentum = 1.0 - 1.0 / used
            model(_inputs_of(batch), training=True)
            if used == batches:
                break
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if not used:
        raise ValueError("data holds no batch to re-estimate the batch-normalisation statistics on.")
    return used

