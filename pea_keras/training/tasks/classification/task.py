"""Image classification scored by top-1: digits offline, TFDS, image folders."""

import numpy as np

from pea_keras.data import arrays

from ..base import Evaluation, Task
from . import archs
from . import data as data_lib


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

    def check(self, config):
        archs.check(config.arch, (config.image_size, config.image_size), config.width)

    def build_model(self, k, config, data):
        return archs.build(config.arch, k, (config.image_size, config.image_size, data.channels),
                           data.num_classes,
                           width=config.width, bn_momentum=config.bn_momentum)

    def loss(self, k, config, data):
        return k.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=config.label_smoothing)

    def metrics(self, k, data):
        return [k.metrics.CategoricalAccuracy(name=self.keras_metric)]

    def evaluate(self, model, ds, data):
        """Top-1 of a Keras model on a batched (image, one-hot) dataset, and its predicted classes."""
        logits = model.predict(ds.map(_images), verbose=0)
        labels = np.concatenate([np.argmax(y, -1) for _, y in ds.as_numpy_iterator()])
        predicted = np.argmax(logits, -1)
        return Evaluation(float(np.mean(predicted == labels)), predicted)

    def evaluate_tflite(self, path, ds, data, limit=0):
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
        """`n` un-augmented training images (float32, model input shape) for int8 calibration: of
        data held in memory (digits) the subset `--calib` takes (`arrays.fixed_subset`), so that
        `pea-tflite convert` of the saved model with `--calib digits` writes the same file; of
        streamed data the first `n`, as `--calib tfds:NAME` reads them."""
        ds = data_lib.pipeline(data, "train", image_size=config.image_size,
                               batch_size=min(n, 256), seed=config.seed)
        if data.natural:
            return data_lib.to_numpy(ds, limit=n)[0]
        x = data_lib.to_numpy(ds)[0]
        return x[arrays.fixed_subset(len(x), n)]

    def qat_data(self, data, config, n):
        """(x, int labels) arrays for quantization-aware fine-tuning."""
        ds = data_lib.pipeline(data, "train", image_size=config.image_size,
                               batch_size=min(n, 256), seed=config.seed)
        return data_lib.to_numpy(ds, limit=n)
