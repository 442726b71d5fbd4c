"""Run a ``.tflite`` file on LiteRT and on TensorFlow Lite Micro, each in a child process.

LiteRT uses ``ai_edge_litert.interpreter.Interpreter`` (``tf.lite.Interpreter`` is deprecated)
with its builtin kernels by default, the ones a LiteRT user without a delegate runs. Its
*reference* kernels (``reference=True``) are the code TFLite Micro's kernels share, and match
TFLite Micro bit for bit; the optimized builtin kernels round int8 differently (measured on the
quick start's MobileNetV2 file: the first CONV_2D differs by 1 step on 0.17 % of its outputs,
5 steps at the logits, 99.44 % top-1 agreement), and so does the XNNPACK delegate
(``xnnpack=True``, a phone's default CPU path).

Both runtimes run in ``_runtime_worker.py``, in a child process, because both can kill the process
that runs them (TFLM aborts on a final SOFTMAX whose input scale is below ~1.5e-8; both crash
inside ``invoke`` on some files that load). A crash, a refusal or an operator TFLM has no kernel
for becomes one TFLiteError line that names the runtime, the signal or the operator. Tensor
details come from the flatbuffer, so TensorFlow Lite Micro never needs LiteRT.
"""

import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from pea_keras.errors import TFLiteError, signal_name
from pea_keras.tflite import tflm_api
from pea_keras.tflite.inspection import inspect, read_bytes

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runtime_worker.py")
_REFUSED = 3  # the worker's exit code when the runtime refuses the model (_runtime_worker.REFUSED)
WORKER_TIMEOUT_S = 600
RUNTIMES = {"litert": "LiteRT", "micro": "TensorFlow Lite Micro"}


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


class RuntimeFailure(TFLiteError):
    """A runtime could not load or run the file (or crashed); ``runtime`` names which."""

    def __init__(self, message, runtime):
        super().__init__(message)
        self.runtime = runtime


def _numpy_dtype(t):
    try:
        return np.dtype(t.dtype.lower()).type
    except TypeError:
        raise TFLiteError(f"tensor '{t.name}' is {t.dtype}, which pea-tflite cannot feed or read") from None


def _details(t):
    """A tensor's details in the shape LiteRT reports them (dtype, shape, (scale, zero point))."""
    return {"name": t.name, "index": t.index, "shape": np.array(t.shape, np.int32),
            "dtype": _numpy_dtype(t),
            "quantization": (float(t.scale[0]), int(t.zero_point[0]) if t.zero_point else 0)
            if t.scale else (0.0, 0)}


def _info(path_or_info):
    return path_or_info if hasattr(path_or_info, "operators") else inspect(path_or_info)


def io_details(path_or_bytes):
    """Details (dtype, shape, quantization) of the first input and output tensors, read from the
    flatbuffer: no runtime needed."""
    info = _info(path_or_bytes)
    return _details(info.inputs[0]), _details(info.outputs[0])


def _call(runtime, data, xs=None, **options):
    """Run the worker on ``runtime``: returns (the raw outputs for inputs ``xs``, one array per
    input with samples first, as one array per output with a row per sample, or None without
    ``xs``; the worker's report)."""
    info = inspect(data)
    with tempfile.TemporaryDirectory(prefix=f"pea-{runtime}-") as tmp:
        request = {"runtime": runtime, "model": os.path.join(tmp, "model.tflite"),
                   "num_inputs": len(info.inputs), "num_outputs": len(info.outputs), "inputs": None,
                   "outputs": None, "arena_bytes": _generous_arena(data), **options}
        with open(request["model"], "wb") as f:
            f.write(data)
        if xs is not None:
            request["inputs"], request["outputs"] = (os.path.join(tmp, n) for n in ("in.npz", "out.npz"))
            np.savez(request["inputs"], **{str(i): x for i, x in enumerate(xs)})
        with open(os.path.join(tmp, "request.json"), "w") as f:
            json.dump(request, f)
        try:
            proc = subprocess.run([sys.executable, "-P", _WORKER, f.name], capture_output=True,
                                  text=True, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{RUNTIMES[runtime]} did not finish in {WORKER_TIMEOUT_S} s",
                                 runtime) from None
        if proc.returncode != 0:
            raise RuntimeFailure(_failure(runtime, proc, info), runtime)
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        if xs is None:
            return None, report
        with np.load(request["outputs"]) as loaded:
            return [loaded[str(j)] for j in range(len(info.outputs))], report


