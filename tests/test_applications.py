"""keras.applications models wrapped with the defaults stay finite at every alpha (random weights)."""
import warnings

import numpy as np
import pytest

import pea_keras

# name -> (builder, ReLUs wrap blends: the hard-sigmoid gates of MobileNetV3 are left alone).
APPS = {
    "MobileNetV2": (lambda A: A.MobileNetV2((32, 32, 3), alpha=0.35, weights=None), 35),
    "MobileNetV3Small": (lambda A: A.MobileNetV3Small((32, 32, 3), alpha=0.75, weights=None), 14),
    "MobileNetV3Large": (lambda A: A.MobileNetV3Large((32, 32, 3), alpha=0.75, weights=None), 19),
    "MobileNetV3Large_minimalistic": (
        lambda A: A.MobileNetV3Large((32, 32, 3), alpha=0.75, weights=None, minimalistic=True), 32),
    "ResNet50": (lambda A: A.ResNet50(input_shape=(32, 32, 3), weights=None), 49),
}


@pytest.mark.parametrize("app", sorted(APPS))
def test_wrapped_application_is_finite_at_every_alpha(k, app):
    build, n_relu = APPS[app]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "weights=None at 32x32" notes from Keras itself.
        model = build(k.applications)
    wrapped = pea_keras.wrap(model)
    assert len(pea_keras.pea_layers(wrapped)) == n_relu  # The same in both flavors.
    x = np.random.default_rng(0).uniform(0.0, 255.0, size=(2, 32, 32, 3)).astype("float32")
    for alpha in (0.0, 0.5, 1.0):
        for layer in pea_keras.pea_layers(wrapped):
            layer.set_alpha(alpha)
        y = np.asarray(wrapped(x, training=False))
        assert np.isfinite(y).all(), (app, alpha)
