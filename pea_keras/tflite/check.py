"""Prove a ``.tflite`` file is ReLU-only: the promise PEA makes at deploy time.

The check is an allow-list, not a deny-list: an operator passes only if it is
known not to be a nonlinear activation (convolutions, adds, pooling, reshapes,
...) or is a ReLU-family activation. An op the list does not know - a new
nonlinearity, a custom op, control flow - fails, so nothing slips through
because we forgot to name it.

Operand positions matter, because allowed ops build nonlinearities from
activations: a product of two activations (``x * x``, the gate of an unfused
hard-swish ``x * relu6(x + 3) / 6``, ``x @ x^T`` as a FULLY_CONNECTED with
computed weights), a division by one (``1 / (x + 1)``, ``x / y``; only ``x / c``
is linear), a comparison of two (``max(x, 0.2 x)``, an unfused leaky ReLU), and
a lookup at indices computed from one (a table can hold any function). An
*activation* here is a tensor whose value depends on the model inputs' values:
a model input, or any output of an op that reads one (SHAPE reads shapes only).
Constants, and shapes computed from constants and SHAPE, are not.

What passes is a ReLU network: affine maps, ReLU-family activations and max pooling over the
positions of one feature map (``graph.mixed_axes``), so a continuous piecewise-linear function.
Step functions (CAST to an integer, FLOOR, comparisons, SELECT, an index of a max used inside
the network) fail. Two things outside that class pass only where named in the verdict: an
ARG_MAX whose index is the model output (unless ``strict``), and, with ``allow_gates``,
ReLU6 channel gates (``graph.channel_gate``).
"""

import dataclasses

from pea_keras.tflite import graph
from pea_keras.tflite.inspection import inspect

RELU_OPS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1"})
RELU_FUSED = frozenset({"NONE", "RELU", "RELU6", "RELU_N1_TO_1"})

# Linear maps, data movement, pooling and (re)quantization: none is an activation,
# as long as the operand rules below hold.
LINEAR_OPS = frozenset({
    "ADD", "ADD_N", "SUB", "NEG", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
    "CONV_3D", "CONV_3D_TRANSPOSE", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
    "TRANSPOSE", "CONCATENATION", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "SLICE",
    "STRIDED_SLICE", "GATHER", "GATHER_ND", "PAD", "PADV2", "MIRROR_PAD",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
    "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "QUANTIZE", "DEQUANTIZE", "SHAPE", "FILL",
    "ZEROS_LIKE", "ONES_LIKE", "TILE", "BROADCAST_TO", "CAST", "EMBEDDING_LOOKUP", "REVERSE_V2",
    "MUL", "DIV", "MAXIMUM", "MINIMUM", "BATCH_MATMUL",
})
# Operand positions of which at most one may be an activation: the op multiplies them.
PRODUCT_OPERANDS = {
    "MUL": (0, 1), "BATCH_MATMUL": (0, 1), "FULLY_CONNECTED": (0, 1), "CONV_2D": (0, 1),
    "DEPTHWISE_CONV_2D": (0, 1), "CONV_3D": (0, 1), "TRANSPOSE_CONV": (1, 2),
    "CONV_3D_TRANSPOSE": (1, 2),
}
# ... the op compares them: max/min of two activations is a gate (max(x, 0.2 x): leaky ReLU).
COMPARED_OPERANDS = {"MAXIMUM": (0, 1), "MINIMUM": (0, 1)}
# Operand positions that select data (indices, begins, sizes): an activation there makes the op
# a lookup, and a table indexed by an activation can compute any function of it.
INDEX_OPERANDS = {
    "GATHER": (1,), "GATHER_ND": (1,), "EMBEDDING_LOOKUP": (0,), "SLICE": (1, 2),
    "STRIDED_SLICE": (1, 2, 3),
}
# Maxima: allowed over the positions of one feature map (max pooling), nowhere else.
MAX_OPS = {"MAX_POOL_2D": (1, 2), "REDUCE_MAX": None, "REDUCE_MIN": None}  # None: the axes operand
# Step functions and switches, named for what they compute (any other unknown op fails too).
STEP_OPS = {
    **dict.fromkeys(("FLOOR", "CEIL", "ROUND", "FLOOR_DIV", "FLOOR_MOD", "SIGN"),
                    "rounds to integers (a step function)"),
    **dict.fromkeys(("LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "EQUAL", "NOT_EQUAL"),
                    "compares (a step function)"),
    **dict.fromkeys(("SELECT", "SELECT_V2"), "chooses by a condition (a switch, like a Heaviside step)"),
}
SHAPE_ONLY_OPS = graph.SHAPE_ONLY_OPS
_INDEX_OUTPUT_OPS = frozenset({"ARG_MAX", "ARG_MIN"})  # they write indices, not activations
# Ops a final SOFTMAX or ARG_MAX output may pass through on its way to a model output.
_PASS_THROUGH = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"})
_FLOAT = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})
_BITS = {"BOOL": 1, "INT4": 4, "INT8": 8, "UINT8": 8, "INT16": 16, "UINT16": 16, "INT32": 32, "UINT32": 32,
         "INT64": 64, "UINT64": 64, "FLOAT16": 16, "BFLOAT16": 16, "FLOAT32": 32, "FLOAT64": 64}


