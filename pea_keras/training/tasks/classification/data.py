"""The data of the classification task: labelled images as `Splits`, and their `tf.data` pipelines.

Three SOURCE kinds (`pea_keras.data.sources`):
  * `digits` (the offline default): scikit-learn's handwritten digits (1,797 real 8x8 scans that ship
    inside scikit-learn), resized to the model input. Nothing is downloaded.
  * `tfds:NAME` (or a bare TFDS name: `cifar10`, `imagenette`, `imagenet2012`, ...), read from
    `data_dir`; downloaded only when a network is reachable (or `download="always"`).
  * `folder:PATH`: one sub-folder of images per class; every file is checked to decode first.

Models take float images in [0, 1]; any normalisation is inside the model. Mistakes raise
`SettingError` naming the setting (`dataset`, `data_dir`, `download`), which train.py says as its flag.
"""

import os
import socket

import numpy as np
import tensorflow as tf

from pea_keras.data import augmentation as augment_lib
from pea_keras.data import batches, images, sources
from pea_keras.data.digits import load_digits_split
from pea_keras.errors import DataError, SettingError, first_line

from ..base import Splits

DIGITS = "digits"
# Natural images are cached in memory (decoded, resized) when they take less than this.
CACHE_LIMIT_BYTES = 4 << 30
# Crop taken for evaluation of large natural images (the ImageNet convention).
EVAL_CROP_FRACTION = 0.875
SHUFFLE_BUFFER = 10_000
# TFDS datasets whose classes survive a horizontal flip (photos of objects), and ones whose do
# not (digits, characters); any other dataset or folder gets no flips unless `augment` asks.
FLIP_SAFE = ("cifar10", "cifar100", "imagenet2012", "imagenette", "imagewang", "tf_flowers",
             "oxford_flowers102", "oxford_iiit_pet", "food101", "cats_vs_dogs", "stanford_dogs",
             "caltech101")
NO_FLIP = ("mnist", "fashion_mnist", "kmnist", "emnist", "svhn_cropped", "binary_alpha_digits")


def default_image_size(dataset):
    """32 for digits and small-image datasets, else 224."""
    source = sources.parse(dataset)
    if source.kind == "digits":
        return 32
    known = {"cifar10": 32, "cifar100": 32, "mnist": 32, "fashion_mnist": 32, "svhn_cropped": 32}
    return known.get(source.location.split("/")[0], 224) if source.kind == "tfds" else 224


def load(dataset, *, image_size, seed=0, data_dir=None, download="auto"):
    """Loads the SOURCE `dataset` (see the module docstring) as `Splits`."""
    source = sources.parse(dataset)
    if source.kind == "digits":
        return _digits(image_size, seed)
    if source.kind == "folder":
        return _folder(source.location, seed)
    if source.kind == "tfds":
        return _tfds(source.location, data_dir, download)
    raise SettingError("dataset", f"{dataset}: classification trains on digits, folder:PATH or a TFDS dataset")


def _digits(image_size, seed):
    split = load_digits_split(image_size, channels=1, seed=seed)
    return Splits(
        name=DIGITS,
        datasets={k: tf.data.Dataset.from_tensor_slices(v) for k, v in split.items()},
        sizes={k: len(v[1]) for k, v in split.items()},
        num_classes=10, channels=1, natural=False, source_size=8, kind="digits",
        class_names=tuple(str(d) for d in range(10)))


