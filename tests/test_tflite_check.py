"""pea_keras.tflite inspect/check: op lists from the flatbuffer, the ReLU-only allow-list."""
import re

import flatbuffers
import keras
import numpy as np
import pytest
import tensorflow as tf
from fresh import cli_run

from pea_keras.tflite import inspect, quantize, relu_only_violations

X = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)


def write(tmp_path, data, name="m.tflite"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def conv_model(k, activation, head=None):
    L = k.layers
    layers = [k.Input((8, 8, 1)), L.Conv2D(4, 3)]
    layers += [L.Activation(activation)] if activation else []
    layers += [L.Flatten(), L.Dense(3)] + ([head] if head else [])
    return k.Sequential(layers)


@pytest.mark.parametrize("activation, offenders", [
    ("silu", ["LOGISTIC", "MUL[NONE]"]),
    ("gelu", ["GELU"]),
    ("hard_swish", ["HARD_SWISH"]),
    ("mish", ["EXP", "LOG", "TANH"]),
    ("leaky_relu", ["LEAKY_RELU"]),
])
def test_non_relu_activations_convert_and_check_names_them(tmp_path, capsys, activation, offenders):
    path = write(tmp_path, quantize(conv_model(keras, activation), X))
    code, out, err = cli_run(capsys, "check", path)
    assert code == 1
    for op in offenders:
        assert f" {op}:" in out, out
    assert "CONV_2D" not in out and "FULLY_CONNECTED" not in out
    assert err.startswith("pea-tflite: error:") and err.count("\n") == 1


def test_fused_activations_come_from_op_options(k, tmp_path, capsys):
    L = k.layers
    model = k.Sequential([k.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                          L.DepthwiseConv2D(3, activation="relu6"), L.Flatten(), L.Dense(3)])
    data = quantize(model, X)
    labels = [op.label for op in inspect(data).operators]
    assert "CONV_2D[RELU]" in labels and "DEPTHWISE_CONV_2D[RELU6]" in labels
    assert "FULLY_CONNECTED[NONE]" in labels
    assert relu_only_violations(data, int8=True) == []
    code, out, _ = cli_run(capsys, "inspect", write(tmp_path, data))
    assert code == 0 and "CONV_2D[RELU]" in out and "in[INT8" in out
    code, out, _ = cli_run(capsys, "inspect", write(tmp_path, data), "--json")
    import json
    ops = json.loads(out)["operators"]
    assert {"type": "CONV_2D", "activation": "RELU"}.items() <= ops[0].items()


@pytest.mark.slow
def test_final_softmax_allowed_unless_strict_and_hidden_softmax_rejected(tmp_path, capsys):
    final = write(tmp_path, quantize(conv_model(keras, "relu", keras.layers.Softmax()), X), "f.tflite")
    assert cli_run(capsys, "check", final, "--int8")[0] == 0
    code, out, _ = cli_run(capsys, "check", final, "--strict")
    assert code == 1 and "SOFTMAX" in out
    hidden = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(5),
                               keras.layers.Softmax(), keras.layers.Dense(3)])
    violations = relu_only_violations(quantize(hidden, X))
    assert [v.type for v in violations] == ["SOFTMAX"]


def test_int8_flag_rejects_float_compute(tmp_path, capsys):
    model = conv_model(keras, "relu")
    model.export(str(tmp_path / "sm"), verbose=False)
    float_file = write(tmp_path, tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert())
    assert cli_run(capsys, "check", float_file)[0] == 0
    code, out, _ = cli_run(capsys, "check", float_file, "--int8")
    assert code == 1 and "op 0 CONV_2D[RELU]: float compute (FLOAT32)" in out
    assert " SHAPE:" not in out


def test_float_io_keeps_quantize_dequantize_at_the_edges():
    data = quantize(conv_model(keras, "relu"), X, io="float")
    ops = [op.type for op in inspect(data).operators]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert relu_only_violations(data, int8=True) == []


def test_gating_built_from_allowed_ops_is_rejected():
    """x * relu6(x + 3) / 6 uses only allowed op types; the product of two activations fails, and
    is no channel gate (its gate has a value per position): --allow_gates does not pass it."""
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inp)
    gate = keras.layers.ReLU(max_value=6.0)(keras.layers.Rescaling(1.0, offset=3.0)(x))
    y = keras.layers.Multiply()([x, gate])
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(y)))
    data = quantize(model, X)
    for allow_gates in (False, True):
        bad = relu_only_violations(data, allow_gates=allow_gates)
        assert {v.type for v in bad} & {"MUL", "HARD_SWISH"} and not any(v.gate for v in bad)


