"""The segmentation loss and metric in a PEA training: data -> model -> wrap -> fit -> strip."""

import numpy as np
import pytest

import pea_keras
from pea_keras.training.tasks.segmentation import (
    build_segmentation_model,
    data,
    evaluate_segmentation,
    mean_iou_metric,
    segmentation_loss,
)


@pytest.mark.slow
def test_pea_training_on_digit_scenes_strips_to_the_same_relu_network(k):
    d = data.load("digit_scenes", image_size=32, sizes=(64, 16, 16), seed=0)
    train = data.pipeline(d, "train", image_size=32, batch_size=16, seed=0, training=True)
    validation = data.to_numpy(data.pipeline(d, "validation", image_size=32, batch_size=16))
    model = build_segmentation_model("lraspp_mobilenet_v2", d.num_classes, 32, width=0.35,
                                     k=k, channels=d.channels)  # fmt: skip
    wrapped = pea_keras.wrap(model, activation="silu")
    wrapped.compile(optimizer=k.optimizers.Adam(3e-3), loss=segmentation_loss(k=k),
                    metrics=[mean_iou_metric(d.num_classes, k=k)])  # fmt: skip
    steps, epochs = 4, 3
    history = wrapped.fit(
        train, epochs=epochs, steps_per_epoch=steps, validation_data=validation, verbose=0,
        callbacks=[pea_keras.PEAScheduler(pea_keras.schedules.Linear.over(steps * epochs))],
    )  # fmt: skip
    logs = history.history
    assert logs["loss"][-1] < logs["loss"][0]
    assert all(np.isfinite(logs["val_mean_iou"]))
    assert all(float(layer.alpha.numpy()) == 1.0 for layer in pea_keras.pea_layers(wrapped))
    plain = pea_keras.strip(wrapped)
    x = validation[0][:4]
    np.testing.assert_allclose(np.asarray(plain(x, training=False)),
                               np.asarray(wrapped(x, training=False)), rtol=1e-4, atol=1e-4)  # fmt: skip
    scores = evaluate_segmentation(plain, validation, d.num_classes)
    assert scores["mean_iou"] == pytest.approx(logs["val_mean_iou"][-1], abs=1e-5)  # The metric, streamed.
