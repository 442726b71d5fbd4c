"""The TensorFlow Lite Micro kit of one .tflite file: everything a firmware build needs.

For a file with stem ``S`` (names pass through ``c_array.c_identifier``):

- ``S_model_data.cc/.h``: ``alignas(16) const unsigned char g_S_model_data[]`` and its size;
- ``S_op_resolver.h``: ``S_model::RegisterOps`` adds exactly the file's operator types to a
  ``tflite::MicroMutableOpResolver<S_model::kNumOps>``, with the int8-only kernels where every
  instance of the op is int8 (CMSIS-NN and other optimized kernels then link only those);
- ``S_model_settings.h``: arena size (measured by TFLM plus a stated margin), input and output
  shape, dtype, scale and zero point, class count;
- ``S_test_data.cc/.h``: golden inputs (real samples, quantized here) and the outputs TFLM's
  reference kernels compute for them, so the firmware can prove it reproduces them bit for bit.

Only the resolver header needs TFLM headers; the data files compile with any C++11 compiler.
``micro/main.cc`` (printed by ``pea-tflite micro-main``) runs a kit on a device. Everything is
computed before the first file is written, and the files are written all or none
(pea_keras.files.atomic_write_many).
"""

import math
import os

import numpy as np

from pea_keras.files import atomic_write_many
from pea_keras.tflite import c_array
from pea_keras.tflite.errors import TFLiteError
from pea_keras.tflite.model_info import inspect, read_bytes

# Margin on the measured arena: the measurement is on a 64-bit host with the reference kernels;
# a 32-bit MCU needs less, but optimized kernels (CMSIS-NN) ask for extra scratch buffers.
ARENA_MARGIN_FRACTION = 0.125
ARENA_MARGIN_MIN_BYTES = 1024
GOLDEN_SAMPLES = 3

_C_TYPES = {"INT8": "int8_t", "UINT8": "uint8_t", "INT16": "int16_t", "INT32": "int32_t",
            "FLOAT32": "float"}
_NP_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
             "FLOAT32": np.float32}
# TFLM ops with an int8-only registration (Register_<OP>_INT8) in its reference and optimized
# kernel libraries, and the kernel header declaring it.
INT8_REGISTRATIONS = {
    "ADD": "add.h", "AVERAGE_POOL_2D": "pooling.h", "BATCH_MATMUL": "batch_matmul.h",
    "CONV_2D": "conv.h", "DEPTHWISE_CONV_2D": "depthwise_conv.h",
    "FULLY_CONNECTED": "fully_connected.h", "MAX_POOL_2D": "pooling.h",
    "MAXIMUM": "maximum_minimum.h", "MINIMUM": "maximum_minimum.h", "MUL": "mul.h",
    "PAD": "pad.h", "SOFTMAX": "softmax.h", "SVDF": "svdf.h", "TRANSPOSE": "transpose.h",
    "TRANSPOSE_CONV": "transpose_conv.h",
}
KIT_SUFFIXES = ("_model_data.cc", "_model_data.h", "_op_resolver.h", "_model_settings.h",
                "_test_data.cc", "_test_data.h")


def kit_paths(directory, stem):
    """The files ``write_micro_kit`` writes for ``stem`` in ``directory``."""
    ident = c_array.c_identifier(stem)
    return tuple(os.path.join(directory, ident + s) for s in KIT_SUFFIXES)


def namespace(stem):
    return c_array.c_identifier(stem) + "_model"


def add_method(op_type):
    """MicroMutableOpResolver's method for a builtin op (TFLM's own rule: CONV_2D -> AddConv2D)."""
    parts = op_type.split("_")
    name = "".join(p[0].upper() + p[1:].lower() if len(p) > 1 and p[0].isalpha() else p.upper()
                   for p in parts)
    return "Add" + name.replace("Lstm", "LSTM").replace("BatchMatmul", "BatchMatMul")


def _int8_only(info, op_type):
    """True if every instance reads and writes int8 tensors (constants: int8 weights, int32 biases)."""
    for op in info.operators:
        if op.type != op_type:
            continue
        tensors = info.subgraphs[op.subgraph][0]
        for i in op.inputs:
            if i < 0:
                continue
            t = tensors[i]
            if t.dtype != "INT8" and not (t.constant and t.dtype == "INT32"):
                return False
        if any(tensors[i].dtype != "INT8" for i in op.outputs if i >= 0):
            return False
    return True


def registrations(info):
    """[(op type, C++ registration or None for the default, kernel header)] in file order."""
    seen = []
    for op in info.operators:
        if op.type.startswith("CUSTOM:"):
            raise TFLiteError(f"custom operator '{op.type[7:]}' has no TensorFlow Lite Micro "
                              "registration pea-tflite can name; register it yourself")
        if op.type not in seen:
            seen.append(op.type)
    out = []
    for t in seen:
        if t in INT8_REGISTRATIONS and _int8_only(info, t):
            out.append((t, f"tflite::Register_{t}_INT8()", INT8_REGISTRATIONS[t]))
        else:
            out.append((t, None, None))
    return out


