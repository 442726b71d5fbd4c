"""Every public layer class of both flavors survives wrap -> alpha 1 -> strip unchanged.

One tiny model per class: the layer under test on its own input (adapted first where it
adapts, with non-default weights where it has any), beside a `Dense(relu)` branch so there
is always a ReLU to wrap. At alpha 1 the wrapped model and the stripped one must compute
what the original computes. A layer class added to Keras fails `test_the_sweep_covers_*`
until it has a case here.
"""
import importlib
import warnings

import numpy as np
import pytest

import pea_keras

# Input kinds: shape, dtype, and how to draw 3 samples of it.
_INPUTS = {
    "vec": ((4,), "float32", lambda r: r.normal(size=(3, 4))),
    "seq": ((5, 4), "float32", lambda r: r.normal(size=(3, 5, 4))),
    "img": ((6, 6, 3), "float32", lambda r: r.uniform(size=(3, 6, 6, 3))),
    "vol": ((4, 4, 4, 2), "float32", lambda r: r.normal(size=(3, 4, 4, 4, 2))),
    "video1d": ((3, 5, 2), "float32", lambda r: r.normal(size=(3, 3, 5, 2))),
    "video2d": ((3, 5, 5, 2), "float32", lambda r: r.normal(size=(3, 3, 5, 5, 2))),
    "video3d": ((2, 4, 4, 4, 1), "float32", lambda r: r.normal(size=(3, 2, 4, 4, 4, 1))),
    "audio": ((64,), "float32", lambda r: r.normal(size=(3, 64))),
    "audio1": ((64, 1), "float32", lambda r: r.normal(size=(3, 64, 1))),
    "int": ((3,), "int32", lambda r: r.integers(0, 5, size=(3, 3))),
    "int1": ((1,), "int32", lambda r: r.integers(0, 5, size=(3, 1))),
    "str": ((1,), "string", lambda r: np.array([["a b"], ["b c"], ["c a d"]], dtype=object)),
}


class Case:
    """A layer in a model: `make(L)` (or `make(L, data)` to adapt on the first input's data),
    called on the inputs as `layer(x)`, `layer([x, y])` ("list") or `layer(x, y)` ("args")."""

    def __init__(self, inputs, make, call="one", adapt=False):
        self.inputs, self.make, self.call, self.adapt = inputs.split(), make, call, adapt


def _attention(L):
    return L.MultiHeadAttention(num_heads=2, key_dim=2)


