"""Progressive Ensemble Activations for Keras (arXiv 2207.14074).

Train with `alpha * ReLU(x) + (1 - alpha) * g(x)` in place of every ReLU while a schedule
moves alpha from 0 to 1, then deploy the plain ReLU network:

    model = pea_keras.wrap(model, activation="silu")
    model.fit(data, epochs=E, callbacks=[pea_keras.PEAScheduler()])
    relu_model = pea_keras.strip(model)

Keras 3 models train on any Keras 3 backend (KERAS_BACKEND=tensorflow, jax or torch);
tf_keras models on TensorFlow.
"""
import importlib.util as _importlib_util
import json as _json
import os as _os

# Keras 3 imports its backend's package when imported: name the extra before that fails obscurely.
_BACKEND_EXTRAS = {"jax": ("JAX", "jax"), "torch": ("PyTorch", "torch")}


def _configured_backend():
    """KERAS_BACKEND, else the backend in keras.json, else TensorFlow (the order Keras uses)."""
    if _os.environ.get("KERAS_BACKEND"):
        return _os.environ["KERAS_BACKEND"]
    home = _os.environ.get("KERAS_HOME") or _os.path.join(_os.path.expanduser("~"), ".keras")
    try:
        with open(_os.path.join(home, "keras.json")) as f:
            return _json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _check_backend_installed(backend):
    if backend in _BACKEND_EXTRAS and _importlib_util.find_spec(backend) is None:
        name, extra = _BACKEND_EXTRAS[backend]
        raise ImportError(f"KERAS_BACKEND={backend} needs {name}: pip install -e '.[{extra}]' "
                          "(or unset KERAS_BACKEND to use TensorFlow).")


_check_backend_installed(_configured_backend())

from pea_keras import activations, flavor, schedules  # noqa: E402
from pea_keras.callbacks import PEAScheduler  # noqa: E402
from pea_keras.layer import PEALayer, TFKerasPEALayer  # noqa: E402
from pea_keras.surgery import pea_layers, replace_relu, strip, wrap  # noqa: E402

__version__ = "0.1.0"
__all__ = ["wrap", "strip", "replace_relu", "pea_layers", "PEALayer", "TFKerasPEALayer", "PEAScheduler",
           "activations", "schedules", "flavor"]
