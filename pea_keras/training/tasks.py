"""What a run trains and how it is scored: the `Task` interface and the classification task.

`run.py` talks to a task only through `Task`; segmentation implements it in
`segmentation/task.py`. Unset flags take the task's defaults (`with_defaults`).
"""

import abc
import dataclasses

import numpy as np

from pea_keras.data import classification as data_lib
from pea_keras.errors import UsageError

from . import archs


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
    def default_image_size(self, dataset):
        """--image_size when it is 0."""

    @abc.abstractmethod
    def load_data(self, config):
        """The dataset (`pea_keras.data` classification or segmentation data)."""

    @abc.abstractmethod
    def augmentation(self, data, config):
        """The `pea_keras.data.augmentation.Augmentation` the training split gets (--augment)."""

    @abc.abstractmethod
    def datasets(self, data, config):
        """(train, validation, test) batched pipelines; train repeats forever."""

    def default_width(self, arch):
        """--width when it is 0."""
        return 1.0

    @abc.abstractmethod
    def build_model(self, K, config, data):
        """The network in Keras flavour `K`, randomly initialised, with plain ReLUs."""

    @abc.abstractmethod
    def loss(self, K, config):
        """The training loss."""

    @abc.abstractmethod
    def metrics(self, K):
        """Keras metrics for fit's logs (including `keras_metric`)."""

    @abc.abstractmethod
    def evaluate(self, model, ds):
        """`Evaluation` of a Keras model on a batched split."""

    @abc.abstractmethod
    def evaluate_tflite(self, path, ds, limit=0):
        """`Evaluation` of a .tflite file on LiteRT, on at most `limit` examples (0 = all)."""

    @abc.abstractmethod
    def calibration(self, data, config, n):
        """`n` un-augmented training inputs (float32, model input shape) for int8 calibration."""

    def qat_data(self, data, config, n):
        """(x, int labels) for quantization-aware fine-tuning."""
        raise UsageError(f"--qat_epochs is not available for --task {self.name}")


def _images(x, y):
    """The images of an (images, labels) batch (a named function: AutoGraph cannot parse a lambda here)."""
    return x


class Classification(Task):
    """Image classification scored by top-1 accuracy on the test split."""

    name = "classification"
    metric = "top1"
    keras_metric = "accuracy"
    default_arch = "mobilenet_v2"
    default_dataset = data_lib.DIGITS

    def arch_names(self):
        return archs.names()

    def default_image_size(self, dataset):
        return data_lib.default_image_size(dataset)

    def load_data(self, config):
        return data_lib.load(config.dataset, image_size=config.image_size, seed=config.seed,
                             data_dir=config.data_dir, download=config.download)

    def default_width(self, arch):
        return archs.default_width(arch)

    def augmentation(self, data, config):
        return data_lib.choose_augmentation(data, config.image_size, config.augment)

    def datasets(self, data, config):
        """(train, validation, test) pipelines; train repeats forever (fit gets steps_per_epoch)."""
        kw = dict(image_size=config.image_size, batch_size=config.batch_size, seed=config.seed)
        return (data_lib.pipeline(data, "train", training=True,
                                  augmentation=self.augmentation(data, config), **kw),
                data_lib.pipeline(data, "validation", **kw),
                data_lib.pipeline(data, "test", **kw))

    def build_model(self, K, config, data):
        return archs.build(config.arch, K, (config.image_size, config.image_size, data.channels),
                           data.num_classes,
                           width=config.width, bn_momentum=config.bn_momentum)

    def loss(self, K, config):
        return K.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=config.label_smoothing)

    def metrics(self, K):
        return [K.metrics.CategoricalAccuracy(name=self.keras_metric)]

    def evaluate(self, model, ds):
        """Top-1 of a Keras model on a batched (image, one-hot) dataset, and its predicted classes."""
        logits = model.predict(ds.map(_images), verbose=0)
        labels = np.concatenate([np.argmax(y, -1) for _, y in ds.as_numpy_iterator()])
        predicted = np.argmax(logits, -1)
        return Evaluation(float(np.mean(predicted == labels)), predicted)

    def evaluate_tflite(self, path, ds, limit=0):
        """Top-1 of a .tflite file on LiteRT (`pea_keras.tflite.predict`), batch by batch."""
        from pea_keras import tflite

        predicted, labels = [], []
        for x, y in ds.as_numpy_iterator():
            predicted.append(np.argmax(tflite.predict(path, x, runtime="litert"), -1))
            labels.append(np.argmax(y, -1))
            if limit and sum(map(len, labels)) >= limit:
                break
        predicted, labels = np.concatenate(predicted), np.concatenate(labels)
        if limit:
            predicted, labels = predicted[:limit], labels[:limit]
        return Evaluation(float(np.mean(predicted == labels)), predicted)

    def calibration(self, data, config, n):
        """`n` un-augmented training images (float32, model input shape) for int8 calibration."""
        ds = data_lib.pipeline(data, "train", image_size=config.image_size,
                               batch_size=min(n, 256), seed=config.seed)
        return data_lib.to_numpy(ds, limit=n)[0]

    def qat_data(self, data, config, n):
        """(x, int labels) arrays for quantization-aware fine-tuning."""
        ds = data_lib.pipeline(data, "train", image_size=config.image_size,
                               batch_size=min(n, 256), seed=config.seed)
        return data_lib.to_numpy(ds, limit=n)


def _segmentation():
    from .segmentation.task import Segmentation  # Imported on demand: it loads both flavours.

    return Segmentation()


TASKS = {"classification": Classification, "segmentation": _segmentation}


def get(name):
    if name not in TASKS:
        raise UsageError(f"unknown --task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]()


def with_defaults(config):
    """A copy of the RunConfig `config` whose unset arch, dataset (""), image_size and width (0)
    are its task's defaults; the only place that fills them, so run names and metrics.json agree."""
    task = get(config.task)
    config = dataclasses.replace(config, arch=config.arch or task.default_arch,
                                 dataset=config.dataset or task.default_dataset)
    if not config.image_size:
        config.image_size = task.default_image_size(config.dataset)
    if not config.width:
        config.width = task.default_width(config.arch)
    return config
