"""The PEA training chain behind `train.py`: one call, one run directory.

    metrics = run(RunConfig(arch="mobilenet_v2"))

`run` is the composition of the steps, each usable alone (benchmarks train through them):
prepare (check settings, load data) -> build (the --arch or --init_from model, wrapped or relufied;
optimizer, checkpoint) -> train (PEAScheduler moves alpha 0 -> 1) -> score (every model form on the
test split, strip to ReLU) -> deploy (int8 file checked ReLU-only, kit) -> report (metrics.json,
history.csv, TensorBoard logs, plots, summary table). The chain is task-agnostic: data, model,
loss and score come from a `tasks.Task`.
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
from pea_keras import console, schedules
from pea_keras.errors import UsageError
from pea_keras.training import callbacks as run_callbacks
from pea_keras.training import config as config_lib
from pea_keras.training import distribute, export, reporting, rundir, starting, storage, tasks
from pea_keras.training.config import RunConfig

__all__ = ["RunConfig", "Ablation", "run", "prepare", "build", "train", "score", "deploy", "report"]


@dataclasses.dataclass(frozen=True)
class Ablation:
    """What an ablation changes in the chain: alpha held by `schedule` (e.g. Constant(0.5)) instead
    of the run's, or learned (`trainable_alpha`, no schedule); either way the model ends below
    alpha 1 and is stripped by force."""

    schedule: object = None
    trainable_alpha: bool = False


@dataclasses.dataclass
class _Run:
    """What the steps of one run share."""

    config: RunConfig
    task: tasks.Task
    K: object
    strategy: object
    run_dir: str
    chief: bool
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
    ablation: Ablation = None


def make_schedule(config, total_steps):
    """The alpha schedule over `total_steps` (mode novel: alpha = 0 throughout)."""
    if config.mode == "novel":
        return schedules.Constant(0.0)
    return schedules.get(config.schedule, total_steps, config.pea_start, config.pea_end)


def make_optimizer(K, config, total_steps, steps_per_epoch):
    """(optimizer, learning-rate schedule): cosine decay to 0 after an optional linear warm-up."""
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    decay = max(1, total_steps - warmup)
    if warmup:
        lr = K.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=config.lr, warmup_steps=warmup)
    else:
        lr = K.optimizers.schedules.CosineDecay(config.lr, decay)
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        return K.optimizers.SGD(lr, momentum=config.momentum, nesterov=True, weight_decay=wd), lr
    if config.optimizer == "adam":
        return K.optimizers.Adam(lr, weight_decay=wd), lr
    if config.optimizer == "adamw":
        return K.optimizers.AdamW(lr, weight_decay=config.weight_decay or 1e-4), lr
    return K.optimizers.RMSprop(lr, rho=0.9, momentum=config.momentum, epsilon=1e-3, weight_decay=wd), lr


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


def prepare(config, ablation=None):
    """Checks everything a user can get wrong, then loads the data; nothing is written yet."""
    config = settle(config)
    rundir.check(config)
    task = tasks.get(config.task)
    strategy = distribute.make_strategy(config.strategy, config.tpu,
                                        config.backend if config.keras == "3" else "tensorflow")
    chief = distribute.is_chief(strategy)
    # Other workers train alongside and write only to a scratch folder, removed at the end.
    run_dir = config.run_dir() if chief else tempfile.mkdtemp(prefix="pea-keras-worker-")
    r = _Run(config, task, config_lib.flavour(config.keras), strategy, run_dir, chief, ablation=ablation)
    # Before the pipelines: tf.data's shuffle order depends on the global seed too, so setting it
    # first gives every run with this --seed the same batches (also the second run of --compare).
    r.K.utils.set_random_seed(config.seed)
    r.data = task.load_data(config)
    r.augmentation = task.augmentation(r.data, config)
    r.splits = task.datasets(r.data, config)
    n_train = r.data.sizes["train"]
    if config.batch_size > n_train:
        raise UsageError(f"--batch_size {config.batch_size} is larger than the training split "
                         f"({n_train} examples)")
    r.steps_per_epoch = config.steps_per_epoch or n_train // config.batch_size
    r.total_steps = config.epochs * r.steps_per_epoch
    r.schedule = make_schedule(config, r.total_steps) if config.mode not in ("relu", "surrogate") else None
    if ablation is not None and config.mode not in ("relu", "surrogate"):
        r.schedule = None if ablation.trainable_alpha else ablation.schedule
    elif config.mode in ("pea", "relufy") and r.schedule(r.total_steps - 1) < 1.0:
        how = ("lower --pea_end below 1: at 1, alpha reaches 1 only after the last step" if config.pea_end >= 1
               else f"lower --pea_end (now {config.pea_end}) or train more steps (now {r.total_steps})")
        raise UsageError(f"alpha would end at {r.schedule(r.total_steps - 1):.3f} < 1, so the model "
                         f"could not be stripped to ReLU; {how}")
    return r


def build(r):
    """The model (wrapped unless --mode relu), optimizer and checkpoint; restored on --resume."""
    config = r.config
    r.K.utils.set_random_seed(config.seed)  # The same initial weights for every mode.
    with r.strategy.scope():
        initial = starting.initial_model(config, r.task, r.K, r.data, r.splits[0])
        if config.mode == "surrogate":
            model = pea_keras.surrogate(initial, activation=config.activation)
        elif config.mode == "relufy":
            model = pea_keras.relufy(initial, relu_gradient=config.relu_gradient)
        elif config.mode != "relu":
            model = pea_keras.wrap(initial, activation=config.activation, alpha=0.0,
                                   relu_gradient=config.relu_gradient,
                                   trainable_alpha=bool(r.ablation and r.ablation.trainable_alpha))
        else:
            model = initial
        r.trainer = starting.trainer(config, model, initial)
        r.optimizer, r.lr_schedule = make_optimizer(r.K, config, r.total_steps, r.steps_per_epoch)
        r.trainer.compile(optimizer=r.optimizer, loss=r.task.loss(r.K, config, r.data),
                          metrics=r.task.metrics(r.K, r.data))
    r.model = model
    if not config.trains_on_tensorflow():  # tf.train.Checkpoint tracks TensorFlow variables only.
        return
    with r.strategy.scope():
        r.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        teacher = {"teacher": r.trainer.teacher} if config.distill == "self" else {}  # The average moves.
        r.checkpoint = tf.train.Checkpoint(model=model, optimizer=r.optimizer, epoch=r.epoch_var, **teacher)
    r.manager = tf.train.CheckpointManager(r.checkpoint, os.path.join(r.run_dir, rundir.CHECKPOINTS),
                                           max_to_keep=2)
    if config.resume:
        with r.strategy.scope():
            r.optimizer.build(model.trainable_variables)  # Slots exist, so restore assigns them now.
        r.checkpoint.restore(r.manager.latest_checkpoint).assert_existing_objects_matched()
        r.initial_epoch = int(r.epoch_var.numpy())
        step = int(r.optimizer.iterations.numpy())
        r.trace = reporting.load_alpha_trace(r.run_dir, before_step=step)
        reporting.truncate_history(r.run_dir, r.initial_epoch)
        _log(config, f"Resuming {r.run_dir} at epoch {r.initial_epoch} (step {step})")


def _fit_callbacks(r, extra):
    config, K = r.config, r.K
    found = [run_callbacks.StopWhenTerminated()]
    if r.schedule is not None:
        # Before history.csv and TensorBoard, so that they see logs["pea_alpha"].
        found.append(pea_keras.PEAScheduler(r.schedule))
    found += [run_callbacks.AlphaTrace(r.run_dir, r.trace, reporting.trace_stride(r.total_steps)),
              run_callbacks.HistoryCSV(os.path.join(r.run_dir, reporting.HISTORY), append=config.resume)]
    if importlib.util.find_spec("tensorboard") is not None:
        found.append(run_callbacks.tensorboard(K, os.path.join(r.run_dir, "logs"), r.warnings))
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
                 f"{r.strategy.num_replicas_in_sync} replica(s); run directory {r.run_dir}")
    _log(config, f"Augmentation: {r.augmentation.describe()}")
    start = time.time()
    if r.initial_epoch < config.epochs:
        train_ds, val_ds, _ = r.splits
        with warnings.catch_warnings():
            if config.mode == "novel" or r.ablation:  # Ends below 1 on purpose: no "cannot strip" warning.
                warnings.filterwarnings("ignore", message="Training ended with pea_alpha")
            r.trainer.fit(train_ds, epochs=config.epochs, steps_per_epoch=r.steps_per_epoch,
                        validation_data=val_ds if getattr(r.strategy, "validates_in_fit", True) else None,
                        initial_epoch=r.initial_epoch, callbacks=callbacks,
                        verbose=_fit_verbosity(config.verbose),
                        shuffle=False)  # The pipeline shuffles (with --seed).
    r.train_seconds = time.time() - start
    if hasattr(r.strategy, "after_training"):
        r.strategy.after_training(r.model)
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
    """Scores the trained model, saves it, strips it to ReLU (mode pea/relu; by force for an
    ablation) and scores that. Returns (scores, sizes, the deployable model or None)."""
    scores, sizes = _Scores(), {"params": int(r.model.count_params())}
    _, val_ds, test_ds = r.splits
    predicted = scores.add("pea", r.task.evaluate(r.model, test_ds, r.data))
    scores.add("validation", r.task.evaluate(r.model, val_ds, r.data))
    pea_path = os.path.join(r.run_dir, "pea_model.keras")
    storage.save_model(r.model, pea_path)
    sizes["pea_model_bytes"] = rundir.size_bytes(pea_path)
    if r.config.mode == "novel":
        _log(r.config, "Mode novel: g everywhere cannot be deployed ReLU-only; skipping strip and export")
        return scores, sizes, None
    deployable = pea_keras.strip(r.model, force=r.ablation is not None)  # Else raises if any alpha != 1.
    if r.config.bn_reestimate:
        pea_keras.reestimate_batchnorm(deployable, r.splits[0], batches=r.config.bn_reestimate)
    predicted_relu = scores.add("stripped", r.task.evaluate(deployable, test_ds, r.data))
    relu_path = os.path.join(r.run_dir, "relu_model.keras")
    storage.save_model(deployable, relu_path)
    sizes["relu_model_bytes"] = rundir.size_bytes(relu_path)
    if scores.main["stripped"] != scores.main["pea"] and r.ablation is None and not r.config.bn_reestimate:
        _warn(r, f"stripped model scores {scores.main['stripped']} but the PEA model "
                 f"{scores.main['pea']} (prediction agreement {np.mean(predicted == predicted_relu):.4f})")
    return scores, sizes, deployable


def deploy(r, deployable, scores, sizes):
    """The int8 file and its kit (chief only, unless --noexport); adds its score and size.
    Returns its facts for metrics.json, or None."""
    if deployable is None or not r.config.export or not r.chief:
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
        "examples": dict(r.data.sizes), "replicas": r.strategy.num_replicas_in_sync,
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


def run(config, callbacks=(), ablation=None):
    """Runs the whole chain for `config` and returns the metrics also written to metrics.json.

    Args:
        config: a `RunConfig`.
        callbacks: appended to fit's callbacks after the built-in ones (PEAScheduler, alpha trace,
            history, TensorBoard, checkpoint).
        ablation: an `Ablation` (benchmarks): alpha held or learned, then stripped by force.

    Raises:
        UsageError: a setting or the data cannot work (before anything is written where possible).
        StorageError: the disk refused a write; the message says what is intact (see storage).
    """
    t_start, config, progress = time.time(), settle(config), {}
    with rundir.owned([config]):  # Until the end, another run into its folder or int8 file is refused.
        r = prepare(config, ablation)
        with storage.storage_errors_stop_the_run(os.path.join(r.run_dir, rundir.CHECKPOINTS), progress):
            build(r)  # Last place a setting can fail (an input too small for the arch): nothing written yet.
            rundir.prepare(r.config, r.run_dir)
            train(r, callbacks)
            scores, sizes, deployable = score(r)
            progress["models_dir"] = r.run_dir
            t_export = time.time()
            tflite_info = deploy(r, deployable, scores, sizes)
            metrics = report(r, scores, sizes, tflite_info, t_start, time.time() - t_export)
    if hasattr(r.strategy, "wait_for_all"):
        r.strategy.wait_for_all()
    if not r.chief:
        shutil.rmtree(r.run_dir, ignore_errors=True)
    return metrics