def _guard(stem, what):
    return f"PEA_{c_array.c_identifier(stem).upper()}_{what}_H_"


def op_resolver_header(info, stem, source_name="the model"):
    """``<stem>_op_resolver.h``: a function registering exactly the file's op types."""
    regs = registrations(info)
    guard, ns = _guard(stem, "OP_RESOLVER"), namespace(stem)
    kernels = sorted({h for _, _, h in regs if h})
    counts = info.op_histogram()
    lines = [f"// Generated by pea-tflite from {source_name}. Do not edit.",
             f"#ifndef {guard}", f"#define {guard}", "",
             '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
             *(f'#include "tensorflow/lite/micro/kernels/{h}"' for h in kernels), "",
             f"namespace {ns} {{", "",
             "// One registration per operator type of the model"
             + (" (int8-only kernels where every instance is int8)" if kernels else "") + ":",
             "// " + ", ".join(f"{t} x{counts[t]}" for t, _, _ in regs) + ".",
             f"constexpr int kNumOps = {len(regs)};",
             "using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;", "",
             "inline TfLiteStatus RegisterOps(OpResolver& resolver) {"]
    for t, reg, _ in regs:
        lines.append(f"  if (resolver.{add_method(t)}({reg or ''}) != kTfLiteOk) return kTfLiteError;")
    lines += ["  return kTfLiteOk;", "}", "", f"}}  // namespace {ns}", "", f"#endif  // {guard}", ""]
    return "\n".join(lines)


def _io_tensor(info):
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise TFLiteError(f"the TensorFlow Lite Micro kit needs one input and one output, the file "
                          f"has {len(info.inputs)} and {len(info.outputs)}")
    for t in (*info.inputs, *info.outputs):
        if t.dtype not in _C_TYPES:
            raise TFLiteError(f"tensor '{t.name}' is {t.dtype}; the kit handles "
                              + ", ".join(_C_TYPES))
        if len(t.scale) > 1:
            raise TFLiteError(f"tensor '{t.name}' is quantized per channel; the kit needs one scale")
    return info.inputs[0], info.outputs[0]


def arena_with_margin(measured):
    margin = max(ARENA_MARGIN_MIN_BYTES, math.ceil(measured * ARENA_MARGIN_FRACTION))
    return (measured + margin + 15) // 16 * 16


def _float(x):
    text = f"{float(np.float32(x)):.9g}"
    return text + ("f" if any(c in text for c in ".e") else ".0f")


def _tensor_lines(kind, t):
    shape = [max(int(d), 1) for d in t.shape]
    scale = t.scale[0] if t.scale else 0.0
    zp = t.zero_point[0] if t.zero_point else 0
    return [f"// {kind} tensor '{t.name}': {t.dtype} {list(t.shape)}"
            + ("" if t.scale else " (not quantized)") + ".",
            f"using {kind}Type = {_C_TYPES[t.dtype]};",
            f"constexpr int k{kind}Dims = {len(shape)};",
            f"constexpr int k{kind}Shape[k{kind}Dims] = {{{', '.join(map(str, shape))}}};",
            f"constexpr int k{kind}Size = {math.prod(shape)};  // elements",
            f"constexpr float k{kind}Scale = {_float(scale)};  // real = scale * (q - zero_point)",
            f"constexpr int k{kind}ZeroPoint = {int(zp)};"]


def model_settings_header(info, stem, arena_measured, source_name="the model"):
    """``<stem>_model_settings.h``: arena size and I/O tensor parameters; plain C++11."""
    inp, out = _io_tensor(info)
    guard, ns = _guard(stem, "MODEL_SETTINGS"), namespace(stem)
    arena = arena_with_margin(arena_measured)
    classes = max(int(out.shape[-1]), 1) if out.shape else 1
    return "\n".join([
        f"// Generated by pea-tflite from {source_name}. Do not edit.",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
        f"namespace {ns} {{", "",
        f"// Tensor arena: {arena_measured} bytes measured with TensorFlow Lite Micro (reference kernels,",
        f"// 64-bit host), plus a margin of max({ARENA_MARGIN_MIN_BYTES} bytes, "
        f"{100 * ARENA_MARGIN_FRACTION:g}%) for optimized kernels'",
        "// scratch buffers, rounded up to 16. A 32-bit MCU with the reference kernels needs less.",
        f"constexpr int kArenaMeasuredBytes = {arena_measured};",
        f"constexpr int kTensorArenaSize = {arena};", "",
        f"constexpr int kModelBytes = {info.size_bytes};", "",
        *_tensor_lines("Input", inp), "",
        *_tensor_lines("Output", out), "",
        "// Scores per position in the last output dimension (classes).",
        f"constexpr int kNumClasses = {classes};", "",
        f"}}  // namespace {ns}", "", f"#endif  // {guard}", ""])


