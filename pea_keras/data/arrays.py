"""Model inputs as numpy arrays, from any SOURCE, checked before they reach a converter or a device.

Calibration, quantization-aware fine-tuning and on-device evaluation all take float32 arrays
shaped exactly like the model input (images in [0, 1]: models normalise inside themselves, so
the same arrays feed Keras, LiteRT and TFLite Micro). Every array is checked here, once:
floating point (integers are refused unless a `scale` divides them), finite, the exact input
shape, not empty. A model with several inputs reads an ``.npz`` keyed by input name.
"""

import os
import warnings

import numpy as np

from pea_keras.data import digits, images, sources
from pea_keras.errors import DataError
from pea_keras.files import missing

DEFAULT_CALIBRATION_SAMPLES = 300
# Fewer calibration samples than this give noisy int8 ranges: a warning, not an error.
MIN_CALIBRATION_SAMPLES = 100
# The range of image inputs: every model train.py builds, and every image SOURCE here, works in
# [0, 1]. Calibration data spanning more than MAX_RANGE_FACTOR times it would spread int8's 256
# steps so wide that real inputs fall on a few (data * 1e6: all of them on one).
IMAGE_RANGE = (0.0, 1.0)
MAX_RANGE_FACTOR = 4


def _shown(shape):
    return "(N, " + ", ".join("?" if d is None else str(d) for d in shape[1:]) + ")"


def check_inputs(x, input_shape, what, scale=None):
    """`x` as float32, or DataError saying what is wrong with it for a model input `input_shape`
    (batch dimension first; None matches any size). `scale` divides integer data (255 for uint8
    images) and is the only way integer arrays are accepted."""
    x = np.asarray(x)
    if scale is not None:
        if scale <= 0:
            raise DataError(f"{what}: the scale must be positive, got {scale}")
        x = x.astype(np.float32) / np.float32(scale)
    elif not np.issubdtype(x.dtype, np.floating):
        lo, hi = (x.min(), x.max()) if x.size and np.issubdtype(x.dtype, np.number) else ("?", "?")
        raise DataError(f"{what}: {x.dtype} values ({lo}..{hi}) where the model takes float inputs "
                        f"(images in [0, 1]); convert them (e.g. x / 255) or pass the divisor scale=255",
                        settings={"scale": 255})
    x = x.astype(np.float32, copy=False)
    want, got = tuple(input_shape[1:]), x.shape[1:]
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
        raise DataError(f"{what}: data shaped {x.shape} does not match the model input {_shown(input_shape)}")
    if len(x) == 0:
        raise DataError(f"{what}: no samples")
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        raise DataError(f"{what}: {int(bad.sum())} of {len(x)} samples hold NaN or infinite values "
                        f"(first: sample {int(np.argmax(bad))}); they would break int8 ranges")
    return x


def check_image_range(x, input_shape, what):
    """DataError when image data (a 4-D input) spans more than MAX_RANGE_FACTOR times
    IMAGE_RANGE, the range the model saw; other inputs have no known range."""
    if len(input_shape) != 4 or not x.size:
        return
    lo, hi = float(x.min()), float(x.max())
    low, high = IMAGE_RANGE
    if max(hi, high) - min(lo, low) > MAX_RANGE_FACTOR * (high - low):
        raise DataError(f"{what}: values span [{lo:.4g}, {hi:.4g}], more than {MAX_RANGE_FACTOR}x the range "
                        f"[{low:g}, {high:g}] of the images models here take: int8 would leave the real inputs "
                        f"a few steps; rescale the data (integers: scale=255), or pass any_range=True "
                        f"for a model that takes such inputs", settings={"scale": 255, "any_range": True})


