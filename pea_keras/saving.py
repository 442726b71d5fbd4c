"""`load_model`: a saved PEA model of either Keras flavour, in any format, ready to use.

Keras finds `PEALayer` by its registered name only once `pea_keras.layer` has been imported;
`load_model` imports it first, so a file saved by one program loads in any other, whatever that
program imported before. The flavour follows the file: a `.keras` archive names the Keras
version that wrote it; `.h5` files and SavedModel directories are tf_keras'.

A model file is data: before Keras sees it, `load_model` refuses one that would run code it
stores (`pea_keras.stored_code`), unless the caller vouches for the file with `trust_code=True`.
"""
import os
import warnings

from pea_keras.errors import ModelFileError, UntrustedCodeError, first_line
from pea_keras.stored_code import archive_json, code_in

__all__ = ["load_model", "flavour_of_file"]

_H5 = (".h5", ".hdf5")


def _keras_version_of_zip(path):
    for name in ("metadata.json", "config.json"):
        content = archive_json(path, name)
        version = content.get("keras_version") if isinstance(content, dict) else None
        if version:
            return str(version)
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


def load_model(path, compile=False, trust_code=False):
    """Load a saved model (PEA or not): Keras 3 `.keras`, tf_keras `.keras`, `.h5` or SavedModel.

    `compile=False` (the default) skips the optimizer: deploying needs none, and a file trained
    under another Keras 3 backend names that backend's optimizer, which may not import here.

    A file that would run code while loading (a Lambda layer's Python bytecode, a module that
    tf_keras would import) is refused, and Keras' own `safe_mode` is on. `trust_code=True` loads
    it anyway, with a warning: the code then runs with the caller's rights, so pass it only for
    a file you trust as you would trust a Python script.

    Raises:
        UntrustedCodeError: the file stores such code and `trust_code` is False.
        ModelFileError: the file is missing, of an unknown format, or Keras cannot rebuild it.
    """
    import importlib

    path = os.fspath(path)
    flavour = flavour_of_file(path)
    found = code_in(path, flavour)
    if found and not trust_code:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise UntrustedCodeError(
            f"{path}: layer {found[0].layer} {found[0].reason}{more}; refused: {found[0].fix}, "
            "or load it with trust_code=True (pea-tflite convert --trust_model_code) only if "
            "you trust the file")
    if trust_code:
        what = f"; it runs code: {'; '.join(map(str, found))}" if found else ""
        warnings.warn(f"{path}: loaded with trust_code=True, Keras' safe mode off{what}",
                      stacklevel=2)
    from pea_keras import layer  # noqa: F401  (registers PEALayer with both flavours)

    loader = importlib.import_module(flavour)
    try:
        model = loader.models.load_model(path, compile=compile, safe_mode=not trust_code)
    except Exception as e:  # Keras raises anything from a bad file: report it in one line.
        raise ModelFileError(f"{path}: cannot load the model ({first_line(e)})") from None
    if not getattr(model, "inputs", None):
        raise ModelFileError(f"{path}: loaded object is not a Keras model with known inputs")
    return model