def squeeze_excite(k, gate):
    """A feature map times gate(1x1 convolutions of its global average), as in MobileNetV3."""
    L = k.layers
    inp = k.Input((8, 8, 1))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    s = L.Conv2D(4, 1)(L.Conv2D(2, 1, activation="relu")(L.GlobalAveragePooling2D(keepdims=True)(h)))
    return k.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(L.Multiply()([h, gate(L, s)]))))


def hard_sigmoid(L, s):
    return L.Rescaling(1 / 6)(L.ReLU(6.0)(L.Rescaling(1.0, offset=3.0)(s)))


@pytest.mark.slow
def test_channel_gates_are_named_and_pass_only_with_allow_gates(k, tmp_path, capsys):
    path = write(tmp_path, quantize(squeeze_excite(k, hard_sigmoid), X))
    code, out, err = cli_run(capsys, "check", path, "--int8")
    gate = re.fullmatch(r"op (\d+) MUL\[NONE\]: multiplies the feature map by relu6\(x \+ 3\) / 6 of its pooled "
                        r"channels \(.*--allow_gates accepts ReLU6 gates\)\n", out)
    assert code == 1 and gate, out
    at = gate.group(1)
    assert err == f"pea-tflite: error: {path}: not ReLU-only (1 offending operator: channel gate at op {at})\n"
    code, out, err = cli_run(capsys, "check", path, "--int8", "--allow_gates")
    assert (code, out, err) == (0, f"{path}: ReLU-only int8, with channel gate at op {at} (--allow_gates)\n", "")
    sigmoid = write(tmp_path, quantize(squeeze_excite(k, lambda L, s: L.Activation("sigmoid")(s)), X), "s.tflite")
    code, out, err = cli_run(capsys, "check", sigmoid, "--int8", "--allow_gates")
    assert code == 1 and re.search(r": multiplies the feature map by LOGISTIC \(op \d+\) of its pooled channels", out)
    assert re.fullmatch(r"pea-tflite: error: \S+: not ReLU-only \(2 offending operators: LOGISTIC, channel gate "
                        r"at op \d+\)\n", err)


def test_op_codes_read_from_deprecated_field_too():
    """Old files keep the op code only in deprecated_builtin_code (builtin_code = 0 = ADD)."""
    from ai_edge_litert import schema_py_generated as schema

    data = quantize(conv_model(keras, "relu"), X)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for oc in model.operatorCodes:
        assert oc.deprecatedBuiltinCode == oc.builtinCode  # all codes here are < 127
        oc.builtinCode = 0
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    old = bytes(builder.Output())
    assert [op.label for op in inspect(old).operators] == [op.label for op in inspect(data).operators]


def test_corrupt_and_missing_files_give_one_line_errors(tmp_path, capsys):
    garbage = write(tmp_path, b"\x00" * 4 + b"TFL3" + b"\xff" * 40, "corrupt.tflite")
    text = write(tmp_path, b"hello, not a model\n", "notes.tflite")
    for argv in (["check", tmp_path / "missing.tflite"], ["inspect", text], ["check", garbage],
                 ["run", garbage, "--data", "digits"]):
        code, _, err = cli_run(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("pea-tflite: error:") and err.count("\n") == 1, err


@pytest.mark.slow
def test_mobilenet_v3_squeeze_excite_blocks_are_channel_gates(k):
    """keras.applications' own blocks at 32x32: each gate on a map of several positions is named a
    channel gate; where the map is down to one position the block is x * relu6(f(x) + 3) / 6 of one
    vector, an elementwise product that fails with --allow_gates too; the minimalistic variant
    (no squeeze-excite, no hard-swish) is ReLU-only."""
    x = np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32)
    small = inspect(quantize(k.applications.MobileNetV3Small(
        (32, 32, 3), alpha=0.75, weights=None, include_preprocessing=False), x))
    gates = [v for v in relu_only_violations(small, int8=True) if v.gate]
    assert len(gates) == 6 and {v.type for v in gates} == {"MUL"}
    left = relu_only_violations(small, int8=True, allow_gates=True)
    assert {v.type for v in left} == {"HARD_SWISH", "MUL"} and not any(v.gate for v in left)
    products = [small.operators[v.index] for v in left if v.type == "MUL"]
    assert len(products) == 3 and all(small.tensors[t].shape[1:3] == (1, 1) for op in products for t in op.inputs)
    minimal = quantize(k.applications.MobileNetV3Large(
        (32, 32, 3), alpha=0.75, weights=None, minimalistic=True, include_preprocessing=False), x)
    assert relu_only_violations(minimal, int8=True) == []
