"""Reverse-mode differentiation of a lowered graph, in standard ONNX operators.

Every layer kind lowers to a handful of ONNX operators (``cnndsl/layers``); its
gradient is derived from that lowering by one adjoint rule per operator, kept
in the table :data:`ADJOINTS` below. A rule receives the forward node and the
gradient of its first output, and returns the gradients of its inputs (``None``
for inputs that carry no gradient: shapes, indices, constants). Kinds whose
training form differs from inference (bn's batch statistics, dropout's mask,
lrn's elementary form) lower differently when ``Builder.training`` is set, so
their gradients are exact for what the training graph computes.

Static shapes (batch axis excluded) come from ONNX shape inference run once on
the forward graph; a rule only ever reads non-batch sizes and whether a size is
1, so the gradient graph works for any batch size.

    >>> import numpy as np
    >>> from cnndsl import load
    >>> from cnndsl.train.step import train_model
    >>> m = train_model(load("network n { input 1x4x4\\n conv 2/3 -> fc 3 }"))
    >>> [o.name for o in m.graph.output][:3]
    ['loss', 'logits', 'conv.weight.new']
"""

from __future__ import annotations

from math import prod

import numpy as np
from onnx import helper

from cnndsl.layers.arith import transpose_out, window_out
from cnndsl.train.interpolation import linear_weights

# Operators whose outputs never carry a gradient (shapes, comparisons, indices).
NON_DIFFERENTIABLE = {
    "Shape",
    "Size",
    "ConstantOfShape",
    "Equal",
    "Greater",
    "Less",
    "GreaterOrEqual",
    "LessOrEqual",
    "And",
    "Or",
    "Not",
    "OneHot",
    "ArgMax",
}
BIG = 2**62  # "to the end" in Slice


class Tape:
    """Emits the backward operators of the builder's forward nodes into the same builder."""

    def __init__(self, b, shapes: dict[str, tuple]):
        self.b = b
        self.shapes = shapes
        self.consts = {name: arr for name, arr in b.initializers if name not in b.params}
        self.producers: dict[str, object] = {}  # forward tensor -> the node computing it

    # ---- what rules read
    def shape(self, name: str) -> tuple:
        try:
            return self.shapes[name]
        except KeyError:  # pragma: no cover - shape inference failing is a bug
            raise AssertionError(f"internal: no static shape for tensor {name} in the training graph") from None

    def const(self, name: str) -> np.ndarray:
        return self.consts[name]

    def producer(self, name: str):
        """The forward node computing ``name`` (None for graph inputs and initializers)."""
        return self.producers.get(name)

    def reuse(self, op_type: str, inputs) -> str:
        """The output of a forward node ``op_type(inputs)`` without attributes, or a new one."""
        for node in self.forward_nodes:
            if node.op_type == op_type and list(node.input) == list(inputs) and not node.attribute:
                return node.output[0]
        return self.op(op_type, list(inputs))

    @staticmethod
    def attrs(node) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def axes(self, node) -> list[int]:
        """Axes of a Reduce* node (attribute before opset 18, input since; ReduceSum since 13)."""
        rank = len(self.shape(node.input[0]))
        if len(node.input) > 1 and node.input[1]:
            axes = self.const(node.input[1]).tolist()
        else:
            axes = self.attrs(node).get("axes", list(range(rank)))
        return sorted(a % rank for a in axes)

    # ---- what rules emit
    def op(self, op_type, inputs, **attrs):
        return self.b.op(op_type, inputs, **attrs)

    def ints(self, values) -> str:
        return self.b.const(np.array(values, np.int64))

    def scalar(self, value) -> str:
        return self.b.scalar(value)

    def reduce_sum(self, x: str, axes, keepdims: int = 1) -> str:
        return self.op("ReduceSum", [x, self.ints(list(axes))], keepdims=keepdims)

    def unbroadcast(self, dy: str, shape: tuple, out_shape: tuple) -> str:
        """Sum a gradient of the broadcast result back to an operand of ``shape``."""
        if tuple(shape) == tuple(out_shape):
            return dy
        lead = len(out_shape) - len(shape)
        axes = list(range(lead)) + [lead + i for i, d in enumerate(shape) if d == 1 and out_shape[lead + i] != 1]
        out = self.reduce_sum(dy, axes) if axes else dy
        if lead:
            out = self.op("Reshape", [out, self.ints(list(shape))])
        return out

    def reshape_like(self, dy: str, x: str) -> str:
        return self.op("Reshape", [dy, self.op("Shape", [x])])

    def where(self, cond: str, a: str, b: str) -> str:
        return self.op("Where", [cond, a, b])

    def zero(self) -> str:
        return self.scalar(0.0)

    def fit(self, x: str, starts, sizes, have) -> str:
        """Spatial window [start, start + size) of ``x`` (whose spatial sizes are ``have``),
        zero-filled where it runs past the end."""
        n = len(sizes)
        axes = list(range(2, 2 + n))
        ends = [min(h, s + z) for h, s, z in zip(have, starts, sizes)]
        if any(s != 0 for s in starts) or any(e != h for e, h in zip(ends, have)):
            x = self.op("Slice", [x, self.ints(list(starts)), self.ints(ends), self.ints(axes)])
        short = [z - (e - s) for z, s, e in zip(sizes, starts, ends)]
        if any(short):
            x = self.op("Pad", [x, self.ints([0, 0] + [0] * n + [0, 0] + short)], mode="constant")
        return x


