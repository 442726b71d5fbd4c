"""Convert a run's stripped Keras 3 model under TensorFlow: MODEL.keras OUT.tflite ARRAYS.npz SETTINGS.

A run on JAX or PyTorch exports through this child process: the converter needs a model on
TensorFlow, and Keras 3 picks its backend once per process. ARRAYS.npz holds `calibration`
and, for quantization-aware fine-tuning, `x` and `y`; SETTINGS is `tflite.convert`'s keyword
arguments as JSON. The last stdout line is the conversion's facts as JSON; a conversion that
fails is one line on stderr and exit status 3.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(model, out, arrays, settings):
    import numpy as np

    from pea_keras import tflite
    from pea_keras.errors import UserError
    from pea_keras.training import export

    with np.load(arrays) as loaded:
        calibration = loaded["calibration"]
        qat_data = (loaded["x"], loaded["y"]) if "x" in loaded.files else None
    try:
        conversion = tflite.convert(model, out, calibration, qat_data=qat_data, **json.loads(settings))
    except UserError as e:
        print(e, file=sys.stderr)
        return 3
    print(json.dumps(export.facts_of(conversion)))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
