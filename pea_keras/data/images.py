"""Image files on disk: which names count as images, how class folders map to labels, a check
that every file decodes before anything trains or converts on it, and their typical size."""

import os

from pea_keras.errors import DataError

# What TensorFlow's decode_image reads (segmentation masks must be PNG).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def images_in(folder, recursive=False):
    """Sorted image paths in `folder` (and its sub-folders when `recursive`)."""
    if not recursive:
        return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if is_image(n)]
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, n) for n in sorted(names) if is_image(n)]
    return found


def class_folders(path):
    """(files, labels, class names) of a folder with one sub-folder of images per class; the
    sorted sub-folder names are the classes 0..K-1."""
    if not os.path.isdir(path):
        raise DataError(f"folder:{path}: no such directory")
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = images_in(os.path.join(path, name), recursive=True)
        files += found
        labels += [label] * len(found)
    return files, labels, classes


def check_decodable(files):
    """Raises DataError naming the first file that is not a readable image (checked with Pillow's
    verify, which reads every file once without decoding the pixels)."""
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as e:  # noqa: BLE001 (Pillow raises many types for broken files)
            raise DataError(f"{path}: not a readable image ({type(e).__name__}: "
                            f"{str(e).strip() or 'truncated or corrupt'}); remove or replace it") from None


def typical_side(files, sample=256):
    """The median shorter side, in pixels, of up to `sample` of `files` (evenly spread; Pillow reads
    only the headers): what decides how images are cropped for training."""
    from PIL import Image

    if not files:
        return 0
    step = max(1, len(files) // sample)
    sides = []
    for path in files[::step][:sample]:
        with Image.open(path) as image:
            sides.append(min(image.size))
    return int(sorted(sides)[len(sides) // 2])
