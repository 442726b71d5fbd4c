"""Progressive Ensemble Activations for Keras (arXiv 2207.14074).

Train with `alpha * ReLU(x) + (1 - alpha) * g(x)` in place of every ReLU while a schedule
moves alpha from 0 to 1, then deploy the plain ReLU network:

    model = pea_keras.wrap(model, activation="silu")
    model.fit(data, epochs=E, callbacks=[pea_keras.PEAScheduler()])
    relu_model = pea_keras.strip(model)

Keras 3 models train on any Keras 3 backend (KERAS_BACKEND=tensorflow, jax or torch);
tf_keras models on TensorFlow.

Names load on first use, so the command-line tools start without TensorFlow. Touching any
public name (`pea_keras.wrap`, `pea_keras.PEALayer`, `pea_keras.load_model`, ...) registers
`PEALayer` with both Keras flavors, so saved PEA models load without `custom_objects`:
`pea_keras.load_model(path)` does it for you; before a bare `keras.models.load_model`, run
`from pea_keras import PEALayer` (any order of imports).
"""

import importlib
import importlib.util
import json
import os

__version__ = "0.1.0"

_EXPORTS = {
    "wrap": "surgery", "surrogate": "surgery", "strip": "surgery", "pea_layers": "surgery", "replace_relu": "surgery",
    "relufy": "surgery",
    "PEALayer": "layer", "TFKerasPEALayer": "layer",
    "PEAScheduler": "callbacks", "set_alpha": "callbacks",
    "load_model": "saving",
    "reestimate_batchnorm": "batchnorm",
}
_MODULES = ("activations", "schedules", "flavor", "distillation")
__all__ = sorted(_EXPORTS) + list(_MODULES)


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(f"{__name__}.layer")  # Every public name registers PEALayer first.
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


# Keras 3 imports its backend's package when imported: name the extra before that fails obscurely.
_BACKEND_EXTRAS = {"jax": ("JAX", "jax"), "torch": ("PyTorch", "torch")}


def configured_backend():
    """KERAS_BACKEND, else the backend in keras.json, else TensorFlow (the order Keras uses)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def check_backend_installed():
    """Raise ImportError naming the extra if Keras 3's configured backend is not installed."""
    backend = configured_backend()
    if backend in _BACKEND_EXTRAS and importlib.util.find_spec(backend) is None:
        name, extra = _BACKEND_EXTRAS[backend]
        raise ImportError(f"KERAS_BACKEND={backend} needs {name}: pip install 'pea_keras[{extra}]' "
                          "(or unset KERAS_BACKEND to use TensorFlow).")
