"""The data of the segmentation task: (image, mask) datasets as ``Splits``, and their ``tf.data`` pipelines.

Three sources:
  * ``digit_scenes`` (the offline default): ``scenes.digit_scene_splits``, scenes of real
    handwritten digits from scikit-learn, 11 classes, generated here (nothing is downloaded).
  * ``cityscapes``: TFDS ``cityscapes/semantic_segmentation`` (fine annotations), read from
    ``data_dir``; it needs a manual download (see ``cityscapes_instructions``). Its labelIds are
    mapped to the 19 training classes, everything else to ``IGNORE_LABEL`` (255). Cityscapes'
    test labels are withheld, so its validation split serves as both validation and test.
  * ``folder:PATH``: ``PATH/images/*`` and ``PATH/masks/*`` with matching file stems, masks as
    single-channel PNGs of class indices (255 = ignore). With ``PATH/{train,validation,test}/``
    sub-folders of that shape those are the splits, otherwise the pairs are shuffled with
    ``seed`` and cut 80/10/10.

Pipelines yield ``(image float32 [0, 1] (B, H, W, C), mask int32 (B, H, W))``: images are
resized bilinearly, masks with nearest neighbour (a label is never interpolated); training
pipelines of natural images add a joint random crop and horizontal flip. Mistakes in a setting
raise ``SettingError`` naming it (``dataset``, ``data_dir``), which train.py says as its flag.
"""

import math
import os

import numpy as np
import tensorflow as tf

from pea_keras.data import augmentation as augment_lib
from pea_keras.data import batches, sources
from pea_keras.data import images as image_files
from pea_keras.errors import DataError, SettingError

from ..base import SPLITS, Splits
from . import scenes
from .metrics import IGNORE_LABEL

DIGIT_SCENES = "digit_scenes"
CITYSCAPES = "cityscapes"
CITYSCAPES_CONFIG = "cityscapes/semantic_segmentation"
CITYSCAPES_ZIPS = ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip")
# Training crops are taken from images resized to this multiple of the model input.
CROP_MARGIN = 1.125
SHUFFLE_BUFFER = 1000

# labelId -> trainId of the official cityscapesScripts (cityscapesscripts/helpers/labels.py):
# the 19 evaluated classes; every other labelId (void, parking, rail track, guard rail, bridge,
# tunnel, polegroup, caravan, trailer, license plate) is ignored.
CITYSCAPES_LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip


def cityscapes_train_id_table():
    """uint8 lookup table of 256 entries: ``table[labelId]`` is the trainId or 255."""
    table = np.full(256, IGNORE_LABEL, np.uint8)
    for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


def cityscapes_instructions(data_dir):
    """How to prepare Cityscapes for TFDS in ``data_dir`` (it cannot be downloaded by script)."""
    manual_dir = os.path.join(data_dir, "downloads", "manual")
    return (
        f"Cityscapes needs a manual download: register on the Cityscapes website, download "
        f"{' and '.join(CITYSCAPES_ZIPS)}, put both zip files (unextracted) in {manual_dir}, then run "
        f"`tfds build {CITYSCAPES_CONFIG} --data_dir {data_dir} --manual_dir {manual_dir}`"
    )


def load(dataset, *, image_size, seed=0, data_dir=None, sizes=None, num_classes=None):
    """Loads ``dataset`` (see the module docstring) as ``Splits``.

    ``image_size``: int or ``(height, width)``; used by ``digit_scenes`` (square canvases) only.
    ``sizes``: scenes per split for ``digit_scenes`` (default ``(2000, 400, 400)``).
    ``num_classes``: for ``folder:`` (default: 1 + the largest non-ignored mask value).
    Raises ``SettingError`` or ``DataError`` (both ``UsageError``) saying how to prepare data that is not there.
    """
    source = sources.parse(dataset)
    if source.kind == DIGIT_SCENES:
        return _digit_scenes(image_size, seed, sizes)
    if source.kind == "folder":
        return _folder(source.location, seed, num_classes)
    if source.kind == "tfds" and source.location.split("/")[0] == CITYSCAPES:
        return _cityscapes(data_dir)
    raise SettingError(
        "dataset", f"{dataset!r} is not a segmentation dataset; use {DIGIT_SCENES!r}, {CITYSCAPES!r} or 'folder:PATH'"
    )


