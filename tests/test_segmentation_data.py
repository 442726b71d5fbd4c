"""pea_keras.training.tasks.segmentation.data: folder format, Cityscapes mapping and instructions, pipelines."""

import os

import numpy as np
import pytest
import tensorflow as tf

from pea_keras.errors import DataError, SettingError
from pea_keras.training.tasks.segmentation import data, scenes


def _write_png(path, array):
    tf.io.write_file(path, tf.io.encode_png(array))


def _make_folder(root, n=10, size=(24, 40), num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        mask[:, size[1] // 2 :] = 1 + i % (num_classes - 1)
        mask[: size[0] // 4] = 255  # An unlabelled band.
        image = np.repeat((mask * 40)[..., None], 3, axis=-1).astype(np.uint8)
        image[mask == 255] = rng.integers(0, 255, size=3, dtype=np.uint8)
        _write_png(str(root / "images" / f"scene_{i:02d}.png"), image)
        _write_png(str(root / "masks" / f"scene_{i:02d}.png"), mask[..., None])


def test_folder_loader_pairs_stems_splits_and_resizes(tmp_path):
    _make_folder(tmp_path)
    d = data.load(f"folder:{tmp_path}", image_size=32)
    assert d.num_classes == 4 and d.channels == 3 and d.natural
    assert d.sizes == {"train": 8, "validation": 1, "test": 1}
    x, y = data.to_numpy(data.pipeline(d, "train", image_size=(16, 32), batch_size=4,
                                       training=False))  # fmt: skip
    assert x.shape == (8, 16, 32, 3) and x.dtype == np.float32
    assert y.shape == (8, 16, 32) and y.dtype == np.int32
    assert x.min() >= 0.0 and x.max() <= 1.0
    # Nearest-neighbour masks: no label is invented by interpolation.
    assert set(np.unique(y)) <= {0, 1, 2, 3, 255}
    assert (y[:, :4] == 255).all() and (y[:, 5:, :15] == 0).all()


def test_folder_training_pipeline_crops_and_flips_image_and_mask_together(tmp_path):
    _make_folder(tmp_path, n=10, size=(32, 32))
    d = data.load(f"folder:{tmp_path}", image_size=32)
    auto = data.choose_augmentation(d)
    ds = data.pipeline(d, "train", image_size=24, batch_size=4, seed=1, training=True,
                       augmentation=auto)
    x, y = data.to_numpy(ds, limit=16)
    assert x.shape == (16, 24, 24, 3) and y.shape == (16, 24, 24)
    labelled = y != 255
    # Images encode their labels (value = 40 * label): after the joint crop and flip they agree
    # away from the bilinear edge between the halves.
    agree = np.abs(x[..., 0] * 255 - 40 * y) < 1
    assert agree[labelled].mean() > 0.9
    flipped = y[:, -1, 0] > 0  # Labelled right half moved to the left: a flip happened.
    assert flipped.any() and not flipped.all()
    again = data.to_numpy(data.pipeline(d, "train", image_size=24, batch_size=4, seed=1,
                                        training=True, augmentation=auto), limit=16)  # fmt: skip
    assert again[1].tobytes() == y.tobytes()
    crop_only = data.to_numpy(data.pipeline(d, "train", image_size=24, batch_size=4, seed=1, training=True,
                                            augmentation=data.choose_augmentation(d, "crop")), limit=16)
    assert not (crop_only[1][:, -1, 0] > 0).any()  # --augment crop: never flipped.


def test_folder_with_split_subfolders_and_explicit_errors(tmp_path):
    for split in data.SPLITS:
        _make_folder(tmp_path / split, n=3)
    d = data.load(f"folder:{tmp_path}", image_size=32, num_classes=6)
    assert d.sizes == {"train": 3, "validation": 3, "test": 3} and d.num_classes == 6
    os.remove(tmp_path / "test" / "masks" / "scene_01.png")
    with pytest.raises(DataError, match="not in both images/ and masks/ .*scene_01"):
        data.load(f"folder:{tmp_path}", image_size=32)
    with pytest.raises(DataError, match="needs images/ and masks/ .*images/images is missing"):
        data.load(f"folder:{tmp_path / 'train' / 'images'}", image_size=32)
    with pytest.raises(DataError, match="no such directory"):
        data.load(f"folder:{tmp_path / 'nowhere'}", image_size=32)


def test_missing_cityscapes_says_how_to_prepare_it(tmp_path):
    with pytest.raises(SettingError, match=f"data_dir {tmp_path} holds no prepared Cityscapes") as error:
        data.load("cityscapes", image_size=(256, 512), data_dir=str(tmp_path))
    message = str(error.value)
    manual_dir = os.path.join(str(tmp_path), "downloads", "manual")
    for part in ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip", manual_dir,
                 f"tfds build cityscapes/semantic_segmentation --data_dir {tmp_path} "
                 f"--manual_dir {manual_dir}"):  # fmt: skip
        assert part in message
    assert list(tmp_path.iterdir()) == []  # Nothing was downloaded or built.


def test_cityscapes_train_ids_follow_the_official_table():
    table = data.cityscapes_train_id_table()
    assert table.shape == (256,) and table.dtype == np.uint8
    assert [table[i] for i in (7, 8, 11, 26, 33)] == [0, 1, 2, 13, 18]
    assert [table[i] for i in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255)] == [255] * 13
    assert sorted(set(table.tolist()) - {255}) == list(range(19))
    assert len(data.CITYSCAPES_CLASS_NAMES) == 19


def test_digit_scenes_pipeline_keeps_the_generated_arrays():
    d = data.load("digit_scenes", image_size=32, sizes=(8, 4, 4), seed=0)
    assert d.num_classes == 11 and d.channels == 1 and not d.natural
    x, y = data.to_numpy(data.pipeline(d, "validation", image_size=32, batch_size=3))
    expected = scenes.digit_scene_splits(sizes=(8, 4, 4), canvas_size=32, seed=0)["validation"]
    np.testing.assert_array_equal(x, expected[0])
    np.testing.assert_array_equal(y, expected[1])
    batch = next(iter(data.pipeline(d, "train", image_size=32, batch_size=3, training=True)))
    assert batch[0].shape == (3, 32, 32, 1) and batch[1].dtype == tf.int32
