"""build_segmentation_model: shapes, ReLU-only layers, PEA wrap/strip, int8 TFLite ops."""

import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import pea_keras
from pea_keras.training.tasks.segmentation import ARCHS, build_segmentation_model

INT8_SEGMENTATION_OPS = {
    "ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "MUL", "PAD",
    "QUANTIZE", "DEQUANTIZE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
}  # fmt: skip


def _relu_like(layer):
    return type(layer).__name__ == "ReLU"


def _activation_names(model):
    names = set()
    for layer in model.layers:
        fn = getattr(layer, "activation", None)
        if fn is not None:
            names.add(getattr(fn, "__name__", str(fn)))
    return names


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_at_input_resolution_in_both_flavors(k, arch):
    model = build_segmentation_model(arch, 11, 64, width=0.35, k=k, channels=1)
    assert pea_keras.flavor.keras_of(model) is k
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 64, 64, 11)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_nonlinearity_is_a_relu_layer(arch):
    model = build_segmentation_model(arch, 5, (32, 64), width=0.35)
    assert _activation_names(model) <= {"linear"}
    types = {type(layer).__name__ for layer in model.layers}
    assert types <= {
        "InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU",
        "ZeroPadding2D", "Add", "GlobalAveragePooling2D", "UpSampling2D", "Concatenate",
        "Activation",
    }  # fmt: skip
    assert sum(map(_relu_like, model.layers)) >= 20
    assert all(layer.momentum == 0.9 for layer in model.layers
               if type(layer).__name__ == "BatchNormalization")  # fmt: skip


def test_wrap_finds_every_relu_and_strip_restores_the_network(k):
    model = build_segmentation_model("lraspp_mobilenet_v2", 4, 32, width=0.35, k=k)
    relus = sum(map(_relu_like, model.layers))
    wrapped = pea_keras.wrap(model, activation="silu", alpha=0.0)
    assert len(pea_keras.pea_layers(wrapped)) == relus
    for layer in pea_keras.pea_layers(wrapped):
        layer.set_alpha(1.0)
    plain = pea_keras.strip(wrapped)
    assert not pea_keras.pea_layers(plain)
    x = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(plain(x, training=False)), np.asarray(model(x, training=False)),
        rtol=1e-4, atol=1e-4,
    )  # fmt: skip


def test_rejects_sizes_the_logits_cannot_land_on():
    with pytest.raises(ValueError, match="image_size must give sides that are multiples of 16"):
        build_segmentation_model("lraspp_mobilenet_v2", 3, 40, width=0.35)
    with pytest.raises(ValueError, match="arch must be one of lraspp_mobilenet_v2"):
        build_segmentation_model("unet", 3, 32)


def _int8_tflite(model, size):
    calibration = np.random.default_rng(0).random((4, size, size, 3), dtype=np.float32)
    if model.__class__.__module__.startswith("tf_keras"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        export_dir = tempfile.mkdtemp()
        model.export(export_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _check_int8_ops(flatbuffer, size, num_classes):
    from ai_edge_litert.interpreter import Interpreter

    from pea_keras.tflite.check import relu_only_violations

    interpreter = Interpreter(model_content=flatbuffer)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= INT8_SEGMENTATION_OPS, ops - INT8_SEGMENTATION_OPS
    assert ops & {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"}
    assert not ops & {"LOGISTIC", "HARD_SWISH", "TANH", "EXP"}
    assert [str(v) for v in relu_only_violations(flatbuffer, int8=True)] == []
    (out,) = interpreter.get_output_details()
    assert out["dtype"] == np.int8
    assert tuple(out["shape"]) == (1, size, size, num_classes)
    return sorted(ops)


def test_tiny_lraspp_converts_to_relu_only_int8_tflite():
    model = build_segmentation_model("lraspp_mobilenet_v2", 5, 32, width=0.35)
    ops = _check_int8_ops(_int8_tflite(model, 32), 32, 5)
    assert ops == ["ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "RESIZE_BILINEAR"]  # No input MUL.


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("flavor", ["keras", "tf_keras"])
def test_every_arch_converts_to_relu_only_int8_tflite_in_both_flavors(arch, flavor):
    k = {"keras": keras, "tf_keras": tf_keras}[flavor]
    model = build_segmentation_model(arch, 5, 32, width=0.35, k=k)
    _check_int8_ops(_int8_tflite(model, 32), 32, 5)
