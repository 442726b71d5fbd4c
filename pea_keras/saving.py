"""`load_model`: a saved PEA model of either Keras flavor, in any format, ready to use.

Keras finds `PEALayer` by its registered name only once `pea_keras.layer` has been imported;
`load_model` imports it first, so a file saved by one program loads in any other, whatever that
program imported before. The flavor follows the file: a `.keras` archive and an `.h5` file name
the Keras version that wrote them; SavedModel directories are tf_keras'.

A model file is data: before Keras sees it, `load_model` refuses one that would run code it
stores (`pea_keras.stored_code`), unless the caller vouches for the file with `trust_code=True`.
"""
import os
import warnings

from pea_keras.errors import ModelFileError, UntrustedCodeError, first_line
from pea_keras.files import missing
from pea_keras.stored_code import StoredCode, archive_json, code_in

__all__ = ["load_model", "flavor_of_file", "revived_layers"]

_H5 = (".h5", ".hdf5")


def _keras_version_of_zip(path):
    for name in ("metadata.json", "config.json"):
        content = archive_json(path, name)
        version = content.get("keras_version") if isinstance(content, dict) else None
        if version:
            return str(version)
    raise ModelFileError(f"{path}: .keras archive without keras_version in metadata.json/config.json")


def _h5_flavor(path):
    """"keras" for a Keras 3 `.h5` (keras_version 3.x), else "tf_keras"; a weights file is refused."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            has_model, version = "model_config" in f.attrs, f.attrs.get("keras_version", b"")
    except OSError as e:
        raise ModelFileError(f"{path}: not an HDF5 model file ({first_line(e)})") from None
    if not has_model:
        raise ModelFileError(f"{path}: holds weights only, no model (as save_weights writes): build the "
                             "model in code and call its load_weights, or save the whole model with "
                             "model.save")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return "keras" if version.startswith("3.") else "tf_keras"


def flavor_of_file(path):
    """"keras" (Keras 3) or "tf_keras" for a saved model, from the file alone (no TensorFlow).

    Raises:
        ModelFileError: no such file, or not a format either flavor writes.
    """
    path = os.fspath(path)
    problem = missing(path)
    if problem:
        raise ModelFileError(f"{path}: {problem}")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ModelFileError(f"{path}: directory is not a SavedModel (no saved_model.pb)")
        return "tf_keras"
    if path.endswith(".keras"):
        return "tf_keras" if _keras_version_of_zip(path).startswith("2.") else "keras"
    if path.endswith(_H5):
        return _h5_flavor(path)
    raise ModelFileError(f"{path}: not a Keras model (expected .keras, .h5 or a SavedModel directory)")


def load_model(path, compile=False, trust_code=False):
    """Load a saved model (PEA or not): Keras 3 `.keras`, tf_keras `.keras`, `.h5` or SavedModel.

    `compile=False` (the default) skips the optimizer: deploying needs none, and a file trained
    under another Keras 3 backend names that backend's optimizer, which may not import here.

    A file that would run code it stores (a Lambda layer's Python bytecode, a module that tf_keras
    would import, a SavedModel layer that tf_keras would rebuild from the file's TensorFlow graph)
    is refused, and Keras' own `safe_mode` is on. `trust_code=True` loads
    it anyway, with a warning: the code then runs with the caller's rights, so pass it only for
    a file you trust as you would trust a Python script.

    Raises:
        UntrustedCodeError: the file stores such code and `trust_code` is False.
        ModelFileError: the file is missing, of an unknown format, or Keras cannot rebuild it.
    """
    import importlib

    path = os.fspath(path)
    flavor = flavor_of_file(path)
    found = code_in(path, flavor)
    if found and not trust_code:
        raise _refusal(path, found)
    if trust_code:
        what = f"; it runs code: {'; '.join(map(str, found))}" if found else ""
        warnings.warn(f"{path}: loaded with trust_code=True, Keras' safe mode off{what}",
                      stacklevel=2)
    from pea_keras import layer  # noqa: F401  (registers PEALayer with both flavors)

    k = importlib.import_module(flavor)
    try:
        model = k.models.load_model(path, compile=compile, safe_mode=not trust_code)
    except Exception as e:  # Keras raises anything from a bad file: report it in one line.
        raise ModelFileError(f"{path}: cannot load the model ({first_line(e)})") from None
    if not getattr(model, "inputs", None):
        raise ModelFileError(f"{path}: loaded object is not a Keras model with known inputs")
    revived = [] if trust_code or not os.path.isdir(path) else revived_layers(model)
    if revived:
        raise _refusal(path, revived)
    return model


def _refusal(path, found):
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return UntrustedCodeError(
        f"{path}: {found[0].where} {found[0].reason}{more}; refused: {found[0].fix}, "
        "or load it with trust_code=True (pea-tflite convert --trust_model_code) only if "
        "you trust the file")


def revived_layers(model):
    """The layers tf_keras rebuilt from a SavedModel's graph (trusted, or after all: a known class
    whose config fails), found before anything calls them."""
    from pea_keras import flavor

    if not flavor.is_tf_keras(model):
        return []
    from tf_keras.src.saving.legacy.saved_model.load import RevivedInputLayer, RevivedLayer

    return [StoredCode(f"layer '{layer.name}' ({type(layer).__name__})",
                       "could not be rebuilt from its config: tf_keras rebuilt it from the TensorFlow "
                       "graph stored in the file, which would run when the model is called",
                       "save the model again with a config its class accepts")
            for layer in model._flatten_layers() if isinstance(layer, (RevivedLayer, RevivedInputLayer))]