def network_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    """Whether TFDS' download host answers (a cheap check before trying to download)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _not_prepared(name, builder, failure=None):
    """The error of a TFDS dataset `builder` has not prepared: how to prepare it, in its `data_dir`
    (`failure`: why downloading it failed)."""
    data_dir = os.path.dirname(os.path.dirname(builder.data_dir))
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        return DataError(f"dataset {name!r} is not prepared in {data_dir}: it needs a manual download; put its "
                         f"archives (for imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar) in "
                         f"{os.path.join(data_dir, 'downloads', 'manual')} and run "
                         f"`tfds build {name} --data_dir {data_dir}`")
    why = (f"downloading it failed ({type(failure).__name__}: {first_line(failure)})" if failure
           else "it cannot be downloaded here")
    return SettingError("data_dir", f"{data_dir} holds no prepared {name!r} and {why}; on a machine with a "
                        f"network run `tfds build {name} --data_dir {data_dir}` and copy that folder here, "
                        "or name the folder that holds it")


def _tfds(name, data_dir, download):
    import tensorflow_datasets as tfds

    if download not in ("auto", "always", "never"):
        raise SettingError("download", f"must be auto, always or never, got {download!r}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        raise SettingError("dataset", f"{name!r} is unknown ({first_line(e)}); use 'digits', 'folder:PATH' or "
                           "a TFDS name such as cifar10, imagenette or imagenet2012") from None
    if not builder.is_prepared():
        manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
        can_download = download == "always" or (download == "auto" and network_reachable())
        if manual or not can_download:
            raise _not_prepared(name, builder)
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 (network and archive errors come in many types)
            raise _not_prepared(name, builder, failure=e) from None
    info = builder.info
    if "image" not in info.features or "label" not in info.features:
        raise DataError(f"dataset {name!r} has no 'image' and 'label' features; "
                        "only image classification datasets are supported")
    names = split_names(name, set(info.splits.keys()))
    datasets = {k: builder.as_dataset(split=s, as_supervised=True, shuffle_files=(k == "train"),
                                      read_config=tfds.ReadConfig(shuffle_seed=0))
                for k, s in names.items()}
    shape = info.features["image"].shape
    return Splits(
        name=name, datasets=datasets,
        sizes={k: info.splits[s].num_examples for k, s in names.items()},
        num_classes=info.features["label"].num_classes,
        channels=shape[-1] or 3, natural=True,
        source_size=shape[0] or 0, kind="tfds", class_names=tuple(info.features["label"].names))


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
        raise SettingError("dataset", f"folder:{path} needs one sub-folder per class (at least 2), "
                           f"found {len(classes)}")
    seen = set(labels)
    empty = [os.path.join(path, name) for label, name in enumerate(classes) if label not in seen]
    if empty:  # Else the model gets an output for a class it never sees.
        raise SettingError("dataset", f"folder:{path}: no images ({', '.join(images.IMAGE_EXTENSIONS)}) in class "
                           f"folder{'s' * (len(empty) > 1)} {', '.join(empty)}; add images or remove the folder")
    if len(files) < 10:
        raise SettingError("dataset", f"folder:{path} has {len(files)} images; need at least 10")
    images.check_decodable(files)
    source_size = images.typical_side(files)
    order = np.random.default_rng(seed).permutation(len(files))
    files, labels = np.array(files)[order], np.array(labels, np.int32)[order]
    n_test = max(1, len(files) // 10)
    n_val = max(1, len(files) // 10)
    parts = {"test": slice(0, n_test), "validation": slice(n_test, n_test + n_val),
             "train": slice(n_test + n_val, None)}

    def decode(f, y):
        image = tf.io.decode_image(tf.io.read_file(f), channels=3, expand_animations=False)
        return tf.ensure_shape(image, [None, None, 3]), y

    datasets = {k: tf.data.Dataset.from_tensor_slices((files[s], labels[s])).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE) for k, s in parts.items()}
    return Splits(name=f"folder:{path}", datasets=datasets,
                  sizes={k: len(files[s]) for k, s in parts.items()},
                  num_classes=len(classes), channels=3, natural=True, source_size=source_size,
                  kind="folder", class_names=tuple(classes))


def choose_augmentation(data, image_size, spec="auto"):
    """The `augmentation.Augmentation` of `data` trained at `image_size` for the setting `augment=spec`:
    `auto` flips only datasets known to keep their classes mirrored (FLIP_SAFE) and crops by image
    size (`augmentation.crop_for`); the built-in digits are never augmented."""
    parts, decided = augment_lib.asked(spec, data.natural, "the built-in digits")
    if decided is not None:
        return decided
    size = f"{data.source_size} px" if data.source_size else "of varied size"
    if parts is None:
        base = data.name.split("/")[0]
        flip = base in FLIP_SAFE or base.startswith("imagenet2012")
        reason = f"images {size}, input {image_size} px; {_flip_reason(base, flip, data.kind)}"
    else:
        flip, reason = "flip" in parts, f"augment={spec} (images {size}, input {image_size} px)"
    crop, pad, scale, aspect = augment_lib.crop_for(data.source_size, image_size, photos=flip)
    if parts is not None and "crop" not in parts:
        crop, pad, scale, aspect = "", 0, None, None
    return augment_lib.Augmentation(flip=flip, crop=crop, pad=pad, scale=scale, aspect=aspect,
                                    reason=reason)


def _flip_reason(base, flip, kind):
    if flip:
        return f"{base} holds photos of objects, which keep their class when mirrored"
    if base in NO_FLIP:
        return f"{base} holds digits or characters, which change meaning when mirrored"
    what = "folder images" if kind == "folder" else base
    return (f"{what} may have a handedness (digits, text, arrows); set augment=flip,crop when a "
            "mirrored image keeps its class")


def _resize_eval(image, image_size, crop):
    """Central crop (for images much larger than the model input), then resize; float in [0, 1]."""
    image = tf.cast(image, tf.float32) / 255.0
    if crop:
        image = tf.image.central_crop(image, EVAL_CROP_FRACTION)
    return tf.image.resize(image, (image_size, image_size), antialias=True)


def _resized_crop(image, image_size, seed, augmentation):
    """Random-resized crop (`augmentation.scale` of the area, `.aspect`), as in ImageNet training."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=augmentation.aspect, area_range=augmentation.scale,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = tf.cast(image, tf.float32) / 255.0
    return tf.image.resize(image, (image_size, image_size), antialias=True)


