"""The int8 TFLite file of a run, with its TFLite Micro kit: converted, checked ReLU-only and
scored on LiteRT."""

import os

from pea_keras import files, tflite
from pea_keras.tflite import devices
from pea_keras.training import rundir


def export_int8(config, task, data, model, test_ds, run_dir, warn):
    """Writes <tflite_dir>/<run>_int8.tflite (a copy in the run directory) and its TFLite Micro kit
    (<run>_int8_model_data.cc, ...) next to it; returns its facts (under "device": the flash and RAM
    it needs on a microcontroller, `devices.needs`), with the task's `Evaluation` of it under
    "evaluation". `warn(message)` reports what the run loses without stopping it."""
    os.makedirs(config.tflite_dir, exist_ok=True)
    path = rundir.tflite_path(config)
    calibration = task.calibration(data, config, config.calibration_examples)
    qat_data = task.qat_data(data, config, max(config.calibration_examples, 1024)) if config.qat_epochs else None
    # Replacing an existing file was allowed by rundir.check (--overwrite or --resume).
    conversion = tflite.convert(model, path, calibration, overwrite=True, qat_epochs=config.qat_epochs,
                                qat_data=qat_data, require_runtimes=("litert",))
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        kit = tflite.write_micro_kit(path, config.tflite_dir, stem, calibration[:3],
                                     class_names=getattr(data, "class_names", ()))
    except tflite.TFLiteError as e:  # The file still serves phones; say why microcontrollers lose out.
        warn(f"no TFLite Micro kit for {path}: {e}")
        kit = []
    violations = tflite.relu_only_violations(path, int8=True)
    files.atomic_copy(path, os.path.join(run_dir, "model_int8.tflite"))
    return {"path": path, "size_bytes": conversion.size_bytes, "relu_only": not violations,
            "violations": [str(v) for v in violations], "qat_epochs": config.qat_epochs,
            "micro_arena_bytes": conversion.arena_bytes, "micro_kit": list(kit),
            "device": devices.needs(conversion.size_bytes, conversion.arena_bytes),
            "evaluation": task.evaluate_tflite(path, test_ds, config.tflite_eval_examples)}
