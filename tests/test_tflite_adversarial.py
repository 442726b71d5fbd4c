"""The ReLU-only proof against graphs built to fool it: nonlinearities made of allowed op types
(a reciprocal, a square, sigmoid from EXP/ADD/DIV, hard-swish from primitives, x @ x^T, a lookup
table, a sawtooth and a truncation from CASTs, a Heaviside step from ARG_MAX, leaky ReLUs from a
max over stacked copies), squeeze-excite channel gates, int16 activations and int32 arithmetic.
Each is converted here by the plain TFLite converter (no pea_keras step in between) and must get
the exact verdict below; the ReLU networks beside them (max pooling, global max pooling) pass."""
import flatbuffers
import numpy as np
import pytest
import tensorflow as tf
from fresh import pea_tflite

from pea_keras.tflite import inspect, relu_only_violations
from pea_keras.tflite.check import analyze, by_operator, verdict

W = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
TABLE = (np.linspace(-1, 1, 64) ** 2).astype(np.float32)
KERNEL, S1, S2 = (np.random.default_rng(2).standard_normal(s).astype(np.float32)
             for s in ((3, 3, 3, 4), (1, 1, 4, 2), (1, 1, 2, 4)))
IMAGE = (1, 8, 8, 3)


def dense(x):
    return tf.nn.relu(tf.matmul(x, W))


def conv(x):
    return tf.nn.relu(tf.nn.conv2d(x, KERNEL, 1, "SAME"))


def hard_swish(h):
    return (h / 6.0) * tf.nn.relu6(h + 3.0)  # in this order the converter leaves it unfused


def hard_sigmoid(t):
    return tf.nn.relu6(t + 3.0) / 6.0


def squeeze_excite(gate):
    """conv -> feature map h times gate(conv(relu(conv(mean of h)))) -> global average pool."""
    def fn(x):
        h = conv(x)
        s = tf.nn.relu(tf.nn.conv2d(tf.reduce_mean(h, [1, 2], keepdims=True), S1, 1, "VALID"))
        return tf.reduce_mean(h * gate(tf.nn.conv2d(s, S2, 1, "VALID")), [1, 2])
    return fn


def step(x):
    """A Heaviside step of each unit: the index of the larger of [0, h]."""
    h = tf.matmul(x, W)
    return tf.argmax(tf.stack([tf.zeros_like(h), h]), axis=0)


def sawtooth(x):
    h = dense(x)
    return h - tf.cast(tf.cast(h, tf.int32), tf.float32)


def leaky_by_pool(x):
    """max_pool over a (1, 8, 2, 1) map whose axis 2 stacks h and 0.2 h: a leaky ReLU."""
    h = tf.matmul(x, W)
    stacked = tf.reshape(tf.stack([h, 0.2 * h], -1), (1, 8, 2, 1))
    return tf.reshape(tf.nn.max_pool2d(stacked, (1, 2), (1, 2), "VALID"), (1, 8))


# name: (function of a (1, 16) float input, quantization: "int8", "int16x8" or None for float,
# and the input shape where it is not (1, 16))
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
    "sawtooth": (sawtooth, None),
    "sawtooth_int8": (sawtooth, "int8"),
    "truncation": (lambda x: tf.cast(tf.cast(dense(x), tf.int32), tf.float32), None),
    "floor": (lambda x: tf.floor(dense(x)), None),
    "select_leaky": (lambda x: (lambda h: tf.where(h > 0, h, 0.2 * h))(tf.matmul(x, W)), None),
    "step_inside": (lambda x: tf.matmul(tf.cast(step(x), tf.float32), W[:8]), None),
    "step_inside_int8": (lambda x: tf.matmul(tf.cast(step(x), tf.float32), W[:8]), "int8"),
    "step_output": (step, None),
    "step_output_int8": (step, "int8"),
    "leaky_by_reduce_max": (lambda x: (lambda h: tf.reduce_max(tf.stack([h, 0.2 * h]), axis=0))(
        tf.matmul(x, W)), "int8"),
    "leaky_by_max_pool": (leaky_by_pool, "int8"),
    "max_pool": (lambda x: tf.nn.max_pool2d(conv(x), 2, 2, "VALID"), "int8", IMAGE),
    "flat_input_max_pool": (lambda x: tf.nn.max_pool2d(conv(tf.reshape(x, IMAGE)), 2, 2, "VALID"), "int8",
                            (1, 192)),  # An image read as a vector, reshaped by the model.
    "global_max_pool": (lambda x: tf.reduce_max(conv(x), [1, 2]), "int8", IMAGE),
    "channel_max": (lambda x: tf.reduce_max(conv(x), -1), "int8", IMAGE),
    "gate_hard_sigmoid": (squeeze_excite(hard_sigmoid), "int8", IMAGE),
    "gate_sigmoid": (squeeze_excite(tf.sigmoid), "int8", IMAGE),
    "hard_swish_map": (lambda x: hard_swish(tf.nn.conv2d(x, KERNEL, 1, "SAME")), "int8", IMAGE),
}


