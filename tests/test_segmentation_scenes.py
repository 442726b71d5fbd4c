"""Digit scenes: determinism, labels where the ink is, disjoint splits."""

import numpy as np

from pea_keras.training.tasks.segmentation import scenes


def test_same_seed_is_byte_equal_and_another_seed_differs():
    a = scenes.make_digit_scenes(6, canvas_size=32, seed=3)
    b = scenes.make_digit_scenes(6, canvas_size=32, seed=3)
    c = scenes.make_digit_scenes(6, canvas_size=32, seed=4)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes() and a[1].tobytes() != c[1].tobytes()
    images, masks = a
    assert images.shape == (6, 32, 32, 1) and images.dtype == np.float32
    assert masks.shape == (6, 32, 32) and masks.dtype == np.uint8
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert masks.max() <= 10


def test_masks_are_the_thresholded_ink_of_the_topmost_digit():
    images8, digits = scenes.load_digit_images()
    images, masks, placements = scenes.make_digit_scenes(
        12, canvas_size=48, max_digits=4, seed=7, return_placements=True)  # fmt: skip
    overlapped = 0
    for image, mask, scene in zip(images, masks, placements):
        expected = np.zeros_like(mask)
        drawn = np.zeros(mask.shape, bool)
        owners = np.zeros(mask.shape, int)
        for p in scene:
            assert p.label == digits[p.index] + 1
            ink = scenes.digit_ink(images8[p.index], p.size)
            window = (slice(p.top, p.top + p.size), slice(p.left, p.left + p.size))
            covered = ink > scenes.INK_THRESHOLD
            expected[window][covered] = p.label
            owners[window] += covered
            drawn[window] |= ink > 0
            # The last digit to cover a pixel shows its own ink there.
        top = scene[-1]
        top_ink = scenes.digit_ink(images8[top.index], top.size)
        window = (slice(top.top, top.top + top.size), slice(top.left, top.left + top.size))
        covered = top_ink > scenes.INK_THRESHOLD
        np.testing.assert_allclose(image[window][covered][:, 0], top_ink[covered])
        np.testing.assert_array_equal(mask, expected)
        assert (mask[~drawn] == 0).all() and (image[~drawn] == 0).all()
        assert (mask[owners > 0] > 0).all()
        overlapped += (owners > 1).sum()
    assert overlapped > 0  # The case of the z-order was exercised.


def test_colour_scenes_keep_labels_and_channels():
    images, masks = scenes.make_digit_scenes(3, canvas_size=32, seed=1, channels=3)
    gray, gray_masks = scenes.make_digit_scenes(3, canvas_size=32, seed=1)
    assert images.shape == (3, 32, 32, 3)
    assert ((masks > 0) == (gray_masks > 0)).mean() > 0.9


def test_splits_use_disjoint_digit_images(monkeypatch):
    used = {}
    original = scenes.make_digit_scenes

    def spy(n, **kwargs):
        images, masks, placements = original(n, return_placements=True, **kwargs)
        used.setdefault("sets", []).append({p.index for s in placements for p in s})
        return images, masks

    monkeypatch.setattr(scenes, "make_digit_scenes", spy)
    split = scenes.digit_scene_splits(sizes=(40, 10, 10), canvas_size=32, seed=0)
    assert {k: v[0].shape[0] for k, v in split.items()} == {"train": 40, "validation": 10, "test": 10}
    train, validation, test = used["sets"]
    assert not train & validation and not train & test and not validation & test
    again = scenes.digit_scene_splits(sizes=(40, 10, 10), canvas_size=32, seed=0)
    assert again["validation"][1].tobytes() == split["validation"][1].tobytes()
