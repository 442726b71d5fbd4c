"""``train.py --task segmentation``: the segmentation task of the training chain.

It implements the interface of ``pea_keras.training.tasks`` (``run.py`` never sees a mask): data
from ``data.load`` (``digit_scenes`` offline by default, ``cityscapes`` through TFDS,
``folder:PATH``), a network from ``archs.build_segmentation_model``, the ignore-label
cross-entropy, and scores from the confusion matrix of ``metrics.py``. The headline score is the
mean IoU over classes (``miou``); each evaluation also returns pixel accuracy and the per-class IoU
(class name -> IoU, ``None`` for a class absent from both truth and prediction), which ``run.py``
writes next to it in metrics.json. Keras models and the int8 TFLite file are scored by the same
``ConfusionMatrix`` code, so float and int8 mIoU are comparable.
"""

import numpy as np

from pea_keras.data import sources
from pea_keras.errors import SettingError

from ..base import Evaluation, Task
from . import archs
from . import data as data_lib
from .losses import mean_iou_metric, segmentation_loss
from .metrics import ConfusionMatrix

# Model side in pixels when --image_size is 0. Cityscapes is 1:2, so its --image_size is the
# height and the width is twice that (512 -> 512 x 1024, half the original resolution).
DEFAULT_IMAGE_SIZES = {data_lib.DIGIT_SCENES: 64, data_lib.CITYSCAPES: 512}
FOLDER_IMAGE_SIZE = 256


class Segmentation(Task):
    """Semantic segmentation scored by mean IoU (ignore label 255) on the test split."""

    name = "segmentation"
    metric = "miou"
    keras_metric = "mean_iou"
    default_arch = archs.ARCHS[0]
    default_dataset = data_lib.DIGIT_SCENES

    def arch_names(self):
        return archs.ARCHS

    def default_image_size(self, dataset):
        source = sources.parse(dataset)
        name = source.kind if source.kind != "tfds" else source.location.split("/")[0]
        return DEFAULT_IMAGE_SIZES.get(name, FOLDER_IMAGE_SIZE)

    def check(self, config):
        if config.label_smoothing:
            raise SettingError("label_smoothing", "applies to classification only")
        if config.qat_epochs:
            raise SettingError("qat_epochs", "is not available for the segmentation task "
                               "(quantization-aware fine-tuning uses a classification loss); "
                               "post-training int8 quantization is used without it")
        archs.check(config.arch, self.image_shape(config), config.width)

    def load_data(self, config):
        return data_lib.load(config.dataset, image_size=self.image_shape(config),
                             seed=config.seed, data_dir=config.data_dir)

    def image_shape(self, config):
        """(height, width): square, except Cityscapes at its 1:2 aspect."""
        size = config.image_size
        source = sources.parse(config.dataset)
        if source.kind == "tfds" and source.location.split("/")[0] == data_lib.CITYSCAPES:
            return size, 2 * size
        return size, size

    def augmentation(self, data, config):
        return data_lib.choose_augmentation(data, config.augment)

    def datasets(self, data, config):
        """(train, validation, test) pipelines; train repeats forever (fit gets steps_per_epoch)."""
        kw = dict(image_size=self.image_shape(config), batch_size=config.batch_size,
                  seed=config.seed)
        return (data_lib.pipeline(data, "train", training=True,
                                  augmentation=self.augmentation(data, config), **kw),
                data_lib.pipeline(data, "validation", **kw),
                data_lib.pipeline(data, "test", **kw))

    def build_model(self, k, config, data):
        return archs.build_segmentation_model(
            config.arch, data.num_classes, self.image_shape(config), width=config.width,
            k=k, bn_momentum=config.bn_momentum, channels=data.channels)

    def loss(self, k, config, data):
        return segmentation_loss(ignore_label=data.ignore_label, k=k)

    def metrics(self, k, data):
        return [mean_iou_metric(data.num_classes, data.ignore_label, k=k,
                                name=self.keras_metric)]

    def evaluate(self, model, ds, data):
        """mIoU, predicted label maps uint8 (N, H, W) and {pixel_accuracy, per_class_iou} of a
        Keras model on a batched (image, mask) dataset."""
        # predict_on_batch reuses the model's own compiled predict function (one trace per
        # model, the short last batch included) and keeps only one batch of logits in memory.
        matrix, predicted = ConfusionMatrix(data.num_classes, data.ignore_label), []
        for x, y in ds:
            labels = np.argmax(np.asarray(model.predict_on_batch(x)), axis=-1)
            matrix.update(y.numpy(), labels)
            predicted.append(labels.astype(np.uint8))
        return _scores(matrix, predicted, data)

    def evaluate_tflite(self, path, ds, data, limit=0):
        """The same scores for a .tflite file on LiteRT, on at most ``limit`` images (0 = all)."""
        from pea_keras import tflite

        matrix, predicted, n = ConfusionMatrix(data.num_classes, data.ignore_label), [], 0
        for x, y in ds.as_numpy_iterator():
            if limit:
                x, y = x[:limit - n], y[:limit - n]
            logits = tflite.predict(path, x, runtime="litert").reshape(
                *y.shape, data.num_classes)
            labels = np.argmax(logits, axis=-1)
            matrix.update(y, labels)
            predicted.append(labels.astype(np.uint8))
            n += len(y)
            if limit and n >= limit:
                break
        return _scores(matrix, predicted, data)

    def calibration(self, data, config, n):
        """``n`` un-augmented training images (float32, model input shape) for int8 calibration."""
        ds = data_lib.pipeline(data, "train", image_size=self.image_shape(config),
                               batch_size=min(n, 64), seed=config.seed)
        return data_lib.to_numpy(ds, limit=n)[0]


def _scores(matrix, predicted, data):
    scores = matrix.result()
    names = data.class_names or tuple(f"class_{c}" for c in range(len(scores["per_class_iou"])))
    per_class = {name: (None if np.isnan(iou) else float(iou))
                 for name, iou in zip(names, scores["per_class_iou"])}
    extra = {"pixel_accuracy": scores["pixel_accuracy"], "per_class_iou": per_class}
    predicted = np.concatenate(predicted) if predicted else np.zeros((0,), np.uint8)
    return Evaluation(scores["mean_iou"], predicted, extra)
