"""The TensorFlow Lite Micro kit of one .tflite file: everything a firmware build needs.

For a file with stem ``S``, named ``N = c_array.c_identifier(S)`` (every character but an ASCII
letter, digit or ``_`` becomes ``_``; a leading digit gets an ``m``): ``N`` is what ``main.cc``
takes as ``-DPEA_MODEL=N``, and every file and symbol carries it:

- ``N_model_data.cc/.h``: ``alignas(16) const unsigned char g_N_model_data[]`` and its size;
- ``N_op_resolver.h``: ``N_model::RegisterOps`` adds exactly the file's operator types to a
  ``tflite::MicroMutableOpResolver<N_model::kNumOps>``, with the int8-only kernels where every
  instance of the op is int8 (CMSIS-NN and other optimized kernels then link only those;
  ``op_resolver.py``);
- ``N_model_settings.h``: arena size (measured by TFLM plus a stated margin), each input's and
  output's shape, dtype, scale and zero point (``Input``/``Output`` names, numbered ``Input0``,
  ``Input1``, ... on a side with several tensors), class count of a lone output;
- ``N_test_data.cc/.h``: golden inputs (real samples, quantized here) and the outputs TFLM's
  reference kernels compute for them, per tensor, so the firmware can prove it reproduces them
  bit for bit.

Only the resolver header needs TFLM headers; the data files compile with any C++11 compiler.
``micro/main.cc`` (printed by ``pea-tflite micro-main``) runs a kit on a device. Everything is
computed before the first file is written, and the files are written all or none
(pea_keras.files.atomic_write_many).
"""

import math
import os

import numpy as np

from pea_keras.errors import TFLiteError
from pea_keras.files import atomic_write_many
from pea_keras.tflite import c_array
from pea_keras.tflite.inspection import inspect, read_bytes
from pea_keras.tflite.op_resolver import op_resolver_header

# Margin on the measured arena: the measurement is on a 64-bit host with the reference kernels;
# a 32-bit MCU needs less, but optimized kernels (CMSIS-NN) ask for extra scratch buffers.
ARENA_MARGIN_FRACTION = 0.125
ARENA_MARGIN_MIN_BYTES = 1024
GOLDEN_SAMPLES = 3

_C_TYPES = {"INT8": "int8_t", "UINT8": "uint8_t", "INT16": "int16_t", "INT32": "int32_t",
            "FLOAT32": "float"}
_NP_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
             "FLOAT32": np.float32}
KIT_SUFFIXES = ("_model_data.cc", "_model_data.h", "_op_resolver.h", "_model_settings.h",
                "_test_data.cc", "_test_data.h")


def kit_paths(directory, stem):
    """The files ``write_micro_kit`` writes for ``stem`` in ``directory``."""
    ident = c_array.c_identifier(stem)
    return tuple(os.path.join(directory, ident + s) for s in KIT_SUFFIXES)


def build_line(stem):
    """What to tell ``main.cc`` about the kit of ``stem``: its ``-DPEA_MODEL`` value, and how the
    name was spelled when the stem is not a C identifier."""
    ident = c_array.c_identifier(stem)
    spelled = "" if ident == os.path.basename(os.fspath(stem)) else f" (the stem {stem} as a C identifier)"
    return f"TFLite Micro kit {ident}{spelled}: build main.cc with -DPEA_MODEL={ident}"


def _io_tensors(info):
    """(inputs, outputs) of a file the kit can describe: each a type it has a C type for, one scale."""
    if not info.inputs or not info.outputs:
        raise TFLiteError(f"the TensorFlow Lite Micro kit needs inputs and outputs, the file has "
                          f"{len(info.inputs)} and {len(info.outputs)}")
    for t in (*info.inputs, *info.outputs):
        if t.dtype not in _C_TYPES:
            raise TFLiteError(f"tensor '{t.name}' is {t.dtype}; the kit handles "
                              + ", ".join(_C_TYPES))
        if len(t.scale) > 1:
            raise TFLiteError(f"tensor '{t.name}' is quantized per channel; the kit needs one scale")
    return info.inputs, info.outputs


def _prefixes(kind, tensors):
    """The C name of each tensor: ``Input`` for a lone input, ``Input0``, ``Input1``, ... for several."""
    return [kind] if len(tensors) == 1 else [f"{kind}{i}" for i in range(len(tensors))]


