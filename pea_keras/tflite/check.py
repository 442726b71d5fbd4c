"""Prove a ``.tflite`` file is ReLU-only: the promise PEA makes at deploy time.

The check is an allow-list, not a deny-list: an operator passes only if it is
known not to be a nonlinear activation (convolutions, adds, pooling, reshapes,
...) or is a ReLU-family activation. An op the list does not know - a new
nonlinearity, a custom op, control flow - fails, so nothing slips through
because we forgot to name it. Elementwise ops that are linear only when one
side is a constant (MUL, DIV, MAXIMUM, MINIMUM, BATCH_MATMUL) fail when both
sides are activations: ``x * relu6(x + 3) / 6`` (an unfused hard-swish) and
``max(x, 0.2 x)`` (an unfused leaky ReLU) are built from allowed ops.
"""

import dataclasses

from pea_keras.tflite.model_info import inspect

RELU_OPS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1"})
RELU_FUSED = frozenset({"NONE", "RELU", "RELU6", "RELU_N1_TO_1"})

# Linear maps, data movement, pooling and (re)quantization: none is an activation.
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
})
# Linear only when at most one input is an activation (the rest constants).
LINEAR_WITH_CONSTANT = frozenset({"MUL", "DIV", "MAXIMUM", "MINIMUM", "BATCH_MATMUL"})
# Ops a SOFTMAX output may pass through on its way to a model output.
_PASS_THROUGH = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"})
_EDGE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_FLOAT = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})


@dataclasses.dataclass(frozen=True)
class Violation:
    index: int
    subgraph: int
    type: str
    activation: str | None
    reason: str

    def __str__(self):
        where = f"{self.subgraph}:{self.index}" if self.subgraph else str(self.index)
        label = f"{self.type}[{self.activation}]" if self.activation else self.type
        return f"op {where} {label}: {self.reason}"


def _consumers(info, subgraph):
    users = {}
    for op in info.operators:
        if op.subgraph == subgraph:
            for t in op.inputs:
                users.setdefault(t, []).append(op)
    return users


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


def relu_only_violations(path_or_bytes, strict=False, int8=False):
    """Every operator that breaks the ReLU-only promise; an empty list means the file keeps it.

    ``strict`` also rejects a final SOFTMAX; ``int8`` also rejects float compute
    (QUANTIZE may only read a model input, DEQUANTIZE may only write a model output).
    Accepts a path, bytes or a ``ModelInfo`` from ``inspect``.
    """
    info = path_or_bytes if hasattr(path_or_bytes, "operators") else inspect(path_or_bytes)
    bad = []
    users_by_sg = {}
    for op in info.operators:
        tensors, sg_in, sg_out = info.subgraphs[op.subgraph]
        users = users_by_sg.setdefault(op.subgraph, _consumers(info, op.subgraph))

        def flag(reason, op=op):
            bad.append(Violation(op.index, op.subgraph, op.type, op.activation, reason))

        if op.activation is not None and op.activation not in RELU_FUSED:
            flag(f"fused {op.activation} activation is not ReLU-family")
        if op.type in RELU_OPS or op.type in LINEAR_OPS:
            pass
        elif op.type in LINEAR_WITH_CONSTANT:
            live = [t for t in op.inputs if t >= 0 and not tensors[t].constant]
            if len(live) > 1:
                flag("multiplies or compares two activations (a gating nonlinearity)")
        elif op.type == "SOFTMAX":
            if strict:
                flag("SOFTMAX rejected by --strict")
            elif not _feeds_output_only(op, info, users):
                flag("SOFTMAX inside the network (only a final SOFTMAX feeding an output is allowed)")
        else:
            flag("not ReLU-family and not a known linear op (nonlinearity or unknown op)")
        if int8:
            if op.type == "QUANTIZE":
                if tensors[op.inputs[0]].dtype in _FLOAT and op.inputs[0] not in sg_in:
                    flag("float-to-int QUANTIZE inside the network (int8 allows it only at inputs)")
            elif op.type == "DEQUANTIZE":
                if op.outputs[0] not in sg_out:
                    flag("DEQUANTIZE inside the network (int8 allows it only at outputs)")
            elif op.type != "SHAPE":  # reads the shape only, whatever the dtype
                dtypes = {tensors[t].dtype for t in (*op.inputs, *op.outputs) if t >= 0}
                floats = sorted(dtypes & _FLOAT)
                if floats:
                    flag(f"float compute ({', '.join(floats)}) in an int8 model")
    return bad


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
    computing = [op for op in info.operators if op.type not in _EDGE_OPS | {"SHAPE"}]
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
