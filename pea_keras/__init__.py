"""Progressive Ensemble Activations for Keras (arXiv 2207.14074).

Train with `alpha * ReLU(x) + (1 - alpha) * g(x)` in place of every ReLU while a schedule
moves alpha from 0 to 1, then deploy the plain ReLU network:

    model = pea_keras.wrap(model, activation="silu")
    model.fit(data, epochs=E, callbacks=[pea_keras.PEAScheduler()])
    relu_model = pea_keras.strip(model)

Keras 3 models train on any Keras 3 backend (KERAS_BACKEND=tensorflow, jax or torch);
tf_keras models on TensorFlow.

Names load on first use, so the command-line tools start without TensorFlow. `PEALayer` is
registered with Keras as soon as Keras is imported (before or after this package), so saved
PEA models load without `custom_objects`.
"""

import importlib
import importlib.abc
import importlib.util
import json
import os
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "wrap": "surgery", "strip": "surgery", "pea_layers": "surgery", "replace_relu": "surgery",
    "PEALayer": "layer", "TFKerasPEALayer": "layer",
    "PEAScheduler": "callbacks",
}
_MODULES = ("activations", "schedules", "flavor")
__all__ = sorted(_EXPORTS) + list(_MODULES)


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


# Keras 3 imports its backend's package when imported: name the extra before that fails obscurely.
_BACKEND_EXTRAS = {"jax": ("JAX", "jax"), "torch": ("PyTorch", "torch")}


def _configured_backend():
    """KERAS_BACKEND, else the backend in keras.json, else TensorFlow (the order Keras uses)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _check_backend_installed():
    backend = _configured_backend()
    if backend in _BACKEND_EXTRAS and importlib.util.find_spec(backend) is None:
        name, extra = _BACKEND_EXTRAS[backend]
        raise ImportError(f"KERAS_BACKEND={backend} needs {name}: pip install -e '.[{extra}]' "
                          "(or unset KERAS_BACKEND to use TensorFlow).")


class _RegisterWithKeras(importlib.abc.MetaPathFinder):
    """Imports pea_keras.layer (which registers PEALayer in both flavours) right after the
    first import of keras or tf_keras, then leaves the import system as it was."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in ("keras", "tf_keras"):
            return None
        sys.meta_path.remove(self)
        if fullname == "keras":
            _check_backend_installed()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # Resources, source, code: as the real loader has them.
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        importlib.import_module(f"{__name__}.layer")


if "keras" in sys.modules or "tf_keras" in sys.modules:
    importlib.import_module(f"{__name__}.layer")
else:
    sys.meta_path.insert(0, _RegisterWithKeras())