def _arrays(kind, tensors):
    """The golden-data array of each tensor: ``kTestInputs``, or ``kTestInputs0``, ... for several."""
    return [f"kTest{kind}s"] if len(tensors) == 1 else [f"kTest{kind}s{i}" for i in range(len(tensors))]


def arena_with_margin(measured):
    margin = max(ARENA_MARGIN_MIN_BYTES, math.ceil(measured * ARENA_MARGIN_FRACTION))
    return (measured + margin + 15) // 16 * 16


def _float(x):
    text = f"{float(np.float32(x)):.9g}"
    return text + ("f" if any(c in text for c in ".e") else ".0f")


def _tensor_lines(kind, t, signature_name=None):
    shape = [max(int(d), 1) for d in t.shape]
    scale = t.scale[0] if t.scale else 0.0
    zp = t.zero_point[0] if t.zero_point else 0
    return ["", f"// {kind} tensor '{t.name}'" + (f" (signature name '{signature_name}')" if signature_name else "")
            + f": {t.dtype} {list(t.shape)}" + ("" if t.scale else " (not quantized)") + ".",
            f"using {kind}Type = {_C_TYPES[t.dtype]};",
            f"constexpr int k{kind}Dims = {len(shape)};",
            f"constexpr int k{kind}Shape[k{kind}Dims] = {{{', '.join(map(str, shape))}}};",
            f"constexpr int k{kind}Size = {math.prod(shape)};  // elements",
            f"constexpr float k{kind}Scale = {_float(scale)};  // real = scale * (q - zero_point)",
            f"constexpr int k{kind}ZeroPoint = {int(zp)};"]


def margin_text():
    """The margin ``arena_with_margin`` adds, in words."""
    return f"max({ARENA_MARGIN_MIN_BYTES} bytes, {100 * ARENA_MARGIN_FRACTION:g}%)"


def arena_comment_tflm(measured):
    """Where the arena size of a kit measured by TFLite Micro comes from (C++ comment lines)."""
    return [f"// Tensor arena: {measured} bytes measured with TensorFlow Lite Micro (reference kernels,",
            f"// 64-bit host), plus a margin of {margin_text()} for optimized kernels'",
            "// scratch buffers, rounded up to 16. A 32-bit MCU with the reference kernels needs less."]


def _c_string(text):
    """A C string literal of `text`'s UTF-8 bytes (non-ASCII bytes as octal escapes)."""
    chars = ("\\" + chr(b) if chr(b) in '"\\' else chr(b) if 32 <= b < 127 else f"\\{b:03o}"
             for b in str(text).encode())
    return '"' + "".join(chars) + '"'


def model_settings_header(info, stem, arena_measured, source_name="the model", arena_comment=None,
                          class_names=()):
    """``<stem>_model_settings.h``: arena size, I/O tensor parameters and, for a lone output, its
    class count and, when known, the class name of each output index (``kClassNames``); plain
    C++11. ``arena_comment``: where ``arena_measured`` comes from (default: measured by TFLite Micro)."""
    inputs, outputs = _io_tensors(info)
    guard, ns = c_array.include_guard(stem, "MODEL_SETTINGS"), c_array.namespace(stem)
    arena = arena_with_margin(arena_measured)
    out = outputs[0]
    classes = max(int(out.shape[-1]), 1) if out.shape else 1
    lines = [
        f"// Generated by pea-tflite from {source_name}. Do not edit.",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
        f"namespace {ns} {{", "",
        *(arena_comment or arena_comment_tflm(arena_measured)),
        f"constexpr int kArenaMeasuredBytes = {arena_measured};",
        f"constexpr int kTensorArenaSize = {arena};", "",
        f"constexpr int kModelBytes = {info.size_bytes};", "",
        "// Tensors in the interpreter's order: input(i), output(i).",
        f"constexpr int kNumInputs = {len(inputs)};",
        f"constexpr int kNumOutputs = {len(outputs)};"]
    for kind, tensors in (("Input", inputs), ("Output", outputs)):
        for prefix, t in zip(_prefixes(kind, tensors), tensors):
            lines += _tensor_lines(prefix, t, info.signature_names.get(t.index))
    if len(outputs) == 1:
        lines += ["", "// Scores per position in the last output dimension (classes).",
                  f"constexpr int kNumClasses = {classes};"]
        if class_names and len(class_names) == classes:
            lines += ["", "// Output index -> class name (the training data's label order).",
                      f"constexpr const char* kClassNames[kNumClasses] = "
                      f"{{{', '.join(map(_c_string, class_names))}}};"]
    return "\n".join([*lines, "", f"}}  // namespace {ns}", "", f"#endif  // {guard}", ""])


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


