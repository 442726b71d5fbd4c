"""Digit scenes: an offline segmentation dataset built from scikit-learn's handwritten digits.

Each scene is a black canvas with 1..``max_digits`` real handwritten digits (the 8x8 UCI scans
shipped in ``sklearn.datasets.load_digits``, 0..16 ink) scaled to a random size and pasted at a
random position. Digits may overlap; the drawing order is the z-order (a later digit covers an
earlier one). Labels: 0 = background, digit ``d`` -> class ``d + 1`` (11 classes in all). A pixel
gets a digit's class where that digit's resampled ink is above ``INK_THRESHOLD`` of full ink.

Everything is numpy and a pure function of ``seed``: the same call returns byte-equal arrays.
"""

import dataclasses

import numpy as np

NUM_CLASSES = 11
BACKGROUND = 0
INK_THRESHOLD = 0.5
CLASS_NAMES = ("background",) + tuple(f"digit_{d}" for d in range(10))
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}


@dataclasses.dataclass(frozen=True)
class Placement:
    """One pasted digit: ``digits.images[index]`` drawn as a ``size`` x ``size`` square at
    ``(top, left)`` with class ``label`` (= digit + 1) and, for 3-channel scenes, ``color``."""

    index: int
    label: int
    top: int
    left: int
    size: int
    color: tuple


def load_digit_images():
    """Returns ``(images float32 (1797, 8, 8) in [0, 1], digits int (1797,))``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def digit_ink(image8, size):
    """Bilinear (half-pixel centres) resample of an 8x8 ink image to ``size`` x ``size``."""
    matrix = _bilinear_matrix(image8.shape[0], size)
    return (matrix @ image8.astype(np.float64) @ matrix.T).astype(np.float32)


def make_digit_scenes(
    n,
    canvas_size=64,
    max_digits=3,
    seed=0,
    channels=1,
    pool=None,
    min_scale=0.25,
    max_scale=0.6,
    return_placements=False,
):
    """Returns ``(images float32 (n, H, W, channels) in [0, 1], masks uint8 (n, H, W))``.

    Args:
      n: number of scenes.
      canvas_size: H = W of each scene.
      max_digits: each scene holds 1..max_digits digits (uniform).
      seed: the only source of randomness.
      channels: 1 (grayscale ink) or 3 (each digit in a random bright colour).
      pool: indices into ``load_digits()`` to draw from (all 1797 when None); disjoint pools give
        disjoint splits (see ``digit_scene_splits``).
      min_scale, max_scale: digit side as a fraction of the canvas.
      return_placements: also return, per scene, the list of ``Placement`` in z-order.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    images8, digits = load_digit_images()
    pool = np.arange(len(digits)) if pool is None else np.asarray(pool)
    rng = np.random.default_rng(seed)
    lo = max(4, int(round(min_scale * canvas_size)))
    hi = max(lo, int(round(max_scale * canvas_size)))
    scenes = np.zeros((n, canvas_size, canvas_size, channels), np.float32)
    masks = np.full((n, canvas_size, canvas_size), BACKGROUND, np.uint8)
    placements = []
    for i in range(n):
        scene_placements = []
        for _ in range(int(rng.integers(1, max_digits + 1))):
            index = int(pool[rng.integers(len(pool))])
            size = int(rng.integers(lo, hi + 1))
            top = int(rng.integers(0, canvas_size - size + 1))
            left = int(rng.integers(0, canvas_size - size + 1))
            color = (1.0,) if channels == 1 else tuple(float(c) for c in rng.uniform(0.4, 1.0, 3))
            placement = Placement(index, int(digits[index]) + 1, top, left, size, color)
            _draw(scenes[i], masks[i], digit_ink(images8[index], size), placement)
            scene_placements.append(placement)
        placements.append(scene_placements)
    if return_placements:
        return scenes, masks, placements
    return scenes, masks


def digit_scene_splits(
    sizes=(2000, 400, 400), canvas_size=64, max_digits=3, seed=0, channels=1
):
    """Returns ``{"train"|"validation"|"test": (images, masks)}`` of ``sizes`` scenes each.

    The 1797 digit images are shuffled with ``seed`` and cut 60/20/20 into three disjoint pools,
    so no handwritten digit seen in training appears in validation or test scenes; each split
    then has its own scene seed derived from ``seed``.
    """
    _, digits = load_digit_images()
    order = np.random.default_rng(seed).permutation(len(digits))
    n_train = int(round(SPLIT_FRACTIONS["train"] * len(order)))
    n_val = int(round(SPLIT_FRACTIONS["validation"] * len(order)))
    pools = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {
        split: make_digit_scenes(
            count,
            canvas_size=canvas_size,
            max_digits=max_digits,
            seed=[seed, k + 1],
            channels=channels,
            pool=pools[split],
        )
        for k, (split, count) in enumerate(zip(("train", "validation", "test"), sizes))
    }


def _draw(scene, mask, ink, placement):
    window = (
        slice(placement.top, placement.top + placement.size),
        slice(placement.left, placement.left + placement.size),
    )
    covered = ink > INK_THRESHOLD
    colored = ink[..., None] * np.asarray(placement.color, np.float32)
    region = scene[window]
    # The digit's labelled ink replaces what is below; its faint halo only adds light.
    region[...] = np.where(covered[..., None], colored, np.maximum(region, colored))
    mask[window][covered] = placement.label


def _bilinear_matrix(source, target):
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = centres - low
    matrix = np.zeros((target, source))
    matrix[np.arange(target), low] += 1 - frac
    matrix[np.arange(target), high] += frac
    return matrix