@dataclasses.dataclass(frozen=True)
class Violation:
    """One reason an operator breaks the promise. ``kind`` is "relu" (a nonlinearity) or
    "int8" (compute that is not int8; ``dtype`` names the offending tensor type)."""

    index: int
    subgraph: int
    type: str
    activation: str | None
    reason: str
    kind: str = "relu"
    dtype: str | None = None
    gate: bool = False  # a channel gate (a MUL), which the verdict names as one

    @property
    def where(self):
        """The operator, as the check prints it: ``op 3 DIV[NONE]`` (``op 1:3 ...`` in subgraph 1)."""
        at = f"{self.subgraph}:{self.index}" if self.subgraph else str(self.index)
        return f"op {at} {self.type}[{self.activation}]" if self.activation else f"op {at} {self.type}"

    def __str__(self):
        return f"{self.where}: {self.reason}"


def activations(info, subgraph=0):
    """Tensor ids of the subgraph whose values depend on the values of its inputs (``graph``)."""
    return graph.activations(info, subgraph)


def _live(op, positions, live):
    return [p for p in positions if p < len(op.inputs) and op.inputs[p] in live]


def _operand_reasons(op, live):
    """Why the op, although of an allowed type, computes a nonlinearity from its operands."""
    if op.type in PRODUCT_OPERANDS and len(_live(op, PRODUCT_OPERANDS[op.type], live)) > 1:
        if op.type == "MUL":
            yield "multiplies two activations (x * x, or a gate like x * relu6(x + 3))"
        else:
            yield "its weights are an activation, so it multiplies two activations (like x @ y)"
    if op.type in COMPARED_OPERANDS and len(_live(op, COMPARED_OPERANDS[op.type], live)) > 1:
        yield "compares two activations (max(x, a * x) is a leaky ReLU, not ReLU)"
    if op.type == "DIV" and _live(op, (1,), live):
        yield ("divides an activation by an activation (x / y)" if _live(op, (0,), live)
               else "divides a constant by an activation (c / x is a reciprocal; only x / c is linear)")
    if op.type in INDEX_OPERANDS and _live(op, INDEX_OPERANDS[op.type], live):
        yield "indexes by an activation (a lookup table can compute any function)"


def _int8_reasons(op, tensors, sg_in, sg_out, live):
    """(reason, dtype) for each non-int8 type the op computes in; QUANTIZE and DEQUANTIZE may
    convert at the model's inputs and outputs only."""
    ins = [t for t in op.inputs if t >= 0]
    outs = [t for t in op.outputs if t >= 0]
    if op.type in SHAPE_ONLY_OPS:
        return
    if op.type == "QUANTIZE":
        if ins and ins[0] in sg_in:
            ins = []
        elif outs and outs[0] in sg_out:
            outs = []
        elif ins and tensors[ins[0]].dtype in _FLOAT:
            yield "float-to-int QUANTIZE inside the network (int8 allows it only at inputs)", \
                tensors[ins[0]].dtype
            return
    elif op.type == "DEQUANTIZE":
        if ins and ins[0] in live and not set(outs) <= set(sg_out):
            yield "DEQUANTIZE inside the network (int8 allows it only at outputs)", tensors[outs[0]].dtype
            return
        outs = []
    elif op.type in _INDEX_OUTPUT_OPS:
        outs = []
    checked = [tensors[t] for t in (*ins, *outs)]
    floats = sorted({t.dtype for t in checked} & _FLOAT)
    if floats:
        yield f"float compute ({', '.join(floats)}) in an int8 model", floats[0]
    for dtype in sorted({t.dtype for t in checked if t.index in live} - _FLOAT - {"INT8"}):
        yield f"{dtype} activations in an int8 model (int8 compute only)", dtype


@dataclasses.dataclass
class Proof:
    """What the check found: every ``Violation``, and what passed although it is no ReLU
    network op (``notes``: "final ARG_MAX at op 9", "channel gate at op 12 (--allow_gates)")."""

    violations: list
    notes: list


