"""pea_keras.training.tasks.classification.archs: every --arch builds flat, random, ReLU-only, in both flavors."""
import numpy as np
import pytest

import pea_keras
from pea_keras.errors import SettingError
from pea_keras.training.tasks.classification import archs

SMALL = {"mobilenet_v1": 0.25, "mobilenet_v2": 0.35, "mobilenet_v3_small": 0.5, "tiny": 1.0}


# Each flavor builds every architecture the same way; one flavor each keeps the suite quick.
@pytest.mark.parametrize("flavor,name", [
    ("keras", "mobilenet_v2"), ("keras", "mobilenet_v3_small"), ("keras", "tiny"),
    ("tf_keras", "mobilenet_v1"), ("tf_keras", "mobilenet_v2"), ("tf_keras", "tiny")])
def test_arch_builds_and_wraps(flavor, name):
    import importlib

    k = importlib.import_module(flavor)
    model = archs.build(name, k, (32, 32, 1), 10, width=SMALL[name], bn_momentum=0.8)
    assert not [layer for layer in model.layers if isinstance(layer, k.Model)]  # Flat graph.
    assert {layer.momentum for layer in model.layers
            if isinstance(layer, k.layers.BatchNormalization)} == {0.8}
    x = np.random.default_rng(0).random((2, 32, 32, 1), np.float32)
    assert model(x).shape == (2, 10)
    relus = [layer for layer in model.layers if isinstance(layer, k.layers.ReLU)
             or isinstance(layer, k.layers.Activation) and layer.get_config()["activation"] == "relu"]
    wrapped = pea_keras.wrap(model, alpha=1.0)  # Every ReLU replaced; at alpha 1 the same network.
    assert len(pea_keras.pea_layers(wrapped)) == len(relus) > 0
    np.testing.assert_array_equal(np.asarray(wrapped(x)), np.asarray(model(x)))


def test_every_name_is_offered():
    assert {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "resnet18", "resnet50", "tiny"} <= set(archs.names())


def test_resnet18_small_input():
    import keras

    model = archs.build("resnet18", keras, (32, 32, 3), 5, width=0.25)
    assert model.output_shape == (None, 5)


def test_bad_arch_arguments():
    import keras

    with pytest.raises(SettingError, match="arch must be one of .*, got 'vgg'"):
        archs.build("vgg", keras, (32, 32, 1), 10)
    with pytest.raises(SettingError, match="image_size must be >= 32 for mobilenet_v2, got 16"):
        archs.build("mobilenet_v2", keras, (16, 16, 1), 10)
    with pytest.raises(SettingError, match=r"width must be one of \(0.35, .*\) for mobilenet_v2, got 0.3"):
        archs.build("mobilenet_v2", keras, (32, 32, 1), 10, width=0.3)
