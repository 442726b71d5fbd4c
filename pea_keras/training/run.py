"""The PEA training chain behind `train.py`: one call, one run directory.

    metrics = run(RunConfig(arch="mobilenet_v2"))

`run` is the composition of the steps, each usable alone (benchmarks train through them):
prepare (check settings, load data) -> build (the --arch or --init_from model, wrapped or relufied;
optimizer, checkpoint) -> train (PEAScheduler moves alpha 0 -> 1) -> score (every model form on the
test split, strip to ReLU) -> deploy (int8 file checked ReLU-only, kit) -> report (metrics.json,
history.csv, TensorBoard logs, plots, summary table). The chain is task-agnostic: data, model,
loss and score come from a `tasks.Task`, what is trained, how alpha moves and what is deployed
from a `modes.Mode`, and where it trains from a `distribute.Runtime`.
"""

import dataclasses
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import tensorflow as tf

import pea_keras
from pea_keras import console
from pea_keras.errors import UsageError
from pea_keras.training import callbacks as run_callbacks
from pea_keras.training import config as config_lib
from pea_keras.training import distribute, export, modes, reporting, rundir, starting, storage, tasks
from pea_keras.training.config import RunConfig

__all__ = ["RunConfig", "run", "prepare", "build", "train", "score", "deploy", "report"]


@dataclasses.dataclass
class _Run:
    """What the steps of one run share."""

    config: RunConfig
    task: tasks.Task
    mode: modes.Mode
    k: object
    runtime: distribute.Runtime
    run_dir: str
    data: object = None
    augmentation: object = None  # pea_keras.data.augmentation.Augmentation of the training split.
    splits: tuple = ()
    steps_per_epoch: int = 0
    total_steps: int = 0
    schedule: object = None
    model: object = None
    trainer: object = None  # What fit trains: the model, or a distiller training it.
    optimizer: object = None
    lr_schedule: object = None
    checkpoint: object = None
    manager: object = None
    epoch_var: object = None
    initial_epoch: int = 0
    trace: tuple = dataclasses.field(default_factory=lambda: ([], []))  # (steps, alphas)
    train_seconds: float = 0.0
    warnings: list = dataclasses.field(default_factory=list)  # Problems that did not stop the run.


def make_optimizer(k, config, total_steps, steps_per_epoch):
    """(optimizer, learning-rate schedule): cosine decay to 0 after an optional linear warm-up."""
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    decay = max(1, total_steps - warmup)
    if warmup:
        lr = k.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=config.lr, warmup_steps=warmup)
    else:
        lr = k.optimizers.schedules.CosineDecay(config.lr, decay)
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        return k.optimizers.SGD(lr, momentum=config.momentum, nesterov=True, weight_decay=wd), lr
    if config.optimizer == "adam":
        return k.optimizers.Adam(lr, weight_decay=wd), lr
    if config.optimizer == "adamw":
        return k.optimizers.AdamW(lr, weight_decay=config.weight_decay or 1e-4), lr
    return k.optimizers.RMSprop(lr, rho=0.9, momentum=config.momentum, epsilon=1e-3, weight_decay=wd), lr


def _log(config, message):
    if str(config.verbose) != "0":
        print(message, flush=True)


def _warn(r, message):
    """A problem that did not stop the run: one line on stderr, kept in metrics.json's warnings."""
    r.warnings.append(message)
    print(f"{console.prog('pea-train')}: warning: {message}", file=sys.stderr, flush=True)


def _fit_verbosity(verbose):
    """auto: a progress bar on a terminal, one line per epoch in a log file."""
    if str(verbose) == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def settle(config):
    """A copy of `config`, checked (UsageError) and with its task's defaults."""
    config_lib.validate(config)
    return tasks.with_defaults(config)


