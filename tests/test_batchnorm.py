"""reestimate_batchnorm: the moving statistics become those of the network on the data."""
import numpy as np
import pytest

import pea_keras


def _network(k):
    inputs = k.Input((6, 6, 2))
    h = k.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    h = k.layers.BatchNormalization(name="bn1")(h)
    h = k.layers.ReLU()(h)
    h = k.layers.Conv2D(3, 3, name="conv2")(h)
    h = k.layers.BatchNormalization(name="bn2")(h)
    return k.Model(inputs, k.layers.GlobalAveragePooling2D()(h))


def _batch_variance(k, values):
    """The variance a BatchNormalization layer averages: tf_keras' fused kernel keeps the unbiased
    one (n - 1), Keras 3 the biased one."""
    axes = tuple(range(values.ndim - 1))
    return values.var(axis=axes, ddof=1 if k.__name__ == "tf_keras" else 0)


def test_statistics_are_the_average_over_batches_of_the_network_in_training_mode(k, rng):
    model = _network(k)
    batches = [rng.normal(2.0, 3.0, (16, 6, 6, 2)).astype("float32") for _ in range(5)]
    features = {name: k.Model(model.inputs, model.get_layer(name).input) for name in ("bn1", "bn2")}
    # What each layer sees in training mode (bn1 normalises with the batch's own statistics before bn2).
    seen = {name: [np.asarray(f(x, training=True)) for x in batches] for name, f in features.items()}
    momentum = model.get_layer("bn1").momentum

    used = pea_keras.reestimate_batchnorm(model, batches + batches, batches=5)

    assert used == 5
    for name in ("bn1", "bn2"):
        layer = model.get_layer(name)
        np.testing.assert_allclose(np.asarray(layer.moving_mean),
                                   np.mean([v.mean(axis=(0, 1, 2)) for v in seen[name]], axis=0),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(layer.moving_variance),
                                   np.mean([_batch_variance(k, v) for v in seen[name]], axis=0),
                                   rtol=1e-4, atol=1e-5)
        assert layer.momentum == momentum  # Put back.


def test_weights_are_unchanged_and_tuples_take_their_inputs(k, rng):
    model = _network(k)
    before = [w.copy() for w in model.get_weights()]
    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    pea_keras.reestimate_batchnorm(model, [(x, np.zeros(8))], batches=10)
    names = [w.path if hasattr(w, "path") else w.name for w in model.weights]
    for name, old, new in zip(names, before, model.get_weights()):
        if "moving" not in name:
            np.testing.assert_array_equal(old, new)


def test_a_dataset_that_repeats_stops_after_the_batches_asked_for(k, rng):
    import tensorflow as tf

    model = _network(k)
    x = rng.normal(size=(32, 6, 6, 2)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(32))).batch(8).repeat()
    assert pea_keras.reestimate_batchnorm(model, data, batches=3) == 3


def test_no_batch_is_refused(k):
    with pytest.raises(ValueError, match="holds no batch"):
        pea_keras.reestimate_batchnorm(_network(k), [])
    with pytest.raises(ValueError, match="batches must be >= 1"):
        pea_keras.reestimate_batchnorm(_network(k), [], batches=0)