CASES = {
    "Activation": Case("vec", lambda L: L.Activation("tanh")),
    "ActivityRegularization": Case("vec", lambda L: L.ActivityRegularization(l1=0.1)),
    "AdaptiveAveragePooling1D": Case("seq", lambda L: L.AdaptiveAveragePooling1D(2)),
    "AdaptiveAveragePooling2D": Case("img", lambda L: L.AdaptiveAveragePooling2D(2)),
    "AdaptiveAveragePooling3D": Case("vol", lambda L: L.AdaptiveAveragePooling3D(2)),
    "AdaptiveMaxPooling1D": Case("seq", lambda L: L.AdaptiveMaxPooling1D(2)),
    "AdaptiveMaxPooling2D": Case("img", lambda L: L.AdaptiveMaxPooling2D(2)),
    "AdaptiveMaxPooling3D": Case("vol", lambda L: L.AdaptiveMaxPooling3D(2)),
    "Add": Case("vec vec", lambda L: L.Add(), "list"),
    "AdditiveAttention": Case("seq seq", lambda L: L.AdditiveAttention(), "list"),
    "AlphaDropout": Case("vec", lambda L: L.AlphaDropout(0.3)),
    "Attention": Case("seq seq", lambda L: L.Attention(), "list"),
    "AugMix": Case("img", lambda L: L.AugMix(value_range=(0, 1))),
    "AutoContrast": Case("img", lambda L: L.AutoContrast(value_range=(0, 1))),
    "Average": Case("vec vec", lambda L: L.Average(), "list"),
    "AveragePooling1D": Case("seq", lambda L: L.AveragePooling1D(2)),
    "AveragePooling2D": Case("img", lambda L: L.AveragePooling2D(2)),
    "AveragePooling3D": Case("vol", lambda L: L.AveragePooling3D(2)),
    "BatchNormalization": Case("vec", lambda L: L.BatchNormalization()),
    "Bidirectional": Case("seq", lambda L: L.Bidirectional(L.LSTM(3, activation="relu"))),
    "CategoryEncoding": Case("int", lambda L: L.CategoryEncoding(num_tokens=5, output_mode="multi_hot")),
    "CenterCrop": Case("img", lambda L: L.CenterCrop(4, 4)),
    "Concatenate": Case("vec vec", lambda L: L.Concatenate(), "list"),
    "ContrastLimitedAdaptiveHistogramEqualization": Case(
        "img", lambda L: L.ContrastLimitedAdaptiveHistogramEqualization(value_range=(0, 1), tile_grid_size=(2, 2))),
    "Conv1D": Case("seq", lambda L: L.Conv1D(3, 3, activation="relu")),
    "Conv1DTranspose": Case("seq", lambda L: L.Conv1DTranspose(3, 3, activation="relu")),
    "Conv2D": Case("img", lambda L: L.Conv2D(3, 3, activation="relu")),
    "Conv2DTranspose": Case("img", lambda L: L.Conv2DTranspose(3, 3, activation="relu")),
    "Conv3D": Case("vol", lambda L: L.Conv3D(3, 3, activation="relu")),
    "Conv3DTranspose": Case("vol", lambda L: L.Conv3DTranspose(3, 3, activation="relu")),
    "ConvLSTM1D": Case("video1d", lambda L: L.ConvLSTM1D(2, 3, activation="relu")),
    "ConvLSTM2D": Case("video2d", lambda L: L.ConvLSTM2D(2, 3, activation="relu")),
    "ConvLSTM3D": Case("video3d", lambda L: L.ConvLSTM3D(2, 3, activation="relu")),
    "Cropping1D": Case("seq", lambda L: L.Cropping1D(1)),
    "Cropping2D": Case("img", lambda L: L.Cropping2D(1)),
    "Cropping3D": Case("vol", lambda L: L.Cropping3D(1)),
    "CutMix": Case("img", lambda L: L.CutMix()),
    "Dense": Case("vec", lambda L: L.Dense(3, activation="relu")),
    "DepthwiseConv1D": Case("seq", lambda L: L.DepthwiseConv1D(3, activation="relu")),
    "DepthwiseConv2D": Case("img", lambda L: L.DepthwiseConv2D(3, activation="relu")),
    "Discretization": Case("vec", lambda L, x: _adapted(L.Discretization(num_bins=3), x), adapt=True),
    "Dot": Case("vec vec", lambda L: L.Dot(axes=1), "list"),
    "Dropout": Case("vec", lambda L: L.Dropout(0.5)),
    "ELU": Case("vec", lambda L: L.ELU()),
    "EinsumDense": Case("vec", lambda L: L.EinsumDense("ab,bc->ac", output_shape=3, activation="relu")),
    "Embedding": Case("int", lambda L: L.Embedding(5, 3)),
    "Equalization": Case("img", lambda L: L.Equalization(value_range=(0, 1))),
    "Flatten": Case("img", lambda L: L.Flatten()),
    "GRU": Case("seq", lambda L: L.GRU(3, activation="relu")),
    "GRUCell": Case("seq", lambda L: L.RNN(L.GRUCell(3, activation="relu"))),
    "GaussianDropout": Case("vec", lambda L: L.GaussianDropout(0.3)),
    "GaussianNoise": Case("vec", lambda L: L.GaussianNoise(0.3)),
    "GlobalAveragePooling1D": Case("seq", lambda L: L.GlobalAveragePooling1D()),
    "GlobalAveragePooling2D": Case("img", lambda L: L.GlobalAveragePooling2D()),
    "GlobalAveragePooling3D": Case("vol", lambda L: L.GlobalAveragePooling3D()),
    "GlobalMaxPool1D": Case("seq", lambda L: L.GlobalMaxPool1D()),
    "GlobalMaxPool2D": Case("img", lambda L: L.GlobalMaxPool2D()),
    "GlobalMaxPool3D": Case("vol", lambda L: L.GlobalMaxPool3D()),
    "GroupNormalization": Case("img", lambda L: L.GroupNormalization(groups=3)),
    "GroupQueryAttention": Case(
        "seq seq", lambda L: L.GroupQueryAttention(head_dim=2, num_query_heads=2, num_key_value_heads=1), "args"),
    "HashedCrossing": Case("int1 int1", lambda L: L.HashedCrossing(num_bins=7), "list"),
    "Hashing": Case("int", lambda L: L.Hashing(num_bins=7)),
    "Identity": Case("vec", lambda L: L.Identity()),
    "IntegerLookup": Case("int1", lambda L, x: _adapted(L.IntegerLookup(output_mode="tf_idf"), x), adapt=True),
    "LSTM": Case("seq", lambda L: L.LSTM(3, activation="relu")),
    "LSTMCell": Case("seq", lambda L: L.RNN(L.LSTMCell(3, activation="relu"))),
    "Lambda": Case("vec", lambda L: L.Lambda(lambda t: t * 2.0 - 1.0)),
    "LayerNormalization": Case("vec", lambda L: L.LayerNormalization()),
    "LeakyReLU": Case("vec", lambda L: L.LeakyReLU()),
    "LocallyConnected1D": Case("seq", lambda L: L.LocallyConnected1D(2, 3, activation="relu")),
    "LocallyConnected2D": Case("img", lambda L: L.LocallyConnected2D(2, 3, activation="relu")),
    "Masking": Case("seq", lambda L: L.Masking(0.0)),
    "MaxPool1D": Case("seq", lambda L: L.MaxPool1D(2)),
    "MaxPool2D": Case("img", lambda L: L.MaxPool2D(2)),
    "MaxPool3D": Case("vol", lambda L: L.MaxPool3D(2)),
    "Maximum": Case("vec vec", lambda L: L.Maximum(), "list"),
    "MelSpectrogram": Case("audio", lambda L: L.MelSpectrogram(
        fft_length=16, sequence_stride=8, sequence_length=16, num_mel_bins=4, sampling_rate=800)),
    "Minimum": Case("vec vec", lambda L: L.Minimum(), "list"),
    "MixUp": Case("img", lambda L: L.MixUp()),
    "MultiHeadAttention": Case("seq seq", _attention, "args"),
    "Multiply": Case("vec vec", lambda L: L.Multiply(), "list"),
    "Normalization": Case("img", lambda L, x: _adapted(L.Normalization(), x), adapt=True),
    "PReLU": Case("vec", lambda L: L.PReLU()),
    "Permute": Case("seq", lambda L: L.Permute((2, 1))),
    "Pipeline": Case("img", lambda L: L.Pipeline([L.Rescaling(2.0), L.CenterCrop(4, 4)])),
    "RMSNormalization": Case("vec", lambda L: L.RMSNormalization()),
    "RNN": Case("seq", lambda L: L.RNN(L.SimpleRNNCell(3, activation="relu"))),
    "RandAugment": Case("img", lambda L: L.RandAugment(value_range=(0, 1))),
    "RandomBrightness": Case("img", lambda L: L.RandomBrightness(0.2, value_range=(0, 1))),
    "RandomColorDegeneration": Case("img", lambda L: L.RandomColorDegeneration(0.5)),
    "RandomColorJitter": Case("img", lambda L: L.RandomColorJitter(value_range=(0, 1), brightness_factor=0.2)),
    "RandomContrast": Case("img", lambda L: L.RandomContrast(0.5)),
    "RandomCrop": Case("img", lambda L: L.RandomCrop(4, 4)),
    "RandomElasticTransform": Case("img", lambda L: L.RandomElasticTransform(value_range=(0, 1))),
    "RandomErasing": Case("img", lambda L: L.RandomErasing(value_range=(0, 1))),
    "RandomFlip": Case("img", lambda L: L.RandomFlip()),
    "RandomGaussianBlur": Case("img", lambda L: L.RandomGaussianBlur(value_range=(0, 1))),
    "RandomGrayscale": Case("img", lambda L: L.RandomGrayscale()),
    "RandomHeight": Case("img", lambda L: L.RandomHeight(0.2)),
    "RandomHue": Case("img", lambda L: L.RandomHue(0.5, value_range=(0, 1))),
    "RandomInvert": Case("img", lambda L: L.RandomInvert(value_range=(0, 1))),
    "RandomPerspective": Case("img", lambda L: L.RandomPerspective()),
    "RandomPosterization": Case("img", lambda L: L.RandomPosterization(value_range=(0, 1), factor=(4, 4))),
    "RandomRotation": Case("img", lambda L: L.RandomRotation(0.2)),
    "RandomSaturation": Case("img", lambda L: L.RandomSaturation(0.5, value_range=(0, 1))),
    "RandomSharpness": Case("img", lambda L: L.RandomSharpness(0.5, value_range=(0, 1))),
    "RandomShear": Case("img", lambda L: L.RandomShear(0.2)),
    "RandomTranslation": Case("img", lambda L: L.RandomTranslation(0.2, 0.2)),
    "RandomWidth": Case("img", lambda L: L.RandomWidth(0.2)),
    "RandomZoom": Case("img", lambda L: L.RandomZoom(0.2)),
    "ReLU": Case("vec", lambda L: L.ReLU(max_value=0.5, threshold=0.1)),
    "RepeatVector": Case("vec", lambda L: L.RepeatVector(2)),
    "Rescaling": Case("vec", lambda L: L.Rescaling(2.0, offset=-1.0)),
    "Reshape": Case("vec", lambda L: L.Reshape((2, 2))),
    "Resizing": Case("img", lambda L: L.Resizing(4, 4)),
    "ReversibleEmbedding": Case("int", lambda L: L.ReversibleEmbedding(5, 3)),
    "STFTSpectrogram": Case("audio1", lambda L: L.STFTSpectrogram(frame_length=8, frame_step=4, fft_length=8)),
    "SeparableConv1D": Case("seq", lambda L: L.SeparableConv1D(3, 3, activation="relu")),
    "SeparableConv2D": Case("img", lambda L: L.SeparableConv2D(3, 3, activation="relu")),
    "SimpleRNN": Case("seq", lambda L: L.SimpleRNN(3, activation="relu")),
    "SimpleRNNCell": Case("seq", lambda L: L.RNN(L.SimpleRNNCell(3, activation="relu"), return_sequences=True)),
    "Softmax": Case("vec", lambda L: L.Softmax()),
    "Solarization": Case("img", lambda L: L.Solarization(value_range=(0, 1))),
    "SpatialDropout1D": Case("seq", lambda L: L.SpatialDropout1D(0.5)),
    "SpatialDropout2D": Case("img", lambda L: L.SpatialDropout2D(0.5)),
    "SpatialDropout3D": Case("vol", lambda L: L.SpatialDropout3D(0.5)),
    "SpectralNormalization": Case("vec", lambda L: L.SpectralNormalization(L.Dense(3, activation="relu"))),
    "StackedRNNCells": Case("seq", lambda L: L.RNN(L.StackedRNNCells([L.SimpleRNNCell(3), L.GRUCell(2)]))),
    "StringLookup": Case("str", lambda L, x: _adapted(L.StringLookup(), x), adapt=True),
    "Subtract": Case("vec vec", lambda L: L.Subtract(), "list"),
    "TextVectorization": Case(
        "str", lambda L, x: _adapted(L.TextVectorization(output_sequence_length=4), x[:, 0]), adapt=True),
    "ThresholdedReLU": Case("vec", lambda L: L.ThresholdedReLU(0.2)),
    "TimeDistributed": Case("seq", lambda L: L.TimeDistributed(L.Dense(3, activation="relu"))),
    "UnitNormalization": Case("vec", lambda L: L.UnitNormalization()),
    "UpSampling1D": Case("seq", lambda L: L.UpSampling1D(2)),
    "UpSampling2D": Case("img", lambda L: L.UpSampling2D(2)),
    "UpSampling3D": Case("vol", lambda L: L.UpSampling3D(2)),
    "ZeroPadding1D": Case("seq", lambda L: L.ZeroPadding1D(1)),
    "ZeroPadding2D": Case("img", lambda L: L.ZeroPadding2D(1)),
    "ZeroPadding3D": Case("vol", lambda L: L.ZeroPadding3D(1)),
}

