"""The int8 TFLite file of a run, with its TFLite Micro kit: converted, checked ReLU-only and
scored on LiteRT. A model trained on JAX or PyTorch converts under TensorFlow in a child process
(`_tensorflow_export.py`); the file, its kit and its facts are the same as on TensorFlow."""

import functools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from pea_keras import files, flavor, tflite
from pea_keras.tflite import converter, devices
from pea_keras.training import rundir

_WORKER = "pea_keras.training._tensorflow_export"


def facts_of(conversion):
    """What a run keeps of a `tflite.Conversion` (JSON, so the TensorFlow child can send it)."""
    return {"size_bytes": conversion.size_bytes, "arena_bytes": conversion.arena_bytes,
            "kit": list(conversion.c_array), "notes": list(conversion.notes)}


def _convert(model, path, calibration, qat_epochs, qat_data, allow_gates, kit_dir, class_names):
    """The facts of `tflite.convert` with the kit in `kit_dir` (None: no kit): {size_bytes,
    arena_bytes, kit, notes}; run in this process when the model is on TensorFlow, else in a
    TensorFlow child process on the model saved as .keras."""
    settings = dict(overwrite=True, qat_epochs=qat_epochs, require_runtimes=("litert",),
                    c_array_dir=kit_dir, class_names=tuple(class_names), allow_gates=allow_gates)
    if flavor.runs_on_tensorflow(model):
        return facts_of(tflite.convert(model, path, calibration, qat_data=qat_data, **settings))
    with tempfile.TemporaryDirectory(prefix="pea-export-") as tmp:
        keras_path, arrays = os.path.join(tmp, "relu_model.keras"), os.path.join(tmp, "arrays.npz")
        model.save(keras_path)
        extra = {"x": qat_data[0], "y": qat_data[1]} if qat_epochs else {}
        np.savez(arrays, calibration=calibration, **extra)
        env = converter.child_env(KERAS_BACKEND="tensorflow")
        proc = subprocess.run([sys.executable, "-P", "-m", _WORKER, keras_path, path, arrays,
                               json.dumps(settings)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        raise tflite.TFLiteError(lines[-1] if lines else f"the TensorFlow export process exited with "
                                 f"status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
        facts = convert(config.tflite_dir, class_names)
    except tflite.TFLiteError as e:  # The file may still serve phones: convert without the kit.
        facts = convert(None, ())
        warn(f"no TFLite Micro kit for {path}: {e}")
    files.atomic_copy(path, os.path.join(run_dir, "model_int8.tflite"))
    size_bytes, arena_bytes = facts["size_bytes"], facts["arena_bytes"]
    return {"path": path, "size_bytes": size_bytes,
            "passed_outside_relu": facts["notes"],  # What the proof accepted by name (allow_gates).
            "qat_epochs": config.qat_epochs, "micro_arena_bytes": arena_bytes, "micro_kit": facts["kit"],
            "device": devices.needs(size_bytes, arena_bytes),
            "evaluation": task.evaluate_tflite(path, test_ds, data, config.tflite_eval_examples)}
