"""The data flow of a ``.tflite`` subgraph, as the ReLU-only check (``check.py``) reads it.

Three facts decide whether an allowed op computes a new nonlinearity: which tensors are
*activations* (their values depend on the model inputs'), which axes of an activation are
*mixed* (positions along them hold different functions: channels, copies stacked by PACK or
CONCATENATION, outputs rearranged by a reshape), because a max over a mixed axis is a maxout
(``max(x, 0.2 x)`` is a leaky ReLU) while a max over the positions of one feature map is max
pooling; and which products are *channel gates* (a feature map times a per-channel vector
computed from its pooled values, the squeeze-excite block).
"""

import dataclasses

# Ops whose outputs depend only on the shapes of their inputs, never on the values.
SHAPE_ONLY_OPS = frozenset({"SHAPE"})
# Ops whose output's last axis holds new features: linear maps of the input's.
_FEATURE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "FULLY_CONNECTED", "BATCH_MATMUL"})
# Ops that keep positions along every axis (elementwise on one tensor, a subset, a padding,
# copies, windows): what was mixed stays mixed, what was one feature map stays one.
_POSITIONAL_OPS = frozenset({
    "QUANTIZE", "DEQUANTIZE", "CAST", "NEG", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1",
    "SLICE", "STRIDED_SLICE", "PAD", "PADV2", "MIRROR_PAD", "TILE", "BROADCAST_TO", "SPLIT", "SPLIT_V",
    "RESIZE_NEAREST_NEIGHBOR", "AVERAGE_POOL_2D", "MAX_POOL_2D", "REVERSE_V2", "GATHER"})
# Ops that drop or insert axes of size 1 (anything else they do mixes every axis).
_RESHAPE_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
# Ops that move values across axes.
_MOVING_OPS = frozenset({"TRANSPOSE", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"})
_REDUCE_OPS = frozenset({"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"})
# Elementwise ops of several operands (broadcast from the right).
_ELEMENTWISE_OPS = frozenset({
    "ADD", "ADD_N", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "SELECT", "SELECT_V2"})
# A gate's branch: from the pooled vector to the gate function.
_BRANCH_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "ADD", "SUB", "MUL", "DIV", "RELU", "RELU6"})
_PASS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "QUANTIZE", "DEQUANTIZE"})
_POOL_OPS = frozenset({"MEAN", "SUM", "AVERAGE_POOL_2D"})


def consumers(info, subgraph):
    """{tensor id: [ops reading it]}."""
    users = {}
    for op in info.operators:
        if op.subgraph == subgraph:
            for t in op.inputs:
                users.setdefault(t, []).append(op)
    return users


def producers(info, subgraph):
    """{tensor id: the op writing it}."""
    return {t: op for op in info.operators if op.subgraph == subgraph for t in op.outputs}


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


def feeds_outputs_only(op, info, users, through):
    """True if every path from the op's output reaches a subgraph output through ops in
    ``through`` only (a post-processing of the output, not a hidden activation)."""
    outputs = set(info.subgraphs[op.subgraph][2])
    frontier, seen, reached = list(op.outputs), set(), False
    while frontier:
        t = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        reached |= t in outputs
        for user in users.get(t, []):
            if user.type not in through:
                return False
            frontier.extend(user.outputs)
    return reached


def reduced_axes(op, tensors):
    """The axes a reduction's constant operand names (normalised), or None when not constant."""
    if len(op.inputs) < 2 or op.inputs[1] < 0 or tensors[op.inputs[1]].values is None:
        return None
    rank = len(tensors[op.inputs[0]].shape)
    return sorted({a % rank for a in tensors[op.inputs[1]].values}) if rank else None


def _all(rank, why):
    return {a: why for a in range(rank)}


def _reshaped(mixed, src, dst, why):
    """Carry `mixed` from shape `src` to `dst`: axis by axis when they differ only by axes of size
    1; else every axis is mixed, unless none was (raw inputs rearranged stay raw inputs)."""
    big_src, big_dst = [a for a, d in enumerate(src) if d != 1], [a for a, d in enumerate(dst) if d != 1]
    if [src[a] for a in big_src] != [dst[a] for a in big_dst]:
        return _all(len(dst), why) if mixed else {}
    where = dict(zip(big_src, big_dst))
    return {where[a]: w for a, w in mixed.items() if a in where}


def _right_aligned(mixed, rank, out_rank):
    return {a + out_rank - rank: w for a, w in mixed.items() if a + out_rank - rank >= 0}


def _varying_constant_axes(shape, out_rank):
    """Axes of the output, but its last, along which a constant operand of `shape` may vary."""
    shift = out_rank - len(shape)
    return [a + shift for a, d in enumerate(shape) if d > 1 and 0 <= a + shift < out_rank - 1]


def mixed_axes(info, subgraph, live):
    """{activation id: {axis: why positions along it hold different functions}}.

    A model input holds raw values, mixed nowhere. The last axis of a convolution's or dense
    layer's output holds different features (a max over it is a maxout); PACK and CONCATENATION
    of two activations mix their axis; a constant that varies along an axis scales positions
    differently; a transposed convolution and bilinear resizing compute positions differently;
    anything that moves values across axes (TRANSPOSE, DEPTH_TO_SPACE, a reshape beyond axes of
    size 1) mixes every axis it writes once any was mixed. Max pooling over axes that are not
    mixed takes the max of one feature at different places, which ReLU networks may do.
    """
    tensors, sg_in, _ = info.subgraphs[subgraph]
    shape = {t.index: t.shape for t in tensors}
    mixed = {t: {} for t in sg_in}
    for op in info.operators:
        if op.subgraph != subgraph:
            continue
        ins = [t for t in op.inputs if t >= 0 and t in live]
        if not ins:
            continue
        src = mixed.get(ins[0], _all(len(shape[ins[0]]), "of unknown origin"))
        at = f"op {op.index} {op.type}"
        for out in op.outputs:
            rank = len(shape[out])
            mixed[out] = _propagate(op, at, ins, src, shape, rank, out, mixed, tensors)
    return mixed


