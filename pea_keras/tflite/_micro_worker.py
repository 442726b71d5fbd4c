"""Run a .tflite file on the TensorFlow Lite Micro Python interpreter, in its own process.

TFLM aborts the whole process on some models, so the parent (runtimes.py)
runs this file with ``python -P`` and reads the results back from disk. It
imports only numpy and tflite_micro. Arguments: MODEL ARENA_BYTES [IN.npy OUT.npy].
Prints one JSON line: {"arena_bytes": N} measured by the RecordingMicroAllocator.
"""

import json
import os
import re
import sys
import tempfile

import numpy as np
from tflite_micro.python.tflite_micro import runtime


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


def _fits(model, arena, x0):
    try:
        it = runtime.Interpreter.from_bytes(model, arena_size=arena)
        it.set_input(x0, 0)
        it.invoke()
        return True
    except RuntimeError:
        return False


def main(argv):
    with open(argv[0], "rb") as f:
        model = f.read()
    arena = int(argv[1])
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
    details = interpreter.get_input_details(0)
    shape, dtype = tuple(details["shape"]), details["dtype"]
    x = np.load(argv[2]) if len(argv) > 2 else np.zeros((1, *shape[1:]), dtype)
    outputs = []
    for i in range(len(x)):
        interpreter.set_input(x[i:i + 1].astype(dtype).reshape(shape), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
    used = _arena_total(interpreter)
    # Smallest arena that really works: start from the recorded total, step up if needed.
    if used is not None:
        x0 = x[:1].astype(dtype).reshape(shape)
        while not _fits(model, used, x0) and used < arena:
            used += 256
    if len(argv) > 3:
        np.save(argv[3], np.stack(outputs))
    print(json.dumps({"arena_bytes": used}))


if __name__ == "__main__":
    main(sys.argv[1:])
