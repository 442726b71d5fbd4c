"""The int8 TFLite file of a run, with its TFLite Micro kit: converted, checked ReLU-only and
scored on LiteRT. A model trained on JAX or PyTorch is saved as .keras and converted from the file,
under TensorFlow in `tflite.convert`'s converter child process; the file, its kit and its facts are
the same as on TensorFlow."""

import functools
import os
import tempfile

from pea_keras import files, flavor, tflite
from pea_keras.tflite import devices
from pea_keras.training import rundir


def _convert(model, path, calibration, qat_epochs, qat_data, allow_gates, kit_dir, class_names):
    """The `tflite.Conversion` of `model` with the kit in `kit_dir` (None: no kit)."""
    # The run owns the file's lock (rundir.owned) and the file may serve phones alone: TFLite Micro is not required.
    settings = dict(overwrite=True, qat_epochs=qat_epochs, qat_data=qat_data, require_runtimes=("litert",),
                    lock=False, c_array_dir=kit_dir, class_names=tuple(class_names), allow_gates=allow_gates)
    if flavor.runs_on_tensorflow(model):
        return tflite.convert(model, path, calibration, **settings)
    with tempfile.TemporaryDirectory(prefix="pea-export-") as tmp:
        keras_path = os.path.join(tmp, "relu_model.keras")
        model.save(keras_path)
        return tflite.convert(keras_path, path, calibration, **settings)


def export_int8(config, task, data, model, test_ds, run_dir, warn):
    """Writes <tflite_dir>/<run>_int8.tflite (a copy in the run directory) and its TFLite Micro kit
    (<run>_int8_model_data.cc, ...) next to it; returns its facts (under "device": the flash and RAM
    it needs on a microcontroller, `devices.needs`), with the task's `Evaluation` of it under
    "evaluation". `convert` proves the file ReLU-only (or refuses it) and runs TFLite Micro once for
    the arena and the kit's golden outputs. `warn(message)` reports what the run loses without
    stopping it."""
    os.makedirs(config.tflite_dir, exist_ok=True)
    path = rundir.tflite_path(config)
    calibration = task.calibration(data, config, config.calibration_examples)
    qat_data = task.qat_data(data, config, max(config.calibration_examples, 1024)) if config.qat_epochs else None
    # Replacing an existing file was allowed by rundir.check (--overwrite or --resume).
    convert = functools.partial(_convert, model, path, calibration, config.qat_epochs, qat_data, config.allow_gates)
    class_names = getattr(data, "class_names", ())
    try:
        conversion = convert(config.tflite_dir, class_names)
    except tflite.TFLiteError as e:  # The file may still serve phones: convert without the kit.
        conversion = convert(None, ())
        warn(f"no TFLite Micro kit for {path}: {e}")
    files.atomic_copy(path, os.path.join(run_dir, "model_int8.tflite"))
    size_bytes, arena_bytes = conversion.size_bytes, conversion.arena_bytes
    return {"path": path, "size_bytes": size_bytes,
            "passed_outside_relu": list(conversion.notes),  # What the proof accepted by name (allow_gates).
            "qat_epochs": config.qat_epochs, "micro_arena_bytes": arena_bytes, "micro_kit": list(conversion.c_array),
            "device": devices.needs(size_bytes, arena_bytes),
            "evaluation": task.evaluate_tflite(path, test_ds, data, config.tflite_eval_examples)}