def prepare(config, mode=None):
    """Checks everything a user can get wrong, then loads the data; nothing is written yet.
    `mode`: a `modes.Mode` to train in place of --mode's (e.g. a `modes.Ablation`)."""
    config = settle(config)
    rundir.check(config)
    runtime = distribute.make_runtime(config.strategy, config.tpu,
                                      config.backend if config.keras == "3" else "tensorflow")
    # Other workers train alongside and write only to a scratch folder, removed at the end.
    run_dir = config.run_dir() if runtime.chief else tempfile.mkdtemp(prefix="pea-keras-worker-")
    r = _Run(config, tasks.get(config.task), mode or modes.get(config.mode), config_lib.flavor(config.keras),
             runtime, run_dir)
    # Before the pipelines: tf.data's shuffle order depends on the global seed too, so setting it
    # first gives every run with this --seed the same batches (also the second run of --compare).
    r.k.utils.set_random_seed(config.seed)
    r.data = r.task.load_data(config)
    r.augmentation = r.task.augmentation(r.data, config)
    r.splits = r.task.datasets(r.data, config)
    n_train = r.data.sizes["train"]
    if config.batch_size > n_train:
        raise UsageError(f"--batch_size {config.batch_size} is larger than the training split "
                         f"({n_train} examples)")
    r.steps_per_epoch = config.steps_per_epoch or n_train // config.batch_size
    r.total_steps = config.epochs * r.steps_per_epoch
    r.schedule = r.mode.schedule(config, r.total_steps)
    return r


def build(r):
    """The model (as the mode makes it), optimizer and checkpoint; restored on --resume."""
    config = r.config
    r.k.utils.set_random_seed(config.seed)  # The same initial weights for every mode.
    with r.runtime.scope():
        initial = starting.initial_model(config, r.task, r.k, r.data, r.splits[0])
        model = r.mode.model(initial, config)
        r.trainer = starting.trainer(config, model, initial)
        r.optimizer, r.lr_schedule = make_optimizer(r.k, config, r.total_steps, r.steps_per_epoch)
        r.trainer.compile(optimizer=r.optimizer, loss=r.task.loss(r.k, config, r.data),
                          metrics=r.task.metrics(r.k, r.data))
    r.model = model
    if not config.trains_on_tensorflow():  # tf.train.Checkpoint tracks TensorFlow variables only.
        return
    with r.runtime.scope():
        r.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        teacher = {"teacher": r.trainer.teacher} if config.distill == "self" else {}  # The average moves.
        r.checkpoint = tf.train.Checkpoint(model=model, optimizer=r.optimizer, epoch=r.epoch_var, **teacher)
    r.manager = tf.train.CheckpointManager(r.checkpoint, os.path.join(r.run_dir, rundir.CHECKPOINTS),
                                           max_to_keep=2)
    if config.resume:
        with r.runtime.scope():
            r.optimizer.build(model.trainable_variables)  # Slots exist, so restore assigns them now.
        r.checkpoint.restore(r.manager.latest_checkpoint).assert_existing_objects_matched()
        r.initial_epoch = int(r.epoch_var.numpy())
        step = int(r.optimizer.iterations.numpy())
        r.trace = reporting.load_alpha_trace(r.run_dir, before_step=step)
        reporting.truncate_history(r.run_dir, r.initial_epoch)
        _log(config, f"Resuming {r.run_dir} at epoch {r.initial_epoch} (step {step})")


def _fit_callbacks(r, extra):
    config, k = r.config, r.k
    found = [run_callbacks.StopOnSignal()]
    if r.schedule is not None:
        # Before history.csv and TensorBoard, so that they see logs["pea_alpha"].
        found.append(pea_keras.PEAScheduler(r.schedule))
    found += [run_callbacks.AlphaTrace(r.run_dir, r.trace, reporting.trace_stride(r.total_steps)),
              run_callbacks.HistoryCSV(os.path.join(r.run_dir, reporting.HISTORY), append=config.resume)]
    if importlib.util.find_spec("tensorboard") is not None:
        found.append(run_callbacks.tensorboard(k, os.path.join(r.run_dir, "logs"), r.warnings))
    else:
        _log(config, "Note: the tensorboard package is not installed; no TensorBoard logs "
                     "(pip install tensorboard)")
    if r.manager is not None:  # Last of the epoch: committing the checkpoint commits what the above wrote.
        found.append(run_callbacks.EpochCheckpoint(r.manager, r.epoch_var))
    return found + list(getattr(r.trainer, "teacher_updates", ())) + list(extra)


