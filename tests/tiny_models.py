"""Tiny models shared by the core tests."""
import numpy as np


def every_relu_model(k, g=None):
    """Two inputs, two outputs, every ReLU form `wrap` handles, a shared layer, a nested model
    and a leaky ReLU. With `g`, the same architecture with `g` in place of every ReLU.
    Returns (model, number of ReLUs that wrap must replace)."""
    L = k.layers

    def relu(**kwargs):
        return L.Activation(g) if g else L.ReLU(**kwargs)

    fused, fused6 = (g, g) if g else ("relu", "relu6")
    image = k.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", activation=fused, name="conv")(image)
    x = relu(max_value=6.0)(x)
    x = L.DepthwiseConv2D(3, padding="same", activation=fused6)(x)
    x = L.SeparableConv2D(4, 3, padding="same", activation=fused)(x)
    x = L.Conv2DTranspose(4, 3, padding="same", activation=fused)(x)
    x = relu(threshold=0.2)(x)
    x = L.BatchNormalization()(x)
    x = (L.Activation(g) if g else L.Activation("relu"))(x)
    shared = L.Conv2D(4, 1, activation=fused, name="shared")
    x = shared(shared(x))
    nested = k.Sequential([k.Input((8, 8, 4)), L.Conv2D(4, 1, activation=fused), relu()], name="nested")
    x = L.GlobalAveragePooling2D()(nested(x))
    sequence = k.Input((6, 4), name="sequence")
    y = L.Conv1D(4, 3, activation=fused)(sequence)
    y = L.ReLU(negative_slope=0.1)(y)  # Leaky: not a ReLU, stays.
    y = L.GlobalAveragePooling1D()(y)
    z = L.Dense(8, activation=fused)(L.Concatenate()([x, y]))
    probs, score = L.Dense(3, activation="softmax", name="probs")(z), L.Dense(1, name="score")(z)
    model = k.Model([image, sequence], [probs, score])
    return model, 12


def every_relu_inputs(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.normal(size=(n, 6, 4)).astype("float32")]


def small_cnn(k, activation="relu", classes=3):
    L = k.layers
    return k.Sequential([
        k.Input((8, 8, 1)),
        L.Conv2D(6, 3, activation=activation),
        L.BatchNormalization(),
        L.ReLU(),
        L.GlobalAveragePooling2D(),
        L.Dense(classes, activation="softmax"),
    ], name="small_cnn")


def small_data(n=64, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32") + y[:, None, None, None]
    return x, y.astype("int32")


def outputs(model, x):
    return [np.asarray(o) for o in _as_list(model(x, training=False))]


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]
