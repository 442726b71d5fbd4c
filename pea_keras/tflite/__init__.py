"""Deploy PEA models: full-integer TFLite files proven ReLU-only, run on LiteRT and TFLite Micro.

    conv = convert(model, "model.tflite", calibration)     # strip, quantize, check, load-test, write
    convert(model, "npu.tflite", calibration, target="ethos-u55-128")  # + npu_vela.tflite (targets.py)
    relu_only_violations("model.tflite", int8=True)       # [] = the promise holds
    predict("model.tflite", x, runtime="micro")           # float outputs
    write_micro_kit("model.tflite", "fw", "model", x[:3])  # TFLite Micro sources + golden data

The console script ``pea-tflite`` (``cli.py``) wraps these verbs. Names load on first use, so
the CLI answers ``--help`` without importing TensorFlow.
"""

import importlib

_EXPORTS = {
    "write_c_array": "c_array",
    "Violation": "check", "relu_only_violations": "check",
    "Conversion": "conversion", "convert": "conversion",
    "quantize": "quantization",
    "TFLiteError": "pea_keras.errors",
    "ModelInfo": "inspection", "inspect": "inspection",
    "evaluate": "runtimes", "micro_arena_bytes": "runtimes", "predict": "runtimes",
    "write_micro_kit": "micro_kit",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name] if "." in _EXPORTS[name] else f"{__name__}.{_EXPORTS[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
