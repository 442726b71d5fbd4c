"""One SOURCE syntax for every place a user names data (train.py, pea-tflite, benchmarks).

    digits[:SPLIT]         scikit-learn's handwritten digits (shipped offline)
    digit_scenes           segmentation scenes of those digits (generated offline)
    folder:PATH            an image folder (one sub-folder per class, or images/ + masks/)
    tfds:NAME[:SPLIT]      a TFDS dataset (prepared in the TFDS data_dir)
    npy:PATH | npz:PATH    numpy arrays (an .npz holds x and y, or one array per model input)

A bare existing folder, a bare ``.npy``/``.npz`` path or a bare TFDS name (``cifar10``) means
the same as its prefixed form.
"""

import dataclasses
import os
import re

from pea_keras.errors import DataError

KINDS = ("digits", "digit_scenes", "folder", "tfds", "npy", "npz")
SYNTAX = ("a SOURCE is digits[:SPLIT], digit_scenes, folder:PATH, tfds:NAME[:SPLIT], npy:PATH or "
          "npz:PATH")
_TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[a-z0-9_.]+)?")


@dataclasses.dataclass(frozen=True)
class Source:
    """A parsed SOURCE: `kind` from KINDS, `location` (a path or TFDS name), optional `split`."""

    kind: str
    location: str = ""
    split: str | None = None

    def __str__(self):
        text = self.kind if not self.location else f"{self.kind}:{self.location}"
        return text if self.split is None else f"{text}:{self.split}"

    @property
    def name(self):
        """A short name for run directories and reports: digits, cifar10, folder:/data/x."""
        return self.location if self.kind == "tfds" else str(dataclasses.replace(self, split=None))


def parse(text):
    """The `Source` named by `text`.

    Args:
        text: a SOURCE string (see the module docstring), a path, or a `Source`.

    Returns:
        A `Source`.

    Raises:
        DataError: `text` names no source (the message gives the syntax).
    """
    if isinstance(text, Source):
        return text
    text = os.fspath(text).strip()
    head, sep, rest = text.partition(":")
    if head in ("digits", "digit_scenes"):
        return Source(head, "", rest or None)
    if head in ("folder", "npy", "npz") and sep:
        if not rest:
            raise DataError(f"{text!r}: {head}: needs a path ({SYNTAX})")
        return Source(head, rest)
    if head == "tfds" and sep:
        name, _, split = rest.partition(":")
        if not name:
            raise DataError(f"{text!r}: tfds: needs a dataset name, e.g. tfds:cifar10:train")
        return Source("tfds", name, split or None)
    if text.endswith((".npy", ".npz")):
        return Source(text[-3:], text)
    if text and os.path.isdir(text):
        return Source("folder", text)
    if _TFDS_NAME.fullmatch(text):
        return Source("tfds", text)
    if text and (os.sep in text or os.path.exists(text)):
        raise DataError(f"{text}: no such folder, or not a .npy/.npz file ({SYNTAX})")
    raise DataError(f"{text!r} is not a data source: {SYNTAX}")