def differentiate(b, shapes: dict, seeds: dict[str, str], wrt: list[str], forward) -> dict[str, str]:
    """Gradients of the wrt tensors, given the gradients (``seeds``) of some tensors of the
    ``forward`` nodes.

    Walks the forward nodes backwards, summing the contributions of a tensor's
    consumers; a wrt tensor the seeds do not reach gets zeros."""
    tape = Tape(b, shapes)
    tape.forward_nodes = forward
    tape.producers = {o: node for node in forward for o in node.output}
    live = set(wrt)
    active = []
    for node in forward:
        on = node.op_type not in NON_DIFFERENTIABLE and any(i in live for i in node.input)
        if node.op_type == "Cast" and tape.attrs(node)["to"] != b.elem:
            on = False
        active.append(on)
        if on:
            live.update(node.output)
    grads: dict[str, list[str]] = {name: [g] for name, g in seeds.items()}
    layer = b.layer
    for node, on in zip(reversed(forward), reversed(active)):
        if not on or node.output[0] not in grads:
            continue
        rule = ADJOINTS.get(node.op_type)
        if rule is None:  # pragma: no cover - a lowering using an operator without a rule is a bug
            raise AssertionError(f"internal: no gradient rule for the ONNX operator {node.op_type} ({node.name})")
        b.layer = "grad:" + node.name
        dy = _total(b, grads.pop(node.output[0]))
        for name, dx in zip(node.input, rule(tape, node, dy)):
            if dx is not None and name in live:
                grads.setdefault(name, []).append(dx)
    b.layer = layer
    out = {}
    for name in wrt:
        if name in grads:
            b.layer = "grad:" + name
            out[name] = _total(b, grads[name])
        else:  # does not reach the loss (an unused head)
            out[name] = b.const(np.zeros(shapes[name], b.dtype))
    b.layer = layer
    return out


