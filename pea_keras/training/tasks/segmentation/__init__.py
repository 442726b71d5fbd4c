"""Semantic segmentation for PEA: ReLU-only compact models, data, losses and mIoU.

Building blocks for ``train.py --task segmentation``:
  * ``archs.build_segmentation_model``: Lite R-ASPP / ASPP-lite on MobileNetV2, int8-ready.
  * ``scenes.make_digit_scenes`` / ``digit_scene_splits``: the offline digit-scene dataset.
  * ``data.load`` / ``data.pipeline``: digit scenes, Cityscapes (TFDS) and ``folder:PATH`` as ``Splits``.
  * ``losses.segmentation_loss`` / ``losses.mean_iou_metric``: ignore-label loss and metric.
  * ``metrics``: confusion-matrix mIoU, per-class IoU, pixel accuracy (numpy, streaming).
  * ``metrics.evaluate_segmentation``: those scores of a model (or any callable) on a data set.
  * ``task.Segmentation``: the ``--task segmentation`` entry of ``pea_keras.training.tasks``.
"""

from .archs import ARCHS, build_segmentation_model
from .losses import (
    IgnoreLabelCrossentropy,
    TFKerasIgnoreLabelCrossentropy,
    mean_iou_metric,
    segmentation_loss,
)
from .metrics import (
    IGNORE_LABEL,
    ConfusionMatrix,
    confusion_matrix,
    evaluate_segmentation,
    mean_iou,
    scores_from_confusion,
)
from .scenes import digit_scene_splits, make_digit_scenes

__all__ = [
    "ARCHS",
    "build_segmentation_model",
    "evaluate_segmentation",
    "IgnoreLabelCrossentropy",
    "TFKerasIgnoreLabelCrossentropy",
    "mean_iou_metric",
    "segmentation_loss",
    "IGNORE_LABEL",
    "ConfusionMatrix",
    "confusion_matrix",
    "mean_iou",
    "scores_from_confusion",
    "digit_scene_splits",
    "make_digit_scenes",
]
