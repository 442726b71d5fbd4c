"""pea_keras.data: every SOURCE kind as checked model inputs; model loading of every format."""
import re

import numpy as np
import pytest
from PIL import Image

from pea_keras import load_model
from pea_keras.data import DataError, calibration_samples, check_inputs, load_arrays, parse
from pea_keras.tflite import quantize, relu_only_violations
from pea_keras.tflite.inspection import inspect

SHAPE = (None, 8, 8, 1)


def test_image_folder_with_class_subfolders(tmp_path):
    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((16, 12, 3), value, np.uint8)).save(tmp_path / label / f"{i}.png")
    x, y = load_arrays(tmp_path, SHAPE, labelled=True)
    assert x.shape == (6, 8, 8, 1) and x.dtype == np.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    assert x[:3].max() == 0.0 and x[3:].min() == 1.0


def test_npz_npy_and_limits(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((50, 8, 8, 1)), y=np.arange(50) % 10)
    np.save(tmp_path / "x.npy", rng.random((50, 8, 8, 1)))
    x, y = load_arrays(tmp_path / "d.npz", SHAPE, labelled=True, limit=20)
    assert x.shape == (20, 8, 8, 1) and len(y) == 20
    assert load_arrays(tmp_path / "x.npy", SHAPE)[0].shape == (50, 8, 8, 1)
    with pytest.raises(DataError, match="labelled data needs an .npz"):
        load_arrays(tmp_path / "x.npy", SHAPE, labelled=True)
    with pytest.raises(DataError, match=r"shaped \(50, 8, 8, 1\) does not match the model input \(N, 4, 4, 1\)"):
        load_arrays(tmp_path / "x.npy", (None, 4, 4, 1))


def test_digits_splits_follow_the_model_input():
    x, y = load_arrays("digits:test", (None, 12, 12, 1), labelled=True)
    assert x.shape[1:] == (12, 12, 1) and len(x) == len(y) > 300
    # A model made for other data is never calibrated on digits without a word.
    with pytest.raises(DataError, match=r"digits .* do not fit a model input \(N, 224, 224, 3\)"):
        load_arrays("digits", (None, 224, 224, 3))
    with pytest.raises(DataError, match="unknown split 'nope'"):
        load_arrays("digits:nope", SHAPE)


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
    for name, flavor in expected.items():
        model = load_model(tmp_path / name)
        assert type(model).__module__.split(".")[0] == flavor, name


def test_uint8_io_is_int8_inside():
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    data = quantize(model, np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32), io="uint8")
    info = inspect(data)
    assert [t.dtype for t in info.inputs + info.outputs] == ["UINT8", "UINT8"]
    assert relu_only_violations(data, int8=True) == []


def test_one_source_syntax():
    assert str(parse("digits:test")) == "digits:test" and parse("digits").split is None
    assert parse("tfds:cifar10:train") == parse("tfds:cifar10:train")
    assert (parse("tfds:cifar10:train").location, parse("tfds:cifar10:train").split) == ("cifar10", "train")
    assert parse("cifar10").kind == "tfds" and parse("x.npz").kind == "npz"
    assert parse("npy:/a/b.npy").location == "/a/b.npy" and parse("folder:/x").kind == "folder"
    for bad, message in (("", "not a data source"), ("folder:", "needs a path"), ("tfds:", "needs a dataset"),
                         ("/no/such/dir", "no such folder")):
        with pytest.raises(DataError, match=message):
            parse(bad)


@pytest.mark.parametrize("values, message", [
    (np.full((4, 8, 8, 1), np.inf, np.float32), r"4 of 4 samples hold NaN or infinite values \(first: sample 0\)"),
    (np.where(np.arange(4)[:, None, None, None] == 2, np.nan, np.zeros((4, 8, 8, 1), np.float32)),
     r"1 of 4 samples hold NaN or infinite values \(first: sample 2\)"),
    (np.arange(4 * 64).reshape(4, 8, 8, 1).astype(np.uint8), r"uint8 values \(0\.\.255\) where the model takes float"),
    (np.zeros((4, 8, 8, 1), np.int64), r"int64 values .*or pass the divisor scale=255$"),
    (np.zeros((0, 8, 8, 1), np.float32), "no samples"),
    (np.zeros((4, 9, 8, 1), np.float32), r"does not match the model input \(N, 8, 8, 1\)"),
])
def test_inputs_are_checked(values, message):
    with pytest.raises(DataError, match=message):
        check_inputs(values, SHAPE, "calib.npy")


def test_integer_data_is_scaled_only_when_asked(tmp_path):
    np.save(tmp_path / "u8.npy", np.full((120, 8, 8, 1), 255, np.uint8))
    with pytest.raises(DataError, match="uint8 values"):
        load_arrays(tmp_path / "u8.npy", SHAPE)
    x, _ = load_arrays(tmp_path / "u8.npy", SHAPE, scale=255)
    assert x.dtype == np.float32 and float(x.max()) == 1.0


def test_few_calibration_samples_warn(tmp_path):
    np.save(tmp_path / "few.npy", np.zeros((12, 8, 8, 1), np.float32))
    with pytest.warns(UserWarning, match="only 12 calibration samples"):
        calibration_samples(tmp_path / "few.npy", SHAPE)


@pytest.mark.parametrize("low, high, refused", [
    (0.0, 1.0, False), (-1.0, 1.0, False), (-1.5, 2.5, False),  # [-1, 1] images; 4x the span at most
    (0.0, 255.0, True), (0.0, 1e6, True), (-2.0, 2.5, True), (100.0, 101.0, True),
])
def test_calibration_far_outside_the_image_range_is_refused_unless_accepted(tmp_path, low, high, refused):
    x = np.linspace(low, high, 120 * 64, dtype=np.float32).reshape(120, 8, 8, 1)
    np.save(tmp_path / "x.npy", x)
    if refused:
        span = re.escape(f"x.npy: values span [{low:.4g}, {high:.4g}], more than 4x the range [0, 1] of the images")
        with pytest.raises(DataError, match=span + r" models here take: .* \(integers: scale=255\), or pass "
                                              r"any_range=True for a model that takes such inputs$") as refusal:
            calibration_samples(tmp_path / "x.npy", SHAPE)
        assert refusal.value.settings == {"scale": 255, "any_range": True}  # pea-tflite says its flags.
    else:
        assert calibration_samples(tmp_path / "x.npy", SHAPE).shape == x.shape
    assert calibration_samples(tmp_path / "x.npy", SHAPE, any_range=True).shape == x.shape
    np.save(tmp_path / "v.npy", x.reshape(120, 64))  # Not an image: no range is known.
    assert calibration_samples(tmp_path / "v.npy", (None, 64)).shape == (120, 64)


def test_several_inputs_read_an_npz_keyed_by_input_name(tmp_path):
    inputs = [("image", (None, 8, 8, 1)), ("extra", (None, 3))]
    np.savez(tmp_path / "two.npz", image=np.zeros((5, 8, 8, 1), np.float32), extra=np.ones((5, 3), np.float32))
    x, _ = load_arrays(tmp_path / "two.npz", inputs)
    assert [a.shape for a in x] == [(5, 8, 8, 1), (5, 3)]
    np.savez(tmp_path / "one.npz", image=np.zeros((5, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match="missing extra"):
        load_arrays(tmp_path / "one.npz", inputs)
    with pytest.raises(DataError, match="2 inputs reads its data from an .npz"):
        load_arrays("digits", inputs)
