"""pea_keras.data.augmentation: --augment chosen for the data (flips only where mirrored images
keep their class, the crop by image size), and a folder with a handedness still learns."""
import json

import numpy as np
import pytest
from train_cli import call_main

from pea_keras.data import augmentation
from pea_keras.errors import SettingError
from pea_keras.training import config as config_lib
from pea_keras.training.tasks import Splits
from pea_keras.training.tasks.classification import data


def test_parse():
    assert augmentation.parse("auto") is None
    assert augmentation.parse("none") == frozenset()
    assert augmentation.parse("flip,crop") == augmentation.parse(" Crop , flip") == {"flip", "crop"}
    for bad in ("flips", "", "crop,,flip", "true"):
        with pytest.raises(SettingError, match=r"^augment must be auto, none, or a comma list"):
            augmentation.parse(bad)


def test_earlier_spellings_keep_working():
    assert config_lib.respell(["train.py", "--noaugment", "--epochs=2"]) == [
        "train.py", "--augment=none", "--epochs=2"]
    assert config_lib.respell(["train.py", "--augment"]) == ["train.py", "--augment=auto"]
    assert config_lib.respell(["--augment=false", "--augment=true"]) == ["--augment=none", "--augment=auto"]
    assert config_lib.respell(["train.py", "--augment", "--epochs=2"])[1] == "--augment=auto"
    assert config_lib.respell(["train.py", "--augment", "flip,crop"]) == ["train.py", "--augment", "flip,crop"]


def _data(name, source_size, kind="tfds", natural=True):
    return Splits(name=name, datasets={}, sizes={}, num_classes=10, channels=3, natural=natural,
                  source_size=source_size, kind=kind)


def test_auto_flips_only_datasets_known_to_keep_their_classes_mirrored():
    choose = data.choose_augmentation
    cifar = choose(_data("cifar10", 32), 32)
    assert (cifar.flip, cifar.crop, cifar.pad) == (True, "pad", 4)  # The CIFAR recipe.
    assert choose(_data("cifar100", 32), 32).flip
    for name in ("mnist", "svhn_cropped"):
        a = choose(_data(name, 28 if name == "mnist" else 32), 32)
        assert (a.flip, a.crop, a.pad) == (False, "pad", 2), name  # MNIST recipes' 2 px shifts.
        assert "change meaning when mirrored" in a.reason
    folder = choose(_data("folder:/x", 28, kind="folder"), 32)
    assert (folder.flip, folder.crop) == (False, "pad")
    assert "set augment=flip,crop when a mirrored image keeps its class" in folder.describe()
    # Only images stored at twice the input or more (or of varied size) get the random-resized crop.
    imagenet = choose(_data("imagenet2012", 0), 224)
    assert (imagenet.flip, imagenet.crop, imagenet.scale) == (True, "resized", (0.08, 1.0))
    assert "random-resized crop (area 0.08-1" in imagenet.describe()
    assert choose(_data("folder:/p", 500, kind="folder"), 224).crop == "resized"
    assert choose(_data("folder:/p", 256, kind="folder"), 224).pad == 14
    assert choose(_data("folder:/p", 256, kind="folder"), 224, "flip,crop").pad == 28
    # Asked for: exactly those parts; none: nothing.
    asked = choose(_data("folder:/x", 28, kind="folder"), 32, "flip")
    assert (asked.flip, asked.crop) == (True, "")
    assert choose(_data("cifar10", 32), 32, "none") == augmentation.NONE
    digits = _data("digits", 8, kind="digits", natural=False)
    assert not choose(digits, 32).flip and not choose(digits, 32).crop
    with pytest.raises(SettingError, match="^augment crop: the built-in digits are not augmented; use auto or none"):
        choose(digits, 32, "crop")