def convert(fn, quantization, shape=(1, 16)):
    rng = np.random.default_rng(1)
    f = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    if quantization:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.standard_normal(shape).astype(np.float32)] for _ in range(32))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if quantization == "int16x8" else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adversarial")
    paths = {}
    for name, (fn, *how) in GRAPHS.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(convert(fn, *how))
    return paths


def ops(path):
    return [op.label for op in inspect(path).operators]


def lines(violations):
    return [f"{where}: {'; '.join(reasons)}" for where, reasons in by_operator(violations)]


SLOW = pytest.mark.slow  # More of the same console-script runs: the fast tier keeps one per rule.
DIVIDES_BY_X = "divides a constant by an activation (c / x is a reciprocal; only x / c is linear)"
PRODUCT = "multiplies two activations (x * x, or a gate like x * relu6(x + 3))"
UNKNOWN = "not ReLU-family and not a known linear op (nonlinearity or unknown op)"
TRUNCATES = "truncates FLOAT32 to INT32 (x - cast(cast(x, int32), float32) is a sawtooth)"
STEP_INSIDE = ("its index feeds the network: the position of a max is a step function (only a final ARG_MAX "
               "on the model output passes)")
MAXOUT = ("a max of different activations is a new nonlinearity (max(x, 0.2 x) is a leaky ReLU); only max "
          "pooling over the positions of one feature map is allowed")
GATE = ("multiplies the feature map by relu6(x + 3) / 6 of its pooled channels (a squeeze-excite gate: a "
        "product of activations, not a ReLU network; --allow_gates accepts ReLU6 gates)")


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
    assert ops(files["sawtooth"]) == ["FULLY_CONNECTED[RELU]", "CAST", "CAST", "SUB[NONE]"]
    assert ops(files["select_leaky"]) == ["FULLY_CONNECTED[NONE]", "GREATER", "MUL[NONE]", "SELECT"]
    assert ops(files["step_inside"]) == ["FULLY_CONNECTED[NONE]", "PACK", "ARG_MAX", "CAST",
                                         "FULLY_CONNECTED[NONE]"]
    assert ops(files["step_output_int8"]) == ["QUANTIZE", "FULLY_CONNECTED[NONE]", "PACK", "ARG_MAX"]
    assert ops(files["leaky_by_reduce_max"]) == ["QUANTIZE", "FULLY_CONNECTED[NONE]", "MUL[NONE]", "PACK",
                                                 "REDUCE_MAX", "DEQUANTIZE"]
    assert ops(files["leaky_by_max_pool"]) == ["QUANTIZE", "FULLY_CONNECTED[NONE]", "MUL[NONE]", "PACK",
                                               "RESHAPE", "MAX_POOL_2D[NONE]", "RESHAPE", "DEQUANTIZE"]
    assert ops(files["max_pool"]) == ["QUANTIZE", "CONV_2D[RELU]", "MAX_POOL_2D[NONE]", "DEQUANTIZE"]
    assert ops(files["flat_input_max_pool"]) == ["QUANTIZE", "RESHAPE", "CONV_2D[RELU]", "MAX_POOL_2D[NONE]",
                                                 "DEQUANTIZE"]
    assert ops(files["global_max_pool"]) == ops(files["channel_max"]) == [
        "QUANTIZE", "CONV_2D[RELU]", "REDUCE_MAX", "DEQUANTIZE"]
    assert ops(files["gate_hard_sigmoid"]) == ["QUANTIZE", "CONV_2D[RELU]", "MEAN", "CONV_2D[RELU]",
                                               "CONV_2D[RELU6]", "MUL[NONE]", "MUL[NONE]", "MEAN", "DEQUANTIZE"]
    assert ops(files["gate_sigmoid"])[4:7] == ["CONV_2D[NONE]", "LOGISTIC", "MUL[NONE]"]
    assert ops(files["hard_swish_map"]) == ["QUANTIZE", "CONV_2D[NONE]", "ADD[RELU6]", "MUL[NONE]", "MUL[NONE]",
                                            "DEQUANTIZE"]


