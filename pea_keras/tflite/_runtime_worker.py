"""Run a .tflite file on LiteRT or TensorFlow Lite Micro, in its own process.

Both runtimes can kill the process that runs them: TFLM aborts on a final SOFTMAX whose input
scale is below ~1.5e-8, and both crash (SIGABRT, SIGSEGV) inside ``invoke`` on some files that
load, e.g. TFLite Micro's own ``keyword_scrambled_8bit.tflite``. So the parent (runtimes.py)
runs this file with ``python -P`` and reads the results back from disk. It imports only numpy
and the runtime asked for (``--runtime micro`` never loads LiteRT).

Argument: REQUEST.json, {"runtime": "litert" | "micro", "model": PATH, "inputs": IN.npz or null
(one array per input, keyed "0", "1", ..., samples first; null: one sample of zeros on every
input), "num_inputs": N, "num_outputs": M, "outputs": OUT.npz or null (one array per output, one
row per sample), "arena_bytes": N (micro), "measure": false to skip the arena (micro), "threads",
"xnnpack", "reference" (the kernels TFLM shares), "runs", "warmup" (timed invokes on zeros when
runs > 0)}.
Stdout: one JSON line ({"arena_bytes": N} (micro), {"latency_ms": T} when timed). Stderr: the
runtime's own log, and ``pea-worker: <phase>`` lines (loading, running, measuring) that tell the
parent where a crash happened; a refusal by the runtime ends with ``pea-worker: error: <message>``,
exit 3.
"""

import json
import os
import re
import sys
import tempfile
import time

import numpy as np

REFUSED = 3


def _phase(name):
    print(f"pea-worker: {name}", file=sys.stderr, flush=True)


def _arena_total(interpreter):
    """Bytes the RecordingMicroAllocator used; it prints them to the C stderr."""
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    return int(m.group(1)) if m else None


def _timed(runner, zeros, request):
    """{"latency_ms": median wall time of one invoke on zeros} when the request asks for runs."""
    runs, warmup = int(request.get("runs", 0)), int(request.get("warmup", 5))
    if not runs:
        return {}
    _phase("timing invokes on zeros")
    for i, x in enumerate(zeros):
        runner.set(i, x)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        runner.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"latency_ms": 1000.0 * float(np.median(times))}


class _Micro:
    def __init__(self, model, request):
        from tflite_micro.python.tflite_micro import runtime

        self.runtime, self.model, self.request = runtime, model, request
        self.arena = int(request["arena_bytes"])
        self.it = runtime.Interpreter.from_bytes(model, arena_size=self.arena)
        self.inputs = [self.it.get_input_details(i) for i in range(int(request["num_inputs"]))]

    def set(self, i, x):
        self.it.set_input(x, i)

    def invoke(self):
        self.it.invoke()

    def output(self, j):
        return np.array(self.it.get_output(j))

    def report(self, zeros):
        timed = _timed(self, zeros, self.request)
        if not self.request.get("measure", True):
            return timed
        used = _arena_total(self.it)
        _phase(f"checking the tensor arena it recorded ({used} bytes) by loading the model into it")
        # Smallest arena that really works: start from the recorded total, step up if needed.
        while used is not None and used < self.arena and not self._fits(used, zeros):
            used += 256
        return {"arena_bytes": used, **timed}

    def _fits(self, arena, zeros):
        try:
            it = self.runtime.Interpreter.from_bytes(self.model, arena_size=arena)
            for i, x in enumerate(zeros):
                it.set_input(x, i)
            it.invoke()
            return True
        except RuntimeError:
            return False


class _LiteRT:
    def __init__(self, model, request):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (OpResolverType.BUILTIN_REF if request.get("reference") else OpResolverType.AUTO
                    if request.get("xnnpack") else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.it = Interpreter(model_content=model, num_threads=int(request.get("threads", 1)),
                              experimental_op_resolver_type=resolver)
        self.it.allocate_tensors()
        self.inputs = self.it.get_input_details()
        self.outputs = self.it.get_output_details()
        self.request = request

    def set(self, i, x):
        self.it.set_tensor(self.inputs[i]["index"], x)

    def invoke(self):
        self.it.invoke()

    def output(self, j):
        return self.it.get_tensor(self.outputs[j]["index"])

    def report(self, zeros):
        return _timed(self, zeros, self.request)


def main(request_path):
    with open(request_path) as f:
        request = json.load(f)
    with open(request["model"], "rb") as f:
        model = f.read()
    _phase("loading the model")
    try:
        runner = (_Micro if request["runtime"] == "micro" else _LiteRT)(model, request)
    except (RuntimeError, ValueError) as e:
        print(f"pea-worker: error: {str(e).strip()}", file=sys.stderr, flush=True)
        return REFUSED
    shapes = [(tuple(int(d) for d in d_["shape"]), d_["dtype"]) for d_ in runner.inputs]
    zeros = [np.zeros(shape, dtype) for shape, dtype in shapes]
    xs = None
    if request.get("inputs"):
        with np.load(request["inputs"]) as loaded:
            xs = [loaded[str(i)] for i in range(len(shapes))]
    outputs = [[] for _ in range(int(request.get("num_outputs", 1)))]
    try:
        if xs is None:
            _phase("running the model on zeros")
            for i, z in enumerate(zeros):
                runner.set(i, z)
            runner.invoke()
        else:
            for n in range(len(xs[0])):
                _phase(f"running sample {n + 1} of {len(xs[0])}")
                for i, (x, (shape, dtype)) in enumerate(zip(xs, shapes)):
                    runner.set(i, x[n:n + 1].astype(dtype).reshape(shape))
                runner.invoke()
                for j, rows in enumerate(outputs):
                    rows.append(runner.output(j).reshape(-1).copy())
        report = runner.report(zeros)
    except (RuntimeError, ValueError) as e:
        print(f"pea-worker: error: {str(e).strip()}", file=sys.stderr, flush=True)
        return REFUSED
    if request.get("outputs"):
        np.savez(request["outputs"], **{str(j): np.stack(rows) if rows else np.zeros((0,))
                                        for j, rows in enumerate(outputs)})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