def _gradients(n=8, side=16):
    """Images whose brightness rises from left to right: a flip reverses it, a shift does not."""
    import tensorflow as tf

    ramp = np.tile(np.linspace(0, 255, side, dtype=np.float32)[None, :, None], (side, 1, 3))
    images = np.repeat(ramp[None].astype(np.uint8), n, axis=0)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(n, np.int64)))
    return Splits(name="ramps", datasets={"train": ds}, sizes={"train": n}, num_classes=2,
                  channels=3, natural=True, source_size=side, kind="folder")


def test_the_default_never_mirrors_and_pads_by_reflection():
    d = _gradients()
    for spec, mirrored in (("auto", False), ("flip,crop", True)):
        a = data.choose_augmentation(d, 16, spec)
        x = next(iter(data.pipeline(d, "train", image_size=16, batch_size=64, training=True,
                                    augmentation=a)))[0].numpy()
        left, right = x[:, :, :4].mean(axis=(1, 2, 3)), x[:, :, -4:].mean(axis=(1, 2, 3))
        assert (left > right).any() == mirrored, spec
        if not mirrored:  # Shifted by up to 1 px, reflected at the edges: never a black border.
            assert (right - left > 0.5).all() and x.min() >= 0 and x.max() <= 1


def _arrows(root, per_class=150, side=16, seed=0):
    """A folder of left- and right-pointing arrows drawn with Pillow at random places and sizes:
    classes that a horizontal flip swaps."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for direction in ("left", "right"):
        (root / direction).mkdir(parents=True)
        for i in range(per_class):
            bg = int(rng.integers(0, 80))
            image = Image.new("L", (side, side), bg)
            draw = ImageDraw.Draw(image)
            y, half = int(rng.integers(5, side - 5)), int(rng.integers(4, 7))
            cx = int(rng.integers(half + 1, side - half - 1))
            tail, tip = (cx + half, cx - half) if direction == "left" else (cx - half, cx + half)
            ink = int(rng.integers(170, 256))
            draw.line([(tail, y), (tip, y)], fill=ink, width=1)
            back = 3 if direction == "left" else -3
            draw.polygon([(tip, y), (tip + back, y - 3), (tip + back, y + 3)], fill=ink)
            image.save(root / direction / f"{i}.png")


@pytest.mark.slow
def test_default_augmentation_lets_a_folder_with_a_handedness_learn(tmp_path, capsys):
    _arrows(tmp_path / "arrows")
    common = ["--arch=tiny", f"--dataset=folder:{tmp_path / 'arrows'}", "--image_size=16",
              "--epochs=4", "--batch_size=16", "--lr=5e-3", "--noexport", "--verbose=0"]
    top1 = {}
    for name, flags in (("default", []), ("none", ["--noaugment"]), ("flip", ["--augment=flip,crop"])):
        assert call_main(*common, *flags, f"--output_dir={tmp_path / name}") == 0
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        top1[name] = metrics["top1"]["stripped"]
        top1[name + " flips"] = metrics["augmentation"]["flip"]
        assert metrics["class_names"] == sorted(p.name for p in (tmp_path / "arrows").iterdir())
    assert top1["default"] >= 0.9 and top1["default"] >= top1["none"] - 0.05, top1
    assert not top1["default flips"] and top1["flip flips"]
    assert top1["flip"] <= 0.75, top1  # Flips swap the classes: the test can tell.


def test_segmentation_keeps_crop_and_flip_unless_asked_otherwise():
    from types import SimpleNamespace

    from pea_keras.training.tasks.segmentation import data as segmentation

    photos, scenes = SimpleNamespace(natural=True), SimpleNamespace(natural=False)
    auto = segmentation.choose_augmentation(photos)
    assert (auto.flip, auto.crop) == (True, "margin")
    assert "random crop of the image resized 1.125x, horizontal flips" in auto.describe()
    crop = segmentation.choose_augmentation(photos, "crop")
    assert (crop.flip, crop.crop) == (False, "margin")
    assert segmentation.choose_augmentation(photos, "none") == augmentation.NONE
    assert not segmentation.choose_augmentation(scenes).flip
    with pytest.raises(SettingError, match="generated scenes are not augmented"):
        segmentation.choose_augmentation(scenes, "flip")
