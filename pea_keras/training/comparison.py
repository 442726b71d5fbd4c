"""`compare`: the ReLU baseline and PEA trained with the same seed and data order, side by side
(`train.py --compare`); each half is one `run.run` in its own run directory."""

import dataclasses
import json
import os

from pea_keras import files
from pea_keras.training import modes, reporting, rundir
from pea_keras.training.run import run, settle


def compare(config, callbacks=()):
    """Trains the ReLU baseline and PEA with the same seed and data order; returns both and
    PEA minus ReLU for each model form (also written to <output_dir>/compare.json)."""
    config = settle(config)
    base = config.output_dir or os.path.join("runs", dataclasses.replace(config, mode="compare").run_name())
    stem = config.tflite_name or os.path.basename(os.path.realpath(base))  # Two sweeps never share a file.
    configs = {mode: dataclasses.replace(config, mode=mode, output_dir=os.path.join(base, mode),
                                         tflite_name=f"{stem}_{mode}",
                                         relu_gradient=config.relu_gradient if modes.get(mode).blends else "relu")
               for mode in ("relu", "pea")}
    started = {mode: rundir.has_progress(c.run_dir()) for mode, c in configs.items()}
    if config.resume and any(started.values()):  # --resume: a half stopped before its first checkpoint starts over.
        configs = {m: c if started[m] else dataclasses.replace(c, resume=False) for m, c in configs.items()}
    with rundir.owned(list(configs.values()), folder=base):
        return _compare(config, base, configs, callbacks)


def _compare(config, base, configs, callbacks):
    finished = {}
    for mode, mode_config in configs.items():  # Refuse before training either model.
        try:
            rundir.check(mode_config)
        except rundir.RunFinished:  # --resume: a finished half is read back, not trained again.
            with open(os.path.join(mode_config.run_dir(), reporting.METRICS)) as f:
                finished[mode] = json.load(f)
    if len(finished) == len(configs) and os.path.exists(os.path.join(os.path.realpath(base), "compare.json")):
        raise rundir.RunFinished(f"{os.path.realpath(base)} has finished (both runs and compare.json): nothing "
                                 "to resume; to train it again, pass --overwrite instead of --resume")
    results = {mode: finished.get(mode) or run(mode_config, callbacks) for mode, mode_config in configs.items()}
    metric = results["pea"]["metric"]
    relu, pea = results["relu"][metric], results["pea"][metric]
    comparison = {
        "metric": metric, "seed": config.seed, "relu": relu, "pea": pea,
        "difference": {k: pea[k] - relu[k] for k in ("pea", "stripped", "int8", "validation")
                       if k in pea and k in relu},
        "runs": {m: r["run_dir"] for m, r in results.items()},
    }
    path = os.path.join(os.path.realpath(base), "compare.json")
    try:
        reporting.write_json(path, comparison)
    except OSError as e:
        message = files.write_error_message(e, safe="both runs are complete",
                                            retry="run again with --resume")
        if message is None:
            raise
        raise files.StorageError(message) from e
    if str(config.verbose) != "0":
        print("\n" + reporting.compare_table(comparison), flush=True)
    return comparison