# Public classes that cannot sit in a small model of this process, with why.
_NOT_IN_ANY_MODEL = {
    "Layer": "the abstract base class",
    "InputLayer": "in every model of this sweep",
    "Wrapper": "abstract (TimeDistributed, Bidirectional and SpectralNormalization are swept)",
    "AbstractRNNCell": "abstract (the concrete cells are swept in an RNN)",
    "FlaxLayer": "runs only under KERAS_BACKEND=jax",
    "JaxLayer": "runs only under KERAS_BACKEND=jax",
    "TorchModuleWrapper": "runs only under KERAS_BACKEND=torch",
    "TFSMLayer": "wraps a SavedModel from disk (reloaded from its path by from_config)",
    "MaxNumBoundingBoxes": "takes bounding-box dicts in tf.data pipelines, not model tensors",
    "DenseFeatures": "takes feature-column dicts (tf.feature_column), not model tensors",
}
# Classes that Keras itself cannot put into a Functional model (checked below, so a fix shows).
KERAS_CANNOT_BUILD = {
    ("keras", "Equalization"): "is part of a cycle",
    ("tf_keras", "SpectralNormalization"): "input_spec must be an instance of InputSpec",
}
# Classes whose config Keras cannot load back: wrap refuses them, naming the layer.
REFUSED = {
    ("keras", "RandomShear"): r"^Cannot copy layer 'random_shear\w*' \(RandomShear\) from its get_config\(\), "
                              r"so the model cannot be rebuilt: .*The `factor` argument should be a number",
}


