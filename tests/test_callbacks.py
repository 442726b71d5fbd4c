import json
import sys
import textwrap
import warnings

import numpy as np
import pytest
from fresh import run
from tiny_models import small_cnn, small_data

import pea_keras
from pea_keras import schedules

STEPS = 4  # 64 samples / batch 16


def fit(k, model, epochs, callbacks, initial_epoch=0):
    x, y = small_data()
    return model.fit(x, y, batch_size=16, epochs=epochs, initial_epoch=initial_epoch, verbose=0,
                     callbacks=callbacks, shuffle=False)


def compiled(k, activation="silu"):
    model = pea_keras.wrap(small_cnn(k), activation=activation)
    model.compile(k.optimizers.SGD(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def alphas(model):
    return {float(layer.alpha.numpy()) for layer in pea_keras.pea_layers(model)}


def test_alpha_follows_schedule_and_is_logged(k):
    model = compiled(k)
    schedule = schedules.Linear(0, 3 * STEPS)
    history = fit(k, model, 2, [pea_keras.PEAScheduler(schedule)])
    # Alpha is set at the start of each batch: the last batch of epoch e began at step (e + 1) * STEPS - 1.
    assert history.history["pea_alpha"] == pytest.approx([schedule(STEPS - 1), schedule(2 * STEPS - 1)])
    assert alphas(model) == {np.float32(7 / 12).item()}


def test_default_schedule_from_fit_arguments(k):
    model = compiled(k)
    history = fit(k, model, 4, [pea_keras.PEAScheduler()])
    expected = schedules.default(4 * STEPS)
    assert history.history["pea_alpha"] == pytest.approx([expected((e + 1) * STEPS - 1) for e in range(4)])
    assert history.history["pea_alpha"][-1] == 1.0
    assert alphas(model) == {1.0}
    pea_keras.strip(model)  # Alpha ended at 1: strippable.


def test_csv_logger_records_alpha(k, tmp_path):
    model = compiled(k)
    logger = k.callbacks.CSVLogger(str(tmp_path / "h.csv"))
    fit(k, model, 2, [pea_keras.PEAScheduler(schedules.Linear(0, 8)), logger])
    lines = (tmp_path / "h.csv").read_text().splitlines()
    column = lines[0].split(",").index("pea_alpha")
    assert [float(line.split(",")[column]) for line in lines[1:]] == pytest.approx([3 / 8, 7 / 8])


def test_resume_from_checkpoint_continues_alpha(k, tmp_path):
    schedule = schedules.Cosine(0, 4 * STEPS)
    straight = fit(k, compiled(k), 4, [pea_keras.PEAScheduler(schedule)]).history["pea_alpha"]
    first = compiled(k)
    fit(k, first, 2, [pea_keras.PEAScheduler(schedule)])
    first.save(tmp_path / "half.keras")
    resumed = k.models.load_model(tmp_path / "half.keras")
    assert int(resumed.optimizer.iterations.numpy()) == 2 * STEPS
    history = fit(k, resumed, 4, [pea_keras.PEAScheduler(schedule)], initial_epoch=2)
    assert history.history["pea_alpha"] == pytest.approx(straight[2:])


def test_warns_once_when_training_without_scheduler(k):
    model = compiled(k)
    with pytest.warns(UserWarning, match="without pea_keras.PEAScheduler"):
        fit(k, model, 1, [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(k, model, 1, [])  # Told once per model, not every fit.
    assert not hasattr(pea_keras.layer, "_warned_unscheduled")  # No process-wide state.


def test_warns_when_training_ends_before_alpha_reaches_1(k):
    with pytest.warns(UserWarning, match=r"ended with pea_alpha = 0.5000 < 1"):
        fit(k, compiled(k), 1, [pea_keras.PEAScheduler(schedules.Constant(0.5))])


def test_rejects_model_without_pea_layers_and_non_callable(k):
    model = small_cnn(k)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="has no PEALayer"):
        fit(k, model, 1, [pea_keras.PEAScheduler()])
    with pytest.raises(ValueError, match="schedule must be callable"):
        pea_keras.PEAScheduler(0.5)


def test_default_schedule_needs_known_steps(k):
    import tensorflow as tf

    model = compiled(k)
    x, y = small_data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).filter(lambda a, b: True)
    with pytest.raises(ValueError, match="needs fit\\(\\) to know its steps per epoch"):
        model.fit(data, epochs=1, verbose=0, callbacks=[pea_keras.PEAScheduler()])


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import importlib, pea_keras
    from tiny_models import small_cnn, small_data
    k = importlib.import_module(sys.argv[1])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = pea_keras.wrap(small_cnn(k))
        model.compile(k.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x, y = small_data()
    schedule = pea_keras.schedules.Linear(0, 20)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[pea_keras.PEAScheduler(schedule)])
    # Keras 3 wraps the tf.Variable.
    variables = [layer.alpha if k.__name__ == "tf_keras" else layer.alpha.value
                 for layer in pea_keras.pea_layers(model)]
    values = [[float(v) for v in strategy.experimental_local_results(var)] for var in variables]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "alpha": values,
                      "expected": schedule(int(model.optimizer.iterations.numpy()) - 1)}))