def train(r, extra_callbacks=()):
    """fit() with the run's callbacks (PEAScheduler, alpha trace, history, TensorBoard, checkpoint)
    and then `extra_callbacks`; resumes at the restored epoch."""
    config = r.config
    callbacks = _fit_callbacks(r, extra_callbacks)
    _log(config, f"Training {config.arch} ({r.model.count_params():,} parameters, mode {config.mode}, "
                 f"Keras {config.keras} on {pea_keras.flavor.backend_of(r.model)}) on {r.data.name}: "
                 f"{r.data.sizes['train']} training examples, "
                 f"{config.epochs} epochs x {r.steps_per_epoch} steps, "
                 f"{r.runtime.num_replicas_in_sync} replica(s); run directory {r.run_dir}")
    _log(config, f"Augmentation: {r.augmentation.describe()}")
    start = time.time()
    if r.initial_epoch < config.epochs:
        train_ds, val_ds, _ = r.splits
        with warnings.catch_warnings():
            if r.mode.ends_below_one:  # On purpose: no "cannot strip" warning.
                warnings.filterwarnings("ignore", message="Training ended with pea_alpha")
            r.trainer.fit(train_ds, epochs=config.epochs, steps_per_epoch=r.steps_per_epoch,
                        validation_data=val_ds if r.runtime.validates_in_fit else None,
                        initial_epoch=r.initial_epoch, callbacks=callbacks,
                        verbose=_fit_verbosity(config.verbose),
                        shuffle=False)  # The pipeline shuffles (with --seed).
    r.train_seconds = time.time() - start
    r.runtime.after_training(r.model)
    if r.schedule is not None:
        reporting.save_alpha_trace(r.run_dir, *r.trace)


class _Scores:
    """The score of every model form ({form: value}) and the secondary scores ({name: {form: v}})."""

    def __init__(self):
        self.main, self.secondary = {}, {}

    def add(self, form, evaluation):
        self.main[form] = evaluation.score
        for name, value in evaluation.extra.items():
            self.secondary.setdefault(name, {})[form] = value
        return evaluation.predictions


def score(r):
    """Scores the trained model, saves it, strips it to ReLU as its mode does (unless the mode is
    not deployed) and scores that, on the test split and on the validation split. Returns (scores,
    sizes, the deployable model or None)."""
    scores, sizes = _Scores(), {"params": int(r.model.count_params())}
    _, val_ds, test_ds = r.splits
    predicted = scores.add("pea", r.task.evaluate(r.model, test_ds, r.data))
    pea_path = os.path.join(r.run_dir, "pea_model.keras")
    storage.save_model(r.model, pea_path)
    sizes["pea_model_bytes"] = rundir.size_bytes(pea_path)
    if r.mode.undeployable:
        _log(r.config, f"Mode {r.config.mode}: {r.mode.undeployable}; skipping strip and export")
        scores.add("validation", r.task.evaluate(r.model, val_ds, r.data))
        return scores, sizes, None
    deployable = r.mode.strip(r.model)
    if r.config.bn_reestimate:
        pea_keras.reestimate_batchnorm(deployable, r.splits[0], batches=r.config.bn_reestimate)
    predicted_relu = scores.add("stripped", r.task.evaluate(deployable, test_ds, r.data))
    scores.add("validation", r.task.evaluate(deployable, val_ds, r.data))  # Recipes are chosen on what deploys.
    relu_path = os.path.join(r.run_dir, "relu_model.keras")
    storage.save_model(deployable, relu_path)
    sizes["relu_model_bytes"] = rundir.size_bytes(relu_path)
    if scores.main["stripped"] != scores.main["pea"] and not r.mode.ends_below_one and not r.config.bn_reestimate:
        _warn(r, f"stripped model scores {scores.main['stripped']} but the PEA model "
                 f"{scores.main['pea']} (prediction agreement {np.mean(predicted == predicted_relu):.4f})")
    return scores, sizes, deployable


def deploy(r, deployable, scores, sizes):
    """The int8 file and its kit (chief only, unless --noexport); adds its score and size.
    Returns its facts for metrics.json, or None."""
    if deployable is None or not r.config.export or not r.runtime.chief:
        return None
    tflite_info = export.export_int8(r.config, r.task, r.data, deployable, r.splits[2], r.run_dir,
                                     warn=lambda message: _warn(r, message))
    scores.add("int8", tflite_info.pop("evaluation"))
    sizes["tflite_int8_bytes"] = tflite_info["size_bytes"]
    return tflite_info


