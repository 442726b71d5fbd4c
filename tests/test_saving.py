"""pea_keras.load_model and the documented bare `keras.models.load_model`, as users meet them:
a model saved by one program loads in a fresh interpreter, whatever that interpreter imported first,
in every format either flavor writes, and converts with the `pea-tflite` console script."""
import json
import sys
import textwrap

import pytest
from fresh import FORMATS, fresh_python, pea_tflite, run

IMPORT_ORDERS = {
    "nothing": "",
    "pea_keras": "import pea_keras",
    "keras": "import keras",
    "tf_keras": "import tf_keras",
    "tensorflow": "import tensorflow",
    "pea_keras.tflite": "import pea_keras.tflite",
}

SAVE = """
    import sys
    import numpy as np
    import keras, tf_keras
    import pea_keras

    def small(k):
        L = k.layers
        a = L.Input((12, 12, 1))
        x = L.Conv2D(4, 3, activation="relu")(a)
        x = L.ReLU(6.0)(L.Conv2D(4, 3)(x))
        return k.Model(a, L.Dense(10)(L.GlobalAveragePooling2D()(x)))

    out = sys.argv[1]
    for k, paths in ((keras, ["k3.keras"]), (tf_keras, ["tf.keras", "tf.h5", "tf_savedmodel"])):
        model = pea_keras.wrap(small(k))
        for layer in pea_keras.pea_layers(model):
            layer.set_alpha(1.0)  # Saved at 1, made at 0: a loaded 1 proves alpha round-trips.
        for path in paths:
            if path.endswith("savedmodel"):
                model.save(f"{out}/{path}", save_format="tf")
            else:
                model.save(f"{out}/{path}")
    np.save(f"{out}/calib.npy", np.random.default_rng(0).uniform(0, 1, (128, 12, 12, 1)).astype("float32"))
"""

# What a loaded model says about itself: its flavor, and each PEA layer's class and alpha.
DESCRIBE = """
    import json
    def describe(model):
        import pea_keras
        layers = pea_keras.pea_layers(model)
        return {"flavor": pea_keras.flavor.keras_of(model).__name__,
                "pea_layers": [type(layer).__name__ for layer in layers],
                "alpha": [layer.alpha_value for layer in layers]}
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved")
    fresh_python(SAVE, str(out))
    return out


def _after(order, body):
    """`body` in an interpreter whose first import is `order`'s (then the `describe` helper)."""
    return "\n".join((IMPORT_ORDERS[order], textwrap.dedent(DESCRIBE), textwrap.dedent(body)))


def _expect(fmt):
    return {"flavor": "keras" if fmt == "k3.keras" else "tf_keras",
            "pea_layers": ["PEALayer", "PEALayer"], "alpha": [1.0, 1.0]}


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_load_model_in_any_import_order_loads_every_format(saved, order):
    code = _after(order, """
        import sys, pea_keras
        print(json.dumps({f: describe(pea_keras.load_model(f"{sys.argv[1]}/{f}")) for f in sys.argv[2:]}))
    """)
    result = json.loads(fresh_python(code, str(saved), *FORMATS).splitlines()[-1])
    assert result == {fmt: _expect(fmt) for fmt in FORMATS}


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_bare_keras_load_model_after_the_documented_import(saved, order):
    """README: `from pea_keras import PEALayer` before a bare load_model, in any import order."""
    code = _after(order, """
        import sys
        from pea_keras import PEALayer  # noqa: F401  (the documented line)
        import keras, tf_keras
        result = {}
        for f in sys.argv[2:]:
            k = keras if f == "k3.keras" else tf_keras
            result[f] = describe(k.models.load_model(f"{sys.argv[1]}/{f}", compile=False))
        print(json.dumps(result))
    """)
    result = json.loads(fresh_python(code, str(saved), *FORMATS).splitlines()[-1])
    assert result == {fmt: _expect(fmt) for fmt in FORMATS}


def test_a_file_that_is_not_a_model_is_one_clear_error(tmp_path):
    import keras
    import tf_keras

    (tmp_path / "notes.keras").write_text("not a zip")
    (tmp_path / "loop.keras").symlink_to(tmp_path / "loop.keras")
    for k, name in ((keras, "w.weights.h5"), (tf_keras, "w.h5")):
        model = k.Sequential([k.Input((4,)), k.layers.Dense(2)])
        model.save_weights(tmp_path / name)
    code = """
    import sys, pea_keras
    from pea_keras.errors import ModelFileError
    for path in sys.argv[1:]:
        try:
            pea_keras.load_model(path)
        except ModelFileError as e:
            print(e)
    """
    names = ["notes.keras", "missing.h5", "", "loop.keras", "w.weights.h5", "w.h5"]
    out = fresh_python(code, *(str(tmp_path / name) for name in names))
    weights = ": holds weights only, no model (as save_weights writes): build the model in code and call its " \
              "load_weights, or save the whole model with model.save"
    assert out.splitlines() == [
        f"{tmp_path}/notes.keras: not a Keras .keras archive (File is not a zip file)",
        f"{tmp_path}/missing.h5: no such file or directory",
        f"{tmp_path}: directory is not a SavedModel (no saved_model.pb)",
        f"{tmp_path}/loop.keras: too many levels of symbolic links",
        f"{tmp_path}/w.weights.h5" + weights,
        f"{tmp_path}/w.h5" + weights]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_pea_tflite_convert_reads_every_saved_format(saved, fmt, tmp_path):
    out = tmp_path / "m.tflite"
    result = pea_tflite("convert", saved / fmt, "-o", out, "--calib", saved / "calib.npy")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[1] == "stripped 2 PEA layers to ReLU"
    check = pea_tflite("check", out, "--int8")
    assert (check.returncode, check.stdout.strip()) == (0, f"{out}: ReLU-only int8")


def test_import_pea_keras_alone_stays_light():
    """The CLIs import the package before parsing flags: it must not pull in TensorFlow or Keras."""
    code = textwrap.dedent("""
        import sys, pea_keras, pea_keras.tflite, pea_keras.tflite.cli
        print(sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules))
    """)
    out = run(sys.executable, "-c", code)
    assert out.stdout.strip() == "[]", out.stderr