def _failure(runtime, proc, info):
    """One line: which runtime, what went wrong where, and for TFLM which operator and what to do."""
    name = RUNTIMES[runtime]
    lines = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
    phases = [line[12:] for line in lines if line.startswith("pea-worker: ")
              and not line.startswith("pea-worker: error: ")]
    phase = phases[-1] if phases else "starting"
    refusal = next((line[19:] for line in reversed(lines) if line.startswith("pea-worker: error: ")), "")
    log = [line for line in lines if not line.startswith(("pea-worker: ", "Traceback", "File "))]
    if runtime == "micro":
        diagnosis = _micro_diagnosis(log, info)
        if diagnosis:
            return diagnosis
    if proc.returncode == _REFUSED:
        action = "load" if phase == "loading the model" else "run"
        return f"{name} cannot {action} the model: {_concise(refusal)}"
    if proc.returncode < 0:
        sig = signal_name(proc.returncode)
        last = f" (its last message: {_concise(log[-1])})" if log else ""
        harm = "" if phase.startswith("checking") else ": it cannot run this file"
        return f"{name} crashed ({sig}) while {phase}{last}{harm}"
    return f"{name} failed (exit {proc.returncode}) while {phase}: {_concise(log[-1]) if log else 'no message'}"


def _concise(message):
    """A runtime's message in one line: its sentences once each, a repeated one counted (LiteRT
    repeats one per tensor: 'Tensor 33 has invalid quantization parameters.' x14)."""
    sentences = [s.strip() for s in re.split(r"(?<=\.)(?=[^\s\d)])|\n", message) if s.strip()]
    counts = {}
    for sentence in sentences:
        key = re.sub(r"\d+", "#", sentence)
        first, n = counts.get(key, (sentence, 0))
        counts[key] = (first, n + 1)
    return " ".join(f"{first} (x{n})" if n > 1 else first for first, n in counts.values()) or "no message"


def _micro_diagnosis(log, info):
    """Why TFLM failed, from its log: the operators it has no kernel for, or the operator whose
    kernel refused to prepare or run, with what to do; None when its log does not say."""
    text = "\n".join(log)
    named = re.findall(r"Didn't find op for (?:builtin|custom) opcode '([^']+)'", text)
    types = dict.fromkeys(op.type for op in info.operators)
    missing = [t for t in types if tflm_api.resolver_method(t) is None]
    missing += [n for n in named if n not in missing and f"CUSTOM:{n}" not in missing]
    if missing:
        ops = ", ".join(t.replace("CUSTOM:", "custom operator ") for t in missing)
        return (f"TensorFlow Lite Micro has no kernel for {ops}: replace "
                + ("it" if len(missing) == 1 else "them")
                + " in the model")
    node = re.search(r"Node (\S+) \(number (\d+)f?\) failed to (prepare|invoke)", text)
    if node:
        at = text[:node.start()].strip().splitlines()
        why = re.sub(r"^\S*\.cc:\d+\s*", "", at[-1]) if at else ""
        return (f"TensorFlow Lite Micro's {node.group(1)} kernel (operator {node.group(2)}) failed to "
                f"{node.group(3)}" + (f": {why}" if why else "")
                + "; it does not take this operator's tensor types or options: change them in the model")
    return None


def load_test(path_or_bytes, runtime):
    """Load the file on ``runtime`` and run it once on zeros; raises TFLiteError if it cannot."""
    _call(runtime, read_bytes(path_or_bytes))


def _generous_arena(data):
    return max(16 * len(data), 8 << 20)


def micro_arena_bytes(path_or_bytes):
    """Tensor-arena bytes TFLM needs for this model: the RecordingMicroAllocator's
    total after one invoke with a generous arena, then checked by loading and
    invoking with exactly that arena (stepping up 256 bytes until it fits).
    Measured on a 64-bit host: a 32-bit MCU needs a little less; keep a margin."""
    return _call("micro", read_bytes(path_or_bytes))[1]["arena_bytes"]


