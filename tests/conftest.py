import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(params=["keras", "tf_keras"])
def k(request):
    """The Keras flavour under test: Keras 3 or tf_keras (Keras 2)."""
    return importlib.import_module(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
