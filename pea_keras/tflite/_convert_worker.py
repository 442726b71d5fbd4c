"""Run the TFLite converter in its own process.

    python -m pea_keras.tflite._convert_worker SAVED_MODEL CALIBRATION.npz IO OUT.tflite
    python -m pea_keras.tflite._convert_worker --file MODEL IO OUT.tflite SETTINGS_JSON

The converter can crash the whole process (a segmentation fault on calibration ranges it
cannot represent), so `quantization.py` runs this file and turns a crash into one error line.
The calibration .npz holds one array per model input, keyed by the input's name (the
SavedModel signature's argument name), so several inputs can never be swapped.

With ``--file`` the child does everything TensorFlow is needed for, so that `pea-tflite convert`
and a run on JAX or PyTorch import it once: it loads MODEL (``pea_keras.load_model``), strips it,
prints the stripped model's inputs, its PEA layer count and pea_keras' warnings as one JSON line,
exports it (into the parent's temporary folder, SETTINGS' "saved_model") while the parent loads
the calibration data, reads {"calibration": .npz path, "qat": .npz path of x and y, with
SETTINGS' "qat_epochs"} as one JSON line from stdin, fine-tunes (QAT: then it exports) and
converts. The child writes only into the
parent's temporary folder, so a parent that is stopped kills it and leaves nothing behind.
A user mistake is one JSON line {"error": class name, "message": text} on stderr and exit status 3.
"""

import json
import os
import sys
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _signature_inputs(saved_model):
    """The serving signature's input names, read from saved_model.pb (loading the model to ask
    them costs a second on MobileNetV2 0.35)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return sorted(proto.meta_graphs[0].signature_def["serving_default"].inputs)


def tflite_bytes(saved_model, xs, io):
    """Full-integer TFLite bytes of a SavedModel calibrated on `xs` {input name: array}."""
    import tensorflow as tf

    from pea_keras.errors import TFLiteError

    names = _signature_inputs(saved_model)
    if len(names) == 1 and len(xs) == 1:  # Exporters name a single input freely.
        xs = {names[0]: next(iter(xs.values()))}
    elif sorted(xs) != names:
        raise TFLiteError(f"calibration inputs {', '.join(sorted(xs))} do not match the model's {', '.join(names)}")
    n = len(next(iter(xs.values())))

    def representative_dataset():
        for i in range(n):
            yield {name: x[i:i + 1] for name, x in xs.items()}

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float":
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 (the converter raises many types)
        text = str(e).strip()
        errors = [line for line in text.splitlines() if "error" in line.lower()]
        raise TFLiteError("TFLite conversion failed: " + (
            errors[0] if errors else text.splitlines()[0] if text else type(e).__name__).strip()) from None


def _load(path):
    with np.load(path) as loaded:
        return {name: loaded[name] for name in loaded.files}


def convert_saved_model(saved_model, calibration, io, out):
    with open(out, "wb") as f:
        f.write(tflite_bytes(saved_model, _load(calibration), io))


def convert_file(model_path, io, out, settings):
    import pea_keras
    from pea_keras.saving import load_model
    from pea_keras.tflite import conversion, quantization

    settings = json.loads(settings)
    package = os.path.dirname(os.path.abspath(pea_keras.__file__))
    with warnings.catch_warnings(record=True) as caught:  # The parent shows pea_keras' own.
        warnings.simplefilter("always")
        model = load_model(model_path, trust_code=settings["trust_code"])
        conversion.check_exportable(model)
        n_pea = len(pea_keras.pea_layers(model))
        plain = conversion.strip_for_deploy(model, force_strip=settings["force_strip"])
    inputs = quantization.model_inputs(plain)
    ours = [str(w.message) for w in caught if os.path.abspath(w.filename).startswith(package)]
    print(json.dumps({"inputs": inputs, "pea_layers": n_pea, "warnings": ours}), flush=True)
    # In the parent's temporary folder, which the parent removes even when it had to kill this process.
    saved_model, epochs = settings["saved_model"], settings["qat_epochs"]
    if not epochs:
        quantization.export_saved_model(plain, saved_model)  # While the parent loads the calibration.
    line = sys.stdin.readline().strip()
    if not line:  # The parent gave up (its calibration or training data was wrong).
        return
    arrays = json.loads(line)
    if epochs:
        from pea_keras.tflite.qat import qat_model

        with np.load(arrays["qat"]) as qat:
            quantization.export_saved_model(qat_model(plain, qat["x"], qat["y"], epochs), saved_model)
    data = tflite_bytes(saved_model, _load(arrays["calibration"]), io)  # Checked by the parent.
    with open(out, "wb") as f:
        f.write(data)


def main(argv):
    from pea_keras.errors import UserError

    try:
        if argv[0] == "--file":
            convert_file(*argv[1:])
        else:
            convert_saved_model(*argv)
    except UserError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
