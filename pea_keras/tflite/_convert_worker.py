"""Run the TFLite converter in its own process: SAVED_MODEL CALIBRATION.npz IO OUT.tflite.

The converter can crash the whole process (a segmentation fault on calibration ranges it
cannot represent), so `converter.py` runs this file and turns a crash into one error line.
The calibration .npz holds one array per model input, keyed by the input's name (the
SavedModel signature's argument name), so several inputs can never be swapped.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(saved_model, calibration, io, out):
    import numpy as np
    import tensorflow as tf

    with np.load(calibration) as loaded:
        xs = {name: loaded[name] for name in loaded.files}
    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    names = sorted(signature.structured_input_signature[1])
    if len(names) == 1 and len(xs) == 1:  # Exporters name a single input freely.
        xs = {names[0]: next(iter(xs.values()))}
    elif sorted(xs) != names:
        print(f"calibration inputs {', '.join(sorted(xs))} do not match the model's {', '.join(names)}",
              file=sys.stderr)
        return 3
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
        data = converter.convert()
    except Exception as e:  # noqa: BLE001 (the converter raises many types)
        text = str(e).strip()
        errors = [line for line in text.splitlines() if "error" in line.lower()]
        print((errors[0] if errors else text.splitlines()[0] if text else type(e).__name__).strip(),
              file=sys.stderr)
        return 3
    with open(out, "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
