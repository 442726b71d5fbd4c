"""Keras model -> full-integer TFLite bytes: the converter steps `convert` and `qat` share.

Both flavours go through a SavedModel (Keras 3: ``model.export``; tf_keras:
``tf.saved_model.save``) and ``TFLiteConverter.from_saved_model``, with
``Optimize.DEFAULT``, ``TFLITE_BUILTINS_INT8`` only (so any op without an int8 kernel fails
loudly instead of staying float) and per-channel weights (the converter default). The
converter runs in a child process: a crash (it segfaults on some calibration data) becomes
one error line, and its log lines stay out of the user's terminal unless `verbose`.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

from pea_keras import flavor
from pea_keras.data import arrays
from pea_keras.errors import TFLiteError, first_line, signal_name

IO_TYPES = ("int8", "uint8", "float")
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_convert_worker.py")
CONVERT_TIMEOUT_S = 1800


def model_inputs(model):
    """[(name, shape)] of the model's inputs, batch dimension first (None where free)."""
    return [(x.name.split(":")[0], tuple(None if d is None else int(d) for d in x.shape))
            for x in model.inputs]


def check_calibration(model, calibration):
    """{input name: float32 array} of the calibration inputs (one array, or a list in model input
    order, or a dict by input name), each checked against its input."""
    inputs = model_inputs(model)
    if isinstance(calibration, dict):
        missing = [name for name, _ in inputs if name not in calibration]
        if missing:
            raise TFLiteError(f"calibration data lacks the inputs {', '.join(missing)}")
        calibration = [calibration[name] for name, _ in inputs]
    xs = calibration if isinstance(calibration, (list, tuple)) else [calibration]
    if len(xs) != len(inputs):
        raise TFLiteError(f"calibration data has {len(xs)} arrays for a model with {len(inputs)} inputs")
    return {name: arrays.check_inputs(x, shape, "calibration data" if len(xs) == 1 else f"calibration [{name}]")
            for x, (name, shape) in zip(xs, inputs)}


def export_saved_model(model, directory):
    """A SavedModel of either flavour's model for the converter, traced for batch 1.

    A free batch dimension makes a Keras 3 `Flatten` export as SHAPE, STRIDED_SLICE and PACK
    ops computing the batch at run time, whose scalar int32 tensor TFLite Micro cannot plan
    ("Failed to allocate temp. memory", then a crash); a device runs one sample at a time.
    """
    import tensorflow as tf

    specs = [tf.TensorSpec((1, *shape[1:]), tf.float32, name=name) for name, shape in model_inputs(model)]
    try:
        if flavor.is_tf_keras(model):
            serve = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
            tf.saved_model.save(model, directory, signatures=serve.get_concrete_function(*specs))
        else:
            model.export(directory, format="tf_saved_model", verbose=False,
                         input_signature=[specs if len(specs) > 1 else specs[0]])
    except Exception as e:  # noqa: BLE001
        raise TFLiteError(f"SavedModel export failed: {first_line(e)}") from None


def convert_saved_model(directory, calibration, io="int8", verbose=False):
    """Full-integer TFLite bytes of a SavedModel, converted in a child process.

    `calibration`: {signature input name: float32 array}.
    """
    if io not in IO_TYPES:
        raise TFLiteError(f"unknown io type '{io}', choose from {', '.join(IO_TYPES)}")
    with tempfile.TemporaryDirectory(prefix="pea-convert-") as tmp:
        calib, out = os.path.join(tmp, "calibration.npz"), os.path.join(tmp, "model.tflite")
        np.savez(calib, **calibration)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0" if verbose else "3")
        try:
            proc = subprocess.run([sys.executable, "-P", _WORKER, directory, calib, io, out], env=env,
                                  capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TFLiteError(f"the TFLite converter did not finish in {CONVERT_TIMEOUT_S} s") from None
        if verbose:
            sys.stderr.write(proc.stderr)
        if proc.returncode < 0:
            name = signal_name(proc.returncode)
            raise TFLiteError(f"the TFLite converter crashed ({name}); this happens with calibration "
                              "values it cannot represent: check the calibration data (rerun with "
                              "--verbose for the converter's log)")
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            raise TFLiteError(f"TFLite conversion failed: {lines[-1].strip() if lines else 'no message'}")
        with open(out, "rb") as f:
            return f.read()


def quantize(model, calibration, *, io="int8", verbose=False):
    """Full-integer TFLite bytes of a plain Keras model (either flavour); no ReLU checks.
    Use ``convert`` for the checked, written, load-tested file.

    Args:
        model: a Keras 3 (TensorFlow backend) or tf_keras model without PEA layers.
        calibration: one float32 array, a list in model input order, or {input name: array}.
        io: int8 | uint8 | float input/output tensors.
        verbose: show the converter's log.

    Returns:
        The .tflite flatbuffer as bytes.

    Raises:
        DataError: calibration data that is not float, finite and shaped like the inputs.
        TFLiteError: the export or the conversion failed (a converter crash included).
    """
    calibration = check_calibration(model, calibration)
    with tempfile.TemporaryDirectory(prefix="pea-export-") as tmp:
        export_saved_model(model, tmp)
        return convert_saved_model(tmp, calibration, io, verbose)