def _total(b, parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else b.op("Sum", parts)


# ---------------------------------------------------------------- element-wise
def _binary(t, n):
    a, c = n.input[0], n.input[1]
    return a, c, t.shape(a), t.shape(c), t.shape(n.output[0])


def _add(t, n, dy):
    _, _, sa, sb, sy = _binary(t, n)
    return [t.unbroadcast(dy, sa, sy), t.unbroadcast(dy, sb, sy)]


def _sub(t, n, dy):
    _, _, sa, sb, sy = _binary(t, n)
    return [t.unbroadcast(dy, sa, sy), t.unbroadcast(t.op("Neg", [dy]), sb, sy)]


def _mul(t, n, dy):
    a, c, sa, sb, sy = _binary(t, n)
    return [t.unbroadcast(t.op("Mul", [dy, c]), sa, sy), t.unbroadcast(t.op("Mul", [dy, a]), sb, sy)]


def _div(t, n, dy):
    _, c, sa, sb, sy = _binary(t, n)
    da = t.op("Div", [dy, c])
    db = t.op("Neg", [t.op("Div", [t.op("Mul", [dy, n.output[0]]), c])])  # −dy·a/c² = −dy·y/c
    return [t.unbroadcast(da, sa, sy), t.unbroadcast(db, sb, sy)]


def _pow(t, n, dy):
    e = float(t.const(n.input[1]))  # exponents are constants in every lowering
    da = t.op("Mul", [dy, t.op("Mul", [t.op("Pow", [n.input[0], t.scalar(e - 1.0)]), t.scalar(e)])])
    return [da, None]


def _max(t, n, dy):
    # ties split the gradient evenly, as torch.maximum's backward does (and as central
    # differences see a two-way tie: the mean of the slopes on either side)
    a, c, sa, sb, sy = _binary(t, n)
    z = t.zero()
    half = t.op("Mul", [dy, t.scalar(0.5)])
    tie = t.op("Equal", [a, c])
    da = t.where(t.op("Greater", [a, c]), dy, t.where(tie, half, z))
    db = t.where(t.op("Less", [a, c]), dy, t.where(tie, half, z))
    return [t.unbroadcast(da, sa, sy), t.unbroadcast(db, sb, sy)]


def _where(t, n, dy):
    cond, a, c = n.input
    sy = t.shape(n.output[0])
    z = t.zero()
    return [
        None,
        t.unbroadcast(t.where(cond, dy, z), t.shape(a), sy),
        t.unbroadcast(t.where(cond, z, dy), t.shape(c), sy),
    ]


def _exp(t, n, dy):
    return [t.op("Mul", [dy, n.output[0]])]


def _sum(t, n, dy):
    sy = t.shape(n.output[0])
    return [t.unbroadcast(dy, t.shape(i), sy) for i in n.input]


def _identity(t, n, dy):
    return [dy]


def _neg(t, n, dy):
    return [t.op("Neg", [dy])]


def _sqrt(t, n, dy):
    return [t.op("Div", [t.op("Mul", [dy, t.scalar(0.5)]), n.output[0]])]


def _reciprocal(t, n, dy):
    y = n.output[0]
    return [t.op("Neg", [t.op("Mul", [dy, t.op("Mul", [y, y])])])]


def _relu(t, n, dy):
    # dy·[y > 0] as a product with the cast mask: onnxruntime's Where with a scalar runs slower
    mask = t.op("Cast", [t.op("Greater", [n.output[0], t.zero()])], to=t.b.elem)
    return [t.op("Mul", [dy, mask])]


def _sigmoid(t, n, dy):
    y = n.output[0]
    return [t.op("Mul", [dy, t.op("Mul", [y, t.op("Sub", [t.scalar(1.0), y])])])]


def _tanh(t, n, dy):
    y = n.output[0]
    return [t.op("Mul", [dy, t.op("Sub", [t.scalar(1.0), t.op("Mul", [y, y])])])]


def _abs(t, n, dy):
    return [t.op("Mul", [dy, t.op("Sign", [n.input[0]])])]


def _erf(t, n, dy):
    x = n.input[0]
    bump = t.op("Exp", [t.op("Neg", [t.op("Mul", [x, x])])])
    return [t.op("Mul", [dy, t.op("Mul", [bump, t.scalar(2.0 / np.sqrt(np.pi))])])]


def _leaky_relu(t, n, dy):
    alpha = t.attrs(n).get("alpha", 0.01)
    return [t.where(t.op("Greater", [n.input[0], t.zero()]), dy, t.op("Mul", [dy, t.scalar(alpha)]))]


def _elu(t, n, dy):
    alpha = t.attrs(n).get("alpha", 1.0)
    below = t.op("Mul", [dy, t.op("Add", [n.output[0], t.scalar(alpha)])])  # α·eˣ = y + α
    return [t.where(t.op("Greater", [n.input[0], t.zero()]), dy, below)]


def _hardswish(t, n, dy):
    # y = x·clip(x/6 + 1/2, 0, 1): slope 0 up to −3, 1 from 3 on, x/3 + 1/2 between (at the
    # kinks the outer sides, as PyTorch's hardswish_backward)
    x = n.input[0]
    mid = t.op("Add", [t.op("Mul", [x, t.scalar(1.0 / 3.0)]), t.scalar(0.5)])
    slope = t.where(
        t.op("LessOrEqual", [x, t.scalar(-3.0)]),
        t.zero(),
        t.where(t.op("GreaterOrEqual", [x, t.scalar(3.0)]), t.scalar(1.0), mid),
    )
    return [t.op("Mul", [dy, slope])]


def _hard_sigmoid(t, n, dy):
    # y = clip(αx + β, 0, 1): slope α where 0 < αx + β < 1, else 0
    at = t.attrs(n)
    alpha, beta = at.get("alpha", 0.2), at.get("beta", 0.5)
    z = t.op("Add", [t.op("Mul", [n.input[0], t.scalar(alpha)]), t.scalar(beta)])
    inside = t.op("And", [t.op("Greater", [z, t.zero()]), t.op("Less", [z, t.scalar(1.0)])])
    return [t.where(inside, t.op("Mul", [dy, t.scalar(alpha)]), t.zero())]


def _softplus(t, n, dy):
    return [t.op("Mul", [dy, t.op("Sigmoid", [n.input[0]])])]  # d/dx log(1 + eˣ) = sigmoid(x)


def _mish(t, n, dy):
    # y = x·tanh(sp(x)), sp = softplus: y' = tanh(sp) + x·sigmoid(x)·(1 − tanh²(sp))
    x = n.input[0]
    th = t.op("Tanh", [t.op("Softplus", [x])])
    sech2 = t.op("Sub", [t.scalar(1.0), t.op("Mul", [th, th])])
    slope = t.op("Add", [th, t.op("Mul", [t.op("Mul", [x, t.op("Sigmoid", [x])]), sech2])])
    return [t.op("Mul", [dy, slope])]


def _prelu(t, n, dy):
    x, slope = n.input[0], n.input[1]
    pos = t.op("Greater", [x, t.zero()])
    dx = t.where(pos, dy, t.op("Mul", [dy, slope]))
    ds = t.where(pos, t.zero(), t.op("Mul", [dy, x]))
    return [dx, t.unbroadcast(ds, t.shape(slope), t.shape(n.output[0]))]


def _clip(t, n, dy):
    x = n.input[0]
    inside = t.op("And", [t.op("Greater", [x, n.input[1]]), t.op("Less", [x, n.input[2]])])
    return [t.where(inside, dy, t.zero()), None, None]


def _cast(t, n, dy):
    return [dy]


def _softmax(t, n, dy):
    y = n.output[0]
    axis = t.attrs(n).get("axis", -1)
    inner = t.reduce_sum(t.op("Mul", [dy, y]), [axis % len(t.shape(y))])
    return [t.op("Mul", [y, t.op("Sub", [dy, inner])])]


def _dropout(t, n, dy):
    keep = 1.0 - float(t.const(n.input[1]))
    mask = t.op("Cast", [n.output[1]], to=t.b.elem)
    return [t.op("Mul", [t.op("Mul", [dy, mask]), t.scalar(1.0 / keep)]), None, None]


# ---------------------------------------------------------------- shapes and layout
def _reshape(t, n, dy):
    return [t.reshape_like(dy, n.input[0])] + [None] * (len(n.input) - 1)


def _transpose(t, n, dy):
    perm = t.attrs(n)["perm"]
    return [t.op("Transpose", [dy], perm=[perm.index(i) for i in range(len(perm))])]


def _concat(t, n, dy):
    axis = t.attrs(n)["axis"] % len(t.shape(n.output[0]))
    out, start = [], 0
    for name in n.input:
        size = t.shape(name)[axis]
        out.append(t.op("Slice", [dy, t.ints([start]), t.ints([start + size]), t.ints([axis])]))
        start += size
    return out


def _slice(t, n, dy):
    x = n.input[0]
    sx, sy = t.shape(x), t.shape(n.output[0])
    rank = len(sx)
    starts = t.const(n.input[1]).tolist()  # the output's shape says where each slice ends
    axes = t.const(n.input[3]).tolist() if len(n.input) > 3 and n.input[3] else list(range(len(starts)))
    steps = t.const(n.input[4]).tolist() if len(n.input) > 4 and n.input[4] else [1] * len(starts)
    g, cur = dy, list(sy)
    spaced = {}  # axes whose values are already back at every step-th position
    plane = {a % rank: (st, sp) for st, a, sp in zip(starts, axes, steps) if a % rank >= 2}
    if rank == 4 and set(plane) == {2, 3} and len({sp for _, sp in plane.values()}) == 1:
        step = plane[2][1]
        if step > 1 and all(st == 0 for st, _ in plane.values()):
            # both spatial axes at once: dy as channel block (0, 0) of DepthToSpace's
            # (step·step·C) channels, the other blocks zeros — two operators instead of a
            # Pad of an inner axis of size 1 per axis, which onnxruntime runs slowly
            pads = [0, 0, 0, 0, 0, (step * step - 1) * sy[1], 0, 0]
            g = t.op("Pad", [g, t.ints(pads)], mode="constant")
            g = t.op("DepthToSpace", [g], blocksize=step, mode="DCR")
            spaced = {2: sy[2] * step, 3: sy[3] * step}
            cur[2:] = [spaced[2], spaced[3]]
    for start, axis, step in zip(starts, axes, steps):
        axis %= rank
        if axis == 0 or step < 1:  # pragma: no cover - no lowering slices the batch or backwards
            raise AssertionError("internal: unsupported Slice in the training graph")
        size, count = sx[axis], sy[axis]
        first = min(max(start + size if start < 0 else start, 0), size)
        span = count
        if axis in spaced:
            span = spaced[axis]
        elif step > 1:  # put the values back at every step-th position: (…, o) -> (…, o, step) -> (…, o·step)
            g = t.op("Unsqueeze", [g, t.ints([axis + 1])])
            pads = [0] * (2 * (rank + 1))
            pads[rank + 1 + axis + 1] = step - 1
            g = t.op("Pad", [g, t.ints(pads)], mode="constant")
            span = count * step
            target = [0] + cur[1:]
            target[axis] = span
            g = t.op("Reshape", [g, t.ints(target)])
        pads = [0] * (2 * rank)
        pads[axis] = first
        if size - first - span >= 0:
            pads[rank + axis] = size - first - span
            g = t.op("Pad", [g, t.ints(pads)], mode="constant") if any(pads) else g
        else:  # the last stride step ran past the end
            g = t.op("Pad", [g, t.ints(pads)], mode="constant") if first else g
            g = t.op("Slice", [g, t.ints([0]), t.ints([size]), t.ints([axis])])
        cur[axis] = size
    return [g] + [None] * (len(n.input) - 1)


def _pad(t, n, dy):
    x = n.input[0]
    sx = t.shape(x)
    rank = len(sx)
    pads = t.const(n.input[1]).tolist()
    mode = t.attrs(n).get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    g = dy
    for axis in range(rank):
        p0, p1 = pads[axis], pads[rank + axis]
        if not p0 and not p1:
            continue
        w = sx[axis]
        core = t.op("Slice", [g, t.ints([p0]), t.ints([p0 + w]), t.ints([axis])])
        if mode == "constant":
            g = core
            continue
        parts = [core]

        def spread(piece, before, after, axis=axis):
            full = [0] * (2 * rank)
            full[axis], full[rank + axis] = before, after
            return t.op("Pad", [piece, t.ints(full)], mode="constant")

        if mode == "edge":  # the padded copies all came from the first / last position
            if p0:
                head = t.reduce_sum(t.op("Slice", [g, t.ints([0]), t.ints([p0]), t.ints([axis])]), [axis])
                parts.append(spread(head, 0, w - 1))
            if p1:
                tail = t.reduce_sum(t.op("Slice", [g, t.ints([p0 + w]), t.ints([p0 + w + p1]), t.ints([axis])]), [axis])
                parts.append(spread(tail, w - 1, 0))
        else:  # reflect: padded position p0 − j mirrors x[j], the end mirrors x[w − 2 − j]
            if p0:
                head = t.op("Slice", [g, t.ints([p0 - 1]), t.ints([-BIG]), t.ints([axis]), t.ints([-1])])
                parts.append(spread(head, 1, w - 1 - p0))
            if p1:
                tail = t.op("Slice", [g, t.ints([p0 + w + p1 - 1]), t.ints([p0 + w - 1]), t.ints([axis]), t.ints([-1])])
                parts.append(spread(tail, w - 1 - p1, 1))
        g = t.op("Sum", parts)
    return [g] + [None] * (len(n.input) - 1)


def _space_to_depth(t, n, dy):
    # a permutation of the elements: its inverse, DepthToSpace in DCR order, carries dy back
    return [t.op("DepthToSpace", [dy], blocksize=t.attrs(n)["blocksize"], mode="DCR")]


def _expand(t, n, dy):
    return [t.unbroadcast(dy, t.shape(n.input[0]), t.shape(n.output[0])), None]


def _unsqueeze(t, n, dy):
    return [t.reshape_like(dy, n.input[0]), None]


def _scatter_elements(t, n, dy):
    # zeros, indices, values -> only the values carry a gradient (unpool)
    axis = t.attrs(n).get("axis", 0)
    return [None, None, t.op("GatherElements", [dy, n.input[1]], axis=axis)]


# ---------------------------------------------------------------- reductions and normalisation
def _expand_back(t, n, dy, axes):
    """dy of a Reduce* output brought back to the reduced axes (keepdims=0 -> unsqueeze)."""
    if not t.attrs(n).get("keepdims", 1):
        dy = t.op("Unsqueeze", [dy, t.ints(axes)])
    return dy


def _reduce_mean(t, n, dy):
    x = n.input[0]
    axes = t.axes(n)
    count = int(np.prod([t.shape(x)[a] for a in axes])) if 0 not in axes else None
    g = _expand_back(t, n, dy, axes)
    if count is None:  # the batch axis: divide by its run-time size
        size = t.op("Cast", [t.op("Size", [x])], to=t.b.elem)
        out = t.op("Cast", [t.op("Size", [n.output[0]])], to=t.b.elem)
        g = t.op("Div", [g, t.op("Div", [size, out])])
    else:
        g = t.op("Div", [g, t.scalar(float(count))])
    return [t.op("Expand", [g, t.op("Shape", [x])])] + [None] * (len(n.input) - 1)


def _reduce_sum(t, n, dy):
    x = n.input[0]
    g = _expand_back(t, n, dy, t.axes(n))
    return [t.op("Expand", [g, t.op("Shape", [x])])] + [None] * (len(n.input) - 1)


def _reduce_sum_square(t, n, dy):
    x = n.input[0]
    g = _expand_back(t, n, dy, t.axes(n))
    return [t.op("Mul", [t.op("Mul", [x, g]), t.scalar(2.0)])] + [None] * (len(n.input) - 1)


def _global_average_pool(t, n, dy):
    x = n.input[0]
    count = float(np.prod(t.shape(x)[2:]))
    return [t.op("Expand", [t.op("Div", [dy, t.scalar(count)]), t.op("Shape", [x])])]


def _first_maximum(t, x, dy, axes):
    """The gradient of a maximum over ``axes`` (with keepdims) routed to one position: the
    first maximum in row-major order over those axes, as PyTorch's max pooling kernels pick
    (``if (val > maxval)``). ``axes`` are one axis or the trailing axes."""
    shape = t.shape(x)
    rank = len(shape)
    if len(axes) == 1:
        flat, axis = x, axes[0]
    else:
        if axes != list(range(axes[0], rank)):  # pragma: no cover - no lowering reduces other axes
            raise AssertionError("internal: a maximum over non-trailing axes in the training graph")
        axis = axes[0]
        flat = t.op("Reshape", [x, t.ints([0] * axis + [-1])])
        dy = t.op("Reshape", [dy, t.ints([0] * axis + [1])])
    where = t.op("ArgMax", [flat], axis=axis, keepdims=1, select_last_index=0)
    zeros = t.op("ConstantOfShape", [t.op("Shape", [flat])], value=helper.make_tensor("zero", t.b.elem, [1], [0]))
    routed = t.op("ScatterElements", [zeros, where, dy], axis=axis)
    return routed if len(axes) == 1 else t.reshape_like(routed, x)


def _global_max_pool(t, n, dy):
    # one position per channel gets the gradient, as PyTorch's adaptive_max_pool(1) (GlobalMaxPool
    # is how torch exports it); ties do not share it
    x = n.input[0]
    return [_first_maximum(t, x, dy, list(range(2, len(t.shape(x)))))]


def _instance_norm(t, n, dy):
    x, scale, _ = n.input
    sx = t.shape(x)
    axes = list(range(2, len(sx)))
    eps = t.attrs(n).get("epsilon", 1e-5)
    mu = t.b.reduce("ReduceMean", x, axes)
    xc = t.op("Sub", [x, mu])
    var = t.b.reduce("ReduceMean", t.op("Mul", [xc, xc]), axes)
    rstd = t.op("Reciprocal", [t.op("Sqrt", [t.op("Add", [var, t.scalar(eps)])])])
    xhat = t.op("Mul", [xc, rstd])
    per_channel = t.ints([sx[1]] + [1] * len(axes))
    dxhat = t.op("Mul", [dy, t.op("Reshape", [scale, per_channel])])
    m1 = t.b.reduce("ReduceMean", dxhat, axes)
    m2 = t.b.reduce("ReduceMean", t.op("Mul", [dxhat, xhat]), axes)
    dx = t.op("Mul", [rstd, t.op("Sub", [t.op("Sub", [dxhat, m1]), t.op("Mul", [xhat, m2])])])
    dscale = t.reduce_sum(t.op("Mul", [dy, xhat]), [0] + axes, keepdims=0)
    dbias = t.reduce_sum(dy, [0] + axes, keepdims=0)
    return [dx, dscale, dbias]


def _reduce_max(t, n, dy):
    # adaptive max pooling's cells: the first maximum gets the gradient, as in PyTorch's
    # adaptive_max_pool (the lowering reduces the last axis first, so that one axis after the
    # other picks the first maximum in row-major order)
    axes = t.axes(n)
    g = _expand_back(t, n, dy, axes)
    return [_first_maximum(t, n.input[0], g, axes)] + [None] * (len(n.input) - 1)


def _layer_norm(t, n, dy):
    # normalised over the axes from ``axis`` to the last; scale and bias have those axes' shape
    x, scale = n.input[0], n.input[1]
    sx = t.shape(x)
    at = t.attrs(n)
    axes = list(range(at.get("axis", -1) % len(sx), len(sx)))
    eps = at.get("epsilon", 1e-5)
    mu = t.b.reduce("ReduceMean", x, axes)
    xc = t.op("Sub", [x, mu])
    var = t.b.reduce("ReduceMean", t.op("Mul", [xc, xc]), axes)
    rstd = t.op("Reciprocal", [t.op("Sqrt", [t.op("Add", [var, t.scalar(eps)])])])
    xhat = t.op("Mul", [xc, rstd])
    dxhat = t.op("Mul", [dy, scale])
    m1 = t.b.reduce("ReduceMean", dxhat, axes)
    m2 = t.b.reduce("ReduceMean", t.op("Mul", [dxhat, xhat]), axes)
    dx = t.op("Mul", [rstd, t.op("Sub", [t.op("Sub", [dxhat, m1]), t.op("Mul", [xhat, m2])])])
    out = [dx, t.unbroadcast(t.op("Mul", [dy, xhat]), t.shape(scale), sx)]
    if len(n.input) > 2 and n.input[2]:
        out.append(t.unbroadcast(dy, t.shape(n.input[2]), sx))
    return out


def _batch_norm(t, n, dy):
    # y = (x − mean)·γ/√(var + ε) + β. In the training graph (bn's training lowering) mean is
    # x's batch mean (Reshape of a ReduceMean with keepdims) and var its biased batch variance:
    # the gradient through them is the closed form, with x̂ = (x − mean)·r, r = 1/√(var + ε), M
    # the count per channel: dx = γr·(dy − mean(dy) − x̂·mean(dy·x̂)), written as
    # a·dy + b·(x − mean) + c with per-channel a, b, c; mean and var then get no gradient.
    # Constant statistics (frozen, inference form) give dx = γr·dy.
    x, scale, _, mean, var = n.input[:5]
    sx = t.shape(x)
    rank, c = len(sx), sx[1]
    axes = [0, *range(2, rank)]
    per = t.ints([1, c] + [1] * (rank - 2))
    flat = t.ints([c])
    eps = t.attrs(n).get("epsilon", 1e-5)
    v = t.op("Reshape", [var, per])
    rstd = t.op("Reciprocal", [t.op("Sqrt", [t.op("Add", [v, t.scalar(eps)]) if eps else v])])
    a = t.op("Mul", [t.op("Reshape", [scale, per]), rstd])
    source = t.producer(mean)
    batch = source is not None and source.op_type == "Reshape" and t.producer(source.input[0]) is not None
    m4 = source.input[0] if batch else t.op("Reshape", [mean, per])
    if batch and t.producer(m4).op_type != "ReduceMean":  # pragma: no cover - a lowering bug
        raise AssertionError(f"internal: {n.name}'s mean is not its input's batch mean")
    xc = t.reuse("Sub", [x, m4])
    sdy = t.reduce_sum(dy, axes)
    sp = t.reduce_sum(t.op("Mul", [dy, xc]), axes)
    dscale = t.op("Reshape", [t.op("Mul", [sp, rstd]), flat])
    dbias = t.op("Reshape", [sdy, flat])
    if not batch:
        return [t.op("Mul", [dy, a]), dscale, dbias, None, None]
    count = t.op("Div", [t.op("Cast", [t.op("Size", [x])], to=t.b.elem), t.scalar(float(c))])
    k = t.op("Div", [t.op("Mul", [a, t.op("Mul", [rstd, rstd])]), count])
    b = t.op("Neg", [t.op("Mul", [k, sp])])
    shift = t.op("Neg", [t.op("Div", [t.op("Mul", [a, sdy]), count])])
    # a·dy + c as a BatchNormalization with mean 0, variance 1 and epsilon 0 (exactly that
    # affine map): onnxruntime runs it faster than a broadcasting Mul and Sum
    zeros, ones = t.b.const(np.zeros(c)), t.b.const(np.ones(c))
    affine = t.op(
        "BatchNormalization",
        [dy, t.op("Reshape", [a, flat]), t.op("Reshape", [shift, flat]), zeros, ones],
        epsilon=0.0,
    )
    dx = t.op("Add", [affine, t.op("Mul", [xc, b])])
    return [dx, dscale, dbias, None, None]


# ---------------------------------------------------------------- dense and convolution
def _gemm(t, n, dy):
    at = t.attrs(n)
    if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:  # pragma: no cover
        raise AssertionError("internal: unsupported Gemm form in the training graph")
    a, w = n.input[0], n.input[1]
    if at.get("transB", 0):  # y = a·wᵀ
        da = t.op("Gemm", [dy, w])
        dw = t.op("Gemm", [dy, a], transA=1)
    else:  # y = a·w
        da = t.op("Gemm", [dy, w], transB=1)
        dw = t.op("Gemm", [a, dy], transA=1)
    out = [da, dw]
    if len(n.input) > 2 and n.input[2]:
        out.append(t.unbroadcast(dy, t.shape(n.input[2]), t.shape(n.output[0])))
    return out


def _window(t, n):
    at = t.attrs(n)
    k = list(at.get("kernel_shape") or t.shape(n.input[1])[2:])
    r = len(k)
    pads = list(at.get("pads", [0] * (2 * r)))
    return (
        k,
        list(at.get("strides", [1] * r)),
        list(at.get("dilations", [1] * r)),
        pads[:r],
        pads[r:],
        at.get("group", 1),
    )


def correlation_weight_grad(t, inp, grad, inp_shape, grad_shape, group, strides, dilations, begin, end, kernel):
    """∂/∂w of a correlation ``out[o] = Σ_k inp[o·s − p + k·d] · w[k]`` given ``grad`` = ∂/∂out:
    itself a correlation of ``inp`` (batch as channels) with ``grad`` as the kernel, in which
    stride and dilation trade places. Returns (grad channels, inp channels / group, *kernel)."""
    r = len(kernel)
    sp = list(range(2, 2 + r))
    if group == 1 and prod(kernel) <= IM2COL_MAX and prod(grad_shape[2:]) > prod(kernel):
        return _im2col_weight_grad(t, inp, grad, inp_shape, grad_shape, strides, dilations, begin, end, kernel)
    if group == 1:
        xt = t.op("Transpose", [inp], perm=[1, 0, *sp])
    else:  # (N, g·c, *S) -> (c, g·N, *S): group j's batch as channels j·N … j·N + N − 1
        c, size = inp_shape[1] // group, list(inp_shape[2:])
        split = t.op("Reshape", [inp, t.ints([0, group, c, *size])])
        moved = t.op("Transpose", [split], perm=[2, 1, 0, *range(3, 3 + r)])
        xt = t.op("Reshape", [moved, t.ints([c, -1, *size])])
    gt = t.op("Transpose", [grad], perm=[1, 0, *sp])
    have_in, have_out = inp_shape[2:], grad_shape[2:]
    # trim end padding that only feeds positions no output window reached
    ends = []
    for w, o, f, s, d, p0, p1 in zip(have_in, have_out, kernel, strides, dilations, begin, end):
        unused = (w + p0 + p1 - d * (f - 1) - 1) - (o - 1) * s
        ends.append(max(0, p1 - max(unused, 0)))
    raw = t.op(
        "Conv",
        [xt, gt],
        strides=list(dilations),
        dilations=list(strides),
        pads=list(begin) + ends,
        group=group,
        kernel_shape=list(have_out),
    )
    # the kernel here spans (o − 1)·s + 1 input positions and slides with step d
    got = [
        window_out(w, (o - 1) * s + 1, d, p0, p1)
        for w, o, s, d, p0, p1 in zip(have_in, have_out, strides, dilations, begin, ends)
    ]
    raw = t.fit(raw, [0] * r, kernel, got)
    return t.op("Transpose", [raw], perm=[1, 0, *sp])


IM2COL_MAX = 49  # kernels up to 7x7 over outputs larger than the kernel take the im2col form


def _im2col_weight_grad(t, inp, grad, inp_shape, grad_shape, strides, dilations, begin, end, kernel):
    """The same gradient as matrix products: the input's windows laid out as columns by one
    depthwise Conv with one-hot kernels (channel c's offset o becomes column c·P + o, P the
    kernel's size), then per sample columns (C·P, O) times the output gradient (O, K), summed
    over the batch — onnxruntime runs this several times faster than the large-kernel Conv,
    and faster than one strided Slice per kernel offset and a Concat."""
    r = len(kernel)
    c, k, out = inp_shape[1], grad_shape[1], list(grad_shape[2:])
    size = prod(kernel)
    # end padding that only feeds positions no output window reaches is left out
    ends = [
        max(0, min(p1, (o - 1) * s + d * (f - 1) + 1 - w - p0))
        for w, o, f, s, d, p0, p1 in zip(inp_shape[2:], out, kernel, strides, dilations, begin, end)
    ]
    got = [
        window_out(w, d * (f - 1) + 1, s, p0, p1)
        for w, f, s, d, p0, p1 in zip(inp_shape[2:], kernel, strides, dilations, begin, ends)
    ]
    if size == 1 and all(s == 1 for s in strides) and not any(begin) and not any(ends):
        col = inp  # a 1x1 kernel at stride 1: the input is its own column
    else:
        onehot = np.zeros((c * size, 1, *kernel))
        for o, offset in enumerate(np.ndindex(*kernel)):
            onehot[(np.arange(c) * size + o, 0, *offset)] = 1.0
        col = t.op(
            "Conv",
            [inp, t.b.const(onehot)],
            group=c,
            kernel_shape=list(kernel),
            strides=list(strides),
            dilations=list(dilations),
            pads=list(begin) + ends,
        )
        if got != out:
            col = t.fit(col, [0] * r, out, got)
    col = t.op("Reshape", [col, t.ints([0, c * size, -1])])  # (N, C·P, O)
    gt = t.op("Transpose", [t.op("Reshape", [grad, t.ints([0, k, -1])])], perm=[0, 2, 1])  # (N, O, K)
    dw = t.reduce_sum(t.op("MatMul", [col, gt]), [0], keepdims=0)  # (C·P, K)
    return t.op("Reshape", [t.op("Transpose", [dw], perm=[1, 0]), t.ints([k, c, *kernel])])


def _conv(t, n, dy):
    x, w = n.input[0], n.input[1]
    kernel, strides, dilations, begin, end, group = _window(t, n)
    sx, sy = t.shape(x), t.shape(n.output[0])
    reach = [d * (f - 1) for d, f in zip(dilations, kernel)]
    if (
        group == 1
        and all(s == 1 for s in strides)
        and all(p <= r for p, r in zip(begin + end, reach + reach))
        and prod(sy[2:]) > prod(kernel)
    ):
        # stride 1: the input gradient is the full correlation of dy with the flipped, transposed
        # kernel — a Conv, which onnxruntime runs faster than the equivalent ConvTranspose
        r = len(kernel)
        spatial = list(range(2, 2 + r))
        flipped = t.op(
            "Slice",
            [
                t.op("Transpose", [w], perm=[1, 0, *spatial]),
                t.ints([-1] * r),
                t.ints([-(2**63)] * r),
                t.ints(spatial),
                t.ints([-1] * r),
            ],
        )
        pads = [q - p for q, p in zip(reach, begin)] + [q - p for q, p in zip(reach, end)]
        dx = t.op("Conv", [dy, flipped], dilations=dilations, pads=pads, kernel_shape=kernel)
    else:
        full = t.op("ConvTranspose", [dy, w], strides=strides, dilations=dilations, group=group, kernel_shape=kernel)
        have = [transpose_out(o, f, s, 0, d, 0) for o, s, d, f in zip(sy[2:], strides, dilations, kernel)]
        dx = t.fit(full, begin, sx[2:], have)
    return _with_bias(
        t, n, dy, dx, correlation_weight_grad(t, x, dy, sx, sy, group, strides, dilations, begin, end, kernel)
    )


def _with_bias(t, n, dy, dx, dw):
    """[dx, dw] and, when the node has a bias, its gradient: dy summed over batch and space."""
    if len(n.input) > 2 and n.input[2]:
        return [dx, dw, t.reduce_sum(dy, [0, *range(2, len(t.shape(n.output[0])))], keepdims=0)]
    return [dx, dw]


def _conv_transpose(t, n, dy):
    x, w = n.input[0], n.input[1]
    kernel, strides, dilations, begin, end, group = _window(t, n)
    sx, sy = t.shape(x), t.shape(n.output[0])
    r = len(kernel)
    raw = t.op(
        "Conv", [dy, w], strides=strides, dilations=dilations, pads=begin + end, group=group, kernel_shape=kernel
    )
    got = [
        window_out(o, d * (f - 1) + 1, s, p0, p1)
        for o, p0, p1, d, f, s in zip(sy[2:], begin, end, dilations, kernel, strides)
    ]
    dx = t.fit(raw, [0] * r, sx[2:], got)
    return _with_bias(
        t, n, dy, dx, correlation_weight_grad(t, dy, x, sy, sx, group, strides, dilations, begin, end, kernel)
    )


# ---------------------------------------------------------------- pooling and resampling
def _max_pool(t, n, dy):
    # Scatter-add through MaxPool's indices (flat over N·C·spatial): overlapping windows add up.
    x = n.input[0]
    if len(n.output) < 2 or not n.output[1]:
        del n.output[1:]
        n.output.append(n.output[0] + ".indices")
    flat = t.ints([-1])
    zeros = t.op(
        "ConstantOfShape",
        [t.op("Reshape", [t.op("Size", [x]), flat])],
        value=helper.make_tensor("zero", t.b.elem, [1], [0]),
    )
    idx = t.op("Reshape", [n.output[1], flat])
    total = t.op("ScatterElements", [zeros, idx, t.op("Reshape", [dy, flat])], axis=0, reduction="add")
    return [t.reshape_like(total, x)]


def _average_pool(t, n, dy):
    x = n.input[0]
    at = t.attrs(n)
    kernel = list(at["kernel_shape"])
    r = len(kernel)
    strides = list(at.get("strides", [1] * r))
    pads = list(at.get("pads", [0] * (2 * r)))
    begin, end = pads[:r], pads[r:]
    sx, sy = t.shape(x), t.shape(n.output[0])
    # the divisor of every output position: window positions inside the input (or inside the
    # declared padding with count_include_pad), one factor per axis
    divisor = np.ones([1, 1] + list(sy[2:]))
    for i, (w, o, f, s, p0, p1) in enumerate(zip(sx[2:], sy[2:], kernel, strides, begin, end)):
        lo, hi = (-p0, w + p1) if at.get("count_include_pad", 0) else (0, w)
        counts = np.array([min(j * s - p0 + f, hi) - max(j * s - p0, lo) for j in range(o)], np.float64)
        divisor = divisor * counts.reshape([1, 1] + [o if k == i else 1 for k in range(r)])
    share = t.op("Div", [dy, t.b.const(divisor)])
    ones = t.b.const(np.ones([sx[1], 1] + kernel))
    full = t.op("ConvTranspose", [share, ones], strides=strides, group=sx[1], kernel_shape=kernel)
    have = [transpose_out(o, f, s, 0, 1, 0) for o, s, f in zip(sy[2:], strides, kernel)]
    return [t.fit(full, begin, sx[2:], have)]


def _resize(t, n, dy):
    x = n.input[0]
    at = t.attrs(n)
    sx, sy = t.shape(x), t.shape(n.output[0])
    r = len(sx) - 2
    factors = [o // w for o, w in zip(sy[2:], sx[2:])]
    mode = at.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "nearest":  # every input position was copied to a factor-sized block
        split = [0, sx[1]]
        for w, f in zip(sx[2:], factors):
            split += [w, f]
        g = t.op("Reshape", [dy, t.ints(split)])
        return [t.reduce_sum(g, [3 + 2 * i for i in range(r)], keepdims=0)] + [None] * (len(n.input) - 1)
    # linear, half-pixel centres: y = A·x along each axis, so dx = Aᵀ·dy
    g = dy
    for i, (w, f) in enumerate(zip(sx[2:], factors)):
        a = linear_weights(w, w * f, scale=f)
        axis = 2 + i
        perm = list(range(r + 2))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        moved = t.op("Transpose", [g], perm=perm) if axis != r + 1 else g
        moved = t.op("MatMul", [moved, t.b.const(a)])
        g = t.op("Transpose", [moved], perm=perm) if axis != r + 1 else moved
    return [g] + [None] * (len(n.input) - 1)


ADJOINTS = {
    "Add": _add,
    "Sub": _sub,
    "Mul": _mul,
    "Div": _div,
    "Pow": _pow,
    "Max": _max,
    "Where": _where,
    "Exp": _exp,
    "Sum": _sum,
    "Identity": _identity,
    "Neg": _neg,
    "Sqrt": _sqrt,
    "Reciprocal": _reciprocal,
    "Cast": _cast,
    "Relu": _relu,
    "Sigmoid": _sigmoid,
    "Tanh": _tanh,
    "Abs": _abs,
    "Erf": _erf,
    "LeakyRelu": _leaky_relu,
    "Elu": _elu,
    "HardSwish": _hardswish,
    "PRelu": _prelu,
    "HardSigmoid": _hard_sigmoid,
    "Softplus": _softplus,
    "Mish": _mish,
    "Clip": _clip,
    "Softmax": _softmax,
    "Dropout": _dropout,
    "Reshape": _reshape,
    "Flatten": _reshape,
    "Transpose": _transpose,
    "Concat": _concat,
    "Slice": _slice,
    "Pad": _pad,
    "SpaceToDepth": _space_to_depth,
    "Expand": _expand,
    "Unsqueeze": _unsqueeze,
    "ScatterElements": _scatter_elements,
    "ReduceMean": _reduce_mean,
    "ReduceSum": _reduce_sum,
    "ReduceSumSquare": _reduce_sum_square,
    "ReduceMax": _reduce_max,
    "LayerNormalization": _layer_norm,
    "GlobalAveragePool": _global_average_pool,
    "GlobalMaxPool": _global_max_pool,
    "InstanceNormalization": _instance_norm,
    "BatchNormalization": _batch_norm,
    "Gemm": _gemm,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "Resize": _resize,
}

__all__ = ["ADJOINTS", "Tape", "correlation_weight_grad", "differentiate"]
