"""Every setting of a training run, defined once: `RunConfig`'s fields carry their help text and
choices, and `train.py`'s flags are generated from them, so defaults and choices cannot drift."""

import dataclasses
import os
import re
import sys

from pea_keras import schedules
from pea_keras.data.arrays import DEFAULT_CALIBRATION_SAMPLES
from pea_keras.errors import SettingError, UsageError
from pea_keras.files import missing
from pea_keras.training import modes, tasks


def setting(default, help, choices=None, check=None, resumable=False):
    """A RunConfig field: `help` for --help, `choices` for the flag, `check` (value -> bool,
    message) validated before anything slow happens; `resumable` if --resume may change it (it
    does not change what is trained)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices,
                                                        "check": check, "resumable": resumable})


def _at_least(minimum):
    return lambda v: (v >= minimum, f"must be >= {minimum}")


def _positive(v):
    return v > 0, "must be > 0"


def _fraction(v):
    return 0 <= v < 1, "must be in [0, 1)"


def _augment_spec(v):
    from pea_keras.data import augmentation

    try:
        augmentation.parse(v)
    except UsageError:
        return False, f"must be {augmentation.SPEC_HELP}"
    return True, ""


def _distill_spec(v):
    ok = v in ("none", "self", "init") or (v.startswith("teacher:") and len(v) > len("teacher:"))
    return ok, "must be none, self, init or teacher:PATH"


# Spellings of earlier versions, rewritten before flags are parsed so existing commands keep working.
FLAG_SPELLINGS = {"--noaugment": "--augment=none", "-noaugment": "--augment=none",
                  "--augment=false": "--augment=none", "--augment=true": "--augment=auto"}


def respell(argv):
    """argv with FLAG_SPELLINGS rewritten; a bare --augment (the old boolean) means --augment=auto."""
    out = []
    for i, arg in enumerate(argv):
        bare = arg in ("--augment", "-augment") and (i + 1 == len(argv) or argv[i + 1].startswith("-"))
        out.append("--augment=auto" if bare else FLAG_SPELLINGS.get(arg, arg))
    return out


@dataclasses.dataclass
class RunConfig:
    """Every choice of a run; `train.py` fills it from flags generated from these fields."""

    # What is trained.
    task: str = setting("classification", "What to train: classification (scored by top-1) or "
                        "segmentation (per-pixel classes, scored by mean IoU). Unset --arch, --dataset "
                        "and --image_size take the task's defaults.", tasks.names())
    arch: str = setting("", "Network. Classification (default mobilenet_v2): mobilenet_v1, mobilenet_v2, "
                        "mobilenet_v3_small, mobilenet_v3_large (the ReLU-only minimalistic variants), "
                        "resnet18, resnet50, tiny (a microcontroller-sized CNN). Segmentation (default "
                        "lraspp_mobilenet_v2): lraspp_mobilenet_v2, deeplabv3_mobilenet_v2.")
    width: float = setting(0.0, "Width multiplier (the MobileNet alpha; mobilenet_v2 accepts 0.35, 0.5, "
                           "0.75, 1.0, 1.3, 1.4); 0 = the network's default: 0.35 for classification's "
                           "mobilenet_v2 (its int8 file fits a 1 MB flash / 256 KB RAM Cortex-M), 1.0 "
                           "for every other network.", check=_at_least(0))
    image_size: int = setting(0, "Input side in pixels; 0 = the dataset's default (32 for digits and "
                              "CIFAR, 224 otherwise; segmentation: 64 for digit_scenes, 256 for folders, "
                              "512 for cityscapes, whose width is twice the height). MobileNets need "
                              ">= 32; segmentation needs a multiple of 16.", check=_at_least(0))
    bn_momentum: float = setting(0.9, "BatchNormalization momentum for every BN layer (keras.applications' "
                                 "0.999 leaves short runs at chance on evaluation).", check=_fraction)
    mode: str = setting("pea", modes.help_text(), modes.names())
    init_from: str = setting("", "Start from this saved Keras model (.keras, .h5 or SavedModel, of the "
                             "--keras flavour) instead of a new --arch network: its inputs must be the "
                             "task's images and its outputs the classes' logits. --mode relufy needs it; "
                             "with pea, surrogate or novel its ReLUs are wrapped as for --arch; relu "
                             "fine-tunes it unchanged.")
    activation: str = setting("silu", "The novel activation g: a name from pea_keras.activations.names() "
                              "(silu, gelu, mish, hard_swish, elu, ...).")
    relu_gradient: str = setting("relu", "The gradient of the blend's ReLU branch (--mode pea, novel, relufy): "
                                 "relu, its own; g, g's derivative (0 above a ReLU6 cap), which makes the "
                                 "blend PEA while alpha < 1 and the surrogate (SUGAR) at alpha 1, at no extra "
                                 "cost (relufy's gates keep the hard sigmoid's).", ("relu", "g"))
    schedule: str = setting("cosine", "How alpha moves from 0 to 1 between --pea_start and --pea_end "
                            "(constant: alpha = 1, i.e. ReLU with PEA layers).",
                            schedules.names())
    pea_start: float = setting(0.0, "Fraction of training where alpha starts rising from 0.")
    pea_end: float = setting(0.75, "Fraction of training where alpha reaches 1 (must be < 1 so that the "
                             "last steps train the pure ReLU network).")
    distill: str = setting("none", "Knowledge distillation: none; self (the teacher is an exponential moving "
                           "average of the model evaluated with g, alpha 0; --mode pea, not on JAX); "
                           "teacher:PATH (a saved model with the same inputs and logits, e.g. a --mode novel "
                           "run's pea_model.keras); init (the --init_from model as it was loaded, frozen). "
                           "Costs a teacher forward pass per step.", check=_distill_spec)
    distill_temperature: float = setting(4.0, "Distillation temperature T (soft targets softmax(logits / T)).",
                                         check=_positive)
    distill_weight: float = setting(0.5, "Share of the distillation term in the loss; the labels' loss "
                                    "keeps the rest.", check=lambda v: (0 <= v <= 1, "must be in [0, 1]"))

    # Data.
    dataset: str = setting("", "Data SOURCE. Classification (default digits): digits (scikit-learn's "
                           "handwritten digits, offline), tfds:NAME or a bare TFDS name (cifar10, "
                           "imagenette, imagenet2012, ...) or folder:PATH (one sub-folder of images per "
                           "class). Segmentation (default digit_scenes): digit_scenes (scenes of "
                           "scikit-learn digits, 11 classes, generated offline from --seed), cityscapes "
                           "(TFDS, manual download, 19 classes) or folder:PATH (PATH/images/ and "
                           "PATH/masks/, masks of class indices, 255 = ignore).")
    data_dir: str | None = setting(None, "TFDS data directory (default: ~/tensorflow_datasets).", resumable=True)
    download: str = setting("auto", "TFDS download: auto = only when the download host is reachable.",
                            ("auto", "always", "never"), resumable=True)
    augment: str = setting("auto", "Training augmentation of image datasets: auto, none (also "
                           "--noaugment), or a comma list of flip and crop. auto: the crop follows the "
                           "image size (for images stored at less than twice --image_size, reflect-pad "
                           "and crop back, shifting by up to 1/8 of the side for photos and 1/16 for "
                           "anything else; for larger ones, a random-resized crop of 8-100 % of the "
                           "area); horizontal flips only for TFDS photos known to keep their class "
                           "mirrored (cifar10, cifar100, imagenet2012, imagenette, ...), never for "
                           "mnist, svhn_cropped or folder:PATH (pass flip,crop for a folder of photos); "
                           "digits are never augmented; segmentation: crop and flip.",
                           check=_augment_spec)

    # Optimisation.
    epochs: int = setting(15, "Training epochs.", check=_at_least(1))
    steps_per_epoch: int = setting(0, "Steps per epoch; 0 = one pass over the training split.",
                                   check=_at_least(0))
    batch_size: int = setting(64, "Global batch size (split over replicas).", check=_at_least(1))
    lr: float = setting(2e-3, "Peak learning rate (cosine decay to 0).", check=_positive)
    warmup_epochs: float = setting(0.0, "Linear learning-rate warm-up, in epochs.", check=_at_least(0))
    optimizer: str = setting("adam", "Optimizer (sgd uses Nesterov momentum --momentum).",
                             ("sgd", "adam", "adamw", "rmsprop"))
    momentum: float = setting(0.9, "Momentum of sgd and rmsprop.", check=_fraction)
    weight_decay: float = setting(0.0, "Decoupled weight decay (adamw: default 1e-4 when 0).",
                                  check=_at_least(0))
    label_smoothing: float = setting(0.0, "Label smoothing of the cross-entropy.", check=_fraction)
    seed: int = setting(0, "Seed of initialisation, data order and augmentation.")

    # Runtime.
    keras: str = setting("3", "Model flavour: 3 = keras (Keras 3, on --backend), 2 = tf_keras (TensorFlow "
                         "only).", ("3", "2"))
    backend: str = setting("tensorflow", "Keras 3 backend that trains (sets KERAS_BACKEND): tensorflow, jax "
                           "or torch. The int8 export runs under TensorFlow in a child process either way. "
                           "JAX and PyTorch runs keep no checkpoints (no --resume); JAX runs take "
                           "--strategy default or multiworker, PyTorch runs default.", ("tensorflow", "jax", "torch"))
    strategy: str = setting("default", "tf.distribute strategy: mirrored = all local GPUs, multiworker = "
                            "TF_CONFIG cluster (--keras 2, or Keras 3 with --backend jax: keras.distribution "
                            "over jax.distributed), tpu = --tpu.", ("default", "mirrored", "multiworker", "tpu"),
                            resumable=True)
    tpu: str = setting("", "TPU name or address for --strategy tpu ('' = local).", resumable=True)
    output_dir: str = setting("", "Run directory; default runs/<arch>_<mode>_<dataset> "
                              "(runs/<arch>_compare_<dataset> with --compare).", resumable=True)
    overwrite: bool = setting(False, "Replace an earlier run in --output_dir and its int8 file in "
                              "--tflite_dir (without it, train.py refuses to touch them).", resumable=True)
    resume: bool = setting(False, "Continue the run in --output_dir from its last checkpoint (same "
                           "alpha and learning rate as if never interrupted).", resumable=True)
    verbose: str = setting("auto", "Keras fit verbosity: 0, 1 (progress bar), 2 (one line per epoch), "
                           "auto (1 on a terminal, else 2).", ("auto", "0", "1", "2"), resumable=True)

    # Deployment.
    bn_reestimate: int = setting(0, "Batches of training data over which the stripped ReLU network's "
                                 "batch-normalisation statistics are recomputed before it is scored and "
                                 "exported (pea_keras.reestimate_batchnorm); 0 keeps the trained ones, which "
                                 "are the blend's.", check=_at_least(0))
    export: bool = setting(True, "Write the int8 TFLite file (--noexport to skip).", resumable=True)
    allow_gates: bool = setting(False, "Accept ReLU6 channel gates (squeeze-excite blocks) in the int8 file's "
                                "ReLU-only proof, named in metrics.json and the summary (pea-tflite convert "
                                "--allow_gates); --mode relufy sets it: it turns sigmoid gates into them.",
                                resumable=True)
    qat_epochs: int = setting(0, "Quantization-aware fine-tuning epochs before int8 export.",
                              check=_at_least(0), resumable=True)
    tflite_dir: str = setting("tflite", "Folder for the int8 .tflite file, named after the run "
                              "directory.", resumable=True)
    tflite_name: str = setting("", "Stem of the int8 file and its kit in --tflite_dir; default: the run "
                               "directory's name (with --compare: it and the output folder's name + _relu / _pea).")
    calibration_examples: int = setting(DEFAULT_CALIBRATION_SAMPLES, "Training images used to calibrate int8 "
                                        "(the ones pea-tflite convert --calib takes, as many as its "
                                        "--calib_samples).", check=_at_least(1), resumable=True)
    tflite_eval_examples: int = setting(0, "Test examples scored on LiteRT; 0 = all.", check=_at_least(0),
                                        resumable=True)

    def trains_on_tensorflow(self):
        """Whether the training process computes with TensorFlow (tf_keras, or Keras 3 on it)."""
        return self.keras == "2" or self.backend == "tensorflow"

    def run_name(self):
        """<arch or --init_from's stem>_<mode>_<dataset>, file-name safe (folder:/a/b -> folder-a-b); the
        mode is <mode>-<gradient> when --relu_gradient is not the mode's own (pea-g, relufy-relu), so
        such a run never meets its baseline's directory."""
        dataset = re.sub(r"[^A-Za-z0-9]+", "-", self.dataset).strip("-")
        network = self.arch
        if self.init_from:
            stem = os.path.splitext(os.path.basename(os.path.normpath(self.init_from)))[0]
            network = re.sub(r"[^A-Za-z0-9_]+", "-", stem).strip("-") or "model"
        own_gradient = _mode_defaults(self.mode).get("relu_gradient", FIELDS["relu_gradient"].default)
        mode = self.mode if self.relu_gradient == own_gradient else f"{self.mode}-{self.relu_gradient}"
        return f"{network}_{mode}_{dataset}"

    def run_dir(self):
        """The run directory, absolute and normalised (so runs/x, ./runs/x and /abs/runs/x agree)."""
        return os.path.realpath(self.output_dir or os.path.join("runs", self.run_name()))


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}

