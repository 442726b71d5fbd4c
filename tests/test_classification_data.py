"""pea_keras.training.tasks.classification.data: the digits split of the contract, pipelines and
clear data errors, each naming its setting."""
import re

import numpy as np
import pytest

from pea_keras.errors import DataError, SettingError
from pea_keras.training.tasks import Splits
from pea_keras.training.tasks.classification import data


def test_load_digits_split_follows_the_contract():
    split = data.load_digits_split(32)
    assert set(split) == {"train", "validation", "test"}
    total = 0
    for x, y in split.values():
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.shape[1:] == (32, 32, 1) and len(x) == len(y)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))  # Stratified: every class in every split.
        total += len(y)
    assert total == 1797  # Every scikit-learn digit, each in one split.


def test_load_digits_split_is_fixed_by_seed():
    a, b = data.load_digits_split(16, seed=3), data.load_digits_split(16, seed=3)
    np.testing.assert_array_equal(a["test"][0], b["test"][0])
    c = data.load_digits_split(16, seed=4)
    assert not np.array_equal(a["test"][1], c["test"][1])
    rgb = data.load_digits_split(16, channels=3, seed=3)
    assert rgb["train"][0].shape[-1] == 3
    np.testing.assert_array_equal(rgb["train"][0][..., 2], a["train"][0][..., 0])


def test_digits_pipelines():
    d = data.load("digits", image_size=32, seed=0)
    train = data.pipeline(d, "train", image_size=32, batch_size=64, seed=0, training=True)
    x, y = next(iter(train))
    assert x.shape == (64, 32, 32, 1) and y.shape == (64, 10)
    np.testing.assert_allclose(y.numpy().sum(-1), 1.0)
    again = next(iter(data.pipeline(d, "train", image_size=32, batch_size=64, seed=0, training=True)))
    np.testing.assert_array_equal(x.numpy(), again[0].numpy())  # Same seed, same order.
    test = data.pipeline(d, "test", image_size=32, batch_size=100)
    x_test, y_test = data.to_numpy(test)
    expected = data.load_digits_split(32, seed=0)["test"]
    np.testing.assert_array_equal(x_test, expected[0])  # In order, every example once, no augmentation.
    np.testing.assert_array_equal(y_test, expected[1])


def test_folder_dataset(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            image = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            tf.io.write_file(str(tmp_path / cls / f"{i}.png"), tf.io.encode_png(image))
    d = data.load(f"folder:{tmp_path}", image_size=32, seed=0)
    assert d.num_classes == 2 and sum(d.sizes.values()) == 20
    x, y = next(iter(data.pipeline(d, "train", image_size=32, batch_size=4, training=True)))
    assert x.shape == (4, 32, 32, 3) and y.shape == (4, 2)
    assert float(tf.reduce_min(x)) >= 0.0 and float(tf.reduce_max(x)) <= 1.0
    x, _ = data.to_numpy(data.pipeline(d, "test", image_size=32, batch_size=4))
    assert x.shape == (d.sizes["test"], 32, 32, 3)

    # A class folder without images would be a class the model never sees: refused, by its path.
    (tmp_path / "bird").mkdir()
    with pytest.raises(SettingError, match=re.escape(f"dataset folder:{tmp_path}: no images (.png, .jpg, .jpeg, "
                                                     f".bmp, .gif) in class folder {tmp_path / 'bird'}; add images "
                                                     "or remove the folder")):
        data.load(f"folder:{tmp_path}", image_size=32, seed=0)
    (tmp_path / "bird").rmdir()

    # One corrupt file is named before anything trains, not met mid-training.
    (tmp_path / "dog" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"dog/3.png: not a readable image .*remove or replace it"):
        data.load(f"folder:{tmp_path}", image_size=32, seed=0)


def test_missing_datasets_say_how_to_prepare_them(tmp_path):
    with pytest.raises(SettingError, match=rf"data_dir {tmp_path} holds no prepared 'cifar10' .*tfds build cifar10 "
                                           r"--data_dir") as error:
        data.load("cifar10", image_size=32, data_dir=str(tmp_path), download="never")
    assert error.value.setting == "data_dir"
    with pytest.raises(DataError, match=r"manual.*ILSVRC2012_img_train.tar.*tfds build imagenet2012"):
        data.load("imagenet2012", image_size=224, data_dir=str(tmp_path), download="auto")
    with pytest.raises(SettingError, match="dataset 'no_such_dataset' is unknown"):
        data.load("no_such_dataset", image_size=32, data_dir=str(tmp_path))
    with pytest.raises(SettingError, match="download must be auto, always or never, got 'maybe'"):
        data.load("cifar10", image_size=32, data_dir=str(tmp_path), download="maybe")
    with pytest.raises(DataError, match="no such directory"):
        data.load(f"folder:{tmp_path / 'absent'}", image_size=32)


def test_default_image_size():
    assert data.default_image_size("digits") == 32
    assert data.default_image_size("cifar10") == 32
    assert data.default_image_size("imagenet2012") == 224


def test_tfds_split_names():
    assert data.split_names("cifar10", {"train", "test"}) == {
        "train": "train[:95%]", "validation": "train[95%:]", "test": "test"}
    assert data.split_names("imagenet2012", {"train", "validation", "test"}) == {
        "train": "train[:95%]", "validation": "train[95%:]", "test": "validation"}
    assert data.split_names("imagenette", {"train", "validation"})["test"] == "validation"
    assert data.split_names("svhn_cropped", {"train", "test", "validation"})["validation"] == "validation"
    with pytest.raises(DataError, match="needs a 'train'"):
        data.split_names("x", {"unlabelled"})


def test_small_natural_images_are_cached_and_cropped():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 20)
    d = Splits(name="small", datasets={k: tf.data.Dataset.from_tensor_slices((images, labels))
                                       for k in ("train", "validation", "test")},
               sizes={"train": 20, "validation": 20, "test": 20}, num_classes=10, channels=3,
               natural=True, source_size=32)
    shifts = data.choose_augmentation(d, 32)
    assert (shifts.crop, shifts.pad, shifts.flip) == ("pad", 2, False)

    def first_batch(seed):
        return next(iter(data.pipeline(d, "train", image_size=32, batch_size=5, seed=seed,
                                       training=True, augmentation=shifts)))[0].numpy()

    x1, x2 = first_batch(1), first_batch(1)
    assert x1.shape == (5, 32, 32, 3) and x1.min() >= 0 and x1.max() <= 1
    np.testing.assert_array_equal(x1, x2)  # Augmentation is reproducible for a seed.
    assert not np.array_equal(x1, first_batch(2))
    x_test, y_test = data.to_numpy(data.pipeline(d, "test", image_size=32, batch_size=8))
    np.testing.assert_allclose(x_test, images / 255.0, atol=1e-6)  # Same size: no crop, no blur.
    np.testing.assert_array_equal(y_test, labels)