@pytest.mark.parametrize("name, expected", [
    ("reciprocal", [f"op 3 DIV[NONE]: {DIVIDES_BY_X}"]),
    ("square", [f"op 2 MUL[NONE]: {PRODUCT}"]),
    ("hard_swish_primitives", [f"op 4 MUL[NONE]: {PRODUCT}"]),
    ("x_matmul_xT", ["op 2 FULLY_CONNECTED[NONE]: its weights are an activation, so it multiplies "
                     "two activations (like x @ y)"]),
    ("x_div_y", ["op 5 DIV[NONE]: divides an activation by an activation (x / y)"]),
    ("lookup_table", [f"op 1 CAST: {TRUNCATES}",
                      "op 4 GATHER: indexes by an activation (a lookup table can compute any function)"]),
    ("sawtooth", [f"op 1 CAST: {TRUNCATES}"]),
    ("truncation", [f"op 1 CAST: {TRUNCATES}"]),
    ("floor", ["op 1 FLOOR: rounds to integers (a step function)"]),
    ("select_leaky", ["op 1 GREATER: compares (a step function)",
                      "op 3 SELECT: chooses by a condition (a switch, like a Heaviside step)"]),
    ("step_inside", [f"op 2 ARG_MAX: {STEP_INSIDE}"]),
    ("leaky_by_reduce_max", [f"op 4 REDUCE_MAX: takes the max over axis 0 (stacked from 2 activations by op 3 "
                             f"PACK): {MAXOUT}"]),
    ("leaky_by_max_pool", [f"op 5 MAX_POOL_2D[NONE]: takes the max over axis 1 (the channels of op 1 "
                           f"FULLY_CONNECTED, a maxout) and axis 2 (stacked from 2 activations by op 3 PACK): "
                           f"{MAXOUT}"]),
    ("channel_max", [f"op 2 REDUCE_MAX: takes the max over axis 3 (the channels of op 1 CONV_2D, a maxout): "
                     f"{MAXOUT}"]),
    ("gate_hard_sigmoid", [f"op 6 MUL[NONE]: {GATE}"]),
    ("gate_sigmoid", [f"op 5 LOGISTIC: {UNKNOWN}",
                      "op 6 MUL[NONE]: multiplies the feature map by LOGISTIC (op 5) of its pooled channels: "
                      "only ReLU6 (hard-sigmoid) gates pass, with --allow_gates"]),
    ("hard_swish_map", [f"op 4 MUL[NONE]: {PRODUCT}"]),
    ("int16x8", []), ("relu_float", []), ("x_div_c", []), ("x_mul_c", []), ("c_mul_x", []),
    ("max_pool", []), ("flat_input_max_pool", []), ("global_max_pool", []), ("step_output", []),
    ("step_output_int8", []),
])
def test_exact_violations(files, name, expected):
    assert lines(relu_only_violations(files[name])) == expected


