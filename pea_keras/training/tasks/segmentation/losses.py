"""Per-pixel cross-entropy that ignores unlabelled pixels, for Keras 3 and tf_keras.

``IgnoreLabelCrossentropy`` (Keras 3) and ``TFKerasIgnoreLabelCrossentropy`` (tf_keras) compute
the same thing: sparse categorical cross-entropy averaged over the pixels whose label is not
``ignore_label`` (255 for Cityscapes), like ``ignore_index`` with mean reduction in other
frameworks. Use ``segmentation_loss(k=...)`` to get the one matching a model.
"""

import keras
import tensorflow as tf

from pea_keras import flavor

from .metrics import IGNORE_LABEL


def masked_crossentropy(y_true, y_pred, ignore_label=IGNORE_LABEL, from_logits=True):
    """Per-example loss whose batch mean is the mean cross-entropy over labelled pixels.

    ``y_true``: (N, H, W) or (N, H, W, 1) integer labels; ``y_pred``: (N, H, W, C) logits (or
    probabilities with ``from_logits=False``). Each example's value is its summed pixel loss
    times ``N / labelled pixels in the batch``, so the default "sum over batch size" reduction
    of both flavors yields sum(loss) / labelled pixels; a batch with no labelled pixel gives 0.
    """
    y_pred = tf.cast(y_pred, tf.float32)
    y_true = tf.cast(y_true, tf.int32)
    if y_true.shape.rank == y_pred.shape.rank:
        y_true = tf.squeeze(y_true, axis=-1)
    valid = tf.not_equal(y_true, ignore_label)
    safe_labels = tf.where(valid, y_true, tf.zeros_like(y_true))
    if from_logits:
        pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=safe_labels, logits=y_pred
        )
    else:
        probs = tf.clip_by_value(y_pred, 1e-7, 1.0)
        pixel_loss = -tf.math.log(tf.gather(probs, safe_labels, axis=-1, batch_dims=3))
    valid = tf.cast(valid, tf.float32)
    per_example = tf.reduce_sum(pixel_loss * valid, axis=[1, 2])
    batch = tf.cast(tf.shape(y_true)[0], tf.float32)
    return per_example * tf.math.divide_no_nan(batch, tf.reduce_sum(valid))


class _IgnoreLabelMixin:
    """{flavor} loss: cross-entropy over labelled pixels (see ``masked_crossentropy``)."""

    def __init__(self, ignore_label=IGNORE_LABEL, from_logits=True, name="ignore_label_ce", **kw):
        super().__init__(name=name, **kw)
        self.ignore_label = int(ignore_label)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return masked_crossentropy(y_true, y_pred, self.ignore_label, self.from_logits)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label, "from_logits": self.from_logits}


_LOSSES = flavor.twin_classes(_IgnoreLabelMixin, "losses.Loss", "IgnoreLabelCrossentropy")
IgnoreLabelCrossentropy, TFKerasIgnoreLabelCrossentropy = _LOSSES


def segmentation_loss(ignore_label=IGNORE_LABEL, from_logits=True, k=keras):
    """The ignore-label cross-entropy of the flavor ``k`` (``keras`` or ``tf_keras``)."""
    return _LOSSES.of(k)(ignore_label=ignore_label, from_logits=from_logits)


def mean_iou_metric(num_classes, ignore_label=IGNORE_LABEL, k=keras, name="mean_iou"):
    """The flavor's streaming ``MeanIoU`` for logits and sparse labels, ignoring ``ignore_label``.

    Its mean skips classes absent from both labels and predictions, like ``metrics.py``; put it
    in ``compile(metrics=[...])`` and History gets ``mean_iou`` and ``val_mean_iou`` each epoch.
    """
    return k.metrics.MeanIoU(
        num_classes=num_classes,
        ignore_class=ignore_label,
        sparse_y_true=True,
        sparse_y_pred=False,
        name=name,
    )
