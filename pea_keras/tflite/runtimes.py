"""Run a ``.tflite`` file on LiteRT and on TensorFlow Lite Micro.

LiteRT uses ``ai_edge_litert.interpreter.Interpreter`` (``tf.lite.Interpreter``
is deprecated) with its builtin kernels by default, the ones a LiteRT user without a
delegate runs. Its *reference* kernels (``reference=True``) are the code TFLite Micro's
kernels share, and match TFLite Micro bit for bit; the optimized builtin kernels round
int8 differently (measured on the quick start's MobileNetV2 file: the first CONV_2D
differs by 1 step on 0.17 % of its outputs, 5 steps at the logits, 99.44 % top-1
agreement), and the XNNPACK delegate (``xnnpack=True``, a phone's default CPU path) too.
TensorFlow Lite Micro runs in a child process
(``_micro_worker.py``) because it aborts the process on some models, e.g. a
final SOFTMAX whose input scale is below ~1.5e-8; the abort becomes a
TFLiteError here instead of killing the caller.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from pea_keras.tflite.errors import TFLiteError
from pea_keras.tflite.model_info import read_bytes

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_micro_worker.py")
MICRO_TIMEOUT_S = 600


def _quantize(x, details):
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    scale, zp = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def _dequantize(q, details):
    if not np.issubdtype(details["dtype"], np.integer):
        return q.astype(np.float32)
    scale, zp = details["quantization"]
    return ((q.astype(np.float32) - zp) * scale).astype(np.float32)


def litert_interpreter(path_or_bytes, num_threads=1, xnnpack=False, reference=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data = read_bytes(path_or_bytes)
    resolver = (OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO if xnnpack
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        interpreter = Interpreter(model_content=data, num_threads=num_threads,
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as e:
        raise TFLiteError(f"LiteRT cannot load the model: {str(e).strip().splitlines()[0]}") from None
    return interpreter


def io_details(path_or_bytes):
    """LiteRT's input and output details (dtype, shape, quantization) of the first I/O tensors."""
    interpreter = litert_interpreter(path_or_bytes)
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]


def _run_litert(data, x, xnnpack=False, reference=False):
    interpreter = litert_interpreter(data, xnnpack=xnnpack, reference=reference)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    q = _quantize(x, inp)
    results = []
    for i in range(len(q)):
        interpreter.set_tensor(inp["index"], q[i:i + 1].reshape(inp["shape"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"]).reshape(-1).copy())
    return np.stack(results), inp, out


def _micro_call(data, arena_bytes, x=None):
    """Run the worker; returns (raw outputs or None, arena bytes measured)."""
    with tempfile.TemporaryDirectory(prefix="pea-tflm-") as tmp:
        model_path = os.path.join(tmp, "model.tflite")
        with open(model_path, "wb") as f:
            f.write(data)
        args = [sys.executable, "-P", _WORKER, model_path, str(arena_bytes)]
        if x is not None:
            np.save(os.path.join(tmp, "in.npy"), x)
            args += [os.path.join(tmp, "in.npy"), os.path.join(tmp, "out.npy")]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=MICRO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TFLiteError(f"TensorFlow Lite Micro did not finish in {MICRO_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
            why = lines[-1].strip() if lines else "no message"
            how = (f"aborted (signal {-proc.returncode})" if proc.returncode < 0
                   else f"failed (exit {proc.returncode})")
            raise TFLiteError(f"TensorFlow Lite Micro {how} on this model: {why}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        out = np.load(os.path.join(tmp, "out.npy")) if x is not None else None
        return out, report["arena_bytes"]


def _generous_arena(data):
    return max(16 * len(data), 8 << 20)


def micro_arena_bytes(path_or_bytes):
    """Tensor-arena bytes TFLM needs for this model: the RecordingMicroAllocator's
    total after one invoke with a generous arena, then checked by loading and
    invoking with exactly that arena (stepping up 256 bytes until it fits).
    Measured on a 64-bit host: a 32-bit MCU needs a little less; keep a margin."""
    data = read_bytes(path_or_bytes)
    return _micro_call(data, _generous_arena(data))[1]


def micro_run(path_or_bytes, q):
    """Raw outputs (one row per sample) of TFLM's reference kernels for inputs ``q`` already in
    the input tensor's dtype, and the arena bytes measured on the way (see micro_arena_bytes)."""
    data = read_bytes(path_or_bytes)
    return _micro_call(data, _generous_arena(data), np.asarray(q))


def predict(path, x, runtime="litert", quantized=False, xnnpack=False, reference=False):
    """Outputs of the file for inputs ``x`` (float32 like the Keras model's), dequantized
    to float unless ``quantized`` (then the raw output tensor values). ``reference``: LiteRT's
    reference kernels, which compute what TFLite Micro's do."""
    data = read_bytes(path)
    x = np.asarray(x, np.float32)
    if runtime == "litert":
        raw, _, out = _run_litert(data, x, xnnpack, reference)
    elif runtime == "micro":
        inp, out = io_details(data)
        raw, _ = _micro_call(data, _generous_arena(data), _quantize(x, inp))
    else:
        raise TFLiteError(f"unknown runtime '{runtime}', choose litert or micro")
    return raw if quantized else _dequantize(raw, out)


def output_step(path_or_bytes):
    """One quantization step of the first output, in the units ``predict(quantized=True)``
    returns: 1 for an integer output; the scale of the int8 tensor a float output was
    dequantized from (a float model without one: 1e-6, i.e. compare nearly exactly)."""
    from pea_keras.tflite.model_info import inspect

    info = inspect(path_or_bytes)
    out = info.outputs[0]
    if out.dtype.startswith(("INT", "UINT")):
        return 1.0
    for op in info.operators:
        if op.subgraph == 0 and out.index in op.outputs and op.type == "DEQUANTIZE":
            source = info.tensors[op.inputs[0]]
            if source.scale:
                return float(source.scale[0])
    return 1e-6


def _compare(a, b, step):
    """(top-1 agreement, largest output difference in quantization steps) of two raw outputs."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1))), diff / step


def evaluate(path, x, y, runtime="both"):
    """Top-1 accuracy per runtime. With both, TFLite Micro is also checked against LiteRT's
    reference kernels, which must agree within one quantization step (``max_diff_ok``), and
    compared with LiteRT's optimized builtin kernels, which round differently (reported only)."""
    runtimes = ("litert", "micro") if runtime == "both" else (runtime,)
    data = read_bytes(path)
    step = output_step(data)
    y = np.asarray(y).reshape(-1)
    results, raws = {"samples": int(len(y))}, {}
    for rt in runtimes:
        raws[rt] = predict(data, x, runtime=rt, quantized=True)
        results[f"{rt}_accuracy"] = float(np.mean(np.argmax(raws[rt], -1) == y))
    if len(runtimes) == 2:
        reference = predict(data, x, runtime="litert", quantized=True, reference=True)
        results["agreement"], results["max_diff_steps"] = _compare(reference, raws["micro"], step)
        results["max_diff_ok"] = results["max_diff_steps"] <= 1.0 + 1e-4
        results["optimized_agreement"], results["optimized_max_diff_steps"] = _compare(
            raws["litert"], raws["micro"], step)
    return results


def latency_ms(path, runs=50, num_threads=1, xnnpack=True, warmup=5):
    """Median wall time of one LiteRT ``invoke`` (batch 1, zeros input), in milliseconds.
    XNNPACK on by default: it is LiteRT's default CPU path on phones."""
    import time

    interpreter = litert_interpreter(path, num_threads=num_threads, xnnpack=xnnpack)
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        interpreter.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))