@pytest.mark.parametrize("name, strict, allow_gates, expected", [
    ("step_output", False, False, "ReLU-only, with final ARG_MAX at op 2"),
    ("step_output", True, False, "not ReLU-only (1 offending operator: ARG_MAX)"),
    ("gate_hard_sigmoid", False, False, "not ReLU-only (1 offending operator: channel gate at op 6)"),
    ("gate_hard_sigmoid", False, True, "ReLU-only, with channel gate at op 6 (--allow_gates)"),
    ("gate_sigmoid", False, True, "not ReLU-only (2 offending operators: LOGISTIC, channel gate at op 6)"),
    ("hard_swish_map", False, True, "not ReLU-only (1 offending operator: MUL)"),
    ("max_pool", True, False, "ReLU-only"),
])
def test_what_passes_outside_relu_networks_is_named(files, name, strict, allow_gates, expected):
    """A final ARG_MAX passes (named) unless --strict; a ReLU6 channel gate only with --allow_gates;
    a sigmoid gate and x * relu6(x + 3) / 6 on one tensor never."""
    proof = analyze(files[name], strict=strict, allow_gates=allow_gates)
    assert verdict(proof.violations, notes=proof.notes) == expected


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
    assert verdict(lookup_bad, int8=True) == ("not ReLU-only (2 offending operators: CAST, GATHER); not int8 "
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
    ("int16x8", [], 0, "ReLU-only", None),
    ("x_div_c", ["--int8"], 0, "ReLU-only int8", None),
    ("sawtooth", [], 1, [f"op 1 CAST: {TRUNCATES}"], "not ReLU-only (1 offending operator: CAST)"),
    ("step_output_int8", ["--int8"], 0, "ReLU-only int8, with final ARG_MAX at op 3", None),
    ("leaky_by_reduce_max", ["--int8", "--strict"], 1, None, "not ReLU-only (1 offending operator: REDUCE_MAX)"),
    ("gate_hard_sigmoid", ["--int8"], 1, [f"op 6 MUL[NONE]: {GATE}"],
     "not ReLU-only (1 offending operator: channel gate at op 6)"),
    ("gate_hard_sigmoid", ["--int8", "--allow_gates"], 0,
     "ReLU-only int8, with channel gate at op 6 (--allow_gates)", None),
    ("hard_swish_map", ["--int8", "--allow_gates"], 1, [f"op 4 MUL[NONE]: {PRODUCT}"],
     "not ReLU-only (1 offending operator: MUL)"),
    *(pytest.param(*case, marks=SLOW) for case in [
        ("sawtooth_int8", ["--int8"], 1, None,
         "not ReLU-only (1 offending operator: CAST); not int8 either: float compute and INT32 activations "
         "(4 operators)"),
        ("truncation", [], 1, [f"op 1 CAST: {TRUNCATES}"], "not ReLU-only (1 offending operator: CAST)"),
        ("step_inside", [], 1, [f"op 2 ARG_MAX: {STEP_INSIDE}"], "not ReLU-only (1 offending operator: ARG_MAX)"),
        ("step_inside_int8", ["--int8"], 1, None,
         "not ReLU-only (1 offending operator: ARG_MAX); not int8 either: float compute and INT64 activations "
         "(2 operators)"),
        ("step_output", [], 0, "ReLU-only, with final ARG_MAX at op 2", None),
        ("step_output_int8", ["--int8", "--strict"], 1, ["op 3 ARG_MAX: final ARG_MAX rejected by --strict"],
         "not ReLU-only (1 offending operator: ARG_MAX)"),
        ("leaky_by_max_pool", ["--int8"], 1, None, "not ReLU-only (1 offending operator: MAX_POOL_2D)"),
        ("max_pool", ["--int8", "--strict"], 0, "ReLU-only int8", None),
        ("global_max_pool", ["--int8"], 0, "ReLU-only int8", None),
        ("gate_sigmoid", ["--int8", "--allow_gates"], 1, None,
         "not ReLU-only (2 offending operators: LOGISTIC, channel gate at op 6)"),
    ]),
])
def test_console_script_verdicts(files, name, flags, code, stdout, stderr):
    result = pea_tflite("check", files[name], *flags)
    assert result.returncode == code, result.stderr
    lines = result.stdout.splitlines()
    expected = [f"{files[name]}: {stdout}"] if code == 0 else stdout
    if expected is not None:  # Without --int8 a float file's last line says it is not for microcontrollers.
        assert lines[:len(expected)] == expected
        assert all("not for microcontrollers" in line for line in lines[len(expected):]), lines
    if code == 0:
        assert result.stderr == ""
        return
    assert result.stderr == f"pea-tflite: error: {files[name]}: {stderr}\n"
