"""Combinators: add, mul, concat and residual take a { body } of branches.

Their rule is ``combine``: the output shape from every branch's shape, or an
error that names every branch and its shape.
"""

from __future__ import annotations

from .arith import fmt_shape, window_out
from .base import Kind, LayerError, Spec
from .conv import Conv
from .norm import BatchNorm
from .reshape import ShortcutPad


def _mismatch(what: str, shapes, labels) -> LayerError:
    rows = "; ".join(f"branch {i + 1} ({lab}) gives {fmt_shape(s)}" for i, (s, lab) in enumerate(zip(shapes, labels)))
    return LayerError(f"{{call}}: {what}: {rows}")


def _fold(b, op: str, xs, y):
    """One binary operator over any number of inputs (Identity for one)."""
    if len(xs) == 1:
        b.op("Identity", xs, out=y)
        return
    acc = xs[0]
    for i, other in enumerate(xs[1:], 2):
        acc = b.op(op, [acc, other], out=y if i == len(xs) else None)


def _elementwise_import(reader, group, op: str):
    """Add or Mul of computed tensors only (one of an initializer is a bias or a scale, not a combinator)."""
    if group.types != {op} or any(reader.init(i) is not None for n in group.nodes for i in n.input):
        return None
    return [], {}


class Add(Kind):
    """``add { ... }``: the element-wise sum. ``add(fit=first)`` is Darknet's ``[shortcut]``
    (shortcut_cpu, blas.c): the output has the first branch's shape; of every other branch
    the channels beyond the first's count are ignored, missing ones count as zero, and a
    spatial size an integer S times larger is read at every S-th position."""

    name = "add"
    doc = "element-wise sum of the branches (shapes must be equal; fit=first: Darknet's [shortcut])"
    combinator = True
    keywords = {"fit": Spec("enum", "equal", choices=("equal", "first"))}

    def torch(self, t, node):
        xs = list(t.x)
        if node.attrs.get("fit") == "first":
            shapes = [t.shape(i) for i in range(len(xs))]
            xs = [xs[0]] + [_torch_fit(v, s, shapes[0]) for v, s in zip(xs[1:], shapes[1:])]
        return " + ".join(xs)

    def lower(self, b, node, xs, y):
        if node.attrs.get("fit") == "first":
            shapes = [b.shape(i) for i in node.inputs]
            xs = [xs[0]] + [_fit(b, x, s, shapes[0]) for x, s in zip(xs[1:], shapes[1:])]
        _fold(b, "Add", xs, y)

    def combine(self, a, shapes, labels):
        if a.get("fit") == "first":
            for s in shapes[1:]:
                if len(s) != len(shapes[0]) or _stride(s, shapes[0]) is None:
                    raise _mismatch(
                        "add(fit=first) needs each branch's spatial sizes to be the first's times one integer",
                        shapes,
                        labels,
                    )
            return shapes[0]
        if len(set(shapes)) > 1:
            raise _mismatch("branches must have equal shapes", shapes, labels)
        return shapes[0]

    def onnx_import(self, reader, group):
        """Add of computed tensors; with ``lower``'s Slice/Pad of the other branch: fit=first."""
        if group.types and group.types <= {"Add", "Slice", "Pad"} and group.types != {"Add"} and "Add" in group.types:
            # the branches in the Add's order, each traced back through its Slice and Pad
            made = {o: n for n in group.nodes for o in n.output}
            sources = []
            for t in group.first("Add").input:
                while t in made:
                    t = made[t].input[0]
                sources.append(reader.producer[t])
            return [], {"fit": "first"}, sources
        return _elementwise_import(reader, group, "Add")


