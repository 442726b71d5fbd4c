"""Progressive Ensemble Activations for Keras (arXiv 2207.14074).

Train with `alpha * ReLU(x) + (1 - alpha) * g(x)` in place of every ReLU while a schedule
moves alpha from 0 to 1, then deploy the plain ReLU network:

    model = pea_keras.wrap(model, activation="silu")
    model.fit(data, epochs=E, callbacks=[pea_keras.PEAScheduler()])
    relu_model = pea_keras.strip(model)

Names load on first use, so the command-line tools start without TensorFlow. `PEALayer` is
registered with Keras as soon as Keras is imported (before or after this package), so saved
PEA models load without `custom_objects`.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "wrap": "surgery", "strip": "surgery", "pea_layers": "surgery",
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


class _RegisterWithKeras(importlib.abc.MetaPathFinder):
    """Imports pea_keras.layer (which registers PEALayer in both flavours) right after the
    first import of keras or tf_keras, then leaves the import system as it was."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in ("keras", "tf_keras"):
            return None
        sys.meta_path.remove(self)
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
