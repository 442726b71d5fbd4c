"""The `Task` interface: what a run trains and how it is scored. `run.py` talks to a task only
through it; a task is stateless, and the `Splits` it loaded come back to it as an argument."""

import abc
import dataclasses

import numpy as np

from pea_keras.errors import SettingError

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Splits:
    """A task's data cut into SPLITS: unbatched `tf.data` datasets of (image, label or mask) and
    what the model and the task's pipeline need to know of them. Natural images (`natural`) are
    uint8 of any size, resized in the pipeline; generated ones (digits, digit scenes) are float32
    in [0, 1] already at the model size."""

    name: str
    datasets: dict  # "train" | "validation" | "test" -> tf.data.Dataset
    sizes: dict  # split -> number of examples
    num_classes: int
    channels: int
    natural: bool
    class_names: tuple = ()  # label -> name, where the source names its classes
    kind: str = ""  # the SOURCE kind: digits, digit_scenes, tfds or folder
    source_size: int = 0  # typical side of the stored images (0: unknown or varied)
    ignore_label: int | None = None  # mask value of pixels that count nowhere (segmentation)


@dataclasses.dataclass
class Evaluation:
    """A model's score on a split: the headline `score` (top-1, mIoU), the predicted classes (to
    compare model forms) and secondary scores `{name: value}` written next to it in metrics.json."""

    score: float
    predictions: np.ndarray
    extra: dict = dataclasses.field(default_factory=dict)


class Task(abc.ABC):
    """One kind of training run. `metric` names the score in metrics.json, `keras_metric` the
    History column used for plots; `default_arch`, `default_dataset` fill unset flags."""

    name: str
    metric: str
    keras_metric: str
    default_arch: str
    default_dataset: str

    @abc.abstractmethod
    def arch_names(self):
        """The valid --arch values."""

    @abc.abstractmethod
    def check(self, config):
        """Raises `SettingError` for a setting (arch, width, image size...) this task cannot use,
        before any data loads; `config` has its defaults filled."""

    @abc.abstractmethod
    def default_image_size(self, dataset):
        """--image_size when it is 0."""

    @abc.abstractmethod
    def load_data(self, config):
        """The task's data as `Splits`."""

    @abc.abstractmethod
    def augmentation(self, data, config):
        """The `pea_keras.data.augmentation.Augmentation` the training split gets (setting `augment`)."""

    @abc.abstractmethod
    def datasets(self, data, config):
        """(train, validation, test) batched pipelines; train repeats forever."""

    def default_width(self, arch):
        """--width when it is 0."""
        return 1.0

    @abc.abstractmethod
    def build_model(self, k, config, data):
        """The network in Keras flavor `k`, randomly initialised, with plain ReLUs."""

    @abc.abstractmethod
    def loss(self, k, config, data):
        """The training loss."""

    @abc.abstractmethod
    def metrics(self, k, data):
        """Keras metrics for fit's logs (including `keras_metric`)."""

    @abc.abstractmethod
    def evaluate(self, model, ds, data):
        """`Evaluation` of a Keras model on a batched split."""

    @abc.abstractmethod
    def evaluate_tflite(self, path, ds, data, limit=0):
        """`Evaluation` of a .tflite file on LiteRT, on at most `limit` examples (0 = all)."""

    @abc.abstractmethod
    def calibration(self, data, config, n):
        """`n` un-augmented training inputs (float32, model input shape) for int8 calibration."""

    def qat_data(self, data, config, n):
        """(x, int labels) for quantization-aware fine-tuning."""
        raise SettingError("qat_epochs", f"is not available for the {self.name} task")
