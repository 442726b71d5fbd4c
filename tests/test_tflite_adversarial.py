"""The ReLU-only proof against graphs built to fool it: nonlinearities made of allowed op types
(a reciprocal, a square, sigmoid from EXP/ADD/DIV, hard-swish from primitives, x @ x^T, a lookup
table), int16 activations and int32 arithmetic. Each is converted here by the plain TFLite
converter (no pea_keras step in between) and must get the exact verdict below."""
import flatbuffers
import numpy as np
import pytest
import tensorflow as tf
from tflite_cli import pea_tflite

from pea_keras.tflite import inspect, relu_only_violations
from pea_keras.tflite.check import by_operator, verdict

W = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
TABLE = (np.linspace(-1, 1, 64) ** 2).astype(np.float32)


def dense(x):
    return tf.nn.relu(tf.matmul(x, W))


def hard_swish(h):
    return (h / 6.0) * tf.nn.relu6(h + 3.0)  # in this order the converter leaves it unfused


# name: (function of a (1, 16) float input, quantization: "int8", "int16x8" or None for float)
GRAPHS = {
    "reciprocal": (lambda x: 1.0 / (dense(x) + 1.0), "int8"),
    "square": (lambda x: (lambda h: h * h)(dense(x)), "int8"),
    "sigmoid_exp_add_div": (lambda x: 2.0 / (2.0 + 2.0 * tf.exp(-tf.matmul(x, W))), "int8"),
    "hard_swish_primitives": (lambda x: hard_swish(tf.matmul(x, W)), "int8"),
    "x_matmul_xT": (lambda x: (lambda h: tf.matmul(h, h, transpose_b=True))(dense(x)), "int8"),
    "x_div_y": (lambda x: (lambda h: h[:, :4] / (h[:, 4:] + 1.0))(dense(x)), "int8"),
    "lookup_table": (lambda x: tf.gather(TABLE, tf.clip_by_value(tf.cast(dense(x), tf.int32), 0, 63)),
                     None),
    "int16x8": (lambda x: dense(x) + 1.0, "int16x8"),
    "relu_float": (dense, None),
    "x_div_c": (lambda x: dense(x) / 4.0, "int8"),
    "x_mul_c": (lambda x: dense(x) * 3.0, "int8"),
    "c_mul_x": (lambda x: 3.0 * dense(x), "int8"),
}