GOLDEN_COMMENT = ["// Real samples, quantized, and the outputs TensorFlow Lite Micro's reference kernels",
                  "// compute for them: a build that reproduces them bit for bit runs the model correctly."]


def test_data_files(info, stem, q_inputs, outputs, source_name="the model", golden_comment=GOLDEN_COMMENT):
    """(``<stem>_test_data.h``, ``<stem>_test_data.cc``) texts: golden inputs and outputs, one
    array per tensor (``q_inputs``, ``outputs``: one array per input and output, samples first),
    and ``kGoldenInputs``/``kGoldenOutputs``, the same data as bytes for a program that walks
    every tensor; ``golden_comment`` says where the outputs come from."""
    inputs, outs = _io_tensors(info)
    ident, ns = c_array.c_identifier(stem), c_array.namespace(stem)
    guard = c_array.include_guard(stem, "TEST_DATA")
    n = len(q_inputs[0])
    tensors = [(name, f"{prefix}Type", f"k{prefix}Size", values, t)
               for kind, ts, data in (("Input", inputs, q_inputs), ("Output", outs, outputs))
               for name, prefix, values, t in zip(_arrays(kind, ts), _prefixes(kind, ts), data, ts)]
    header = "\n".join([
        f"// Generated by pea-tflite from {source_name}. Do not edit.",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stddef.h>", "",
        f'#include "{ident}_model_settings.h"', "",
        f"namespace {ns} {{", "",
        *golden_comment,
        f"constexpr int kNumTestSamples = {n};",
        *(f"extern const {ctype} {name}[kNumTestSamples][{size}];" for name, ctype, size, _, _ in tensors), "",
        "// The same arrays by tensor, in the interpreter's order (input(i), output(i)), for a program",
        "// that walks every tensor (main.cc): sample s starts at samples + s * sample_bytes.",
        "struct GoldenTensor {", "  const void* samples;", "  size_t sample_bytes;", "};",
        "extern const GoldenTensor kGoldenInputs[kNumInputs];",
        "extern const GoldenTensor kGoldenOutputs[kNumOutputs];", "",
        f"}}  // namespace {ns}", "", f"#endif  // {guard}", ""])
    body = [f"// Generated by pea-tflite from {source_name}. Do not edit.",
            f'#include "{ident}_test_data.h"', "", f"namespace {ns} {{", ""]
    for name, ctype, size, values, t in tensors:
        body.append(f"alignas(16) const {ctype} {name}[kNumTestSamples][{size}] = {{")
        for row in np.asarray(values).reshape(n, -1):
            body += ["  {", *("  " + line for line in _row_lines(row, t)), "  },"]
        body += ["};", ""]
    for table, names in (("kGoldenInputs", _arrays("Input", inputs)), ("kGoldenOutputs", _arrays("Output", outs))):
        body += [f"const GoldenTensor {table}[kNum{table[7:]}] = {{",
                 *(f"  {{{name}, sizeof({name}[0])}}," for name in names), "};"]
    body += ["", f"}}  // namespace {ns}", ""]
    return header, "\n".join(body)


def _row_lines(row, tensor):
    return c_array.format_values(row.tolist(), per_line=16, fmt=_c_value(tensor))


def _check_owner(directory, stem, source_name):
    """Refuse to replace the kit of another file whose stem spells the same C name ("oüt 1" and
    "oät 1" are both o_t_1): the settings header says which file a kit was made from."""
    settings = kit_paths(directory, stem)[3]
    if not os.path.exists(settings):
        return
    with open(settings, errors="replace") as f:
        first = f.readline().strip()
    made_from = first.removeprefix("// Generated by pea-tflite from ").removesuffix(". Do not edit.")
    if made_from != first and made_from != source_name:
        raise TFLiteError(f"the kit name {c_array.c_identifier(stem)} of {source_name} is taken in {directory} by "
                          f"the kit of {made_from}: give the output a name that differs in letters or digits")