def _stride(other: tuple, first: tuple):
    """The integer S with other's spatial sizes ⌊/S⌋ equal to first's (Darknet's w1/w2), or None."""
    if any(w < f for w, f in zip(other[1:], first[1:])):
        return None
    strides = {w // f for w, f in zip(other[1:], first[1:])}
    return strides.pop() if len(strides) == 1 else None if strides else 1


def _fit(b, x: str, shape: tuple, first: tuple) -> str:
    """``x`` (of ``shape``) as Darknet's shortcut reads it for the first branch's shape."""
    np = b.np
    s, n = _stride(shape, first), len(first) - 1
    keep = min(shape[0], first[0])
    if s != 1 or keep < shape[0] or any(w * s != v for w, v in zip(first[1:], shape[1:])):
        starts = [0] * (n + 1)
        ends = [keep] + [w * s for w in first[1:]]
        steps = [1] + [s] * n
        ints = [starts, ends, list(range(1, 2 + n)), steps]
        x = b.op("Slice", [x, *(b.const(np.array(v, np.int64)) for v in ints)])
    if keep < first[0]:
        pads = b.const(np.array([0, 0] + [0] * n + [0, first[0] - keep] + [0] * n, np.int64))
        x = b.op("Pad", [x, pads], mode="constant")
    return x


class Residual(Add):
    name = "residual"
    doc = "add { shortcut ; body }; shortcut auto, identity, pad (option A) or conv"
    sugar_for = Add.name
    keywords = {"shortcut": Spec("enum", "auto", choices=("auto", "identity", "pad", "conv"))}
    derives_shortcut = True

    def shortcut(self, a, x: tuple, y: tuple) -> tuple:
        """The layers of the shortcut from the input shape ``x`` to the body's output ``y``, as
        ``(name, kind, arguments)`` triples; () for the identity. ``auto``: the identity when the
        shapes agree, else a strided 1x1 conv and bn (ResNet's projection); ``pad``: option A
        (He et al. 2015 §4.2); ``conv``: the conv alone. Raises LayerError (E071)."""
        mode = a["shortcut"]
        if mode in ("auto", "identity", "pad") and x == y:
            return ()
        if mode == "identity":
            raise LayerError(
                f"residual(shortcut=identity) needs the body to keep the shape; input {fmt_shape(x)}, "
                f"body gives {fmt_shape(y)}",
                code="E071",
            )
        if len(x) != len(y) or len(x) < 2:
            raise LayerError(f"residual: cannot build a shortcut from {fmt_shape(x)} to {fmt_shape(y)}", code="E071")
        stride = []
        for w, target in zip(x[1:], y[1:]):
            s = next((s for s in range(1, w + 1) if window_out(w, 1, s, 0, 0) == target), None)
            if s is None:
                message = (
                    f"residual: no strided shortcut maps {fmt_shape(x)} to the body's {fmt_shape(y)}\n"
                    f"  hint: a 1x1 shortcut of stride s gives ceil({w}/s), never {target}: pad the body's "
                    f"convs to keep the size (conv c/3/1/1), or write both branches: add {{ shortcut ; body }}"
                )
                raise LayerError(message, code="E071")
            stride.append(s)
        stride = tuple(stride)
        if mode == "pad":
            return (("shortcut", "shortcut_pad", {"stride": stride, "channels": y[0]}),)
        conv = ("shortcut", "conv", {"filters": y[0], "size": 1, "stride": stride})
        return (conv, ("shortcut_bn", "bn", {})) if mode == "auto" else (conv,)

    def torch(self, t, node):
        return f"{t.x[1]} + {t.x[0]}"  # body + shortcut, as ``lower``

    def lower(self, b, node, xs, y):
        # Add(body, shortcut), the order frameworks export: onnxruntime then fuses the
        # same conv with the Add + ReLU, and the optimised graph equals torch's.
        _fold(b, "Add", xs[::-1], y)

    def import_shortcut(self, chain, defaults) -> str | None:
        """The ``shortcut=`` of the residual whose shortcut branch is ``chain``, or None when
        it is not a shortcut that residual builds (cnndsl/ir/rules.py, ``_shortcut``): none
        at all (the identity) or conv 1x1 + bn is ``auto``, a shortcut_pad is ``pad``.

        ``chain`` holds the imported layers (``kind``, ``args``, ``kw``) of the branch;
        ``defaults`` the keywords that ``default`` lines state per kind, as the conv that
        residual builds gets them (``default conv bias=false``)."""
        if not chain:
            return "auto"
        if len(chain) == 1 and chain[0].kind == ShortcutPad.name:
            return "pad"
        if len(chain) != 2:
            return None
        conv, bn = chain
        bias = defaults.get(Conv.name, {}).get("bias", Conv.keywords["bias"].default)
        if (
            conv.kind == Conv.name
            and bn.kind == BatchNorm.name
            and not bn.kw
            and bn.args == []
            and _one(conv.args[1]) == 1
            and _one(conv.args[3] if len(conv.args) > 3 else 0) == 0
            and set(conv.kw) <= {"bias"}
            and conv.kw.get("bias", True) == bias
        ):
            return "auto"
        return None


class Mul(Kind):
    name = "mul"
    doc = "element-wise product with broadcasting of size-1 axes (SE gating)"
    combinator = True

    def torch(self, t, node):
        return " * ".join(t.x)

    def lower(self, b, node, xs, y):
        _fold(b, "Mul", xs, y)

    def combine(self, a, shapes, labels):
        if len({len(s) for s in shapes}) > 1:
            raise _mismatch("branches must have the same number of axes", shapes, labels)
        out = []
        for sizes in zip(*shapes):
            big = {s for s in sizes if s != 1}
            if len(big) > 1:
                raise _mismatch("shapes do not broadcast (each axis must be equal or 1)", shapes, labels)
            out.append(big.pop() if big else 1)
        return tuple(out)

    def onnx_import(self, reader, group):
        return _elementwise_import(reader, group, "Mul")


class Concat(Kind):
    name = "concat"
    doc = "channel concatenation; crop=center crops larger branches to the smallest (U-Net)"
    combinator = True
    keywords = {"crop": Spec("enum", "none", choices=("none", "center"))}

    def torch(self, t, node):
        return t.x[0] if len(t.x) == 1 else f"torch.cat([{', '.join(t.x)}], 1)"

    def lower(self, b, node, xs, y):
        if len(xs) == 1:
            b.op("Identity", xs, out=y)
        else:
            b.op("Concat", xs, out=y, axis=1)

    def adapters(self, a, shapes):
        """crop=center: a centred crop of every branch larger than the smallest (U-Net)."""
        if a["crop"] != "center" or len({s[1:] for s in shapes}) == 1 or len({len(s) for s in shapes}) > 1:
            return super().adapters(a, shapes)
        target = tuple(min(s) for s in zip(*(s[1:] for s in shapes)))
        crop = ("crop", "crop", {"size": target, "center": True})
        return [(crop,) if s[1:] != target else () for s in shapes]

    def onnx_import(self, reader, group):
        """Concat along the channels."""
        if group.types != {"Concat"}:
            return None
        if group.a.get("axis", 1) != 1:
            group.unsupported("Concat along an axis other than channels")
        return [], {}

    def combine(self, a, shapes, labels):
        if len({len(s) for s in shapes}) > 1:
            raise _mismatch("branches must have the same number of axes", shapes, labels)
        if len({s[1:] for s in shapes}) > 1:
            hint = "" if a["crop"] == "center" else " (concat(crop=center) crops them to the smallest)"
            raise _mismatch(f"spatial sizes differ{hint}", shapes, labels)
        return (sum(s[0] for s in shapes),) + shapes[0][1:]


def _one(v):
    """A per-axis value as one integer (-1 when the axes differ)."""
    if isinstance(v, tuple):
        return v[0] if len(set(v)) == 1 else -1
    return v


def _torch_fit(x: str, shape: tuple, first: tuple) -> str:
    """``_fit`` as PyTorch code: ``x`` (of ``shape``) read as Darknet's shortcut reads it for ``first``."""
    s, n = _stride(shape, first), len(first) - 1
    keep = min(shape[0], first[0])
    if s != 1 or keep < shape[0] or any(w * s != v for w, v in zip(first[1:], shape[1:])):
        cuts = ", ".join(f":{w * s}:{s}" if s != 1 else f":{w * s}" for w in first[1:])
        x = f"{x}[:, :{keep}, {cuts}]"
    if keep < first[0]:
        x = f"F.pad({x}, {(0, 0) * n + (0, first[0] - keep)})"
    return x
