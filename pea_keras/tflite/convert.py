"""Keras model -> full-integer TFLite file that is proven ReLU-only and loads on device.

Conversion routes (measured with TF 2.21):
- Keras 3: ``model.export(dir)`` to a SavedModel, then
  ``TFLiteConverter.from_saved_model``. A concrete function from
  ``tf.function(model)`` fails at calibration (READ_VARIABLE on unfrozen
  variables), and ``from_keras_model`` expects tf_keras internals.
- tf_keras: ``TFLiteConverter.from_keras_model``.
Both quantize with ``Optimize.DEFAULT``, ``TFLITE_BUILTINS_INT8`` only (so any
op without an int8 kernel fails loudly instead of staying float) and
per-channel weights (the converter default).
"""

import dataclasses
import json
import os
import tempfile
import zipfile

import numpy as np

from pea_keras.tflite.check import relu_only_violations
from pea_keras.tflite.errors import TFLiteError
from pea_keras.tflite.inspect import inspect, totals_lines
from pea_keras.files import atomic_write

IO_TYPES = ("int8", "uint8", "float")


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _keras_version_of_zip(path):
    try:
        with zipfile.ZipFile(path) as z:
            for name in ("metadata.json", "config.json"):
                if name in z.namelist():
                    version = json.loads(z.read(name)).get("keras_version")
                    if version:
                        return version
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise TFLiteError(f"{path}: not a Keras .keras archive ({_first_line(e)})") from None
    raise TFLiteError(f"{path}: .keras archive without keras_version in metadata.json/config.json")


def load_model(path):
    """Load a ``.keras`` (Keras 3 or tf_keras, by its keras_version), ``.h5`` (tf_keras)
    or SavedModel directory (tf_keras). ``import pea_keras`` registers PEALayer first."""
    import pea_keras  # noqa: F401  (registers PEALayer in both flavours)

    path = os.fspath(path)
    if not os.path.exists(path):
        raise TFLiteError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise TFLiteError(f"{path}: directory is not a SavedModel (no saved_model.pb)")
        import tf_keras as loader
    elif path.endswith(".keras"):
        version = _keras_version_of_zip(path)
        if version.startswith("2."):
            import tf_keras as loader
        else:
            import keras as loader
    elif path.endswith((".h5", ".hdf5")):
        import tf_keras as loader
    else:
        raise TFLiteError(f"{path}: not a Keras model (expected .keras, .h5 or a SavedModel directory)")
    try:
        model = loader.models.load_model(path, compile=False)
    except Exception as e:
        raise TFLiteError(f"{path}: cannot load the model ({_first_line(e)})") from None
    if not hasattr(model, "inputs") or not getattr(model, "inputs", None):
        raise TFLiteError(f"{path}: loaded object is not a Keras model with known inputs")
    return model


def strip_for_deploy(model, force=False):
    """The plain ReLU model to deploy: ``pea_keras.strip``; refuses alpha < 1 unless ``force``."""
    import pea_keras

    try:
        return pea_keras.strip(model, force=force)
    except ValueError as e:
        raise TFLiteError(f"{_first_line(e)} (train until alpha reaches 1, or pass --force "
                          f"to deploy the ReLU network anyway)") from None


def input_shape(model):
    return tuple(None if d is None else int(d) for d in model.inputs[0].shape)


def check_calibration(model, calibration):
    x = np.asarray(calibration, dtype=np.float32)
    want = input_shape(model)[1:]
    got = x.shape[1:]
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
        shown = "(N, " + ", ".join("?" if w is None else str(w) for w in want) + ")"
        raise TFLiteError(f"calibration data shaped {x.shape} does not match the model input {shown}")
    if len(x) == 0:
        raise TFLiteError("calibration data is empty")
    return x


