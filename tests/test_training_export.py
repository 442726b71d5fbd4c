"""pea_keras.training.export: the run's int8 file is convert's proven file, or nothing."""

import dataclasses
import pathlib

import pytest

from pea_keras.errors import TFLiteError
from pea_keras.tflite import relu_only_violations
from pea_keras.training import export, tasks
from pea_keras.training.config import RunConfig


@pytest.fixture(scope="module")
def digits():
    config = tasks.with_defaults(RunConfig(arch="tiny", calibration_examples=16, tflite_eval_examples=32))
    task = tasks.get("classification")
    data = task.load_data(config)
    return config, task, data, task.datasets(data, config)[2]


def _export(tmp_path, digits, model):
    config, task, data, test_ds = digits
    config = dataclasses.replace(config, output_dir=str(tmp_path / "run"), tflite_dir=str(tmp_path / "tflite"))
    warnings = []
    facts = export.export_int8(config, task, data, model, test_ds, str(tmp_path), warnings.append)
    return config, facts, warnings


@pytest.mark.slow
def test_a_relu_network_gets_its_file_kit_and_arena_from_one_conversion(tmp_path, digits):
    import keras

    config, task, data, _ = digits
    model = task.build_model(keras, config, data)
    config, facts, warnings = _export(tmp_path, digits, model)
    assert warnings == [] and facts["micro_arena_bytes"] > 0
    assert relu_only_violations(facts["path"], int8=True) == []
    kit = sorted(p.name for p in (tmp_path / "tflite").iterdir() if p.suffix != ".tflite")
    assert sorted(p.rsplit("/", 1)[-1] for p in facts["micro_kit"]) == kit and kit
    settings = next(p for p in (tmp_path / "tflite").iterdir() if p.name.endswith("_model_settings.h"))
    assert f"constexpr int kArenaMeasuredBytes = {facts['micro_arena_bytes']};" in settings.read_text()
    assert (tmp_path / "model_int8.tflite").read_bytes() == pathlib.Path(facts["path"]).read_bytes()


@pytest.mark.slow
def test_a_network_with_a_sigmoid_is_refused_and_nothing_is_written(tmp_path, digits):
    import keras

    config, _, data, _ = digits
    inputs = keras.Input((config.image_size, config.image_size, data.channels))
    x = keras.layers.Conv2D(4, 3, activation="sigmoid")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(data.num_classes)(x))
    with pytest.raises(TFLiteError, match="not ReLU-only: .*LOGISTIC"):
        _export(tmp_path, digits, model)
    assert not (tmp_path / "tflite").exists() or not any((tmp_path / "tflite").iterdir())
    assert not (tmp_path / "model_int8.tflite").exists()