def _cast_reason(op, tensors):
    """Why a CAST of an activation changes values, or None when it keeps every one (a widening)."""
    src, dst = (tensors[op.inputs[0]].dtype, tensors[op.outputs[0]].dtype) if op.outputs else (None, None)
    if src == dst or src not in _BITS or dst not in _BITS:
        return None if src == dst else f"casts {src} to {dst}"
    if src in _FLOAT and dst not in _FLOAT:
        return f"truncates {src} to {dst} (x - cast(cast(x, int32), float32) is a sawtooth)"
    widening = dst in _FLOAT or _BITS[dst] > _BITS[src] or (
        _BITS[dst] == _BITS[src] and src.startswith("U") == dst.startswith("U"))
    return None if widening else f"narrows {src} to {dst} (it wraps or rounds)"


def _max_reason(op, tensors, mixed):
    """Why a max/min reduction is no max pooling: it reduces an axis holding different functions."""
    axes = MAX_OPS[op.type] or graph.reduced_axes(op, tensors)
    if axes is None:
        return f"{op.type} over axes computed at run time"
    over = mixed.get(op.inputs[0], {})
    bad = [f"axis {axis} ({over[axis]})" for axis in axes if axis in over]
    return (f"takes the max over {' and '.join(bad)}: a max of different activations is a new "
            "nonlinearity (max(x, 0.2 x) is a leaky ReLU); only max pooling over the positions of one "
            "feature map is allowed") if bad else None


def _gate_reason(gate, allow_gates):
    """Why a channel gate fails, or None when it passes."""
    if gate.function == "RELU6":
        return None if allow_gates else (
            "multiplies the feature map by relu6(x + 3) / 6 of its pooled channels (a squeeze-excite "
            "gate: a product of activations, not a ReLU network; --allow_gates accepts ReLU6 gates)")
    return (f"multiplies the feature map by {gate.function} (op {gate.at}) of its pooled channels: only "
            "ReLU6 (hard-sigmoid) gates pass, with --allow_gates")


def analyze(path_or_bytes, strict=False, int8=False, allow_gates=False):
    """The ``Proof`` of a file: see ``relu_only_violations``; ``allow_gates`` accepts ReLU6
    channel gates, each named in ``notes``."""
    info = path_or_bytes if hasattr(path_or_bytes, "operators") else inspect(path_or_bytes)
    bad, notes, gates = [], [], []
    flow = {}
    for op in info.operators:
        tensors, sg_in, sg_out = info.subgraphs[op.subgraph]
        if op.subgraph not in flow:
            live = graph.activations(info, op.subgraph)
            flow[op.subgraph] = (live, graph.consumers(info, op.subgraph), graph.producers(info, op.subgraph),
                                 graph.mixed_axes(info, op.subgraph, live))
        live, users, writers, mixed = flow[op.subgraph]
        at = f"{op.subgraph}:{op.index}" if op.subgraph else str(op.index)

        def flag(reason, kind="relu", dtype=None, gate=False, op=op):
            bad.append(Violation(op.index, op.subgraph, op.type, op.activation, reason, kind, dtype, gate))

        reads = bool(_live(op, range(len(op.inputs)), live))
        if op.activation is not None and op.activation not in RELU_FUSED:
            flag(f"fused {op.activation} activation is not ReLU-family")
        gate = graph.channel_gate(op, info, live, writers) if op.type == "MUL" and reads else None
        if gate is not None:
            reason = _gate_reason(gate, allow_gates)
            if reason:
                flag(reason, gate=True)
            else:
                gates.append(at)
        elif op.type in RELU_OPS:
            pass
        elif op.type in LINEAR_OPS:
            for reason in _operand_reasons(op, live):
                flag(reason)
            if op.type in MAX_OPS and reads and (reason := _max_reason(op, tensors, mixed)):
                flag(reason)
            if op.type == "CAST" and reads and (reason := _cast_reason(op, tensors)):
                flag(reason)
        elif op.type in _INDEX_OUTPUT_OPS and reads:
            if not graph.feeds_outputs_only(op, info, users, _PASS_THROUGH | {"CAST"}):
                flag(f"its index feeds the network: the position of a max is a step function (only a final "
                     f"{op.type} on the model output passes)")
            elif strict:
                flag(f"final {op.type} rejected by --strict")
            else:
                notes.append(f"final {op.type} at op {at}")
        elif op.type == "SOFTMAX":
            if strict:
                flag("SOFTMAX rejected by --strict")
            elif not graph.feeds_outputs_only(op, info, users, _PASS_THROUGH):
                flag("SOFTMAX inside the network (only a final SOFTMAX feeding an output is allowed)")
        elif op.type in STEP_OPS:
            flag(STEP_OPS[op.type])
        elif op.type not in _INDEX_OUTPUT_OPS:
            flag("not ReLU-family and not a known linear op (nonlinearity or unknown op)")
        if int8:
            for reason, dtype in _int8_reasons(op, tensors, set(sg_in), set(sg_out), live):
                flag(reason, "int8", dtype)
    return Proof(bad, ([f"{_gates(gates)} (--allow_gates)"] if gates else []) + notes)