def _configure(converter, calibration, io):
    import tensorflow as tf

    if io not in IO_TYPES:
        raise TFLiteError(f"unknown io type '{io}', choose from {', '.join(IO_TYPES)}")

    def representative_dataset():
        for i in range(len(calibration)):
            yield [calibration[i:i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float":
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    return converter


def _run_converter(converter):
    try:
        return bytes(converter.convert())
    except Exception as e:
        raise TFLiteError(f"TFLite conversion failed: {_first_line(e)}") from None


def quantize(model, calibration, *, io="int8"):
    """Full-integer TFLite bytes of a plain Keras model (either flavour); no checks.
    Use ``convert`` for the checked, written, load-tested file."""
    import tensorflow as tf
    from pea_keras.flavor import is_tf_keras

    calibration = check_calibration(model, calibration)
    if is_tf_keras(model):
        return _run_converter(_configure(tf.lite.TFLiteConverter.from_keras_model(model),
                                         calibration, io))
    with tempfile.TemporaryDirectory(prefix="pea-export-") as tmp:
        try:
            model.export(tmp, format="tf_saved_model", verbose=False)
        except Exception as e:
            raise TFLiteError(f"SavedModel export failed: {_first_line(e)}") from None
        return _run_converter(_configure(tf.lite.TFLiteConverter.from_saved_model(tmp),
                                         calibration, io))


@dataclasses.dataclass
class Conversion:
    """What ``convert`` wrote and measured."""

    path: str
    size_bytes: int
    io: str
    info: object  # inspect.ModelInfo
    arena_bytes: int | None
    arena_note: str = ""
    runtimes_ok: tuple = ()
    c_array: tuple = ()
    qat_epochs: int = 0
    pea_layers_stripped: int = 0

    def summary(self):
        info = self.info
        lines = [f"wrote {self.path}: {self.size_bytes} bytes, full-integer int8, io={self.io}"
                 + (f", QAT {self.qat_epochs} epochs" if self.qat_epochs else "")]
        if self.pea_layers_stripped:
            lines.append(f"stripped {self.pea_layers_stripped} PEA layers to ReLU")
        lines.append("ReLU-only check: passed (int8 compute, no non-ReLU activation)")
        lines += totals_lines(info, tensor_names=False)
        lines.append(f"TFLite Micro tensor arena: {self.arena_bytes} bytes"
                     if self.arena_bytes else f"TFLite Micro tensor arena: unknown ({self.arena_note})")
        if self.runtimes_ok:
            lines.append("load test passed: " + ", ".join(self.runtimes_ok))
        for p in self.c_array:
            lines.append(f"wrote {p}")
        return "\n".join(lines)


def convert(model, output_path, calibration, *, io="int8", force=False, qat_epochs=0,
            qat_data=None, c_array_dir=None, require_runtimes=("litert", "micro"), golden_samples=3):
    """Strip, (optionally QAT-fine-tune,) quantize, prove ReLU-only, load-test, write.

    ``model`` is a Keras model or a path for ``load_model``. Nothing is written
    unless every step passes; the file appears atomically. ``force`` allows
    overwriting and stripping PEA layers whose alpha < 1. The TFLite Micro arena
    is always measured; ``require_runtimes`` names the runtimes that must load
    and run the file. ``c_array_dir`` gets the TFLite Micro kit (``micro_kit``) named after
    the output's stem, with ``golden_samples`` calibration samples as its golden inputs.
    """
    from pea_keras.tflite import runtimes

    output_path = os.fspath(output_path)
    if os.path.exists(output_path) and not force:
        raise TFLiteError(f"{output_path} exists (pass --force to overwrite)")
    if os.path.isdir(output_path):
        raise TFLiteError(f"{output_path} is a directory")
    out_dir = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(out_dir):
        raise TFLiteError(f"{out_dir}: output folder does not exist")
    if c_array_dir is not None and not force:
        from pea_keras.tflite.micro_kit import kit_paths

        for path in kit_paths(c_array_dir, os.path.splitext(os.path.basename(output_path))[0]):
            if os.path.exists(path):
                raise TFLiteError(f"{path} exists (pass --force to overwrite)")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    import pea_keras

    n_pea = len(pea_keras.pea_layers(model))
    plain = strip_for_deploy(model, force=force)
    calibration = check_calibration(plain, calibration)
    if qat_epochs:
        if qat_data is None:
            raise TFLiteError("QAT needs labelled training data (--train_data)")
        from pea_keras.tflite.qat import qat_tflite_bytes

        data = qat_tflite_bytes(plain, qat_data[0], qat_data[1], qat_epochs, calibration, io=io)
    else:
        data = quantize(plain, calibration, io=io)
    info = inspect(data)
    bad = relu_only_violations(info, int8=True)
    if bad:
        raise TFLiteError("converted file is not ReLU-only: " + "; ".join(str(v) for v in bad))
    if "litert" in require_runtimes:
        runtimes.predict(data, calibration[:1], runtime="litert")
    arena, note = None, ""
    try:
        arena = runtimes.micro_arena_bytes(data)
    except TFLiteError as e:
        if "micro" in require_runtimes:
            raise
        note = str(e)
    atomic_write(output_path, data)
    c_files = ()
    if c_array_dir is not None:
        from pea_keras.tflite.micro_kit import write_micro_kit

        try:
            c_files = write_micro_kit(data, c_array_dir, os.path.splitext(os.path.basename(output_path))[0],
                                      calibration[:golden_samples], os.path.basename(output_path))
        except TFLiteError:
            os.unlink(output_path)
            raise
        except OSError as e:
            os.unlink(output_path)
            raise TFLiteError(f"{c_array_dir}: cannot write the C array ({e.strerror})") from None
    ok = tuple(r for r in ("litert", "micro") if r in require_runtimes or (r == "micro" and arena))
    return Conversion(output_path, len(data), io, info, arena, note, ok, c_files, qat_epochs, n_pea)
