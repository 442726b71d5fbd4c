"""pea_keras.training.tasks.segmentation.task: defaults, mIoU scores, artefacts, --compare, mistakes.

End-to-end runs use Lite R-ASPP at width 0.35 on 32 px digit scenes for a couple of steps: they
prove the chain (wrap, schedule, strip, int8 export, LiteRT scoring), not that it learns.
"""
import json

import numpy as np
import pytest
from train_cli import call_main, refusal

from pea_keras.training import tasks  # noqa: E402
from pea_keras.training.run import RunConfig, run  # noqa: E402
from pea_keras.training.tasks.segmentation import scenes  # noqa: E402

TINY = dict(task="segmentation", width=0.35, image_size=32, epochs=1, steps_per_epoch=4,
            batch_size=8, verbose="0", calibration_examples=8, tflite_eval_examples=16)


def test_unset_flags_take_the_task_defaults():
    seg = tasks.with_defaults(RunConfig(task="segmentation"))
    assert (seg.arch, seg.dataset, seg.image_size, seg.width) == ("lraspp_mobilenet_v2", "digit_scenes", 64, 1.0)
    assert seg.run_name() == "lraspp_mobilenet_v2_pea_digit-scenes"
    cls = tasks.with_defaults(RunConfig())
    assert (cls.arch, cls.dataset, cls.image_size, cls.width) == ("mobilenet_v2", "digits", 32, 0.35)
    # Only mobilenet_v2's width is MCU-sized by default; an explicit width is kept.
    assert tasks.with_defaults(RunConfig(arch="mobilenet_v3_small")).width == 1.0
    assert tasks.with_defaults(RunConfig(width=1.0)).width == 1.0
    explicit = tasks.with_defaults(RunConfig(task="segmentation", arch="deeplabv3_mobilenet_v2",
                                             dataset="cityscapes", image_size=256))
    assert (explicit.arch, explicit.dataset, explicit.image_size) == (
        "deeplabv3_mobilenet_v2", "cityscapes", 256)
    city = tasks.with_defaults(RunConfig(task="segmentation", dataset="cityscapes"))
    task = tasks.get("segmentation")
    assert city.image_size == 512 and task.image_shape(city) == (512, 1024)
    assert task.arch_names() == ("lraspp_mobilenet_v2", "deeplabv3_mobilenet_v2")


def test_evaluate_scores_miou_pixel_accuracy_and_named_per_class_iou():
    import keras
    import tensorflow as tf

    task = tasks.get("segmentation")
    data = task.load_data(RunConfig(**{**TINY, "dataset": "digit_scenes"}))
    masks = np.zeros((4, 32, 32), np.int32)
    masks[:, :8] = 3                       # digit_2 on a quarter of every image.
    masks[:, 8:12] = 255                   # Ignored rows count nowhere.
    images = np.zeros((4, 32, 32, 1), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(3)
    # Constant logits: every pixel predicted background.
    inputs = keras.Input((32, 32, 1))
    logits = keras.layers.Conv2D(data.num_classes, 1, kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(
                                     [1.0] + [0.0] * (data.num_classes - 1)))(inputs)
    evaluation = task.evaluate(keras.Model(inputs, logits), ds, data)
    miou, predicted, extra = evaluation.score, evaluation.predictions, evaluation.extra
    assert predicted.shape == (4, 32, 32) and predicted.dtype == np.uint8 and not predicted.any()
    background = 20 / 28                   # Labelled rows: 8 of digit_2, 20 of background.
    assert extra["pixel_accuracy"] == pytest.approx(background)
    assert list(extra["per_class_iou"]) == list(scenes.CLASS_NAMES)
    assert extra["per_class_iou"]["background"] == pytest.approx(background)
    assert extra["per_class_iou"]["digit_2"] == 0.0
    assert extra["per_class_iou"]["digit_7"] is None   # Absent from truth and prediction.
    assert miou == pytest.approx(background / 2)


@pytest.mark.slow
def test_one_segmentation_run_writes_models_int8_file_and_miou(tmp_path):
    out, tfl = tmp_path / "run", tmp_path / "tflite"
    m = run(RunConfig(**TINY, output_dir=str(out), tflite_dir=str(tfl)))

    for name in ("pea_model.keras", "relu_model.keras", "model_int8.tflite", "metrics.json",
                 "history.csv", "alpha.png", "curves.png"):
        assert (out / name).is_file(), name
    tflite_file = tfl / "run_int8.tflite"
    assert m["tflite"]["path"] == str(tflite_file)
    from pea_keras.tflite import relu_only_violations
    assert relu_only_violations(str(tflite_file), int8=True) == []

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["task"] == "segmentation" and saved["metric"] == "miou"
    assert saved["dataset"] == "digit_scenes" and saved["arch"] == "lraspp_mobilenet_v2"
    for form in ("pea", "validation", "stripped", "int8"):
        assert list(saved["per_class_iou"][form]) == list(scenes.CLASS_NAMES), form
    assert saved["miou"]["stripped"] == saved["miou"]["pea"] and saved["stripped_equals_pea"]
    assert saved["alpha_final"] == 1.0
    assert "mean_iou" in saved["history"] and "val_mean_iou" in saved["history"]


@pytest.mark.slow
def test_compare_segmentation_relu_vs_pea_in_keras_3(tmp_path):
    rc = call_main("--task=segmentation", "--compare", "--keras=3", "--width=0.35",
                   "--image_size=32", "--epochs=1", "--steps_per_epoch=4", "--batch_size=8",
                   "--noexport", "--verbose=0", f"--output_dir={tmp_path}")
    assert rc == 0
    comparison = json.loads((tmp_path / "compare.json").read_text())
    relu = json.loads((tmp_path / "relu" / "metrics.json").read_text())
    pea = json.loads((tmp_path / "pea" / "metrics.json").read_text())
    assert comparison["metric"] == "miou" and relu["mode"] == "relu" and pea["mode"] == "pea"
    assert relu["flags"]["seed"] == pea["flags"]["seed"]
    assert relu["flags"]["arch"] == pea["flags"]["arch"] == "lraspp_mobilenet_v2"
    for form in ("pea", "stripped"):
        assert comparison["difference"][form] == pytest.approx(
            pea["miou"][form] - relu["miou"][form])


@pytest.mark.parametrize("args,reason", [
    (["--task=segmentation", "--arch=mobilenet_v2"], "--arch must be one of lraspp_mobilenet_v2, deeplabv3"),
    (["--task=segmentation", "--image_size=40"], "--image_size must give sides that are multiples of 16"),
    (["--task=segmentation", "--qat_epochs=1"], "--qat_epochs is not available"),
    (["--task=segmentation", "--dataset=nope"], "error: --dataset 'nope' is not a segmentation dataset; use"),
    (["--task=segmentation", "--dataset=folder:/no/such/dir"], "no such directory"),
])
def test_user_mistakes_are_one_line(tmp_path, capsys, args, reason):
    assert reason in refusal(tmp_path, capsys, *args)


def test_missing_cityscapes_says_how_to_prepare_it(tmp_path, capsys):
    rc = call_main("--task=segmentation", "--dataset=cityscapes", f"--data_dir={tmp_path}",
                   f"--output_dir={tmp_path / 'run'}", "--verbose=0")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "downloads/manual" in err[0] and "tfds build cityscapes/semantic_segmentation" in err[0]
