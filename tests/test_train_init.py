"""train.py --init_from (start from a saved model) and --mode relufy (its activations become ReLU)."""
import json

import pytest
from fresh import HANG_S
from train_cli import refusal, run_script

from pea_keras.tflite import relu_only_violations
from pea_keras.training import config as config_lib
from pea_keras.training import modes


def _silu_cnn(k, input_shape=(32, 32, 1), classes=10):
    """A user's small network with SiLU activations (fused and as layers), batch norm and a
    squeeze-excite gate (a fused sigmoid, as in EfficientNet)."""
    inputs = k.Input(input_shape)
    h = k.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    h = k.layers.BatchNormalization()(h)
    h = k.layers.Activation("silu")(h)
    gate = k.layers.Conv2D(8, 1, activation="sigmoid")(k.layers.GlobalAveragePooling2D(keepdims=True)(h))
    h = k.layers.Multiply()([h, gate])
    h = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="silu")(h)
    h = k.layers.GlobalAveragePooling2D()(h)
    return k.Model(inputs, k.layers.Dense(classes)(h))


def _saved(k, tmp_path, **kw):
    path = tmp_path / ("user.keras" if k.__name__ == "keras" else "user_tf.keras")
    _silu_cnn(k, **kw).save(path)
    return path


@pytest.mark.parametrize("args,reason", [
    (["--mode=relufy"], "--mode relufy needs --init_from PATH: the trained model whose activations become ReLU"),
    (["--distill=init"], "--distill init needs --init_from PATH: the teacher is the model loaded from it"),
    (["--init_from=/no/such.keras"], "--init_from /no/such.keras: no such file or directory"),
])
def test_init_from_mistakes_are_one_line(tmp_path, capsys, args, reason):
    assert reason in refusal(tmp_path, capsys, *args)
    assert not (tmp_path / "run").exists()


def test_a_model_for_other_inputs_or_classes_is_one_line(tmp_path, capsys):
    import keras
    import tf_keras

    wrong_input = tmp_path / "wide.keras"
    _silu_cnn(keras, input_shape=(16, 16, 3)).save(wrong_input)
    assert (f"--init_from {wrong_input} takes inputs of shape (16, 16, 3); this task feeds one input of shape "
            "(32, 32, 1)") in refusal(tmp_path, capsys, f"--init_from={wrong_input}", "--mode=relufy")
    wrong_classes = tmp_path / "five.keras"
    _silu_cnn(keras, classes=5).save(wrong_classes)
    assert (f"--init_from {wrong_classes} has outputs of shape (5,); this task needs one output of 10 logits"
            in refusal(tmp_path, capsys, f"--init_from={wrong_classes}", "--mode=relufy"))
    other_flavor = _saved(tf_keras, tmp_path)
    assert (f"--init_from {other_flavor} is a tf_keras (--keras 2) model; this run trains Keras 3 (--keras 3)"
            in refusal(tmp_path, capsys, f"--init_from={other_flavor}", "--mode=relufy"))
    assert not (tmp_path / "run").exists()


def test_the_relufy_recipe_fills_only_the_flags_not_given():
    config = config_lib.recipe("relufy", init_from="m.keras", epochs=5)
    assert (config.epochs, config.lr, config.relu_gradient, config.pea_end, config.distill) == (
        5, 2e-3, "g", 0.5, "init")
    assert config.bn_reestimate == modes.get("relufy").defaults["bn_reestimate"] > 0
    assert config_lib.recipe("relufy", init_from="m.keras", relu_gradient="relu").relu_gradient == "relu"
    assert config_lib.recipe("pea") == config_lib.RunConfig()
    with pytest.raises(TypeError, match="unknown RunConfig settings: bogus"):
        config_lib.recipe("pea", bogus=1)


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["keras", "tf_keras"])
def test_relufy_run_turns_a_silu_model_into_a_relu_only_int8_file(tmp_path, flavor):
    """A fresh train.py process: the saved SiLU network is relufied, fine-tuned with the loaded model
    as teacher, stripped, its batch-norm statistics re-estimated, and exported ReLU-only."""
    import importlib

    user = _saved(importlib.import_module(flavor), tmp_path)
    out, tfl = tmp_path / "run", tmp_path / "tflite"
    keras_flag = "--keras=3" if flavor == "keras" else "--keras=2"
    result = run_script("train.py", f"--init_from={user}", "--mode=relufy", keras_flag, "--epochs=2",
                        "--steps_per_epoch=4", "--batch_size=16", "--calibration_examples=16",
                        "--tflite_eval_examples=16", "--verbose=2", f"--output_dir={out}", f"--tflite_dir={tfl}",
                        timeout=HANG_S)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    flags = m["flags"]
    assert (m["mode"], flags["distill"], flags["lr"], flags["relu_gradient"], flags["pea_end"]) == (
        "relufy", "init", 2e-3, "g", 0.5)
    assert flags["bn_reestimate"] == modes.get("relufy").defaults["bn_reestimate"]
    assert m["alpha_final"] == 1.0 and m["alpha_trace"]["alpha"][0] == 0.0
    assert relu_only_violations(str(tfl / "run_int8.tflite"), int8=True, allow_gates=True) == []
    assert [note.split(" at op ")[0] for note in m["tflite"]["passed_outside_relu"]] == ["channel gate"]
    assert "channel gate at op" in result.stdout  # Named in the summary too.
    check = run_script("-c", "import sys, pea_keras; m = pea_keras.load_model(sys.argv[1]); "
                       "print(sorted({l.get_config().get('activation', '') for l in m.layers} - {''}))",
                       str(out / "relu_model.keras"))
    assert check.stdout.strip() == "['linear', 'relu']", check.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_relufy_runs_on_jax_and_torch(tmp_path, backend):
    """The relufy recipe (teacher, blend, strip, batch-norm re-estimation) on a Keras 3 backend; the
    int8 export runs under TensorFlow in a child, as for every mode."""
    pytest.importorskip(backend)
    import keras

    user = _saved(keras, tmp_path)
    out, tfl = tmp_path / "run", tmp_path / "tflite"
    result = run_script("train.py", f"--init_from={user}", "--mode=relufy", f"--backend={backend}", "--epochs=2",
                        "--steps_per_epoch=4", "--batch_size=16", "--calibration_examples=16",
                        "--tflite_eval_examples=16", "--verbose=0", f"--output_dir={out}", f"--tflite_dir={tfl}",
                        timeout=HANG_S)
    assert result.returncode == 0, result.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert (m["mode"], m["backend"], m["flags"]["distill"]) == ("relufy", backend, "init")
    assert m["alpha_final"] == 1.0 and m["alpha_trace"]["alpha"][0] == 0.0
    assert relu_only_violations(str(tfl / "run_int8.tflite"), int8=True, allow_gates=True) == []
    assert m["top1"]["stripped"] is not None and m["top1"]["int8"] is not None