def not_in_a_model(flavor):
    return {**_NOT_IN_ANY_MODEL, **{name: why for (f, name), why in KERAS_CANNOT_BUILD.items() if f == flavor}}


def _adapted(layer, data):
    layer.adapt(data)
    return layer


def public_layer_classes(flavor):
    """{first public name: class} for every layer class in `<flavor>.layers` (aliases once)."""
    L = importlib.import_module(flavor).layers
    classes = {}
    for name in sorted(dir(L)):
        value = getattr(L, name)
        if isinstance(value, type) and issubclass(value, L.Layer) and value not in classes.values():
            classes[name] = value
    return classes


_SWEPT = [(flavor, name) for flavor in ("keras", "tf_keras")
          for name in public_layer_classes(flavor) if name not in not_in_a_model(flavor)]


@pytest.mark.parametrize("flavor", ["keras", "tf_keras"])
def test_the_sweep_covers_every_public_layer_class(flavor):
    assert sorted(set(public_layer_classes(flavor)) - set(CASES) - set(not_in_a_model(flavor))) == []


@pytest.mark.parametrize("flavor, name", sorted(KERAS_CANNOT_BUILD))
def test_the_layers_left_out_still_cannot_be_built_by_keras(flavor, name):
    with pytest.raises((ValueError, TypeError), match=KERAS_CANNOT_BUILD[flavor, name]):
        _build(importlib.import_module(flavor), CASES[name], np.random.default_rng(0))