def micro_run(path_or_bytes, q):
    """Raw outputs of TFLM's reference kernels for inputs ``q`` already in the input tensors'
    dtypes (one array per input, samples first; a single array for a one-input file): one array
    per output, one row per sample; and the arena bytes measured on the way (see micro_arena_bytes)."""
    q = list(q) if isinstance(q, (list, tuple)) else [q]
    raw, report = _call("micro", read_bytes(path_or_bytes), [np.asarray(x) for x in q])
    return raw, report["arena_bytes"]


def micro_measure(path_or_bytes, runs=50, warmup=5, failed_before=None):
    """(tensor-arena bytes, median wall time of one TFLM ``invoke`` on zeros in milliseconds) of
    the reference kernels on this host: what TFLite Micro can say about a file LiteRT refuses. The
    time is the host's, not a microcontroller's. ``failed_before``: LiteRT's failure, named in
    the error when TFLite Micro fails too."""
    try:
        report = _call("micro", read_bytes(path_or_bytes), runs=runs, warmup=warmup)[1]
    except RuntimeFailure as e:
        if failed_before is None:
            raise
        raise RuntimeFailure(f"{failed_before}; {e}", "micro") from None
    return report["arena_bytes"], report["latency_ms"]


def predict(path, x, runtime="litert", quantized=False, xnnpack=False, reference=False):
    """Outputs of the file for inputs ``x`` (float32 like the Keras model's), dequantized
    to float unless ``quantized`` (then the raw output tensor values). One-input files only.
    ``reference``: LiteRT's reference kernels, which compute what TFLite Micro's do."""
    if runtime not in RUNTIMES:
        raise TFLiteError(f"unknown runtime '{runtime}', choose litert or micro")
    data = read_bytes(path)
    info = inspect(data)
    if len(info.inputs) != 1:
        raise TFLiteError(f"the file has {len(info.inputs)} inputs; predict feeds one")
    inp, out = io_details(info)
    options = {"xnnpack": xnnpack, "reference": reference} if runtime == "litert" else {"measure": False}
    raw = _call(runtime, data, [_quantize(np.asarray(x, np.float32), inp)], **options)[0][0]
    return raw if quantized else _dequantize(raw, out)


def class_count(path_or_info, labels=None):
    """Classes the file scores; refuses (TFLiteError) a file top-1 accuracy cannot be read from:
    not exactly one input, or not one output of class scores [1, C] with C >= 2, or labels
    outside 0..C-1."""
    info = _info(path_or_info)
    if len(info.inputs) != 1:
        names = ", ".join(f"'{t.name}'" for t in info.inputs)
        raise TFLiteError(f"top-1 needs a model with one input; this one has {len(info.inputs)} "
                          f"({names})")
    if len(info.outputs) != 1:
        raise TFLiteError(f"top-1 needs one output of class scores; this model has {len(info.outputs)}")
    out = info.outputs[0]
    shape = [int(d) for d in out.shape]
    classes = shape[-1] if shape else 1
    if classes < 2 or len(shape) > 2 or math.prod(shape) != classes:
        raise TFLiteError(f"output '{out.name}' is {out.dtype} {shape}, not class scores [1, C] with "
                          "C >= 2: top-1 accuracy does not apply to it")
    if labels is not None and len(labels):
        low, high = int(np.min(labels)), int(np.max(labels))
        if low < 0 or high >= classes:
            raise TFLiteError(f"labels run from {low} to {high}, but the model scores {classes} classes")
    return classes


def output_step(path_or_bytes):
    """One quantization step of the first output, in the units ``predict(quantized=True)``
    returns: 1 for an integer output; the scale of the int8 tensor a float output was
    dequantized from (a float model without one: 1e-6, i.e. compare nearly exactly)."""
    info = _info(path_or_bytes)
    out = info.outputs[0]
    if out.dtype.startswith(("INT", "UINT")):
        return 1.0
    for op in info.operators:
        if op.subgraph == 0 and out.index in op.outputs and op.type == "DEQUANTIZE":
            source = info.tensors[op.inputs[0]]
            if source.scale:
                return float(source.scale[0])
    return 1e-6