""")


def test_mirrored_strategy_gives_every_replica_the_same_alpha(k, tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    result = run(sys.executable, script, k.__name__)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["alpha"] == [[np.float32(report["expected"]).item()] * 2] * 2
    assert report["expected"] == pytest.approx(7 / 20)


def test_warns_when_restored_alpha_disagrees_with_the_schedule(k, tmp_path):
    """A reload that loses the optimizer step (tf_keras SavedModel; Keras 3 layer weights set on a
    freshly compiled model) would move alpha back to the schedule's start without a word."""
    schedule = schedules.Linear(0, 16)
    model = compiled(k)
    fit(k, model, 1, [pea_keras.PEAScheduler(schedule)])
    if k.__name__ == "tf_keras":
        model.save(str(tmp_path / "sm"))
        restored = k.models.load_model(str(tmp_path / "sm"))
    else:
        restored = compiled(k)
        restored.set_weights(model.get_weights())  # Layer weights (alpha included), a fresh optimizer.
    assert int(np.asarray(restored.optimizer.iterations)) == 0 and alphas(restored) == {3 / 16}
    with pytest.warns(UserWarning, match=r"the model's alpha is 0.1875 but the schedule gives 0.0000 at "
                                         r"optimizer step 0.*model.optimizer.iterations.assign"):
        fit(k, restored, 1, [pea_keras.PEAScheduler(schedule)])


def test_no_restored_alpha_warning_on_a_correct_resume(k, tmp_path):
    schedule = schedules.Linear(0, 16)
    model = compiled(k)
    fit(k, model, 1, [pea_keras.PEAScheduler(schedule)])
    model.save(tmp_path / "m.keras")
    restored = k.models.load_model(tmp_path / "m.keras")
    assert int(np.asarray(restored.optimizer.iterations)) == STEPS
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="PEAScheduler: the model's alpha")
        fit(k, restored, 2, [pea_keras.PEAScheduler(schedule)], initial_epoch=1)


def test_set_alpha_drives_a_custom_training_loop_traced_once(k):
    """The documented custom-loop API: set_alpha between steps of a tf.function traced once."""
    import tensorflow as tf

    model = pea_keras.wrap(small_cnn(k))
    x, y = small_data()
    optimizer, loss_fn = k.optimizers.SGD(0.01), k.losses.SparseCategoricalCrossentropy()
    traces = []

    @tf.function
    def train_step(xb, yb):
        traces.append(1)
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    schedule = schedules.Linear.over(STEPS, start=0.0, end=0.75)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # No "Training a PEA model without PEAScheduler" warning.
        for step in range(STEPS + 1):
            assert pea_keras.set_alpha(model, schedule(step)) == 2
            train_step(x[16 * (step % STEPS):][:16], y[16 * (step % STEPS):][:16])
            if step == 0:
                first_traces = len(traces)  # tf_keras traces the first call twice to make its slots.
    assert len(traces) == first_traces and alphas(model) == {1.0}
    # Traced at alpha 0, the same graph computes the ReLU network once alpha is 1.
    forward = tf.function(lambda xb: model(xb, training=True))
    pea_keras.set_alpha(model, 0.0)
    at_0 = forward(x[:8]).numpy()
    pea_keras.set_alpha(model, 1.0)
    at_1 = forward(x[:8]).numpy()
    assert not np.allclose(at_0, at_1)
    np.testing.assert_allclose(at_1, pea_keras.strip(model)(x[:8], training=True).numpy(), atol=1e-5)


def test_set_alpha_phase_rule_and_refusals(k):
    model = pea_keras.wrap(small_cnn(k))
    assert pea_keras.set_alpha(model, 1.0, phase="relu") == 2
    assert {layer.phase for layer in pea_keras.pea_layers(model)} == {"relu"}
    pea_keras.set_alpha(model, 0.5)
    assert {layer.phase for layer in pea_keras.pea_layers(model)} == {None}
    with pytest.raises(ValueError, match=r"^set_alpha: phase 'relu' computes only the ReLU branch, which "
                                         r"alpha=0.5 does not; use phase='blend' or None\.$"):
        pea_keras.set_alpha(model, 0.5, phase="relu")
    with pytest.raises(ValueError, match=r"^set_alpha: alpha must be in \[0, 1\], got 1.5\.$"):
        pea_keras.set_alpha(model, 1.5)
    with pytest.raises(ValueError, match=r"^set_alpha: model 'small_cnn' has no scheduled PEALayer; wrap it"):
        pea_keras.set_alpha(small_cnn(k), 1.0)
    assert "set_alpha" in pea_keras.__all__ and "retrace" in pea_keras.set_alpha.__doc__


def test_a_tf_keras_saved_model_save_does_not_warn_about_training(tmp_path):
    import tf_keras

    model = pea_keras.wrap(small_cnn(tf_keras))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save(tmp_path / "saved", save_format="tf")
    assert (tmp_path / "saved" / "saved_model.pb").exists()
    with pytest.warns(UserWarning, match="without pea_keras.PEAScheduler"):  # Training still warns.
        model.compile("sgd", "sparse_categorical_crossentropy")
        fit(tf_keras, model, 1, [])
