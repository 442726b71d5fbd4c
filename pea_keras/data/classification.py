"""Labelled image datasets for training classifiers, and their `tf.data` pipelines.

Three SOURCE kinds (`pea_keras.data.sources`):
  * `digits` (the offline default): scikit-learn's handwritten digits (1,797 real 8x8 scans that ship
    inside scikit-learn), resized to the model input. Nothing is downloaded.
  * `tfds:NAME` (or a bare TFDS name: `cifar10`, `imagenette`, `imagenet2012`, ...), read from
    `data_dir`; downloaded only when a network is reachable (or `download="always"`).
  * `folder:PATH`: one sub-folder of images per class; every file is checked to decode first.

Models take float images in [0, 1]; any normalisation is inside the model.
"""

import dataclasses
import math
import os
import socket

import numpy as np
import tensorflow as tf

from pea_keras.data import batches, images, sources
from pea_keras.data.digits import load_digits_split
from pea_keras.errors import DataError, UsageError

DIGITS = "digits"
# Natural images are cached in memory (decoded, resized) when they take less than this.
CACHE_LIMIT_BYTES = 4 << 30
# Crop taken for evaluation of large natural images (the ImageNet convention).
EVAL_CROP_FRACTION = 0.875
SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass
class Data:
    """Unbatched splits of (image, int label) plus what the model and the pipeline need to know.

    Images are uint8 of any size for natural images (`natural=True`, resized in the pipeline) or
    float32 already in [0, 1] at the model size (digits).
    """
    name: str
    splits: dict            # "train" | "validation" | "test" -> tf.data.Dataset
    sizes: dict             # split -> number of examples
    num_classes: int
    channels: int
    natural: bool
    source_size: int = 0    # typical side of the stored images (0: unknown)


def default_image_size(dataset):
    """32 for digits and small-image datasets, else 224."""
    source = sources.parse(dataset)
    if source.kind == "digits":
        return 32
    known = {"cifar10": 32, "cifar100": 32, "mnist": 32, "fashion_mnist": 32, "svhn_cropped": 32}
    return known.get(source.location.split("/")[0], 224) if source.kind == "tfds" else 224


def load(dataset, *, image_size, seed=0, data_dir=None, download="auto"):
    """Loads the SOURCE `dataset` (see the module docstring) as a `Data`."""
    source = sources.parse(dataset)
    if source.kind == "digits":
        return _digits(image_size, seed)
    if source.kind == "folder":
        return _folder(source.location, seed)
    if source.kind == "tfds":
        return _tfds(source.location, data_dir, download)
    raise DataError(f"--dataset {dataset}: classification trains on digits, folder:PATH or a TFDS "
                    "dataset")


def _digits(image_size, seed):
    split = load_digits_split(image_size, channels=1, seed=seed)
    return Data(
        name=DIGITS,
        splits={k: tf.data.Dataset.from_tensor_slices(v) for k, v in split.items()},
        sizes={k: len(v[1]) for k, v in split.items()},
        num_classes=10, channels=1, natural=False, source_size=8)


