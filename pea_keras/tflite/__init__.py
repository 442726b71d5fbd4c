"""Deploy PEA models: full-integer TFLite files proven ReLU-only, run on LiteRT and TFLite Micro.

    conv = convert(model, "model.tflite", calibration)     # strip, quantize, check, load-test, write
    relu_only_violations("model.tflite", int8=True)       # [] = the promise holds
    predict("model.tflite", x, runtime="micro")           # float outputs
    write_micro_kit("model.tflite", "fw", "model", x[:3])  # TFLite Micro sources + golden data

The console script ``pea-tflite`` (``cli.py``) wraps these verbs.
"""

from pea_keras.tflite.c_array import write_c_array
from pea_keras.tflite.calibration import calibration_samples, load_source
from pea_keras.tflite.check import Violation, relu_only_violations
from pea_keras.tflite.convert import Conversion, convert, load_model, quantize
from pea_keras.tflite.errors import TFLiteError
from pea_keras.tflite.inspect import ModelInfo, inspect
from pea_keras.tflite.micro_kit import write_micro_kit
from pea_keras.tflite.runtimes import evaluate, micro_arena_bytes, predict

__all__ = [
    "Conversion", "ModelInfo", "TFLiteError", "Violation", "calibration_samples", "convert",
    "evaluate", "inspect", "load_model", "load_source", "micro_arena_bytes", "predict",
    "quantize", "relu_only_violations", "write_c_array", "write_micro_kit",
]
