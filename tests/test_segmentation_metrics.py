"""Confusion-matrix mIoU, the ignore-label loss, the Keras MeanIoU metric and the full scores."""

import math

import numpy as np
import pytest

from pea_keras.training.tasks.segmentation import (
    ConfusionMatrix,
    confusion_matrix,
    evaluate_segmentation,
    mean_iou,
    mean_iou_metric,
    scores_from_confusion,
    segmentation_loss,
)

# 3 classes + ignore (255). Class 2 never appears in truth nor prediction.
Y_TRUE = np.array([[0, 0, 1, 1], [1, 255, 255, 0]])
Y_PRED = np.array([[0, 1, 1, 1], [0, 0, 1, 0]])
# Counted pixels (truth, pred): (0,0) (0,1) (1,1) (1,1) (1,0) (0,0); the two 255s are dropped.
# Class 0: TP 2, FP 1, FN 1 -> 2/4. Class 1: TP 2, FP 1, FN 1 -> 2/4. Class 2: absent -> NaN.


def test_hand_computed_example_with_ignored_pixels():
    matrix = confusion_matrix(Y_TRUE, Y_PRED, num_classes=3)
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [1, 2, 0], [0, 0, 0]])
    scores = scores_from_confusion(matrix)
    np.testing.assert_allclose(scores["per_class_iou"][:2], [0.5, 0.5])
    assert math.isnan(scores["per_class_iou"][2])
    assert scores["mean_iou"] == pytest.approx(0.5)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)


def test_class_missing_from_truth_but_predicted_counts_as_zero():
    # Predicting class 2 where truth is 0: class 2 has IoU 0 (FP only) and enters the mean.
    scores = scores_from_confusion(confusion_matrix([0, 0, 1], [0, 2, 1], 3))
    np.testing.assert_allclose(scores["per_class_iou"], [0.5, 1.0, 0.0])
    assert scores["mean_iou"] == pytest.approx(0.5)


def test_streaming_equals_one_shot_and_logits_are_argmaxed(rng):
    truth = rng.integers(0, 4, size=(6, 8, 8))
    truth[truth == 3] = 255
    logits = rng.normal(size=(6, 8, 8, 3))
    stream = ConfusionMatrix(3)
    for i in range(0, 6, 2):
        stream.update(truth[i : i + 2, ..., None], logits[i : i + 2])
    one_shot = confusion_matrix(truth, np.argmax(logits, -1), 3)
    np.testing.assert_array_equal(stream.matrix, one_shot)
    assert stream.result()["mean_iou"] == pytest.approx(mean_iou(truth, logits, 3))
    stream.reset()
    assert stream.matrix.sum() == 0


def test_out_of_range_labels_are_an_error():
    with pytest.raises(ValueError, match=r"y_true holds labels \[7\]"):
        confusion_matrix([0, 7], [0, 1], 3)
    with pytest.raises(ValueError, match="does not match"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 3)


def test_keras_mean_iou_metric_matches_numpy(k):
    logits = np.eye(3, dtype=np.float32)[Y_PRED].reshape(1, 2, 4, 3)
    metric = mean_iou_metric(3, k=k)
    metric.update_state(Y_TRUE.reshape(1, 2, 4), logits)
    assert float(metric.result()) == pytest.approx(0.5)


def test_loss_averages_only_labelled_pixels(k):
    logits = np.log(np.array([[[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]],
                               [[0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]]], np.float32))  # fmt: skip
    labels = np.array([[[0, 1], [255, 255]]])
    expected = -(np.log(0.5) + np.log(0.8)) / 2
    loss = segmentation_loss(k=k)
    assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(labels[..., None], logits)) == pytest.approx(expected, rel=1e-5)
    # The second example has no labelled pixel: the mean over the batch stays the same.
    batch = np.concatenate([labels, np.full_like(labels, 255)])
    assert float(loss(batch, np.concatenate([logits, logits]))) == pytest.approx(expected, rel=1e-5)
    assert float(loss(np.full_like(labels, 255), logits)) == 0.0
    config = loss.get_config()
    assert config["ignore_label"] == 255 and config["from_logits"] is True
    assert type(loss).from_config(config).get_config() == config


def _tiny_segmenter(k, num_classes):
    inputs = k.Input((16, 16, 1))
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    return k.Model(inputs, k.layers.Conv2D(num_classes, 1)(x))


def test_metric_reaches_history_and_equals_the_full_scores_in_both_flavors(k, rng):
    x = rng.random((8, 16, 16, 1), dtype=np.float32)
    y = (x[..., 0] > 0.5).astype(np.int32)
    y[:, 0, :] = 255
    model = _tiny_segmenter(k, 2)
    model.compile(optimizer="adam", loss=segmentation_loss(k=k),
                  metrics=[mean_iou_metric(2, k=k)])  # fmt: skip
    history = model.fit(x, y, validation_data=(x[:4], y[:4]), epochs=2, batch_size=4, verbose=0)
    logs = history.history
    for key in ("mean_iou", "val_mean_iou", "loss"):
        assert len(logs[key]) == 2, key
    expected = evaluate_segmentation(model, (x[:4], y[:4]), 2)
    assert logs["val_mean_iou"][-1] == pytest.approx(expected["mean_iou"], abs=1e-5)