def recipe(mode="pea", **settings):
    """A RunConfig for `mode` with `settings`; the rest from the mode's defaults, then the field defaults."""
    unknown = set(settings) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown RunConfig settings: {', '.join(sorted(unknown))}")
    return RunConfig(**{**_mode_defaults(mode), **settings, "mode": mode})


def _mode_defaults(mode):
    """The mode's own settings; none for a name that is not a mode (validate names a wrong one)."""
    return modes.get(mode).defaults if mode in modes.names() else {}


# Flags that may change between an interrupted run and its --resume.
RESUMABLE = tuple(name for name, f in FIELDS.items() if f.metadata["resumable"])


def define_flags(flags):
    """Defines one absl flag per RunConfig field (name, default, choices, help)."""
    for name, f in FIELDS.items():
        help_text, choices = f.metadata["help"], f.metadata["choices"]
        if choices:
            flags.DEFINE_enum(name, f.default, list(choices), help_text)
        elif f.type in (bool, "bool"):
            flags.DEFINE_bool(name, f.default, help_text)
        elif f.type in (int, "int"):
            flags.DEFINE_integer(name, f.default, help_text)
        elif f.type in (float, "float"):
            flags.DEFINE_float(name, f.default, help_text)
        else:
            flags.DEFINE_string(name, f.default, help_text)


