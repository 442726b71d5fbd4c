"""``MeanIoUCallback``: full confusion-matrix scores on a validation set, written into History.

The streaming ``MeanIoU`` metric (``losses.mean_iou_metric``) is enough for the learning curve;
this callback adds what it cannot give: per-class IoU and pixel accuracy, computed with the
same code (``metrics.ConfusionMatrix``) that scores the deployed TFLite model, so float and int8
numbers are comparable.
"""

import keras
import numpy as np

from pea_keras import flavor

from .metrics import IGNORE_LABEL, ConfusionMatrix


def evaluate_segmentation(predict, data, num_classes, ignore_label=IGNORE_LABEL, batch_size=32):
    """Scores (``metrics.scores_from_confusion``) of ``predict`` on ``data``.

    ``predict``: a Keras model (either flavour, called with ``training=False``) or any callable
    mapping an image batch to logits or labels. ``data``: ``(images, masks)`` arrays, or an
    iterable of ``(images, masks)`` batches such as a batched ``tf.data.Dataset``.
    """
    if hasattr(predict, "predict_on_batch"):
        model = predict

        def predict(x):
            return model(x, training=False)

    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        data = _batches(*data, batch_size)
    matrix = ConfusionMatrix(num_classes, ignore_label)
    for images, masks in data:
        matrix.update(np.asarray(masks), np.asarray(predict(images)))
    return matrix.result()


def _batches(images, masks, batch_size):
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size], masks[i : i + batch_size]


class _MeanIoUMixin:
    """{flavour} callback adding ``{prefix}mean_iou`` and ``{prefix}pixel_accuracy`` (and, with
    ``per_class=True``, ``{prefix}iou_<c>``) to the epoch logs, hence to History.

    ``validation_data``: ``(images, masks)`` arrays or batched ``(images, masks)`` iterable.
    The latest full result (with the per-class array) is also kept in ``last_scores``.
    """

    def __init__(self, validation_data, num_classes, ignore_label=IGNORE_LABEL,
                 prefix="val_seg_", batch_size=32, per_class=False):
        super().__init__()
        self.validation_data = validation_data
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.prefix = prefix
        self.batch_size = batch_size
        self.per_class = per_class
        self.last_scores = None

    def on_epoch_end(self, epoch, logs=None):
        scores = evaluate_segmentation(
            self.model, self.validation_data, self.num_classes, self.ignore_label, self.batch_size
        )
        self.last_scores = scores
        if logs is not None:
            logs[f"{self.prefix}mean_iou"] = scores["mean_iou"]
            logs[f"{self.prefix}pixel_accuracy"] = scores["pixel_accuracy"]
            if self.per_class:
                for c, iou in enumerate(scores["per_class_iou"]):
                    logs[f"{self.prefix}iou_{c}"] = float(iou)


# Callbacks are not saved with models: nothing to register.
_CALLBACKS = flavor.twin_classes(_MeanIoUMixin, "callbacks.Callback", "MeanIoUCallback", register=False)
MeanIoUCallback, TFKerasMeanIoUCallback = _CALLBACKS


def mean_iou_callback(validation_data, num_classes, keras_module=keras, **kwargs):
    """``MeanIoUCallback`` of the flavour ``keras_module`` (``keras`` or ``tf_keras``)."""
    return _CALLBACKS.of(keras_module)(validation_data, num_classes, **kwargs)