def _build(k, case, rng):
    data = [np.asarray(_INPUTS[kind][2](rng)).astype(_INPUTS[kind][1].replace("string", "object"))
            for kind in case.inputs]
    inputs = [k.Input(_INPUTS[kind][0], dtype=_INPUTS[kind][1]) for kind in case.inputs]
    layer = case.make(k.layers, data[0]) if case.adapt else case.make(k.layers)
    if case.call == "list":
        y = layer(inputs)
    elif case.call == "args":
        y = layer(*inputs)
    else:
        y = layer(inputs[0])
    side = k.Input((4,), name="side")
    relu = k.layers.Dense(2, activation="relu", name="side_relu")(side)
    model = k.Model([*inputs, side], [y, relu])
    if not case.adapt:  # Weights unlike a fresh copy's, so a copy that dropped them differs.
        model.set_weights([rng.uniform(0.5 if "variance" in v.name else -1.5, 1.5, w.shape).astype(w.dtype)
                           if w.dtype.kind == "f" else w for v, w in zip(model.weights, model.get_weights())])
    return model, [*data, rng.normal(size=(3, 4)).astype("float32")]


def _assert_same_outputs(model, other, x):
    for a, b in zip(model(x, training=False), other(x, training=False)):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("flavor, name", _SWEPT, ids=[f"{f}-{n}" for f, n in _SWEPT])
def test_wrap_at_alpha_1_and_strip_compute_what_the_layer_computed(flavor, name):
    k = importlib.import_module(flavor)
    model, x = _build(k, CASES[name], np.random.default_rng(0))
    if (flavor, name) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[flavor, name]):
            pea_keras.wrap(model)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Leaky and recurrent ReLUs are left alone with a warning.
        wrapped = pea_keras.wrap(model, alpha=1.0)
    assert "side_relu_pea" in {layer.name for layer in pea_keras.pea_layers(wrapped)}
    _assert_same_outputs(model, wrapped, x)
    stripped = pea_keras.strip(wrapped)
    assert not pea_keras.pea_layers(stripped)
    _assert_same_outputs(model, stripped, x)
