"""Quantization-aware fine-tuning with tensorflow-model-optimization (tfmot).

tfmot only wraps tf_keras models. A Keras 3 model is rebuilt in tf_keras
from its JSON config (standard layers only; Keras-3-only arguments dropped)
and its weights copied; the rebuilt model must reproduce the original's
outputs before QAT starts. Importing tfmot sets ``TF_USE_LEGACY_KERAS=1``
for the whole process, so it is imported here only, and the variable is
restored right after (this module never imports ``tf.keras``).
"""

import ast
import json
import os
import re
import tempfile

import numpy as np

from pea_keras.errors import TFLiteError
from pea_keras.tflite import quantization

# Keras 3 config keys tf_keras does not know, per class ("*" = any layer).
_KERAS3_ONLY = {"*": {"quantization_config", "lora_rank", "lora_alpha"},
                "InputLayer": {"optional"}, "BatchNormalization": {"synchronized"}}


def _tfmot():
    saved = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot
    finally:
        if saved is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = saved
    return tfmot


def _plain(obj):
    """Keras 3 serialized objects -> tf_keras style: dtype policies to names, no module keys."""
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and "config" in obj:
        return obj["config"]["name"]
    if obj.get("class_name") == "__keras_tensor__":
        layer, node, index = obj["config"]["keras_history"]
        return [layer, node, index, {}]
    return {k: _plain(v) for k, v in obj.items()
            if k not in ("module", "registered_name", "build_config", "compile_config")}


def _nodes(inbound):
    """Keras 3 inbound_nodes ({"args": [...], "kwargs": {}}) -> tf_keras [[[layer, node, i, {}]]]."""
    out = []
    for node in inbound:
        if not isinstance(node, dict):
            return inbound
        args = node.get("args", [])
        flat = args[0] if len(args) == 1 and isinstance(args[0], list) and args[0] \
            and isinstance(args[0][0], list) else args
        out.append([a for a in flat if isinstance(a, list)])
    return out


def _layer_config(layer):
    cls = layer["class_name"]
    cfg = dict(layer["config"])
    if cls == "InputLayer" and "batch_shape" in cfg:
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    for key in _KERAS3_ONLY["*"] | _KERAS3_ONLY.get(cls, set()):
        cfg.pop(key, None)
    for key in cfg:
        if key.endswith("_initializer"):
            cfg[key] = "zeros"  # weights are copied over; Keras 3 initializer configs differ
    new = {"class_name": cls, "config": cfg}
    if "name" in layer:
        new["name"] = layer["name"]
    if "inbound_nodes" in layer:
        new["inbound_nodes"] = _nodes(layer["inbound_nodes"])
    return new


def to_tf_keras(model):
    """Rebuild a Keras 3 Sequential/Functional model of standard layers in tf_keras,
    with the same weights. Raises TFLiteError saying what to do when it cannot."""
    import tf_keras

    config = json.loads(model.to_json())
    plain = _plain(config)
    inner = plain["config"]
    inner["layers"] = [_layer_config(layer) for layer in inner["layers"]]
    for key in ("input_layers", "output_layers"):
        if key in inner:
            v = inner[key]
            inner[key] = [v[:3]] if v and not isinstance(v[0], list) else [x[:3] for x in v]
    for _ in range(10):
        try:
            rebuilt = tf_keras.models.model_from_json(json.dumps(plain))
            break
        except (TypeError, ValueError) as e:
            m = re.search(r"class '(\w+)'.*Unrecognized keyword arguments: (\[.*?\])", str(e), re.S)
            m2 = re.search(r"class '(\w+)'.*unexpected keyword argument '(\w+)'", str(e), re.S)
            if m2 and not m:
                cls, keys = m2.group(1), {m2.group(2)}
            elif m:
                cls, keys = m.group(1), set(ast.literal_eval(m.group(2)))
            else:
                raise TFLiteError(
                    f"QAT needs a tf_keras model and this Keras 3 model could not be rebuilt in "
                    f"tf_keras ({str(e).splitlines()[0][:200]}); build the same architecture with "
                    f"tf_keras, copy the weights with set_weights, save it as .h5, and run QAT on that"
                ) from None
            for layer in inner["layers"]:
                if layer["class_name"] == cls:
                    for k in keys:
                        layer["config"].pop(k, None)
    else:
        raise TFLiteError("QAT: could not rebuild the Keras 3 model in tf_keras")
    try:
        rebuilt.set_weights(model.get_weights())
    except ValueError as e:
        raise TFLiteError(f"QAT: rebuilt tf_keras model has different weights ({e})") from None
    return rebuilt


def _same_outputs(a, b, x):
    ya = np.asarray(a(x[:16], training=False))
    yb = np.asarray(b(x[:16], training=False))
    return ya.shape == yb.shape and np.allclose(ya, yb, atol=1e-4, rtol=1e-3)


def qat_model(model, x, y, epochs, batch_size=32, learning_rate=1e-4):
    """tfmot ``quantize_model`` of the (plain ReLU) model, fine-tuned ``epochs`` epochs on (x, y)."""
    import tf_keras

    from pea_keras.flavor import is_tf_keras

    x = np.asarray(x, np.float32)
    base = model if is_tf_keras(model) else to_tf_keras(model)
    if base is not model and not _same_outputs(model, base, x):
        raise TFLiteError("QAT: the tf_keras rebuild of the Keras 3 model gives different outputs")
    probs = np.asarray(base(x[:32], training=False))
    from_logits = not (np.all(probs >= 0) and np.allclose(probs.sum(-1), 1.0, atol=1e-3))
    tfmot = _tfmot()
    try:
        q = tfmot.quantization.keras.quantize_model(base)
    except Exception as e:
        raise TFLiteError(f"QAT: tfmot cannot quantize this model ({str(e).splitlines()[0]}) "
                          f"(tfmot quantizes Conv -> BatchNormalization -> ReLU, not a "
                          f"BatchNormalization after an activation; or convert without QAT)") from None
    q.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
              loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
              metrics=["accuracy"])
    q.fit(x, np.asarray(y).reshape(-1), epochs=epochs, batch_size=batch_size, verbose=0)
    return q


def qat_tflite_bytes(model, x, y, epochs, calibration, io="int8", verbose=False):
    """Full-integer TFLite bytes of the QAT-fine-tuned model."""
    q = qat_model(model, x, y, epochs)
    with tempfile.TemporaryDirectory(prefix="pea-qat-") as tmp:
        quantization.export_saved_model(q, tmp)
        return quantization.convert_saved_model(tmp, calibration, io, verbose)
