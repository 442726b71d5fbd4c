"""Segmentation scores from a confusion matrix: mean IoU, per-class IoU, pixel accuracy.

The confusion matrix is accumulated batch by batch (``ConfusionMatrix.update``), so a whole
validation set never has to sit in memory. Pixels whose ground truth is ``ignore_label`` (255 for
Cityscapes) count nowhere. A class that appears neither in the ground truth nor in the predictions
has an undefined IoU: it is reported as NaN and left out of the mean, which is the convention of
the Cityscapes and PASCAL VOC evaluation scripts.
"""

import numpy as np

# Mask value of pixels that count nowhere (Cityscapes' void classes).
IGNORE_LABEL = 255


def confusion_matrix(y_true, y_pred, num_classes, ignore_label=IGNORE_LABEL):
    """Returns the ``(num_classes, num_classes)`` int64 matrix, rows = truth, columns = prediction.

    ``y_true``: integer labels of any shape (a trailing channel of 1 is allowed).
    ``y_pred``: integer labels of the same shape, or scores/logits with one more trailing axis of
    size ``num_classes`` (the argmax is taken). Labels outside ``[0, num_classes)`` other than
    ``ignore_label`` raise ``ValueError``: they mean a wrong label mapping, not something to drop.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim > 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_pred.ndim == y_true.ndim + 1:
        y_pred = np.argmax(y_pred, axis=-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true shape {y_true.shape} does not match y_pred shape {y_pred.shape}")
    y_true = y_true.reshape(-1).astype(np.int64)
    y_pred = y_pred.reshape(-1).astype(np.int64)
    keep = y_true != ignore_label
    y_true, y_pred = y_true[keep], y_pred[keep]
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise ValueError(
                f"{name} holds labels {sorted(set(labels[bad].tolist()))[:10]} outside "
                f"[0, {num_classes}) (ignore_label={ignore_label})"
            )
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def scores_from_confusion(matrix):
    """Returns ``{"mean_iou", "per_class_iou", "pixel_accuracy"}`` from a confusion matrix.

    ``per_class_iou[c] = TP / (TP + FP + FN)``, NaN where the denominator is 0 (class absent from
    both truth and prediction); ``mean_iou`` is the mean over the other classes (NaN if none);
    ``pixel_accuracy`` is the trace over the total (NaN for an empty matrix).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.where(union > 0, true_positive / np.where(union > 0, union, 1), np.nan)
    present = ~np.isnan(per_class)
    total = matrix.sum()
    return {
        "mean_iou": float(per_class[present].mean()) if present.any() else float("nan"),
        "per_class_iou": per_class,
        "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
    }


def mean_iou(y_true, y_pred, num_classes, ignore_label=IGNORE_LABEL):
    """Mean IoU of one set of labels (see ``scores_from_confusion``)."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, num_classes, ignore_label))[
        "mean_iou"
    ]


class ConfusionMatrix:
    """Streaming accumulator: ``update(y_true, y_pred)`` per batch, then ``result()``."""

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, y_true, y_pred):
        self.matrix += confusion_matrix(y_true, y_pred, self.num_classes, self.ignore_label)
        return self

    def reset(self):
        self.matrix[...] = 0

    def result(self):
        """``scores_from_confusion`` of everything seen since construction or ``reset``."""
        return scores_from_confusion(self.matrix)


def evaluate_segmentation(predict, data, num_classes, ignore_label=IGNORE_LABEL, batch_size=32):
    """Scores (``metrics.scores_from_confusion``) of ``predict`` on ``data``.

    ``predict``: a Keras model (either flavor, called with ``training=False``) or any callable
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