def network_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    """Whether TFDS' download host answers (a cheap check before trying to download)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _prepare_hint(name, builder):
    data_dir = os.path.dirname(os.path.dirname(builder.data_dir))
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        return (f"dataset {name!r} is not prepared in {data_dir}: it needs a manual download; put its "
                f"archives (for imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar) in "
                f"{os.path.join(data_dir, 'downloads', 'manual')} and run "
                f"`tfds build {name} --data_dir {data_dir}`")
    return (f"dataset {name!r} is not prepared in {data_dir} and cannot be downloaded here; on a machine "
            f"with a network run `tfds build {name} --data_dir {data_dir}` and copy that folder, "
            f"or pass --data_dir where it is")


def _tfds(name, data_dir, download):
    import tensorflow_datasets as tfds

    if download not in ("auto", "always", "never"):
        raise UsageError(f"--download must be auto, always or never, got {download!r}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"unknown --dataset {name!r} ({first}); use 'digits', 'folder:PATH' or a "
                        "TFDS name such as cifar10, imagenette or imagenet2012") from None
    if not builder.is_prepared():
        manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
        can_download = download == "always" or (download == "auto" and network_reachable())
        if manual or not can_download:
            raise DataError(_prepare_hint(name, builder))
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 (network and archive errors come in many types)
            raise DataError(f"could not download {name!r} ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); "
                            + _prepare_hint(name, builder)) from None
    info = builder.info
    if "image" not in info.features or "label" not in info.features:
        raise DataError(f"dataset {name!r} has no 'image' and 'label' features; "
                        "only image classification datasets are supported")
    names = split_names(name, set(info.splits.keys()))
    splits = {k: builder.as_dataset(split=s, as_supervised=True, shuffle_files=(k == "train"),
                                    read_config=tfds.ReadConfig(shuffle_seed=0))
              for k, s in names.items()}
    shape = info.features["image"].shape
    return Data(
        name=name, splits=splits,
        sizes={k: info.splits[s].num_examples for k, s in names.items()},
        num_classes=info.features["label"].num_classes,
        channels=shape[-1] or 3, natural=True,
        source_size=shape[0] or 0)


def split_names(name, available):
    """TFDS split names for train/validation/test: the dataset's own where it has them, else
    5 % of train held out for validation. imagenet2012's test split has no labels, so its
    validation split is the test set (as in every ImageNet result)."""
    has_test = "test" in available and not name.startswith("imagenet2012")
    test = "test" if has_test else "validation"
    if test not in available or "train" not in available:
        raise DataError(f"dataset {name!r} needs a 'train' and a labelled 'test' or 'validation' "
                        f"split; it has {', '.join(sorted(available)) or 'none'}")
    if "validation" in available and test != "validation":
        return {"train": "train", "validation": "validation", "test": test}
    return {"train": "train[:95%]", "validation": "train[95%:]", "test": test}


def _folder(path, seed):
    files, labels, classes = images.class_folders(path)
    if len(classes) < 2:
        raise DataError(f"--dataset folder:{path} needs one sub-folder per class (at least 2), "
                        f"found {len(classes)}")
    if len(files) < 10:
        raise DataError(f"--dataset folder:{path} has {len(files)} images; need at least 10")
    images.check_decodable(files)
    order = np.random.default_rng(seed).permutation(len(files))
    files, labels = np.array(files)[order], np.array(labels, np.int32)[order]
    n_test = max(1, len(files) // 10)
    n_val = max(1, len(files) // 10)
    parts = {"test": slice(0, n_test), "validation": slice(n_test, n_test + n_val),
             "train": slice(n_test + n_val, None)}

    def decode(f, y):
        image = tf.io.decode_image(tf.io.read_file(f), channels=3, expand_animations=False)
        return tf.ensure_shape(image, [None, None, 3]), y

    splits = {k: tf.data.Dataset.from_tensor_slices((files[s], labels[s])).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE) for k, s in parts.items()}
    return Data(name=f"folder:{path}", splits=splits,
                sizes={k: len(files[s]) for k, s in parts.items()},
                num_classes=len(classes), channels=3, natural=True)


def _resize_eval(image, image_size, crop):
    """Central crop (for images much larger than the model input), then resize; float in [0, 1]."""
    image = tf.cast(image, tf.float32) / 255.0
    if crop:
        image = tf.image.central_crop(image, EVAL_CROP_FRACTION)
    return tf.image.resize(image, (image_size, image_size), antialias=True)


def _inception_crop(image, image_size, seed):
    """Random-resized crop (8-100 % of the area, aspect 3/4-4/3), as in ImageNet training."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = tf.cast(image, tf.float32) / 255.0
    return tf.image.resize(image, (image_size, image_size), antialias=True)


def pipeline(data, split, *, image_size, batch_size, seed=0, training=False, augment=True):
    """Batched `(image, one-hot label)` dataset for `split`.

    Training: cache (when it fits in memory), shuffle with `seed` (the same order for the same
    seed, so `--compare` sees the same batches), repeat forever (use `steps_per_epoch`), augment
    natural images (random crop and horizontal flip; none for digits), batch (dropping the last
    partial batch), prefetch. Evaluation: in order, every example once.
    """
    ds = data.splits[split]
    num_classes = data.num_classes
    channels = data.channels

    def one_hot(image, label):
        return image, tf.one_hot(tf.cast(label, tf.int32), num_classes)

    if not data.natural:
        return batches.in_memory(ds, data.sizes[split], one_hot, batch_size=batch_size, seed=seed,
                                 training=training)

    large = data.source_size == 0 or data.source_size >= 2 * image_size
    if not training:
        ds = ds.map(lambda x, y: (_resize_eval(x, image_size, large), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda x, y: (tf.ensure_shape(x, [image_size, image_size, channels]), y))
        if data.sizes[split] * image_size * image_size * channels * 4 < CACHE_LIMIT_BYTES:
            ds = ds.cache()
        return ds.map(one_hot).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    # Small images are stored at a slightly larger size (uint8) so they can be cached and still be
    # randomly cropped; large ones (ImageNet) stream and get the random-resized crop.
    base = int(math.ceil(image_size * 1.125))
    cache = (not large and data.sizes[split] * base * base * channels < CACHE_LIMIT_BYTES)
    if cache:
        ds = ds.map(lambda x, y: (tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
            x, (base, base), antialias=True)), 0, 255), tf.uint8), y),
            num_parallel_calls=tf.data.AUTOTUNE).cache()
    ds = ds.shuffle(min(data.sizes[split], SHUFFLE_BUFFER), seed=seed,
                    reshuffle_each_iteration=True).repeat()
    # One stateless seed per example: augmentation is reproducible for a given --seed.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def augment_fn(example, s):
        image, label = example
        if not augment:
            image = _resize_eval(image, image_size, large)
        elif cache:
            image = tf.image.stateless_random_crop(image, (image_size, image_size, channels), seed=s)
            image = tf.cast(image, tf.float32) / 255.0
        else:
            image = _inception_crop(image, image_size, s)
        if augment:
            image = tf.image.stateless_random_flip_left_right(image, seed=s[::-1])
        return tf.ensure_shape(image, [image_size, image_size, channels]), label

    ds = tf.data.Dataset.zip((ds, seeds)).map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def to_numpy(ds, limit=None):
    """(x, int labels) arrays from a batched `(image, one-hot)` pipeline, at most `limit` examples."""
    return batches.to_numpy(ds, limit, labels=lambda y: np.argmax(y, axis=-1).astype(np.int32))