def _npz(path, names, labelled):
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 (numpy raises many types for a bad file)
        raise DataError(f"{path}: cannot read as a numpy file ({e})") from None
    if isinstance(loaded, np.ndarray):
        if labelled:
            raise DataError(f"{path}: labelled data needs an .npz with arrays 'x' and 'y'")
        if len(names) > 1:
            raise DataError(f"{path}: a model with {len(names)} inputs needs an .npz with one array "
                            f"per input name ({', '.join(names)})")
        return [loaded], None
    keys = list(loaded.keys())
    if labelled and "y" not in keys:
        raise DataError(f"{path}: labelled data needs an array 'y' next to the inputs (found {keys})")
    if len(names) > 1:
        missing = [n for n in names if n not in keys]
        if missing:
            raise DataError(f"{path}: a model with {len(names)} inputs needs one array per input "
                            f"name; missing {', '.join(missing)} (found {', '.join(keys)})")
        xs = [loaded[n] for n in names]
    elif "x" in keys:
        xs = [loaded["x"]]
    elif len([k for k in keys if k != "y"]) == 1 and not labelled:
        xs = [loaded[keys[0]]]
    else:
        raise DataError(f"{path}: expected arrays 'x' (and 'y'), found {keys}")
    return xs, (loaded["y"] if labelled else None)


def _image(path, height, width, channels):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((width, height))
            a = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot read image ({e})") from None
    return a[..., None] if channels == 1 else a


def _folder(path, input_shape, labelled):
    """Flat folder of images, or one sub-folder per class (sorted names = labels 0..K-1)."""
    if len(input_shape) != 4:
        raise DataError(f"folder:{path}: an image folder needs a model with image input (N, H, W, C)")
    if not os.path.isdir(path):
        raise DataError(f"folder:{path}: no such directory")
    files, labels, _ = images.class_folders(path)
    if not files:
        if labelled:
            raise DataError(f"folder:{path}: labelled data needs one sub-folder of images per class")
        files = images.images_in(path)
    if not files:
        raise DataError(f"folder:{path}: no images ({', '.join(images.IMAGE_EXTENSIONS)})")
    _, h, w, c = input_shape
    x = np.stack([_image(p, h, w, c) for p in files])
    return x, (np.array(labels, np.int32) if labelled else None)


def _tfds(source, input_shape, split, limit):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(source.location, split=split, as_supervised=True, download=False)
    except Exception as e:  # noqa: BLE001 (TFDS raises many types)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{source}: TFDS dataset not available offline (prepare it first with "
                        f"`tfds build {source.location}`): {first}") from None
    _, h, w, c = input_shape
    xs, ys = [], []
    for image, label in ds.take(limit or -1):
        image = tf.image.convert_image_dtype(image, tf.float32)
        if image.shape[-1] != c:
            image = tf.image.rgb_to_grayscale(image) if c == 1 else tf.image.grayscale_to_rgb(image)
        xs.append(tf.image.resize(image, (h, w)).numpy())
        ys.append(int(label))
    if not xs:
        raise DataError(f"{source}: split '{split}' is empty")
    return np.stack(xs), np.array(ys, np.int32)


def _digits(source, input_shape, split):
    if not digits.fits(input_shape):
        raise DataError(f"{source}: the built-in digits (8x8 greyscale scans) do not fit a model "
                        f"input {_shown(input_shape)}; name data shaped like the model's input "
                        "(npz:PATH, folder:PATH or tfds:NAME)")
    splits = digits.load_digits_split(int(input_shape[1]), channels=1)
    if split not in splits:
        raise DataError(f"{source}: unknown split '{split}', choose from {sorted(splits)}")
    return splits[split]