def _propagate(op, at, ins, src, shape, rank, out, mixed, tensors):
    t0 = ins[0]
    if op.type in _FEATURE_OPS:
        carried = src if len(shape[t0]) == rank else (
            {} if all(a == len(shape[t0]) - 1 for a in src) else _all(rank, f"flattened by {at}"))
        return {**{a: w for a, w in carried.items() if a != rank - 1}, rank - 1: f"the channels of {at}, a maxout"}
    if op.type in _POSITIONAL_OPS:
        return dict(src) if len(shape[t0]) == rank else _reshaped(src, shape[t0], shape[out], f"reshaped by {at}")
    if op.type in ("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"):
        return _all(rank, f"computed by different kernels of {at}")
    if op.type == "RESIZE_BILINEAR":
        return {**src, **{a: f"interpolated with different weights by {at}" for a in range(1, rank - 1)}}
    if op.type in _RESHAPE_OPS:
        return _reshaped(src, shape[t0], shape[out], f"reshaped by {at}")
    if op.type in _REDUCE_OPS:
        axes = reduced_axes(op, tensors)
        if axes is None:
            return _all(rank, f"reduced over unknown axes by {at}")
        kept = [a for a in range(len(shape[t0])) if a not in axes]
        if rank == len(shape[t0]):
            return {a: w for a, w in src.items() if a not in axes}
        return {kept.index(a): w for a, w in src.items() if a in kept}
    if op.type in ("PACK", "CONCATENATION", "UNPACK"):
        axis = (op.axis or 0) % max(rank if op.type != "UNPACK" else len(shape[t0]), 1)
        if op.type == "UNPACK":
            return {a - (a > axis): w for a, w in src.items() if a != axis}
        joined = {}
        for t in ins:
            m = mixed.get(t, {})
            joined.update({a + (op.type == "PACK" and a >= axis): w for a, w in m.items()})
        if len(ins) > 1:
            joined[axis] = f"{'stacked' if op.type == 'PACK' else 'joined'} from {len(ins)} activations by {at}"
        return joined
    if op.type in _ELEMENTWISE_OPS:
        joined = {}
        for t in op.inputs:
            if t < 0:
                continue
            if t in ins:
                joined.update(_right_aligned(mixed.get(t, {}), len(shape[t]), rank))
            else:
                joined.update({a: f"scaled position by position by {at}"
                               for a in _varying_constant_axes(shape[t], rank)})
        return joined
    if op.type in _MOVING_OPS:
        return _all(rank, f"rearranged by {at}") if src else {}
    return _all(rank, f"computed by {at}")


@dataclasses.dataclass(frozen=True)
class Gate:
    """A product of a feature map and a per-channel vector computed from pooled values.
    ``function``: the op that bounds the gate ("RELU6" for a hard sigmoid, "LOGISTIC", ...)."""

    function: str
    at: int  # the op of the gate function


def channel_gate(op, info, live, writers):
    """The ``Gate`` a MUL of two activations is, or None when it is no channel gate.

    A gate multiplies a feature map (N, H, W, C) with more than one position by a vector
    (N, 1, 1, C) or (N, C) whose branch starts at a spatial pooling (MEAN, SUM,
    AVERAGE_POOL_2D), runs through linear maps and ReLUs and ends in the gate function; the
    feature map must not be computed from that pooled vector (x * f(x) is no gate).
    """
    if op.type != "MUL" or len(op.inputs) != 2:
        return None
    tensors = info.subgraphs[op.subgraph][0]
    for f, g in (op.inputs, op.inputs[::-1]):
        fs, gs = tensors[f].shape, tensors[g].shape
        if (len(fs) != 4 or fs[1] * fs[2] <= 1 or not gs or gs[-1] != fs[-1]
                or any(d != 1 for d in gs[1:-1]) or len(gs) not in (2, 4)):
            continue
        function, at, pooled = _gate_branch(g, tensors, live, writers)
        if pooled is not None and pooled not in _ancestors(f, writers, live):
            return Gate(function, at)
    return None


def _live_inputs(op, live):
    return [t for t in op.inputs if t >= 0 and t in live]


def _gate_branch(g, tensors, live, writers):
    """(gate function, its op index, the pooled tensor) of the branch ending in `g`;
    (None, None, None) when the branch does not start at a pooling."""
    function = at = None
    t = g
    while t in writers:
        op = writers[t]
        ins = _live_inputs(op, live)
        if len(ins) != 1:
            return None, None, None
        if op.type in _POOL_OPS:
            pooled = function and len(tensors[ins[0]].shape) == 4 and all(d == 1 for d in tensors[t].shape[1:-1])
            return (function, at, t) if pooled else (None, None, None)
        scale = op.type == "MUL" or (op.type == "DIV" and ins[0] == op.inputs[0])  # By a constant.
        if function is None and op.type not in _PASS_OPS and not scale:
            function, at = ("RELU6" if "RELU6" in (op.type, op.activation) else op.type), op.index
        elif function is not None and op.type not in _BRANCH_OPS | _PASS_OPS:
            return None, None, None
        t = ins[0]
    return None, None, None


def _ancestors(t, writers, live):
    seen, frontier = set(), [t]
    while frontier:
        t = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in writers:
            frontier.extend(_live_inputs(writers[t], live))
    return seen
