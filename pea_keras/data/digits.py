"""scikit-learn's handwritten digits: the offline default data of pea_keras (1,797 real 8x8
scans that ship inside scikit-learn; nothing is downloaded)."""

import numpy as np

NUM_CLASSES = 10
# Input sides the 8x8 scans are resized to: below 8 they lose the digit, far above it a model
# was made for other data and calibrating it on digits would be wrong.
MIN_SIDE, MAX_SIDE = 8, 64


def fits(input_shape):
    """Whether a model input (N, H, W, C) is one digits can feed: square, greyscale, 8..64 px."""
    return (len(input_shape) == 4 and input_shape[1] == input_shape[2] and input_shape[3] == 1
            and input_shape[1] is not None and MIN_SIDE <= input_shape[1] <= MAX_SIDE)


def load_digits_split(image_size, channels=1, seed=0):
    """The digits split 70/10/20 into train/validation/test (stratified, fixed `seed`).

    Returns {"train"|"validation"|"test": (x, y)}: x float32 in [0, 1] shaped
    (N, image_size, image_size, channels), y int32. The same arguments always give the same
    arrays, so training and the deploy kit's calibration see the same images.
    """
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]  # 8x8 scans with values 0..16.
    y = digits.target.astype(np.int32)
    x = tf.image.resize(x, (image_size, image_size), method="bilinear").numpy()
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    if channels != 1:
        x = np.repeat(x, channels, axis=-1)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.125, random_state=seed, stratify=y_rest)
    return {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}