def _digit_scenes(image_size, seed, sizes):
    height, width = _pair(image_size)
    if height != width:
        raise SettingError("image_size", f"must be square for {DIGIT_SCENES}, got {image_size!r}")
    split = scenes.digit_scene_splits(sizes or (2000, 400, 400), canvas_size=height, seed=seed)
    return Splits(
        name=DIGIT_SCENES,
        datasets={k: tf.data.Dataset.from_tensor_slices(v) for k, v in split.items()},
        sizes={k: len(v[1]) for k, v in split.items()},
        num_classes=scenes.NUM_CLASSES,
        channels=1,
        natural=False,
        class_names=scenes.CLASS_NAMES,
        kind=DIGIT_SCENES,
        ignore_label=IGNORE_LABEL,
    )


def _cityscapes(data_dir):
    import tensorflow_datasets as tfds

    data_dir = os.path.expanduser(data_dir or os.path.join("~", "tensorflow_datasets"))
    builder = tfds.builder(CITYSCAPES_CONFIG, data_dir=data_dir)
    if not builder.is_prepared():
        raise SettingError("data_dir", f"{data_dir} holds no prepared Cityscapes. {cityscapes_instructions(data_dir)}")
    table = tf.constant(cityscapes_train_id_table())

    def to_pair(example):
        label_ids = tf.cast(example["segmentation_label"][..., 0], tf.int32)
        return example["image_left"], tf.gather(table, label_ids)

    names = {"train": "train", "validation": "validation", "test": "validation"}
    datasets = {
        k: builder.as_dataset(
            split=s, shuffle_files=(k == "train"), read_config=tfds.ReadConfig(shuffle_seed=0)
        ).map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
        for k, s in names.items()
    }
    return Splits(
        name=CITYSCAPES,
        datasets=datasets,
        sizes={k: builder.info.splits[s].num_examples for k, s in names.items()},
        num_classes=len(CITYSCAPES_CLASS_NAMES),
        channels=3,
        natural=True,
        class_names=CITYSCAPES_CLASS_NAMES,
        kind="tfds",
        ignore_label=IGNORE_LABEL,
    )


def folder_pairs(path):
    """Sorted ``(image_files, mask_files)`` of ``path/images`` and ``path/masks`` matched by stem.

    Raises ``DataError`` naming what is missing: a folder, or stems found on one side only.
    """
    image_dir, mask_dir = os.path.join(path, "images"), os.path.join(path, "masks")
    for folder in (image_dir, mask_dir):
        if not os.path.isdir(folder):
            raise DataError(
                f"folder:{path} needs images/ and masks/ sub-folders (or train/, validation/, "
                f"test/ each holding both); {folder} is missing"
            )

    def by_stem(folder):
        return {
            os.path.splitext(n)[0]: os.path.join(folder, n)
            for n in sorted(os.listdir(folder))
            if image_files.is_image(n)
        }

    images, masks = by_stem(image_dir), by_stem(mask_dir)
    unmatched = sorted(set(images) ^ set(masks))
    if unmatched:
        raise DataError(
            f"folder:{path}: {len(unmatched)} file stems are not in both images/ and masks/ "
            f"(e.g. {', '.join(unmatched[:3])})"
        )
    if not images:
        raise DataError(f"folder:{path}: no images ({', '.join(image_files.IMAGE_EXTENSIONS)}) in {image_dir}")
    stems = sorted(images)
    return [images[s] for s in stems], [masks[s] for s in stems]