# How far one quantization step of a final SOFTMAX's or LOGISTIC's input moves its output, at
# most, in units of the input's scale: sum_j |dp_i/dz_j| = 2 p_i (1 - p_i) <= 1/2, and s'(z) <= 1/4.
_GAIN = {"SOFTMAX": 0.5, "LOGISTIC": 0.25}


def allowed_difference(path_or_bytes):
    """How many output steps TFLite Micro and LiteRT's reference kernels may differ by: one, or,
    behind a final SOFTMAX or LOGISTIC, one step of its input carried through it. Near a tie a
    softmax turns one rounding step of its logits into many output steps (logits at scale 0.21:
    up to 28 steps of 1/256), which is rounding, not a different computation."""
    info = _info(path_or_bytes)
    producer = {out: op for op in info.operators if op.subgraph == 0 for out in op.outputs}
    op = producer.get(info.outputs[0].index)
    if op is not None and op.type == "DEQUANTIZE":
        op = producer.get(op.inputs[0])
    if op is None or op.type not in _GAIN:
        return 1.0
    x, y = info.tensors[op.inputs[0]], info.tensors[op.outputs[0]]
    if not (x.scale and y.scale):
        return 1.0
    return 1.0 + _GAIN[op.type] * float(x.scale[0]) / float(y.scale[0])


def _compare(a, b, step):
    """(top-1 agreement, largest output difference in quantization steps) of two raw outputs."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1))), diff / step


def evaluate(path, x, y, runtime="both"):
    """Top-1 accuracy per runtime. With both, TFLite Micro is also checked against LiteRT's
    reference kernels, which must agree within one quantization step, carried through a final
    softmax or logistic (``max_diff_ok``, ``max_diff_allowed``: `allowed_difference`), and
    compared with LiteRT's optimized builtin kernels, which round differently (reported only).
    Refuses a file that does not score classes (``class_count``). With both, a file LiteRT
    cannot load or run is scored on TFLite Micro alone, the device's runtime (``litert_error``
    says why); a TFLite Micro failure raises ``RuntimeFailure``."""
    runtimes = ("litert", "micro") if runtime == "both" else (runtime,)
    data = read_bytes(path)
    y = np.asarray(y).reshape(-1)
    class_count(inspect(data), y)
    step = output_step(data)
    results, raws = {"samples": int(len(y))}, {}
    for rt in runtimes:
        try:
            raws[rt] = predict(data, x, runtime=rt, quantized=True)
        except RuntimeFailure as e:
            if rt == "micro" or runtime != "both":
                raise
            results["litert_error"] = str(e)
            continue
        correct = np.argmax(raws[rt], -1) == y
        results[f"{rt}_accuracy"] = float(np.mean(correct))
        results[f"{rt}_per_class"] = [float(np.mean(correct[y == c])) if np.any(y == c) else None
                                      for c in range(raws[rt].shape[-1])]
    if len(raws) == 2:
        reference = predict(data, x, runtime="litert", quantized=True, reference=True)
        results["agreement"], results["max_diff_steps"] = _compare(reference, raws["micro"], step)
        results["max_diff_allowed"] = allowed_difference(data)
        results["max_diff_ok"] = results["max_diff_steps"] <= results["max_diff_allowed"] + 1e-4
        results["optimized_agreement"], results["optimized_max_diff_steps"] = _compare(
            raws["litert"], raws["micro"], step)
    return results


def latency_ms(path, runs=50, num_threads=1, xnnpack=True, warmup=5):
    """Median wall time of one LiteRT ``invoke`` (batch 1, zeros on every input), in milliseconds,
    timed inside the child process. XNNPACK on by default: it is LiteRT's default CPU path on
    phones."""
    report = _call("litert", read_bytes(path), runs=runs, threads=num_threads, xnnpack=xnnpack,
                   warmup=warmup)[1]
    return report["latency_ms"]
