"""The PEA training chain behind `train.py`: one call, one run directory.

    metrics = run(RunConfig(arch="mobilenet_v2"))

build (random init) -> wrap every ReLU in a PEALayer -> train while PEAScheduler moves alpha
0 -> 1 -> strip to the plain ReLU network -> int8 TFLite (checked ReLU-only) -> score every form
on the test split -> metrics.json, history.csv, TensorBoard logs, plots, summary table.

The chain is task-agnostic: data, model, loss and score come from a `tasks` object.
"""

import dataclasses
import json
import os
import re
import shutil
import time
import warnings

import numpy as np
import tensorflow as tf

from pea_keras.errors import UsageError

from . import reporting, tasks

MODES = ("pea", "relu", "novel")
SCHEDULES = ("linear", "cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
CHECKPOINTS = "checkpoints"


@dataclasses.dataclass
class RunConfig:
    """Every choice of a run; `train.py` fills it from flags, field for field."""
    task: str = "classification"
    arch: str = ""                      # "": the task's default (mobilenet_v2 for classification).
    width: float = 1.0
    image_size: int = 0                 # 0: the task's default for the dataset (32 for digits).
    bn_momentum: float = 0.9
    mode: str = "pea"
    activation: str = "silu"
    schedule: str = "cosine"
    pea_start: float = 0.0
    pea_end: float = 0.75
    dataset: str = ""                   # "": the task's default (digits for classification).
    data_dir: str | None = None
    download: str = "auto"
    augment: bool = True
    epochs: int = 15
    steps_per_epoch: int = 0            # 0: one pass over the training split.
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    seed: int = 0
    output_dir: str = ""                # "": runs/<arch>_<mode>_<dataset>.
    resume: bool = False
    overwrite: bool = False
    keras: str = "2"
    strategy: str = "default"
    tpu: str = ""
    qat_epochs: int = 0
    export: bool = True
    tflite_dir: str = "tflite"
    calibration_examples: int = 256
    tflite_eval_examples: int = 0       # 0: the whole test split.
    verbose: str = "auto"

    def run_name(self):
        """<arch>_<mode>_<dataset>, the dataset made file-name safe (folder:/a/b -> folder-a-b)."""
        dataset = re.sub(r"[^A-Za-z0-9]+", "-", self.dataset).strip("-")
        return f"{self.arch}_{self.mode}_{dataset}"


def flavour(name):
    """The Keras module for --keras: "3" -> keras, "2" -> tf_keras."""
    if name == "3":
        import keras
        return keras
    if name == "2":
        import tf_keras
        return tf_keras
    raise UsageError(f"--keras must be 3 or 2, got {name!r}")


def validate(config):
    """Raises UsageError for values that cannot work, before anything slow happens."""
    def need(ok, message):
        if not ok:
            raise UsageError(message)

    need(config.mode in MODES, f"--mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    need(config.schedule in SCHEDULES,
         f"--schedule must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
    need(config.optimizer in OPTIMIZERS,
         f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")
    need(config.strategy in STRATEGIES,
         f"--strategy must be one of {', '.join(STRATEGIES)}, got {config.strategy!r}")
    need(config.epochs >= 1, f"--epochs must be >= 1, got {config.epochs}")
    need(config.batch_size >= 1, f"--batch_size must be >= 1, got {config.batch_size}")
    need(config.steps_per_epoch >= 0, "--steps_per_epoch must be >= 0")
    need(config.lr > 0, f"--lr must be > 0, got {config.lr}")
    need(config.weight_decay >= 0, "--weight_decay must be >= 0")
    need(0 <= config.label_smoothing < 1, "--label_smoothing must be in [0, 1)")
    need(0 <= config.pea_start < config.pea_end <= 1,
         f"need 0 <= --pea_start < --pea_end <= 1, got {config.pea_start} and {config.pea_end}")
    need(config.qat_epochs >= 0, "--qat_epochs must be >= 0")
    need(config.image_size >= 0, "--image_size must be > 0")
    need(str(config.verbose) in ("auto", "0", "1", "2"),
         f"--verbose must be auto, 0, 1 or 2, got {config.verbose!r}")
    flavour(config.keras)
    from pea_keras import activations
    try:
        activations.get(config.activation)
    except ValueError as e:
        raise UsageError(f"--activation: {e}") from None
    task = tasks.get(config.task)
    need(not config.arch or config.arch in task.arch_names(),
         f"unknown --arch {config.arch!r}; choose one of {', '.join(task.arch_names())}"
         f" (--task {task.name})")


def make_strategy(name, tpu=""):
    """The tf.distribute strategy for --strategy; batch sizes are global (split over replicas)."""
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()  # Every local GPU.
        # No GPU: every logical CPU device (one unless configured, as tests do to simulate two).
        return tf.distribute.MirroredStrategy(
            devices=[d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multiworker":  # Cluster from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise UsageError(f"--strategy tpu: no TPU found ({str(e).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def make_schedule(config, total_steps):
    """The alpha schedule over `total_steps` (mode novel: alpha = 0 throughout)."""
    from pea_keras import schedules

    if config.mode == "novel":
        return schedules.Constant(0.0)
    if config.schedule == "constant":
        return schedules.Constant(1.0)
    cls = {"linear": schedules.Linear, "cosine": schedules.Cosine, "step": schedules.Step}[config.schedule]
    return cls.over(total_steps, config.pea_start, config.pea_end)


def make_optimizer(K, config, total_steps, steps_per_epoch):
    """(optimizer, learning-rate schedule): cosine decay to 0 after an optional linear warm-up."""
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    decay = max(1, total_steps - warmup)
    if warmup:
        lr = K.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=config.lr,
                                                warmup_steps=warmup)
    else:
        lr = K.optimizers.schedules.CosineDecay(config.lr, decay)
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = K.optimizers.SGD(lr, momentum=config.momentum, nesterov=True, weight_decay=wd)
    elif config.optimizer == "adam":
        optimizer = K.optimizers.Adam(lr, weight_decay=wd)
    elif config.optimizer == "adamw":
        optimizer = K.optimizers.AdamW(lr, weight_decay=config.weight_decay or 1e-4)
    else:
        optimizer = K.optimizers.RMSprop(lr, rho=0.9, momentum=config.momentum, epsilon=1e-3,
                                         weight_decay=wd)
    return optimizer, lr


def _callbacks(K, run_dir, model, manager, epoch_var, trace, stride):
    """Alpha trace (every `stride` steps, saved each epoch) and a checkpoint each epoch."""

    class AlphaTrace(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            import pea_keras
            self._layers = pea_keras.pea_layers(model)

        def on_train_batch_end(self, batch, logs=None):
            if not self._layers:
                return
            step = int(model.optimizer.iterations.numpy()) - 1  # The step that just ran.
            if step % stride == 0:
                trace[0].append(step)
                trace[1].append(float(self._layers[0].alpha.numpy()))

        def on_epoch_end(self, epoch, logs=None):
            if self._layers:
                reporting.save_alpha_trace(run_dir, *trace)

    class EpochCheckpoint(K.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epoch_var.assign(epoch + 1)
            manager.save(checkpoint_number=epoch + 1)

    return [AlphaTrace(), EpochCheckpoint()]


# Flags that may change between an interrupted run and its --resume.
_RESUMABLE_CHANGES = ("resume", "verbose", "export", "tflite_dir", "calibration_examples",
                      "tflite_eval_examples", "qat_epochs", "data_dir", "download", "strategy", "tpu")
RUN_FLAGS = "run_flags.json"


def _check_resume_flags(config, run_dir):
    """Writes the run's flags; on --resume, refuses flags that would change the training."""
    path = os.path.join(run_dir, RUN_FLAGS)
    current = dataclasses.asdict(config)
    if config.resume and os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        changed = sorted(k for k, v in saved.items()
                         if k not in _RESUMABLE_CHANGES and current.get(k, v) != v)
        if changed:
            raise UsageError("--resume with different flags than the interrupted run: " + ", ".join(
                f"--{k} {saved[k]} -> {current[k]}" for k in changed))
    reporting.write_json(path, current)


def _has_tensorboard():
    import importlib.util
    return importlib.util.find_spec("tensorboard") is not None


def _file_size(path):
    total = 0
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        return total
    return os.path.getsize(path) if os.path.exists(path) else 0


def _fit(model, train_ds, config, steps_per_epoch, val_ds, initial_epoch, callbacks):
    model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
              validation_data=val_ds, initial_epoch=initial_epoch, callbacks=callbacks,
              verbose=_fit_verbosity(config.verbose),
              shuffle=False)  # The pipeline shuffles (with --seed).


def _fit_verbosity(verbose):
    """auto: a progress bar on a terminal, one line per epoch in a log file."""
    if str(verbose) == "auto":
        import sys
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _log(config, message):
    if str(config.verbose) != "0":
        print(message, flush=True)


def run(config, callbacks=()):
    """Runs the whole chain for `config` and returns the metrics also written to metrics.json.

    `callbacks` are appended to the flavour's callbacks after the built-in ones (PEAScheduler,
    alpha trace, checkpoint, CSVLogger, TensorBoard).
    """
    import pea_keras

    t_start = time.time()
    config = dataclasses.replace(config)
    validate(config)
    config = tasks.with_defaults(config)
    K = flavour(config.keras)
    task = tasks.get(config.task)
    strategy = make_strategy(config.strategy, config.tpu)
    chief = _is_chief(strategy)
    run_dir = os.path.abspath(config.output_dir or os.path.join("runs", config.run_name()))
    if not chief:  # Other workers train alongside but write nothing that matters.
        run_dir = os.path.join(run_dir, "workers", f"{strategy.cluster_resolver.task_id}")
    ckpt_dir = os.path.join(run_dir, CHECKPOINTS)
    if config.resume and not tf.train.latest_checkpoint(ckpt_dir):
        raise UsageError(f"--resume: no checkpoint in {ckpt_dir}")
    _refuse_to_overwrite(config, run_dir)
    if not config.resume and os.path.isdir(run_dir):
        for name in (CHECKPOINTS, "logs", reporting.HISTORY, reporting.ALPHA_TRACE):
            path = os.path.join(run_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)
    os.makedirs(run_dir, exist_ok=True)
    _check_resume_flags(config, run_dir)

    # Before the pipelines: tf.data's shuffle order depends on the global seed too, so setting it
    # first gives every run with this --seed the same batches (also the second run of --compare).
    K.utils.set_random_seed(config.seed)
    data = task.load_data(config)
    train_ds, val_ds, test_ds = task.datasets(data, config)
    n_train = data.sizes["train"]
    if config.batch_size > n_train:
        raise UsageError(f"--batch_size {config.batch_size} is larger than the training split "
                         f"({n_train} examples)")
    steps_per_epoch = config.steps_per_epoch or n_train // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    schedule = make_schedule(config, total_steps) if config.mode != "relu" else None
    if config.mode == "pea" and schedule(total_steps - 1) < 1.0:
        raise UsageError(f"alpha would end at {schedule(total_steps - 1):.3f} < 1, so the model could "
                         f"not be stripped to ReLU; lower --pea_end (now {config.pea_end}) or use "
                         "more steps")

    K.utils.set_random_seed(config.seed)  # The same initial weights for every mode.
    with strategy.scope():
        model = task.build_model(K, config, data)
        if config.mode != "relu":
            model = pea_keras.wrap(model, activation=config.activation, alpha=0.0)
        optimizer, lr_schedule = make_optimizer(K, config, total_steps, steps_per_epoch)
        model.compile(optimizer=optimizer, loss=task.loss(K, config), metrics=task.metrics(K))
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=2)
    initial_epoch, trace = 0, ([], [])
    if config.resume:
        with strategy.scope():
            optimizer.build(model.trainable_variables)  # Slots exist, so restore assigns them now.
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        initial_epoch = int(epoch_var.numpy())
        trace = reporting.load_alpha_trace(run_dir, before_step=int(optimizer.iterations.numpy()))
        reporting.truncate_history(run_dir, initial_epoch)
        _log(config, f"Resuming {run_dir} at epoch {initial_epoch} "
                     f"(step {int(optimizer.iterations.numpy())})")

    fit_callbacks = []
    if schedule is not None:
        # Before CSVLogger and TensorBoard, so that they see logs["pea_alpha"].
        fit_callbacks.append(pea_keras.PEAScheduler(schedule))
    fit_callbacks += _callbacks(K, run_dir, model, manager, epoch_var, trace,
                                reporting.trace_stride(total_steps))
    fit_callbacks.append(K.callbacks.CSVLogger(os.path.join(run_dir, reporting.HISTORY),
                                               append=config.resume))
    if _has_tensorboard():
        fit_callbacks.append(K.callbacks.TensorBoard(os.path.join(run_dir, "logs"),
                                                     update_freq="epoch"))
    else:
        _log(config, "Note: the tensorboard package is not installed; no TensorBoard logs "
                     "(pip install tensorboard)")
    fit_callbacks += list(callbacks)
    _log(config, f"Training {config.arch} ({model.count_params():,} parameters, mode "
                 f"{config.mode}, Keras {config.keras}) on {data.name}: {n_train} training "
                 f"examples, {config.epochs} epochs x {steps_per_epoch} steps, "
                 f"{strategy.num_replicas_in_sync} replica(s); run directory {run_dir}")
    t_train = time.time()
    if initial_epoch < config.epochs:
        with warnings.catch_warnings():
            if config.mode == "novel":  # alpha = 0 on purpose: no "cannot strip" warning.
                warnings.filterwarnings("ignore", message="Training ended with pea_alpha")
            _fit(model, train_ds, config, steps_per_epoch, val_ds, initial_epoch, fit_callbacks)
    train_seconds = time.time() - t_train
    if schedule is not None:
        reporting.save_alpha_trace(run_dir, *trace)
    steps_done = int(optimizer.iterations.numpy())
    layers = pea_keras.pea_layers(model)
    alpha_final = float(layers[0].alpha.numpy()) if layers else 1.0

    metric = task.metric
    scores, sizes = {}, {"params": int(model.count_params())}
    secondary = {}  # {name: {form: value}} from tasks whose evaluations return a third item.

    def score(form, evaluation):
        scores[form], predictions, *extra = evaluation
        for name, value in (extra[0] if extra else {}).items():
            secondary.setdefault(name, {})[form] = value
        return predictions

    predicted = score("pea", task.evaluate(model, test_ds))
    score("validation", task.evaluate(model, val_ds))
    pea_path = os.path.join(run_dir, "pea_model.keras")
    model.save(pea_path)
    sizes["pea_model_bytes"] = _file_size(pea_path)

    deployable = None
    if config.mode == "novel":
        _log(config, "Mode novel: g everywhere cannot be deployed ReLU-only; skipping strip and export")
    else:
        deployable = pea_keras.strip(model)  # Raises if any alpha != 1.
        predicted_relu = score("stripped", task.evaluate(deployable, test_ds))
        relu_path = os.path.join(run_dir, "relu_model.keras")
        deployable.save(relu_path)
        sizes["relu_model_bytes"] = _file_size(relu_path)
        agreement = float(np.mean(predicted == predicted_relu))
        if scores["stripped"] != scores["pea"]:
            print(f"WARNING: stripped model scores {scores['stripped']} but the PEA model "
                  f"{scores['pea']} (prediction agreement {agreement:.4f})")

    tflite_info = None
    t_export = time.time()
    if deployable is not None and config.export and chief:
        tflite_info = _export(config, task, data, deployable, test_ds, run_dir)
        score("int8", tflite_info.pop("evaluation"))
        sizes["tflite_int8_bytes"] = tflite_info["size_bytes"]
    export_seconds = time.time() - t_export

    history = reporting.read_history(run_dir)
    metrics = {
        "task": task.name, "metric": metric, "arch": config.arch, "mode": config.mode,
        "dataset": data.name, "run_dir": run_dir,
        metric: scores, **secondary,
        "stripped_equals_pea": (scores.get("stripped") == scores["pea"]
                                if "stripped" in scores else None),
        "params": sizes["params"], "sizes": sizes,
        "alpha_final": alpha_final,
        "alpha_trace": {"step": trace[0], "alpha": trace[1]},
        "schedule": None if schedule is None else {
            "class_name": type(schedule).__name__, "config": schedule.get_config()},
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "steps_done": steps_done,
        "final_learning_rate": float(lr_schedule(steps_done)),
        "examples": dict(data.sizes), "replicas": strategy.num_replicas_in_sync,
        "history": history,
        "tflite": tflite_info,
        "wall_time_s": {"total": time.time() - t_start, "train": train_seconds,
                        "export": export_seconds},
        "flags": dataclasses.asdict(config),
    }
    reporting.write_json(os.path.join(run_dir, reporting.METRICS), metrics)
    title = f"{config.arch} {config.mode} on {data.name}"
    reporting.plot_alpha(os.path.join(run_dir, reporting.ALPHA_PLOT), trace[0], trace[1],
                         steps_per_epoch, title)
    reporting.plot_curves(os.path.join(run_dir, reporting.CURVES_PLOT), history,
                          task.keras_metric, title)
    metrics["wall_time_s"]["total"] = time.time() - t_start
    reporting.write_json(os.path.join(run_dir, reporting.METRICS), metrics)
    _log(config, "\n" + reporting.summary_table(metrics))
    return metrics


def _tflite_path(config):
    return os.path.abspath(os.path.join(config.tflite_dir, f"{config.run_name()}_int8.tflite"))


def _refuse_to_overwrite(config, run_dir):
    """A new run never replaces an earlier one unless --overwrite says so."""
    if config.resume or config.overwrite:
        return
    earlier = [path for path in (os.path.join(run_dir, reporting.METRICS), os.path.join(run_dir, CHECKPOINTS))
               if os.path.exists(path)]
    if config.export and os.path.exists(_tflite_path(config)):
        earlier.append(_tflite_path(config))
    if earlier:
        raise UsageError(f"{earlier[0]} exists from an earlier run; pass --overwrite to replace it, "
                         "--resume to continue that run, or another --output_dir")


def _export(config, task, data, model, test_ds, run_dir):
    """int8 TFLite into --tflite_dir (a copy in the run directory), checked and scored on LiteRT."""
    from pea_keras import tflite

    os.makedirs(config.tflite_dir, exist_ok=True)
    path = _tflite_path(config)
    if os.path.exists(path):
        os.unlink(path)  # Allowed by --overwrite or --resume (see _refuse_to_overwrite).
    calibration = task.calibration(data, config, config.calibration_examples)
    qat_data = task.qat_data(data, config, max(config.calibration_examples, 1024)) \
        if config.qat_epochs else None
    conversion = tflite.convert(model, path, calibration, qat_epochs=config.qat_epochs,
                                qat_data=qat_data, require_runtimes=("litert",))
    violations = tflite.relu_only_violations(path, int8=True)
    shutil.copyfile(path, os.path.join(run_dir, "model_int8.tflite"))
    evaluation = task.evaluate_tflite(path, test_ds, config.tflite_eval_examples)
    return {"path": path, "size_bytes": conversion.size_bytes, "relu_only": not violations,
            "violations": [str(v) for v in violations], "qat_epochs": config.qat_epochs,
            "micro_arena_bytes": conversion.arena_bytes, "evaluation": evaluation}


def compare(config, callbacks=()):
    """Trains the ReLU baseline and PEA with the same seed and data order; returns both and
    PEA minus ReLU for each model form (also written to <output_dir>/compare.json)."""
    validate(config)
    config = tasks.with_defaults(config)
    base = config.output_dir or os.path.join(
        "runs", dataclasses.replace(config, mode="compare").run_name())
    configs = {mode: dataclasses.replace(config, mode=mode, output_dir=os.path.join(base, mode))
               for mode in ("relu", "pea")}
    for mode_config in configs.values():  # Refuse before training either model.
        _refuse_to_overwrite(mode_config, os.path.abspath(mode_config.output_dir))
    results = {mode: run(mode_config, callbacks) for mode, mode_config in configs.items()}
    metric = results["pea"]["metric"]
    relu, pea = results["relu"][metric], results["pea"][metric]
    comparison = {
        "metric": metric, "seed": config.seed, "relu": relu, "pea": pea,
        "difference": {k: pea[k] - relu[k] for k in ("pea", "stripped", "int8", "validation")
                       if k in pea and k in relu},
        "runs": {m: r["run_dir"] for m, r in results.items()},
    }
    reporting.write_json(os.path.join(os.path.abspath(base), "compare.json"), comparison)
    _log(config, "\n" + reporting.compare_table(comparison))
    return comparison