def micro_kit_files(tflite, directory, stem, golden_inputs, source_name=None, class_names=()):
    """{path: bytes} of the kit of ``tflite`` (bytes or a path) in ``directory`` under ``stem``;
    computes everything (TFLM runs the golden inputs in a child process), writes nothing.
    ``class_names``: the label of each output index, for ``kClassNames``."""
    data = read_bytes(tflite)
    if source_name is None:
        source_name = os.path.basename(os.fspath(tflite)) if isinstance(tflite, (str, os.PathLike)) \
            else f"{c_array.c_identifier(stem)}.tflite"
    q, outputs, arena = golden_run(data, golden_inputs)
    return kit_files(data, directory, stem, q, outputs, arena, source_name, class_names=class_names)


def _in_file_order(info, golden_inputs):
    """One array per input of the file, in its order: from one array (a one-input file), a list
    in the file's order, or a dict keyed by the signature's input names (calibration data's keys;
    the tensors' names in a file without a signature)."""
    if isinstance(golden_inputs, dict):
        if len(info.inputs) == len(golden_inputs) == 1:
            return list(golden_inputs.values())
        names = [info.signature_names.get(t.index, t.name) for t in info.inputs]
        if sorted(names) != sorted(golden_inputs):
            raise TFLiteError(f"golden inputs {', '.join(sorted(golden_inputs))} do not match the file's "
                              f"inputs {', '.join(names)}: key them by these names, or pass a list in this order")
        return [golden_inputs[name] for name in names]
    xs = list(golden_inputs) if isinstance(golden_inputs, (list, tuple)) else [golden_inputs]
    if len(xs) != len(info.inputs):
        raise TFLiteError(f"golden inputs: {len(xs)} array{'' if len(xs) == 1 else 's'} for a file with "
                          f"{len(info.inputs)} inputs (one per input, in the file's order or by name)")
    return xs


def golden_run(tflite, golden_inputs):
    """(golden inputs in the input dtypes, TFLite Micro's reference outputs for them, the arena
    bytes TFLite Micro measured on the way), computed in a child process. ``golden_inputs``: see
    ``_in_file_order``; inputs and outputs come back as one array per tensor, samples first."""
    data = read_bytes(tflite)
    info = inspect(data)
    inputs, outs = _io_tensors(info)
    q = [quantize_inputs(x, t) for x, t in zip(_in_file_order(info, golden_inputs), inputs)]
    if len({len(x) for x in q}) > 1:
        raise TFLiteError(f"golden inputs of different lengths ({', '.join(str(len(x)) for x in q)}): "
                          "give each input the same samples")
    from pea_keras.tflite.runtimes import micro_run

    raws, arena = micro_run(data, q)
    if arena is None:
        raise TFLiteError("TensorFlow Lite Micro did not report its arena size")
    outputs = [np.asarray(r).astype(_NP_TYPES[t.dtype]).reshape(len(q[0]), -1) for r, t in zip(raws, outs)]
    return q, outputs, arena


def kit_files(data, directory, stem, q, outputs, arena, source_name, arena_comment=None,
              golden_comment=GOLDEN_COMMENT, class_names=()):
    """{path: bytes} of the kit of the file ``data`` from computed parts: golden inputs ``q``
    and ``outputs`` (one array per tensor, as ``golden_run`` returns them), and the ``arena``
    bytes (``arena_comment`` says whose figure it is). Refuses a folder where another file's kit
    has the same C name."""
    _check_owner(directory, stem, source_name)
    info = inspect(data)
    resolver = op_resolver_header(info, stem, source_name)
    settings = model_settings_header(info, stem, arena, source_name, arena_comment, class_names)
    test_h, test_cc = test_data_files(info, stem, [x.reshape(len(x), -1) for x in q], outputs, source_name,
                                      golden_comment)
    texts = [c_array.c_source(data, stem, source_name), c_array.c_header(stem), resolver, settings,
             test_cc, test_h]
    return {path: text.encode() for path, text in zip(kit_paths(directory, stem), texts)}


def write_micro_kit(tflite, directory, stem, golden_inputs, source_name=None, class_names=()):
    """Write the kit of ``tflite`` (bytes or a path) into ``directory`` under ``stem``.

    ``golden_inputs``: a few real samples (floats as the Keras model takes them, or already
    in the input dtype): one array, or for several inputs one per input (a list in the file's
    input order, or a dict by input name). TFLM runs them in a child process; the arena is
    measured on the way. Every file or none is written (an earlier kit stays whole). Returns the
    written paths.
    """
    contents = micro_kit_files(tflite, directory, stem, golden_inputs, source_name, class_names)
    os.makedirs(directory, exist_ok=True)
    atomic_write_many(contents)
    return kit_paths(directory, stem)