def _pad_crop(image, image_size, seed, pad):
    """Reflect-pad by `pad` px, then a random crop back to the input size (image float [0, 1])."""
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    return tf.image.stateless_random_crop(image, (image_size, image_size, tf.shape(image)[-1]), seed=seed)


def pipeline(data, split, *, image_size, batch_size, seed=0, training=False, augmentation=None):
    """Batched `(image, one-hot label)` dataset for `split`.

    Training: cache (when it fits in memory), shuffle with `seed` (the same order for the same
    seed, so a comparison sees the same batches), repeat forever (use `steps_per_epoch`), apply
    `augmentation` (an `augmentation.Augmentation` from `choose_augmentation`; None: none) to
    natural images, batch (dropping the last partial batch), prefetch. Evaluation: in order, every
    example once.
    """
    ds = data.datasets[split]
    num_classes = data.num_classes
    channels = data.channels
    augmentation = augmentation or augment_lib.NONE

    def one_hot(image, label):
        return image, tf.one_hot(tf.cast(label, tf.int32), num_classes)

    if not data.natural:
        return batches.in_memory(ds, data.sizes[split], one_hot, batch_size=batch_size, seed=seed,
                                 training=training)

    large = augment_lib.crop_for(data.source_size, image_size)[0] == "resized"
    if not training:
        ds = ds.map(lambda x, y: (_resize_eval(x, image_size, large), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda x, y: (tf.ensure_shape(x, [image_size, image_size, channels]), y))
        if data.sizes[split] * image_size * image_size * channels * 4 < CACHE_LIMIT_BYTES:
            ds = ds.cache()
        return ds.map(one_hot).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    # Small images are cached at the input size (uint8), so that shifts keep the evaluation scale;
    # large ones (ImageNet) stream and are cropped from the stored image.
    cache = not large and data.sizes[split] * image_size * image_size * channels < CACHE_LIMIT_BYTES
    if cache:
        ds = ds.map(lambda x, y: (tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
            x, (image_size, image_size), antialias=True)), 0, 255), tf.uint8), y),
            num_parallel_calls=tf.data.AUTOTUNE).cache()
    ds = ds.shuffle(min(data.sizes[split], SHUFFLE_BUFFER), seed=seed,
                    reshuffle_each_iteration=True).repeat()
    # One stateless seed per example: augmentation is reproducible for a given seed.
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def augment_fn(example, s):
        image, label = example
        if augmentation.crop == "resized":
            image = _resized_crop(image, image_size, s, augmentation)
        else:
            image = (tf.cast(image, tf.float32) / 255.0 if cache
                     else _resize_eval(image, image_size, large))
            if augmentation.crop == "pad":
                image = _pad_crop(image, image_size, s, augmentation.pad)
        if augmentation.flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=s[::-1])
        return tf.ensure_shape(image, [image_size, image_size, channels]), label

    ds = tf.data.Dataset.zip((ds, seeds)).map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def to_numpy(ds, limit=None):
    """(x, int labels) arrays from a batched `(image, one-hot)` pipeline, at most `limit` examples."""
    return batches.to_numpy(ds, limit, labels=lambda y: np.argmax(y, axis=-1).astype(np.int32))