def convert(fn, quantization):
    rng = np.random.default_rng(1)
    f = tf.function(fn, input_signature=[tf.TensorSpec((1, 16), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    if quantization:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.standard_normal((1, 16)).astype(np.float32)] for _ in range(32))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if quantization == "int16x8" else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adversarial")
    paths = {}
    for name, (fn, quantization) in GRAPHS.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(convert(fn, quantization))
    return paths


def ops(path):
    return [op.label for op in inspect(path).operators]


def lines(violations):
    return [f"{where}: {'; '.join(reasons)}" for where, reasons in by_operator(violations)]


DIVIDES_BY_X = "divides a constant by an activation (c / x is a reciprocal; only x / c is linear)"
PRODUCT = "multiplies two activations (x * x, or a gate like x * relu6(x + 3))"
UNKNOWN = "not ReLU-family and not a known linear op (nonlinearity or unknown op)"


def test_what_the_converter_built(files):
    """The verdicts below are about these exact graphs: a converter that fuses differently
    (LOGISTIC, HARD_SWISH) changes what is being tested, so say so here first."""
    assert ops(files["reciprocal"]) == ["QUANTIZE", "FULLY_CONNECTED[RELU]", "ADD[NONE]", "DIV[NONE]",
                                        "DEQUANTIZE"]
    assert ops(files["square"]) == ["QUANTIZE", "FULLY_CONNECTED[RELU]", "MUL[NONE]", "DEQUANTIZE"]
    assert {"EXP", "ADD[NONE]", "DIV[NONE]"} <= set(ops(files["sigmoid_exp_add_div"]))
    assert ops(files["hard_swish_primitives"]) == ["QUANTIZE", "FULLY_CONNECTED[NONE]", "ADD[RELU6]",
                                                   "MUL[NONE]", "MUL[NONE]", "DEQUANTIZE"]
    assert ops(files["x_matmul_xT"]) == ["QUANTIZE", "FULLY_CONNECTED[RELU]", "FULLY_CONNECTED[NONE]",
                                         "DEQUANTIZE"]
    assert ops(files["lookup_table"]) == ["FULLY_CONNECTED[RELU]", "CAST", "MINIMUM", "MAXIMUM", "GATHER"]
    assert ops(files["x_div_c"]) == ops(files["x_mul_c"]) == ops(files["c_mul_x"]) == [
        "QUANTIZE", "FULLY_CONNECTED[RELU]", "MUL[NONE]", "DEQUANTIZE"]


@pytest.mark.parametrize("name, expected", [
    ("reciprocal", [f"op 3 DIV[NONE]: {DIVIDES_BY_X}"]),
    ("square", [f"op 2 MUL[NONE]: {PRODUCT}"]),
    ("hard_swish_primitives", [f"op 4 MUL[NONE]: {PRODUCT}"]),
    ("x_matmul_xT", ["op 2 FULLY_CONNECTED[NONE]: its weights are an activation, so it multiplies "
                     "two activations (like x @ y)"]),
    ("x_div_y", ["op 5 DIV[NONE]: divides an activation by an activation (x / y)"]),
    ("lookup_table", ["op 4 GATHER: indexes by an activation (a lookup table can compute any function)"]),
    ("int16x8", []), ("relu_float", []), ("x_div_c", []), ("x_mul_c", []), ("c_mul_x", []),
])
def test_exact_violations(files, name, expected):
    assert lines(relu_only_violations(files[name])) == expected


def test_sigmoid_from_primitives_fails_on_exp_and_the_reciprocal(files):
    bad = relu_only_violations(files["sigmoid_exp_add_div"])
    assert [(v.type, v.reason) for v in bad] == [("EXP", UNKNOWN), ("DIV", DIVIDES_BY_X)]
    assert verdict(bad) == "not ReLU-only (2 offending operators: DIV, EXP)"
    typed = relu_only_violations(files["sigmoid_exp_add_div"], int8=True)
    assert verdict(typed, int8=True) == ("not ReLU-only (2 offending operators: DIV, EXP); not int8 "
                                         "either: float compute (3 operators)")


def test_int8_names_every_non_int8_activation_and_its_type(files):
    int16 = relu_only_violations(files["int16x8"], int8=True)
    assert lines(int16) == [f"op {i} {label}: INT16 activations in an int8 model (int8 compute only)"
                            for i, label in enumerate(ops(files["int16x8"]))]
    assert verdict(int16, int8=True) == "ReLU-only, but INT16 activations (4 offending operators)"
    lookup_bad = relu_only_violations(files["lookup_table"], int8=True)
    assert verdict(lookup_bad, int8=True) == ("not ReLU-only (1 offending operator: GATHER); not int8 "
                                              "either: float compute and INT32 activations (5 operators)")
    lookup = lines(lookup_bad)
    assert lookup[2:4] == ["op 2 MINIMUM: INT32 activations in an int8 model (int8 compute only)",
                           "op 3 MAXIMUM: INT32 activations in an int8 model (int8 compute only)"]
    for name in ("x_div_c", "x_mul_c", "c_mul_x"):
        assert relu_only_violations(files[name], int8=True) == [], name


def test_divisor_position_decides(files):
    """x / c is linear, c / x is not: the reciprocal's DIV with its operands swapped passes."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(files["reciprocal"].read_bytes(), 0)
    div = model.subgraphs[0].operators[3]
    div.inputs = list(reversed(div.inputs))
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    swapped = bytes(builder.Output())
    assert ops(swapped)[3] == "DIV[NONE]"
    assert relu_only_violations(swapped, int8=True) == []


@pytest.mark.parametrize("name, flags, code, stdout, stderr", [
    ("reciprocal", ["--int8"], 1, [f"op 3 DIV[NONE]: {DIVIDES_BY_X}"],
     "not ReLU-only (1 offending operator: DIV)"),
    ("relu_float", ["--int8"], 1, ["op 0 FULLY_CONNECTED[RELU]: float compute (FLOAT32) in an int8 model"],
     "ReLU-only, but float compute (1 offending operator)"),
    ("int16x8", ["--int8"], 1, None, "ReLU-only, but INT16 activations (4 offending operators)"),
    ("int16x8", [], 0, None, None),
    ("x_div_c", ["--int8"], 0, None, None),
])
def test_console_script_verdicts(files, name, flags, code, stdout, stderr):
    result = pea_tflite("check", files[name], *flags)
    assert result.returncode == code, result.stderr
    if code == 0:
        assert result.stdout == f"{files[name]}: ReLU-only{' int8' if flags else ''}\n"
        assert result.stderr == ""
        return
    if stdout is not None:
        assert result.stdout.splitlines() == stdout
    assert result.stderr == f"pea-tflite: error: {files[name]}: {stderr}\n"
