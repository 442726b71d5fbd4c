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
"""

import dataclasses

from pea_keras.tflite.model_info import inspect

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
    "ZEROS_LIKE", "ONES_LIKE", "TILE", "BROADCAST_TO", "CAST", "ARG_MAX", "ARG_MIN",
    "EMBEDDING_LOOKUP", "REVERSE_V2",
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
# Ops whose outputs depend only on the shapes of their inputs, never on the values.
SHAPE_ONLY_OPS = frozenset({"SHAPE"})
# Ops a SOFTMAX output may pass through on its way to a model output.
_PASS_THROUGH = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"})
_FLOAT = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})
_INDEX_OUTPUT_OPS = frozenset({"ARG_MAX", "ARG_MIN"})  # they write indices, not activations


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

    @property
    def where(self):
        """The operator, as the check prints it: ``op 3 DIV[NONE]`` (``op 1:3 ...`` in subgraph 1)."""
        at = f"{self.subgraph}:{self.index}" if self.subgraph else str(self.index)
        return f"op {at} {self.type}[{self.activation}]" if self.activation else f"op {at} {self.type}"

    def __str__(self):
        return f"{self.where}: {self.reason}"


def _consumers(info, subgraph):
    users = {}
    for op in info.operators:
        if op.subgraph == subgraph:
            for t in op.inputs:
                users.setdefault(t, []).append(op)
    return users


def activations(info, subgraph=0):
    """Tensor ids of the subgraph whose values depend on the values of its inputs.

    TFLite stores operators in execution order, so one forward pass suffices. A tensor that is
    neither a constant nor written by an op that reads only constants and shapes counts as an
    activation (model inputs, variables), so an unknown source never passes for a constant.
    """
    tensors = info.subgraphs[subgraph][0]
    static = {t.index for t in tensors if t.constant}
    for op in info.operators:
        if op.subgraph == subgraph and (op.type in SHAPE_ONLY_OPS
                                        or all(t < 0 or t in static for t in op.inputs)):
            static.update(op.outputs)
    return {t.index for t in tensors} - static


def _feeds_output_only(op, info, users):
    """True if every path from the op's output reaches a subgraph output through
    pass-through ops only (a normalisation of the output, not a hidden activation)."""
    outputs = set(info.subgraphs[op.subgraph][2])
    frontier, seen = list(op.outputs), set()
    reached = False
    while frontier:
        t = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        reached |= t in outputs
        for user in users.get(t, []):
            if user.type not in _PASS_THROUGH:
                return False
            frontier.extend(user.outputs)
    return reached


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


def relu_only_violations(path_or_bytes, strict=False, int8=False):
    """Every reason an operator breaks the ReLU-only promise; an empty list means the file keeps it.

    ``strict`` also rejects a final SOFTMAX; ``int8`` also rejects every activation tensor that
    is not int8 (float compute, int16 activations, int32 arithmetic), with QUANTIZE only at model
    inputs or outputs and DEQUANTIZE only at outputs. Accepts a path, bytes or a ``ModelInfo``.
    """
    info = path_or_bytes if hasattr(path_or_bytes, "operators") else inspect(path_or_bytes)
    bad = []
    users_by_sg, live_by_sg = {}, {}
    for op in info.operators:
        tensors, sg_in, sg_out = info.subgraphs[op.subgraph]
        users = users_by_sg.setdefault(op.subgraph, _consumers(info, op.subgraph))
        live = live_by_sg.setdefault(op.subgraph, activations(info, op.subgraph))

        def flag(reason, kind="relu", dtype=None, op=op):
            bad.append(Violation(op.index, op.subgraph, op.type, op.activation, reason, kind, dtype))

        if op.activation is not None and op.activation not in RELU_FUSED:
            flag(f"fused {op.activation} activation is not ReLU-family")
        if op.type in RELU_OPS:
            pass
        elif op.type in LINEAR_OPS:
            for reason in _operand_reasons(op, live):
                flag(reason)
        elif op.type == "SOFTMAX":
            if strict:
                flag("SOFTMAX rejected by --strict")
            elif not _feeds_output_only(op, info, users):
                flag("SOFTMAX inside the network (only a final SOFTMAX feeding an output is allowed)")
        else:
            flag("not ReLU-family and not a known linear op (nonlinearity or unknown op)")
        if int8:
            for reason, dtype in _int8_reasons(op, tensors, set(sg_in), set(sg_out), live):
                flag(reason, "int8", dtype)
    return bad


def by_operator(violations):
    """[(operator, [reasons])] in file order: one entry per offending operator."""
    grouped = {}
    for v in violations:
        grouped.setdefault(v.where, []).append(v.reason)
    return list(grouped.items())


def verdict(violations, int8=False):
    """The one-line answer for a file: ``ReLU-only int8``; ``not ReLU-only (2 offending
    operators: DIV, EXP)``, with ``; not int8 either: ...`` when types fail too; or, for a file
    whose only fault is its types, ``ReLU-only, but float compute (3 offending operators)``."""
    if not violations:
        return "ReLU-only int8" if int8 else "ReLU-only"
    relu = [v for v in violations if v.kind == "relu"]
    types = [v for v in violations if v.kind == "int8"]
    dtypes = sorted({v.dtype for v in types})
    what = " and ".join(["float compute"] * any(d in _FLOAT for d in dtypes)
                        + [f"{d} activations" for d in dtypes if d not in _FLOAT])
    if not relu:
        return f"ReLU-only, but {what} ({_operators(types, 'offending operator')})"
    names = ", ".join(sorted({v.type for v in relu}))
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
