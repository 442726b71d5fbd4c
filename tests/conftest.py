import importlib
import logging
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(params=["keras", "tf_keras"])
def k(request):
    """The Keras flavor under test: Keras 3 or tf_keras (Keras 2)."""
    return importlib.import_module(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _process_state():
    """A CLI's main called in this process changes what `console.quiet` changes (warning filters
    and display, file descriptor 2, absl's log level, KERAS_BACKEND, TF_CPP_MIN_LOG_LEVEL): put
    them back after every test, so that no test changes the next."""
    from pea_keras import console

    filters, show = warnings.filters[:], warnings.showwarning
    saved_env = {name: os.environ.get(name) for name in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")}
    absl_level, stderr_fd = logging.getLogger("absl").level, os.dup(2)
    yield
    sys.stderr.flush()
    os.dup2(stderr_fd, 2)  # Closes a filter's pipe, whose thread then ends.
    os.close(stderr_fd)
    console._filtering = False
    console.set_prog(None)
    warnings.filters[:] = filters
    warnings._filters_mutated()
    warnings.showwarning = show
    logging.getLogger("absl").setLevel(absl_level)
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