def quantize_inputs(x, tensor):
    """Golden inputs in the input tensor's dtype: values already of that dtype pass unchanged,
    others (floats as the Keras model takes them) are quantized with its scale and zero point."""
    dtype = _NP_TYPES[tensor.dtype]
    x = np.asarray(x)
    shape = tuple(max(int(d), 1) for d in tensor.shape[1:])
    if len(x) == 0 or x.shape[1:] != shape:
        raise TFLiteError(f"golden inputs shaped {x.shape} do not match the model input "
                          f"(N, {', '.join(map(str, shape))})")
    if x.dtype == dtype or not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    scale, zp = (tensor.scale[0], tensor.zero_point[0]) if tensor.scale else (1.0, 0)
    info = np.iinfo(dtype)
    return np.clip(np.round(x.astype(np.float32) / scale + zp), info.min, info.max).astype(dtype)


def _c_value(t):
    if t.dtype == "FLOAT32":
        return _float
    return str


def test_data_files(info, stem, q_inputs, outputs, source_name="the model"):
    """(``<stem>_test_data.h``, ``<stem>_test_data.cc``) texts: golden inputs and outputs."""
    inp, out = _io_tensor(info)
    ident, ns = c_array.c_identifier(stem), namespace(stem)
    guard = _guard(stem, "TEST_DATA")
    n = len(q_inputs)
    header = "\n".join([
        f"// Generated by pea-tflite from {source_name}. Do not edit.",
        f"#ifndef {guard}", f"#define {guard}", "",
        f'#include "{ident}_model_settings.h"', "",
        f"namespace {ns} {{", "",
        "// Real samples, quantized, and the outputs TensorFlow Lite Micro's reference kernels",
        "// compute for them: a build that reproduces them bit for bit runs the model correctly.",
        f"constexpr int kNumTestSamples = {n};",
        "extern const InputType kTestInputs[kNumTestSamples][kInputSize];",
        "extern const OutputType kTestOutputs[kNumTestSamples][kOutputSize];", "",
        f"}}  // namespace {ns}", "", f"#endif  // {guard}", ""])
    body = [f"// Generated by pea-tflite from {source_name}. Do not edit.",
            f'#include "{ident}_test_data.h"', "", f"namespace {ns} {{", ""]
    for name, values, t in (("kTestInputs", q_inputs, inp), ("kTestOutputs", outputs, out)):
        size = "kInputSize" if name == "kTestInputs" else "kOutputSize"
        kind = "InputType" if name == "kTestInputs" else "OutputType"
        body.append(f"alignas(16) const {kind} {name}[kNumTestSamples][{size}] = {{")
        for row in np.asarray(values).reshape(n, -1):
            body += ["  {", *("  " + line for line in _row_lines(row, t)), "  },"]
        body += ["};", ""]
    body += [f"}}  // namespace {ns}", ""]
    return header, "\n".join(body)


def _row_lines(row, tensor):
    return c_array.format_values(row.tolist(), per_line=16, fmt=_c_value(tensor))


def micro_kit_files(tflite, directory, stem, golden_inputs, source_name=None):
    """{path: bytes} of the kit of ``tflite`` (bytes or a path) in ``directory`` under ``stem``;
    computes everything (TFLM runs the golden inputs in a child process), writes nothing."""
    data = read_bytes(tflite)
    if source_name is None:
        source_name = os.path.basename(os.fspath(tflite)) if isinstance(tflite, (str, os.PathLike)) \
            else f"{c_array.c_identifier(stem)}.tflite"
    info = inspect(data)
    inp, out = _io_tensor(info)
    resolver = op_resolver_header(info, stem, source_name)
    q = quantize_inputs(golden_inputs, inp)
    from pea_keras.tflite.runtimes import micro_run

    outputs, arena = micro_run(data, q)
    if arena is None:
        raise TFLiteError("TensorFlow Lite Micro did not report its arena size")
    outputs = np.asarray(outputs).astype(_NP_TYPES[out.dtype]).reshape(len(q), -1)
    settings = model_settings_header(info, stem, arena, source_name)
    test_h, test_cc = test_data_files(info, stem, q.reshape(len(q), -1), outputs, source_name)
    texts = [c_array.c_source(data, stem, source_name), c_array.c_header(stem), resolver, settings,
             test_cc, test_h]
    return {path: text.encode() for path, text in zip(kit_paths(directory, stem), texts)}


def write_micro_kit(tflite, directory, stem, golden_inputs, source_name=None):
    """Write the kit of ``tflite`` (bytes or a path) into ``directory`` under ``stem``.

    ``golden_inputs``: a few real samples (floats as the Keras model takes them, or already
    in the input dtype). TFLM runs them in a child process; the arena is measured on the way.
    Every file or none is written (an earlier kit stays whole). Returns the written paths.
    """
    contents = micro_kit_files(tflite, directory, stem, golden_inputs, source_name)
    os.makedirs(directory, exist_ok=True)
    atomic_write_many(contents)
    return kit_paths(directory, stem)
