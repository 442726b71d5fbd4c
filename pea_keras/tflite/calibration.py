"""Data sources for calibration, QAT and evaluation, named by one string.

``SOURCE`` is a ``.npy``/``.npz`` file, an image folder, ``tfds:NAME[:SPLIT]``
or ``digits[:SPLIT]`` (the scikit-learn digits shipped offline). Images come
back as float32 in [0, 1] shaped like the model input: models normalise
inside themselves, so the same arrays feed Keras, LiteRT and TFLite Micro.
"""

import os

import numpy as np

from pea_keras.tflite.errors import TFLiteError

DEFAULT_CALIBRATION_SAMPLES = 300
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _check_shape(x, input_shape, source):
    want = tuple(input_shape[1:])
    got = tuple(x.shape[1:])
    ok = len(got) == len(want) and all(w is None or w == g for w, g in zip(want, got))
    if not ok:
        shown = "(N, " + ", ".join("?" if w is None else str(w) for w in want) + ")"
        raise TFLiteError(f"{source}: data shaped {tuple(x.shape)} does not match the model input {shown}")


def _load_array_file(path, labelled):
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:
        raise TFLiteError(f"{path}: cannot read as a numpy file ({e})") from None
    if isinstance(loaded, np.ndarray):
        if labelled:
            raise TFLiteError(f"{path}: labelled data needs an .npz with arrays 'x' and 'y'")
        return loaded, None
    keys = list(loaded.keys())
    if "x" in keys:
        x = loaded["x"]
    elif len(keys) == 1 and not labelled:
        x = loaded[keys[0]]
    else:
        raise TFLiteError(f"{path}: expected arrays 'x' (and 'y'), found {keys}")
    if labelled and "y" not in keys:
        raise TFLiteError(f"{path}: labelled data needs an array 'y' next to 'x'")
    return x, (loaded["y"] if labelled else None)


def _image_to_array(path, height, width, channels):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((width, height))
            a = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as e:
        raise TFLiteError(f"{path}: cannot read image ({e})") from None
    return a[..., None] if channels == 1 else a


def _load_folder(path, input_shape, labelled):
    """Flat folder of images, or one sub-folder per class (sorted names = labels 0..K-1)."""
    if len(input_shape) != 4:
        raise TFLiteError(f"{path}: an image folder needs a model with image input (N, H, W, C)")
    _, h, w, c = input_shape
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    items = []
    if classes:
        for label, d in enumerate(classes):
            for f in sorted(os.listdir(os.path.join(path, d))):
                if f.lower().endswith(_IMAGE_EXTENSIONS):
                    items.append((os.path.join(path, d, f), label))
    elif labelled:
        raise TFLiteError(f"{path}: labelled data needs one sub-folder of images per class")
    else:
        items = [(os.path.join(path, f), -1) for f in sorted(os.listdir(path))
                 if f.lower().endswith(_IMAGE_EXTENSIONS)]
    if not items:
        raise TFLiteError(f"{path}: no images found ({', '.join(_IMAGE_EXTENSIONS)})")
    x = np.stack([_image_to_array(p, h, w, c) for p, _ in items])
    return x, (np.array([l for _, l in items], np.int32) if labelled else None)


def _load_tfds(spec, input_shape, split, limit):
    parts = spec.split(":")
    name = parts[1] if len(parts) > 1 else ""
    split = parts[2] if len(parts) > 2 and parts[2] else split
    if not name:
        raise TFLiteError(f"{spec}: expected tfds:NAME[:SPLIT], e.g. tfds:cifar10:train")
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(name, split=split, as_supervised=True, download=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TFLiteError(f"{spec}: TFDS dataset not available offline "
                          f"(prepare it first with tfds.load('{name}', download=True)): {first}") from None
    _, h, w, c = input_shape
    xs, ys = [], []
    for image, label in ds.take(limit or -1):
        image = tf.image.convert_image_dtype(image, tf.float32)
        if image.shape[-1] != c:
            image = tf.image.rgb_to_grayscale(image) if c == 1 else tf.image.grayscale_to_rgb(image)
        xs.append(tf.image.resize(image, (h, w)).numpy())
        ys.append(int(label))
    if not xs:
        raise TFLiteError(f"{spec}: split '{split}' is empty")
    return np.stack(xs), np.array(ys, np.int32)


def _load_digits(spec, input_shape, split):
    parts = spec.split(":")
    split = parts[1] if len(parts) > 1 and parts[1] else split
    if len(input_shape) != 4 or input_shape[1] != input_shape[2] or input_shape[1] is None:
        raise TFLiteError(f"{spec}: digits needs a square image input, the model takes {tuple(input_shape)}")
    try:
        from pea_keras.training.data import load_digits_split
    except ImportError as e:
        raise TFLiteError(f"{spec}: embedded digits data unavailable ({e})") from None
    splits = load_digits_split(int(input_shape[1]), channels=int(input_shape[3]))
    if split not in splits:
        raise TFLiteError(f"{spec}: unknown split '{split}', choose from {sorted(splits)}")
    return splits[split]


def load_source(source, input_shape, *, labelled=False, split="train", limit=None):
    """Load ``(x, y)`` (``y`` is None unless ``labelled``) from a SOURCE string,
    checked against ``input_shape`` (with batch dimension)."""
    source = os.fspath(source)
    if source == "digits" or source.startswith("digits:"):
        x, y = _load_digits(source, input_shape, split)
    elif source.startswith("tfds:"):
        x, y = _load_tfds(source, input_shape, split, limit)
    elif os.path.isdir(source):
        x, y = _load_folder(source, input_shape, labelled)
    elif os.path.isfile(source):
        if not source.endswith((".npy", ".npz")):
            raise TFLiteError(f"{source}: unsupported data file, expected .npy, .npz, an image "
                              f"folder, tfds:NAME[:SPLIT] or digits")
        x, y = _load_array_file(source, labelled)
    else:
        raise TFLiteError(f"{source}: no such file or folder")
    x = np.asarray(x, dtype=np.float32)
    _check_shape(x, input_shape, source)
    if labelled:
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if len(y) != len(x):
            raise TFLiteError(f"{source}: {len(x)} inputs but {len(y)} labels")
    if limit is not None and len(x) > limit:
        keep = np.sort(np.random.default_rng(0).choice(len(x), limit, replace=False))
        x, y = x[keep], (y[keep] if y is not None else None)
    return x, y


def calibration_samples(source, input_shape, limit=DEFAULT_CALIBRATION_SAMPLES):
    """About ``limit`` unlabelled inputs for post-training quantization."""
    x, _ = load_source(source, input_shape, labelled=False, split="train", limit=limit)
    if len(x) == 0:
        raise TFLiteError(f"{source}: no calibration samples")
    return x