def from_flags(flag_values):
    """The RunConfig of the flags given; a flag not given takes its mode's recipe value, if any."""
    given = {name: flag_values[name].value for name in FIELDS if flag_values[name].present}
    return recipe(flag_values["mode"].value, **{k: v for k, v in given.items() if k != "mode"})


def flavor(name):
    """The Keras module for --keras: "3" -> keras, "2" -> tf_keras."""
    if name == "3":
        import keras
        return keras
    if name == "2":
        import tf_keras
        return tf_keras
    raise UsageError(f"--keras must be 3 or 2, got {name!r}")


def use_backend(backend):
    """Makes Keras 3 compute on `backend` (where a run starts, before anything imports keras): sets
    KERAS_BACKEND while keras is not imported yet (Keras picks its backend once, at import);
    afterwards only a matching backend passes."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
    check_backend(backend)


def check_backend(backend):
    """Raises UsageError if this process already runs Keras 3 on another backend."""
    if "keras" not in sys.modules:
        return
    import keras

    if keras.backend.backend() != backend:
        raise UsageError(f"--backend {backend}: this process already runs Keras 3 on "
                         f"{keras.backend.backend()}; set KERAS_BACKEND={backend} before importing keras")


def validate(config):
    """Raises UsageError for values that cannot work, before anything slow happens; changes nothing."""
    for name, f in FIELDS.items():
        value, choices, check = getattr(config, name), f.metadata["choices"], f.metadata["check"]
        if choices and str(value) not in choices:
            raise UsageError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
        if check:
            ok, message = check(value)
            if not ok:
                raise UsageError(f"--{name} {message}, got {value}")
    if not 0 <= config.pea_start < config.pea_end <= 1:
        raise UsageError(f"need 0 <= --pea_start < --pea_end <= 1, got {config.pea_start} and "
                         f"{config.pea_end}")
    if config.keras == "2" and config.backend != "tensorflow":
        raise UsageError(f"--backend {config.backend} needs --keras 3: tf_keras runs on TensorFlow only")
    if not config.trains_on_tensorflow():
        if config.strategy != "default" and (config.backend, config.strategy) != ("jax", "multiworker"):
            raise UsageError(f"--strategy {config.strategy} needs --backend tensorflow: tf.distribute "
                             f"does not drive Keras 3 on {config.backend}")
        if config.resume:
            raise UsageError(f"--resume needs --backend tensorflow: runs on {config.backend} keep no "
                             "checkpoints")
    if config.keras == "3":
        check_backend(config.backend)
    if config.strategy == "multiworker" and config.keras == "3" and config.backend != "jax":
        # Measured with TF 2.21 / Keras 3.15: fit fails on PerReplica inputs under this strategy.
        raise UsageError("--strategy multiworker needs --keras 2 or --backend jax: Keras 3's fit does not run "
                         "under tf.distribute.MultiWorkerMirroredStrategy (Keras 3 scales out on JAX)")
    mode = modes.get(config.mode)
    if config.distill == "self" and (not mode.self_distills or not config.trains_on_tensorflow()
                                     and config.backend == "jax"):
        raise UsageError(f"--distill self needs --mode {modes.self_distilling()} (its teacher is the model evaluated "
                         "with g) and TensorFlow or PyTorch (under JAX fit's compiled step keeps the teacher fixed)")
    problem = config.distill.startswith("teacher:") and missing(config.distill[len("teacher:"):])
    if problem:
        raise UsageError(f"--distill {config.distill}: {problem}")
    if config.relu_gradient != "relu" and not mode.blends:
        raise UsageError(f"--relu_gradient {config.relu_gradient} needs --mode {modes.blending()} (--mode "
                         f"{config.mode} has no blend)")
    mode.check(config)
    if config.distill == "init" and not config.init_from:
        raise UsageError("--distill init needs --init_from PATH: the teacher is the model loaded from it")
    problem = config.init_from and missing(config.init_from)
    if problem:
        raise UsageError(f"--init_from {config.init_from}: {problem}")
    if config.dataset:
        from pea_keras.data import sources

        sources.parse(config.dataset)
    from pea_keras import activations

    try:
        activations.get(config.activation)
    except ValueError as e:
        raise UsageError(f"--activation: {e}") from None
    try:
        tasks.get(config.task).check(tasks.with_defaults(config))
    except SettingError as e:
        raise UsageError(f"--{e.setting} {e.problem}") from None
