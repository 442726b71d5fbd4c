"""Keras' own LiteRT export (`model.export(path, format="litert")`) after `strip`: the README's
full-int8 recipe passes `pea-tflite check --int8`, and `check` says in one line why a file made
with the export's defaults is no microcontroller model."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from fresh import pea_tflite
from tiny_models import small_cnn, small_data

import pea_keras
from pea_keras import tflite
from pea_keras.tflite.check import micro_blocker


def trained_relu_model():
    x, y = small_data()
    x = x.astype("float32")
    model = pea_keras.wrap(small_cnn(keras), activation="silu")
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[pea_keras.PEAScheduler(pea_keras.schedules.Linear(0, 4))])
    return pea_keras.strip(model), x


@pytest.mark.slow
def test_full_int8_recipe_passes_check_int8_and_agrees_with_keras(tmp_path):
    relu_model, x = trained_relu_model()
    path = str(tmp_path / "model_int8.tflite")
    # The README's recipe, word for word.
    relu_model.export(path, format="litert", verbose=False,
                      input_signature=[keras.InputSpec(shape=(1, *relu_model.input_shape[1:]), dtype="float32")],
                      optimizations=[tf.lite.Optimize.DEFAULT],
                      representative_dataset=lambda: ([x[i:i + 1]] for i in range(len(x))),
                      target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                      inference_input_type=tf.int8, inference_output_type=tf.int8)
    code, stdout, stderr = pea_tflite("check", path, "--int8")
    assert (code, stdout, stderr) == (0, f"{path}: ReLU-only int8\n", "")
    assert [op.label for op in tflite.inspect(path).operators] == [
        "CONV_2D[RELU]", "MUL[NONE]", "ADD[RELU]", "MEAN", "FULLY_CONNECTED[NONE]", "SOFTMAX"]
    int8_probs, keras_probs = tflite.predict(path, x), relu_model.predict(x, verbose=0)
    assert np.mean(np.argmax(int8_probs, -1) == np.argmax(keras_probs, -1)) >= 62 / 64
    assert np.max(np.abs(int8_probs - keras_probs)) <= 3 / 256


@pytest.mark.slow
def test_check_says_why_a_default_litert_export_is_no_microcontroller_model(tmp_path):
    relu_model, _ = trained_relu_model()
    path = str(tmp_path / "default.tflite")
    relu_model.export(path, format="litert", verbose=False)  # Keras' defaults: float, Flex allowed.
    code, stdout, stderr = pea_tflite("check", path)
    assert (code, stderr) == (0, "")
    assert stdout.splitlines() == [
        f"{path}: ReLU-only",
        f"{path}: not for microcontrollers: float compute in 6 of 6 ops, which int8 microcontroller kernels "
        "and NPUs cannot run (the defaults of Keras' model.export(format=\"litert\"): deploy with pea-tflite "
        "convert, or export with full-int8 settings)"]

    inputs = keras.Input((4,))
    erf = keras.Model(inputs, keras.layers.Lambda(keras.ops.erf, output_shape=(4,))(inputs))
    flex = str(tmp_path / "flex.tflite")
    erf.export(flex, format="litert", verbose=False)  # erf has no builtin kernel: a Flex op.
    code, stdout, stderr = pea_tflite("check", flex)
    assert code == 1 and stderr.startswith(f"pea-tflite: error: {flex}: not ReLU-only")
    assert stdout.splitlines()[-1].startswith(
        f"{flex}: not for microcontrollers: TensorFlow (Flex) ops FlexErf, which TensorFlow Lite Micro "
        "cannot load; float compute in 1 of 1 ops")


@pytest.mark.slow
def test_an_int8_file_has_no_microcontroller_blocker():
    relu_model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                   keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    assert micro_blocker(tflite.quantize(relu_model, x)) is None
    assert micro_blocker(tflite.quantize(relu_model, x, io="float")) is None  # QUANTIZE edges only.