def load_arrays(source, inputs, *, labelled=False, split="train", limit=None, scale=None):
    """`(x, y)` from a SOURCE (`pea_keras.data.sources`), checked against the model inputs.

    Args:
        source: SOURCE string or `Source`.
        inputs: the model input shape (batch first), or `[(name, shape), ...]` for every input.
        labelled: also return int labels `y` (else None).
        split: the split of digits/TFDS sources unless the SOURCE names one.
        limit: at most this many samples (a fixed random subset).
        scale: divisor that makes integer data float (e.g. 255).

    Returns:
        `(x, y)`: x float32 for one input, a list of arrays in model order for several.

    Raises:
        DataError: the source cannot be read or does not fit the model (the message says why).
    """
    src = sources.parse(source)
    named = inputs if isinstance(inputs, list) else [("x", tuple(inputs))]
    names, shapes = [n for n, _ in named], [tuple(s) for _, s in named]
    split = src.split or split
    if len(named) > 1 and src.kind not in ("npz",):
        raise DataError(f"{src}: a model with {len(named)} inputs reads its data from an .npz with "
                        f"one array per input name ({', '.join(names)})")
    if src.kind in ("npy", "npz"):
        problem = missing(src.location) or (None if os.path.isfile(src.location) else "not a file")
        if problem:
            raise DataError(f"{src.location}: {problem}")
        xs, y = _npz(src.location, names, labelled)
    elif src.kind == "digits":
        xs, y = _digits(src, shapes[0], split)
        xs = [xs]
    elif src.kind == "tfds":
        x, y = _tfds(src, shapes[0], split, limit)
        xs = [x]
    elif src.kind == "folder":
        x, y = _folder(src.location, shapes[0], labelled)
        xs = [x]
    else:
        raise DataError(f"{src}: not a source of model inputs ({sources.SYNTAX}, except digit_scenes)")
    xs = [check_inputs(x, shape, str(src) if len(xs) == 1 else f"{src} [{name}]", scale=scale)
          for x, shape, name in zip(xs, shapes, names)]
    n = len(xs[0])
    if any(len(x) != n for x in xs):
        raise DataError(f"{src}: the inputs hold different numbers of samples "
                        f"({', '.join(str(len(x)) for x in xs)})")
    if labelled:
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if len(y) != n:
            raise DataError(f"{src}: {n} inputs but {len(y)} labels")
    if limit is not None and n > limit:
        keep = fixed_subset(n, limit)
        xs, y = [x[keep] for x in xs], (y[keep] if y is not None else None)
    return (xs[0] if len(xs) == 1 else xs), y


def fixed_subset(n, limit):
    """Sorted indices of `limit` of `n` samples (all when n <= limit), always the same ones: what
    `--calib`, `--limit` and train.py's int8 calibration of data held in memory take, so that
    `pea-tflite convert MODEL --calib digits` writes the very file train.py wrote."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


def class_names(source):
    """Label -> name where `source` names its classes (digits: 0-9; a folder: its sorted
    sub-folder names); () for arrays and TFDS sets read without their metadata."""
    source = sources.parse(source)
    if source.kind == "digits":
        return tuple(str(d) for d in range(10))
    if source.kind == "folder" and os.path.isdir(source.location):
        return tuple(images.class_folders(source.location)[2])
    return ()


def calibration_samples(source, inputs, limit=DEFAULT_CALIBRATION_SAMPLES, scale=None, any_range=False):
    """About `limit` unlabelled inputs for post-training quantization; warns below
    MIN_CALIBRATION_SAMPLES; refuses image data far outside [0, 1] (`check_image_range`) unless
    `any_range`."""
    x, _ = load_arrays(source, inputs, labelled=False, split="train", limit=limit, scale=scale)
    named = inputs if isinstance(inputs, list) else [("x", tuple(inputs))]
    for array, (name, shape) in zip(x if isinstance(x, list) else [x], named):
        if not any_range:
            check_image_range(array, shape, str(source) if len(named) == 1 else f"{source} [{name}]")
    n = len(x[0] if isinstance(x, list) else x)
    if n < MIN_CALIBRATION_SAMPLES:
        warnings.warn(f"{source}: only {n} calibration samples; int8 ranges from fewer than "
                      f"{MIN_CALIBRATION_SAMPLES} are noisy", stacklevel=2)
    return x
