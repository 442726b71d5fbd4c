"""Keras 3 on every backend: the layer's values and gradients, and JAX- and PyTorch-trained files
deployed from TensorFlow.

Each backend runs in its own interpreter (Keras 3 picks its backend once, at import); a backend
whose package is not installed is skipped with the extra that installs it.
"""
import importlib.util
import json
import sys

import numpy as np
import pytest
import tensorflow as tf
from fresh import HANG_S, fresh_python, pea_tflite, run

from pea_keras import activations, numerics, tflite
from pea_keras.layer import _ensemble, relu

ACTIVATIONS = ["silu", "gelu", "gelu_tanh", "mish", "hard_swish", "elu", "selu", "softplus"]
# Each formula is checked on TF below; the other backends check the mechanics on two of them.
BACKEND_ACTIVATIONS = ["silu", "hard_swish"]


def run_under(backend, script, *args, timeout=HANG_S):
    """Runs `script` with KERAS_BACKEND=backend; returns the JSON its last stdout line prints."""
    out = fresh_python(script, *args, timeout=timeout, KERAS_BACKEND=backend)
    return json.loads(out.strip().splitlines()[-1])


def needs(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"KERAS_BACKEND={backend} not installed here: pip install 'pea_keras[{backend}]'")


LAYER_CHECK = """
    import json
    import numpy as np
    import keras
    from keras import ops
    import pea_keras
    from pea_keras import activations, numerics
    from pea_keras.layer import relu

    def _ops_relu(t, max_value=None, threshold=0.0):
        return relu(t, max_value, threshold, numerics.OPS)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def gradient(fn, x, w):
            return np.asarray(jax.grad(lambda t: ops.sum(fn(t) * w))(x))

        def in_graph(fn):
            return jax.jit(fn)
    else:
        import torch

        def gradient(fn, x, w):
            t = torch.tensor(np.asarray(x), requires_grad=True)
            ops.sum(fn(t) * w).backward()
            return t.grad.numpy()

        def in_graph(fn):
            return fn

    rng = np.random.default_rng(1)
    x = ops.convert_to_tensor(rng.normal(scale=4.0, size=(3, 5, 7)).astype("float32"))
    w = ops.convert_to_tensor(rng.normal(size=(3, 5, 7)).astype("float32"))
    worst = {"value": 0.0, "gradient": 0.0, "phase": 0.0}
    cases = 0
    for name in NAMES:
        g = activations.get(name, numerics.OPS).g
        for max_value in (None, 6.0):
            layer = pea_keras.PEALayer(name, max_value=max_value)
            layer.build(x.shape)
            for alpha in (0.0, 0.3, 1.0):
                layer.set_alpha(alpha)

                def plain(t, alpha=alpha):
                    return alpha * _ops_relu(t, max_value) + (1.0 - alpha) * g(t)

                value = np.asarray(in_graph(lambda t: layer(t))(x))
                worst["value"] = max(worst["value"], float(np.max(np.abs(value - np.asarray(plain(x))))))
                diff = gradient(layer, x, w) - gradient(plain, x, w)
                worst["gradient"] = max(worst["gradient"], float(np.max(np.abs(diff))))
                phase = {0.0: "novel", 1.0: "relu"}.get(alpha, "blend")
                layer.enter_phase(phase)
                traced = gradient(lambda t: layer(t, training=True), x, w) - gradient(plain, x, w)
                layer.enter_phase(None)
                worst["phase"] = max(worst["phase"], float(np.max(np.abs(traced))))
                cases += 1
    custom = pea_keras.PEALayer(lambda t: t * t, threshold=0.5, alpha=0.25)
    custom.build(x.shape)
    expected = gradient(lambda t: 0.25 * _ops_relu(t, None, 0.5) + 0.75 * t * t, x, w)
    worst["autodiff"] = float(np.max(np.abs(gradient(custom, x, w) - expected)))
    worst["relu_gradient_g"] = 0.0  # The blend forward, dy * (alpha * g' [x < 6] + (1 - alpha) * g') backward.
    for name in NAMES:
        act = activations.get(name, numerics.OPS)
        layer = pea_keras.PEALayer(name, max_value=6.0, relu_gradient="g")
        layer.build(x.shape)
        g_prime = np.asarray(act.g_prime(x))
        for alpha in (0.3, 1.0):
            layer.set_alpha(alpha)
            plain = np.asarray(alpha * _ops_relu(x, 6.0) + (1.0 - alpha) * act.g(x))
            expected = (alpha * g_prime * (np.asarray(x) < 6.0) + (1.0 - alpha) * g_prime) * np.asarray(w)
            for phase in (None, {1.0: "relu"}.get(alpha, "blend")):
                layer.enter_phase(phase)
                value = np.asarray(layer(x, training=True)) - plain
                diff = gradient(lambda t: layer(t, training=True), x, w) - expected
                worst["relu_gradient_g"] = max(worst["relu_gradient_g"], float(np.max(np.abs(value))),
                                               float(np.max(np.abs(diff))))
    print(json.dumps({"backend": backend, "cases": cases, **worst}))
""".replace("NAMES", repr(BACKEND_ACTIVATIONS))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layer_values_and_gradients_equal_plain_formula(backend):
    needs(backend)
    report = run_under(backend, LAYER_CHECK)
    assert report["backend"] == backend and report["cases"] == len(BACKEND_ACTIVATIONS) * 2 * 3
    assert report["value"] <= 1e-5, report
    assert report["gradient"] <= 1e-4, report
    assert report["phase"] <= 1e-4, report
    assert report["autodiff"] <= 1e-4, report
    assert report["relu_gradient_g"] <= 1e-4, report


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_keras_ops_path_equals_tensorflow_path(activation):
    """The keras.ops formulas and ensemble (JAX/PyTorch) compute what the TF ones do, checked on TF."""
    x = tf.constant(np.random.default_rng(3).normal(scale=4.0, size=(4, 9)).astype("float32"))
    g, ops_act = activations.get(activation).g, activations.get(activation, numerics.OPS)
    for alpha in (0.0, 0.4, 1.0):
        for max_value in (None, 6.0):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                ops_y = _ensemble(numerics.OPS, x, tf.constant(alpha), max_value, ops_act, "blend")
                plain_y = alpha * relu(x, max_value) + (1.0 - alpha) * g(x)
            np.testing.assert_allclose(np.asarray(ops_y), plain_y.numpy(), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(tape.gradient(ops_y, x).numpy(), tape.gradient(plain_y, x).numpy(),
                                       rtol=1e-5, atol=1e-5)


TRAIN_AND_SAVE = """
    import json, sys
    import numpy as np
    import keras
    import pea_keras
    from tiny_models import small_cnn, small_data

    model = pea_keras.wrap(small_cnn(keras), activation="gelu")
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    x, y = small_data()
    schedule = pea_keras.schedules.Linear(0, 10)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False,
                        callbacks=[pea_keras.PEAScheduler(schedule)])
    model.save(sys.argv[1])
    np.save(sys.argv[2], model.predict(x, verbose=0))
    print(json.dumps({"backend": keras.backend.backend(), "alpha": history.history["pea_alpha"],
                      "step": int(np.asarray(model.optimizer.iterations))}))
"""

LOAD_AND_STRIP = """
    import json, sys
    import numpy as np
    import keras
    import pea_keras
    from tiny_models import small_data

    loaded = pea_keras.load_model(sys.argv[1])
    stripped = pea_keras.strip(loaded)
    x, _ = small_data()
    trained = np.load(sys.argv[2])
    print(json.dumps({
        "backend": keras.backend.backend(),
        "alpha": [layer.alpha_value for layer in pea_keras.pea_layers(loaded)],
        "stripped_layers": [type(layer).__name__ for layer in stripped.layers],
        "stripped_is_keras3": pea_keras.flavor.keras_of(stripped) is keras,
        "loaded_vs_trained": float(np.max(np.abs(loaded.predict(x, verbose=0) - trained))),
        "stripped_vs_loaded": float(np.max(np.abs(stripped.predict(x, verbose=0)
                                                  - loaded.predict(x, verbose=0)))),
    }))
"""


def test_training_a_wrapped_model_leaves_the_original_intact_under_jax():
    """JAX's fit donates the trained model's buffers: wrap must give the copy weights of its own."""
    needs("jax")
    result = run_under("jax", """
        import json
        import numpy as np
        import keras
        import pea_keras
        from tiny_models import small_cnn, small_data

        base = small_cnn(keras)
        x, y = small_data()
        before = base.predict(x, verbose=0)
        wrapped = pea_keras.wrap(base)
        wrapped.compile("sgd", "sparse_categorical_crossentropy")
        wrapped.fit(x, y, epochs=1, verbose=0, callbacks=[pea_keras.PEAScheduler(pea_keras.schedules.Constant(1.0))])
        print(json.dumps({"unchanged": float(np.max(np.abs(base.predict(x, verbose=0) - before)))}))
    """)
    assert result["unchanged"] == 0.0


def _trained_under(backend, tmp_path):
    """(saved .keras, its predictions) of TRAIN_AND_SAVE under `backend`, checked to have trained
    12 steps with alpha following the optimizer step (the last batch of epoch e began at step
    4(e + 1) - 1)."""
    needs(backend)
    path, predictions = tmp_path / "pea.keras", tmp_path / "trained.npy"
    trained = run_under(backend, TRAIN_AND_SAVE, path, predictions)
    assert trained["backend"] == backend and trained["step"] == 12
    assert trained["alpha"] == pytest.approx([0.3, 0.7, 1.0])
    return path, predictions


@pytest.mark.slow
def test_jax_trained_model_loads_and_strips_under_tensorflow(tmp_path):
    path, predictions = _trained_under("jax", tmp_path)
    deployed = run_under("tensorflow", LOAD_AND_STRIP, path, predictions)
    assert deployed["backend"] == "tensorflow" and deployed["alpha"] == [1.0, 1.0]
    assert deployed["stripped_layers"] == ["Conv2D", "BatchNormalization", "ReLU", "GlobalAveragePooling2D",
                                           "Dense"]
    assert deployed["stripped_is_keras3"]
    assert deployed["loaded_vs_trained"] <= 1e-5
    assert deployed["stripped_vs_loaded"] <= 1e-6


@pytest.mark.slow
def test_torch_trained_model_converts_in_a_new_process_and_agrees_with_torch(tmp_path):
    """Train under PyTorch, then deploy as a user would: the console script, a TensorFlow process."""
    path, predictions = _trained_under("torch", tmp_path)
    from tiny_models import small_data

    x, _ = small_data()
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "pea_int8.tflite"
    code, stdout, stderr = pea_tflite("convert", path, "-o", out, "--calib", f"npy:{tmp_path / 'x.npy'}",
                                      "--calib_samples", len(x), "--calib_any_range")  # Trained on N(0, 1).
    assert code == 0, stderr
    code, stdout, stderr = pea_tflite("check", "--int8", out)
    assert (code, stdout.strip(), stderr) == (0, f"{out}: ReLU-only int8", "")
    torch_probs, int8_probs = np.load(predictions), tflite.predict(out, x)
    # Measured: 64 of 64 top-1 agree, outputs within 1 step of the int8 softmax's scale (1/256),
    # mean 0.3 steps; the bounds leave room for the untied weights of another run.
    assert np.mean(np.argmax(int8_probs, -1) == np.argmax(torch_probs, -1)) >= 62 / 64
    assert np.max(np.abs(int8_probs - torch_probs)) <= 3 / 256


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_missing_backend_package_names_the_extra(backend):
    # An installed package is hidden from the child (find_spec answers None for it), as if missing.
    hide = f"import sys; sys.modules[{backend!r}] = None; " if importlib.util.find_spec(backend) else ""
    result = run(sys.executable, "-c", hide + "import pea_keras; pea_keras.wrap", KERAS_BACKEND=backend)
    assert result.returncode != 0
    name = {"torch": "PyTorch", "jax": "JAX"}[backend]
    assert (f"ImportError: KERAS_BACKEND={backend} needs {name}: pip install 'pea_keras[{backend}]'"
            in result.stderr.strip().splitlines()[-1])