def _folder(path, seed, num_classes):
    if not os.path.isdir(path):
        raise DataError(f"folder:{path}: no such directory")
    if all(os.path.isdir(os.path.join(path, s)) for s in SPLITS):
        files = {s: folder_pairs(os.path.join(path, s)) for s in SPLITS}
    else:
        images, masks = folder_pairs(path)
        if len(images) < 3:
            raise DataError(f"folder:{path} has {len(images)} image/mask pairs; need at least 3")
        order = np.random.default_rng(seed).permutation(len(images))
        n_hold = max(1, len(images) // 10)
        parts = {
            "test": order[:n_hold],
            "validation": order[n_hold : 2 * n_hold],
            "train": order[2 * n_hold :],
        }
        files = {s: ([images[i] for i in p], [masks[i] for i in p]) for s, p in parts.items()}
    image_files.check_decodable([f for pair in files.values() for side in pair for f in side])
    if num_classes is None:
        num_classes = 1 + max(
            _max_label(m) for _, split_masks in files.values() for m in split_masks
        )

    def decode(image_file, mask_file):
        image = tf.io.decode_image(tf.io.read_file(image_file), channels=3, expand_animations=False)
        mask = tf.io.decode_png(tf.io.read_file(mask_file), channels=1)[..., 0]
        return tf.ensure_shape(image, [None, None, 3]), tf.ensure_shape(mask, [None, None])

    datasets = {
        s: tf.data.Dataset.from_tensor_slices(pair).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        for s, pair in files.items()
    }
    return Splits(
        name=f"folder:{path}",
        datasets=datasets,
        sizes={s: len(pair[0]) for s, pair in files.items()},
        num_classes=int(num_classes),
        channels=3,
        natural=True,
        class_names=tuple(f"class_{c}" for c in range(int(num_classes))),
        kind="folder",
        ignore_label=IGNORE_LABEL,
    )


def _max_label(mask_file):
    mask = tf.io.decode_png(tf.io.read_file(mask_file), channels=1).numpy()
    values = np.unique(mask)
    values = values[values != IGNORE_LABEL]
    return int(values.max()) if values.size else 0


def resize_pair(image, mask, size):
    """Image (any dtype, [0, 255] or [0, 1]) bilinearly and mask by nearest neighbour to ``size``."""
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
    return image, mask


def choose_augmentation(data, spec="auto"):
    """The ``augmentation.Augmentation`` of ``data`` for the setting ``augment=spec``: natural images get a
    random crop of the image resized ``CROP_MARGIN`` x and a horizontal flip (street scenes keep
    their classes mirrored) unless ``spec`` says otherwise; generated scenes are never augmented."""
    parts, decided = augment_lib.asked(spec, data.natural, "generated scenes")
    if decided is not None:
        return decided
    if parts is None:
        return augment_lib.Augmentation(flip=True, crop="margin",
                                        reason="scenes keep their classes when mirrored")
    return augment_lib.Augmentation(flip="flip" in parts, crop="margin" if "crop" in parts else "",
                                    reason=f"augment={spec}")


def pipeline(data, split, *, image_size, batch_size, seed=0, training=False, augmentation=None):
    """Batched ``(image float32 [0, 1], mask int32)`` dataset of ``split``.

    Training: shuffle with ``seed``, repeat forever (use ``steps_per_epoch``), apply
    ``augmentation`` (from ``choose_augmentation``; None: none) to natural images, the same to image
    and mask (one stateless seed per example, so a given ``seed`` always gives the same batches),
    batch dropping the remainder. Evaluation: every example once, in order, resized to
    ``image_size``.
    """
    augmentation = augmentation or augment_lib.NONE
    height, width = _pair(image_size)
    ds = data.datasets[split]
    channels = data.channels

    def finish(image, mask):
        image = tf.ensure_shape(tf.cast(image, tf.float32), [height, width, channels])
        return image, tf.ensure_shape(tf.cast(mask, tf.int32), [height, width])

    if not data.natural:
        return batches.in_memory(ds, data.sizes[split], finish, batch_size=batch_size, seed=seed,
                                 training=training)

    def to_unit(image, mask):
        return tf.cast(image, tf.float32) / 255.0, mask

    if not training:
        ds = ds.map(to_unit).map(lambda x, y: finish(*resize_pair(x, y, (height, width))))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    base = (int(math.ceil(height * CROP_MARGIN)), int(math.ceil(width * CROP_MARGIN)))
    ds = ds.shuffle(min(data.sizes[split], SHUFFLE_BUFFER), seed=seed,
                    reshuffle_each_iteration=True).repeat()  # fmt: skip
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def augment_fn(example, s):
        image, mask = to_unit(*example)
        if not augmentation.crop:
            image, mask = resize_pair(image, mask, (height, width))
            if not augmentation.flip:
                return finish(image, mask)
        else:
            image, mask = resize_pair(image, mask, base)
        stacked = tf.concat([image, tf.cast(mask, tf.float32)[..., None]], axis=-1)
        if augmentation.crop:
            stacked = tf.image.stateless_random_crop(stacked, (height, width, channels + 1), seed=s)
        if augmentation.flip:
            stacked = tf.image.stateless_random_flip_left_right(stacked, seed=s[::-1])
        return finish(stacked[..., :channels], tf.cast(stacked[..., channels], tf.int32))

    ds = tf.data.Dataset.zip((ds, seeds)).map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def to_numpy(ds, limit=None):
    """``(images, masks)`` arrays from a batched pipeline, at most ``limit`` examples."""
    return batches.to_numpy(ds, limit)


def _pair(image_size):
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)
