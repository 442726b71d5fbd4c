"""What a run trains and how it is scored; `run.py` only talks to a task through this interface.

A task provides: `load_data(config)`, `input_shape(data, config)`, `datasets(data, config,
steps_per_epoch)`, `build_model(K, config, data)`, `loss(K, config)`, `metrics(K)`,
`evaluate(model, ds)` and `evaluate_tflite(path, ds, limit)` returning `(score, predictions)`,
`calibration(data, config, n)` and `qat_data(data, config, n)` as numpy, and the names `metric`
(the score in metrics.json) and `keras_metric` (the History column used for plots).
`evaluate` and `evaluate_tflite` may return a third item, `{name: value}` of secondary scores
(segmentation: pixel accuracy, per-class IoU), written to metrics.json as `{name: {form: value}}`.
Unset flags take the task's defaults (`with_defaults`): `default_arch`, `default_dataset`,
`default_image_size(dataset)`; `arch_names()` lists the valid --arch values.
A task plugs in by implementing these and registering a factory in `TASKS`.
"""

import dataclasses

import numpy as np

from pea_keras.data import classification as data_lib
from pea_keras.errors import UsageError

from . import archs


def _images(x, y):
    """The images of an (images, labels) batch (a named function: AutoGraph cannot parse a lambda here)."""
    return x


class Classification:
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

    def input_shape(self, data, config):
        return (config.image_size, config.image_size, data.channels)

    def datasets(self, data, config):
        """(train, validation, test) pipelines; train repeats forever (fit gets steps_per_epoch)."""
        kw = dict(image_size=config.image_size, batch_size=config.batch_size, seed=config.seed)
        return (data_lib.pipeline(data, "train", training=True, augment=config.augment, **kw),
                data_lib.pipeline(data, "validation", **kw),
                data_lib.pipeline(data, "test", **kw))

    def build_model(self, K, config, data):
        return archs.build(config.arch, K, self.input_shape(data, config), data.num_classes,
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
        return float(np.mean(predicted == labels)), predicted

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
        return float(np.mean(predicted == labels)), predicted

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
    """A copy of the RunConfig `config` whose unset arch, dataset ("") and image_size (0) are its
    task's defaults; the only place that fills them, so run names and metrics.json agree."""
    task = get(config.task)
    config = dataclasses.replace(config, arch=config.arch or task.default_arch,
                                 dataset=config.dataset or task.default_dataset)
    if not config.image_size:
        config.image_size = task.default_image_size(config.dataset)
    return config