def report(r, scores, sizes, tflite_info, t_start, export_seconds):
    """metrics.json, the alpha and learning-curve plots and the summary table; returns the metrics."""
    config = r.config
    layers = pea_keras.pea_layers(r.model)
    steps_done = int(r.optimizer.iterations.numpy())
    history = reporting.read_history(r.run_dir)
    metric = r.task.metric
    metrics = {
        "task": r.task.name, "metric": metric, "arch": config.arch, "mode": config.mode,
        "backend": pea_keras.flavor.backend_of(r.model),
        "dataset": r.data.name, "run_dir": r.run_dir,
        "class_names": list(getattr(r.data, "class_names", ())),  # Output index -> label, for deployers.
        metric: scores.main, **scores.secondary,
        "stripped_equals_pea": (scores.main.get("stripped") == scores.main["pea"]
                                if "stripped" in scores.main else None),
        "params": sizes["params"], "sizes": sizes,
        "alpha_final": float(layers[0].alpha.numpy()) if layers else 1.0,
        "alpha_trace": {"step": r.trace[0], "alpha": r.trace[1]},
        "schedule": None if r.schedule is None else {
            "class_name": type(r.schedule).__name__, "config": r.schedule.get_config()},
        "steps_per_epoch": r.steps_per_epoch, "total_steps": r.total_steps, "steps_done": steps_done,
        "final_learning_rate": float(r.lr_schedule(steps_done)),
        "examples": dict(r.data.sizes), "replicas": r.runtime.num_replicas_in_sync,
        "augmentation": r.augmentation.as_dict(),
        "history": history,
        "tflite": tflite_info,
        "wall_time_s": {"total": time.time() - t_start, "train": r.train_seconds, "export": export_seconds},
        "flags": dataclasses.asdict(config),
        "warnings": r.warnings,
    }
    title = f"{config.arch} {config.mode} on {r.data.name}"
    reporting.plot_alpha(os.path.join(r.run_dir, reporting.ALPHA_PLOT), r.trace[0], r.trace[1],
                         r.steps_per_epoch, title)
    reporting.plot_curves(os.path.join(r.run_dir, reporting.CURVES_PLOT), history, r.task.keras_metric, title)
    metrics["wall_time_s"]["total"] = time.time() - t_start
    reporting.write_json(os.path.join(r.run_dir, reporting.METRICS), metrics)
    _log(config, "\n" + reporting.summary_table(metrics))
    return metrics


def run(config, callbacks=(), mode=None):
    """Runs the whole chain for `config` and returns the metrics also written to metrics.json.

    Args:
        config: a `RunConfig`.
        callbacks: appended to fit's callbacks after the built-in ones (PEAScheduler, alpha trace,
            history, TensorBoard, checkpoint).
        mode: a `modes.Mode` trained in place of `config.mode`'s, such as a `modes.Ablation`
            (benchmarks: alpha held or learned, then stripped by force).

    Raises:
        UsageError: a setting or the data cannot work (before anything is written where possible).
        StorageError: the disk refused a write; the message says what is intact (see storage).
    """
    t_start, config, progress = time.time(), settle(config), {}
    with rundir.owned([config]):  # Until the end, another run into its folder or int8 file is refused.
        r = prepare(config, mode)
        with storage.storage_errors_stop_the_run(os.path.join(r.run_dir, rundir.CHECKPOINTS), progress):
            build(r)  # Last place a setting can fail (an input too small for the arch): nothing written yet.
            rundir.prepare(r.config, r.run_dir)
            train(r, callbacks)
            scores, sizes, deployable = score(r)
            progress["models_dir"] = r.run_dir
            t_export = time.time()
            tflite_info = deploy(r, deployable, scores, sizes)
            metrics = report(r, scores, sizes, tflite_info, t_start, time.time() - t_export)
    r.runtime.wait_for_all()
    if not r.runtime.chief:
        shutil.rmtree(r.run_dir, ignore_errors=True)
    return metrics