def _gates(ats):
    return f"channel gate at op {ats[0]}" if len(ats) == 1 else f"channel gates at ops {', '.join(ats)}"


def relu_only_violations(path_or_bytes, strict=False, int8=False, allow_gates=False):
    """Every reason an operator breaks the ReLU-only promise; an empty list means the file keeps it.

    ``strict`` also rejects a final SOFTMAX and a final ARG_MAX; ``int8`` also rejects every
    activation tensor that is not int8 (float compute, int16 activations, int32 arithmetic), with
    QUANTIZE only at model inputs or outputs and DEQUANTIZE only at outputs; ``allow_gates``
    accepts ReLU6 channel gates. Accepts a path, bytes or a ``ModelInfo``.
    """
    return analyze(path_or_bytes, strict, int8, allow_gates).violations


def by_operator(violations):
    """[(operator, [reasons])] in file order: one entry per offending operator."""
    grouped = {}
    for v in violations:
        grouped.setdefault(v.where, []).append(v.reason)
    return list(grouped.items())


def verdict(violations, int8=False, notes=()):
    """The one-line answer for a file: ``ReLU-only int8``, with what passed although it is no
    ReLU network op (``ReLU-only, with final ARG_MAX at op 9``); ``not ReLU-only (2 offending
    operators: DIV, EXP)``, with ``; not int8 either: ...`` when types fail too; or, for a file
    whose only fault is its types, ``ReLU-only, but float compute (3 offending operators)``."""
    if not violations:
        return ("ReLU-only int8" if int8 else "ReLU-only") + (f", with {', '.join(notes)}" if notes else "")
    relu = [v for v in violations if v.kind == "relu"]
    types = [v for v in violations if v.kind == "int8"]
    dtypes = sorted({v.dtype for v in types})
    what = " and ".join(["float compute"] * any(d in _FLOAT for d in dtypes)
                        + [f"{d} activations" for d in dtypes if d not in _FLOAT])
    if not relu:
        return f"ReLU-only, but {what} ({_operators(types, 'offending operator')})"
    gates = list(dict.fromkeys(f"{v.subgraph}:{v.index}" if v.subgraph else str(v.index) for v in relu if v.gate))
    names = ", ".join(sorted({v.type for v in relu if not v.gate}) + ([_gates(gates)] if gates else []))
    line = f"not ReLU-only ({_operators(relu, 'offending operator')}: {names})"
    return line + (f"; not int8 either: {what} ({_operators(types, 'operator')})" if types else "")


def _operators(violations, noun):
    n = len({(v.subgraph, v.index) for v in violations})
    return f"{n} {noun}" + ("" if n == 1 else "s")


def micro_blocker(path_or_bytes):
    """Why the file is no int8 microcontroller model, as one line; None when it is one.

    Keras' own `model.export(path, format="litert")` by default allows Flex ops (TensorFlow
    kernels that only LiteRT's Flex delegate has: TensorFlow Lite Micro cannot load the file)
    and does not quantize (float compute: no int8 kernels such as CMSIS-NN or an NPU, and four
    times the weight memory). `pea-tflite convert`, or that export with the full-int8 converter
    settings, gives neither.
    """
    info = path_or_bytes if hasattr(path_or_bytes, "operators") else inspect(path_or_bytes)
    flex = sorted({op.type.split(":", 1)[1] for op in info.operators if op.type.startswith("CUSTOM:Flex")})
    computing = [op for op in info.operators if op.type not in {"QUANTIZE", "DEQUANTIZE", "SHAPE"}]
    floats = [op for op in computing if any(
        t >= 0 and info.subgraphs[op.subgraph][0][t].dtype in _FLOAT for t in (*op.inputs, *op.outputs))]
    reasons = []
    if flex:
        reasons.append(f"TensorFlow (Flex) ops {', '.join(flex)}, which TensorFlow Lite Micro cannot load")
    if floats:
        reasons.append(f"float compute in {len(floats)} of {len(computing)} ops, which int8 microcontroller "
                       "kernels and NPUs cannot run")
    if not reasons:
        return None
    return ("not for microcontrollers: " + "; ".join(reasons) + " (the defaults of Keras' "
            "model.export(format=\"litert\"): deploy with pea-tflite convert, or export with full-int8 settings)")
