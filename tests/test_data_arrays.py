"""pea_keras.tflite data sources and model loading: every SOURCE kind, every model format."""
import numpy as np
import pytest
from PIL import Image

from pea_keras.tflite import TFLiteError, load_model, load_source, quantize, relu_only_violations
from pea_keras.tflite.inspect import inspect

SHAPE = (None, 8, 8, 1)


def test_image_folder_with_class_subfolders(tmp_path):
    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((16, 12, 3), value, np.uint8)).save(tmp_path / label / f"{i}.png")
    x, y = load_source(tmp_path, SHAPE, labelled=True)
    assert x.shape == (6, 8, 8, 1) and x.dtype == np.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    assert x[:3].max() == 0.0 and x[3:].min() == 1.0


def test_npz_npy_and_limits(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((50, 8, 8, 1)), y=np.arange(50) % 10)
    np.save(tmp_path / "x.npy", rng.random((50, 8, 8, 1)))
    x, y = load_source(tmp_path / "d.npz", SHAPE, labelled=True, limit=20)
    assert x.shape == (20, 8, 8, 1) and len(y) == 20
    assert load_source(tmp_path / "x.npy", SHAPE)[0].shape == (50, 8, 8, 1)
    with pytest.raises(TFLiteError, match="labelled data needs an .npz"):
        load_source(tmp_path / "x.npy", SHAPE, labelled=True)
    with pytest.raises(TFLiteError, match=r"shaped \(50, 8, 8, 1\) does not match the model input \(N, 4, 4, 1\)"):
        load_source(tmp_path / "x.npy", (None, 4, 4, 1))


def test_digits_splits_follow_the_model_input():
    x, y = load_source("digits:test", (None, 12, 12, 3), labelled=True)
    assert x.shape[1:] == (12, 12, 3) and len(x) == len(y) > 300
    with pytest.raises(TFLiteError, match="unknown split 'nope'"):
        load_source("digits:nope", SHAPE)


def test_every_model_format_loads(tmp_path):
    import keras
    import tf_keras

    def build(k):
        return k.Sequential([k.Input((8, 8, 1)), k.layers.Conv2D(2, 3, activation="relu"),
                             k.layers.Flatten(), k.layers.Dense(3)])

    build(keras).save(tmp_path / "k3.keras")
    build(tf_keras).save(tmp_path / "k2.keras")
    build(tf_keras).save(tmp_path / "k2.h5")
    build(tf_keras).save(tmp_path / "saved", save_format="tf")
    expected = {"k3.keras": "keras", "k2.keras": "tf_keras", "k2.h5": "tf_keras", "saved": "tf_keras"}
    for name, flavour in expected.items():
        model = load_model(tmp_path / name)
        assert type(model).__module__.split(".")[0] == flavour, name


def test_uint8_io_is_int8_inside():
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    data = quantize(model, np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32), io="uint8")
    info = inspect(data)
    assert [t.dtype for t in info.inputs + info.outputs] == ["UINT8", "UINT8"]
    assert relu_only_violations(data, int8=True) == []
