"""`load_model`: a saved PEA model of either Keras flavour, in any format, ready to use.

Keras finds `PEALayer` by its registered name only once `pea_keras.layer` has been imported;
`load_model` imports it first, so a file saved by one program loads in any other, whatever that
program imported before. The flavour follows the file: a `.keras` archive names the Keras
version that wrote it; `.h5` files and SavedModel directories are tf_keras'.
"""
import json
import os
import zipfile

from pea_keras.errors import ModelFileError, first_line

__all__ = ["load_model", "flavour_of_file"]

_H5 = (".h5", ".hdf5")


def _keras_version_of_zip(path):
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for name in ("metadata.json", "config.json"):
                if name in names:
                    version = json.loads(z.read(name)).get("keras_version")
                    if version:
                        return str(version)
    except (zipfile.BadZipFile, ValueError, OSError, AttributeError) as e:
        raise ModelFileError(f"{path}: not a Keras .keras archive ({first_line(e)})") from None
    raise ModelFileError(f"{path}: .keras archive without keras_version in metadata.json/config.json")


def flavour_of_file(path):
    """"keras" (Keras 3) or "tf_keras" for a saved model, from the file alone (no TensorFlow).

    Raises:
        ModelFileError: no such file, or not a format either flavour writes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ModelFileError(f"{path}: directory is not a SavedModel (no saved_model.pb)")
        return "tf_keras"
    if path.endswith(".keras"):
        return "tf_keras" if _keras_version_of_zip(path).startswith("2.") else "keras"
    if path.endswith(_H5):
        return "tf_keras"
    raise ModelFileError(f"{path}: not a Keras model (expected .keras, .h5 or a SavedModel directory)")


def load_model(path, compile=False):
    """Load a saved model (PEA or not): Keras 3 `.keras`, tf_keras `.keras`, `.h5` or SavedModel.

    `compile=False` (the default) skips the optimizer: deploying needs none, and a file trained
    under another Keras 3 backend names that backend's optimizer, which may not import here.

    Raises:
        ModelFileError: the file is missing, of an unknown format, or Keras cannot rebuild it.
    """
    import importlib

    from pea_keras import layer  # noqa: F401  (registers PEALayer with both flavours)

    path = os.fspath(path)
    loader = importlib.import_module(flavour_of_file(path))
    try:
        model = loader.models.load_model(path, compile=compile)
    except Exception as e:  # Keras raises anything from a bad file: report it in one line.
        raise ModelFileError(f"{path}: cannot load the model ({first_line(e)})") from None
    if not getattr(model, "inputs", None):
        raise ModelFileError(f"{path}: loaded object is not a Keras model with known inputs")
    return model
