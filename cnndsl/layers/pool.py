"""Pooling and resampling: maxpool, avgpool, gap, gmp, subsample, unpool, upsample."""

from __future__ import annotations

from .arith import fmt_shape, prod, window_out
from .base import Kind, LayerError, Spec, fraction, full_window, torch_axes, torch_pads, torch_tuple
from .conv import resolve_pads, sliding_window, stride_warnings


class _Pool(Kind):
    spatial = True
    shown_keywords = ("ceil",)
    positional = (
        ("size", Spec("spatial")),
        ("stride", Spec("spatial", None, same_as="size")),
        ("pad", Spec("pad", 0)),
    )
    keywords = {"ceil": Spec("bool", False)}

    def canonical(self, a, x):
        a = super().canonical(a, x)  # the stride defaults to the window (same_as)
        return {**a, "pads": resolve_pads(a["pad"], x[1:], a["size"], a["stride"])}

    def check(self, a, x):
        if isinstance(a["pad"], tuple):
            for f, p in zip(a["size"], a["pad"]):
                if 2 * p > f:
                    raise LayerError(
                        f"pooling padding must be at most half the window; received pad={p} with size={f}",
                        "pad",
                    )

    def shape(self, a, x):
        return (x[0],) + sliding_window(x, a["size"], a["stride"], a["pads"], a["pad"], ceil=a["ceil"])

    def window(self, a, x, y):
        return a["size"], a["stride"]

    def warnings(self, a, x, y):
        return stride_warnings(x, a["size"], a["stride"], a["pads"], a["ceil"])

    def torch(self, t, node):
        """F.max_poolNd / F.avg_poolNd (ceil_mode as Caffe's); unequal padding as F.pad before it."""
        a, n = node.attrs, t.rank
        pads = a["pads"]
        v = t.x[0]
        if all(p == q for p, q in pads):
            pad = tuple(p for p, _ in pads)
        elif self.name == "maxpool":
            v = f"F.pad({v}, {torch_pads(pads)}, value=float('-inf'))"
            pad = (0,) * n
        elif not a["ceil"]:
            fn = t.helper("avg_pool_padded", AVG_POOL_PADDED)
            args = f"{v}, {torch_tuple(a['size'])}, {torch_tuple(a['stride'])}, {torch_pads(pads)}, {a['count_pad']}"
            return f"{fn}({args})"
        else:
            t.fail("avgpool with ceil and padding unequal before and after has no PyTorch equivalent")
        args = f"{v}, {torch_tuple(a['size'])}, {torch_tuple(a['stride'])}, {torch_tuple(pad)}"
        if a["ceil"]:
            args += ", ceil_mode=True"
        if self.name == "avgpool":
            return f"F.avg_pool{n}d({args}, count_include_pad={a['count_pad']})"
        if t.returns_indices:
            args += ", return_indices=True"
        return f"F.max_pool{n}d({args})"

    def lower(self, b, node, xs, y):
        a = node.attrs
        pads, ceil = list(a["pads"]), a["ceil"]
        x, out = b.shape(node.inputs[0]), node.shape
        if ceil and any(
            -(-(w + p0 + p1 - f) // s) + 1 != o
            for w, f, s, (p0, p1), o in zip(x[1:], a["size"], a["stride"], pads, out[1:])
        ):
            # ONNX's ceil_mode lacks the rule that drops a last window starting in the end
            # padding: give floor mode the end padding that yields exactly our windows.
            pads = [
                (p0, max(0, (o - 1) * s + f - w - p0))
                for w, f, s, (p0, _), o in zip(x[1:], a["size"], a["stride"], pads, out[1:])
            ]
            ceil = False
        attrs = dict(
            kernel_shape=list(a["size"]), strides=list(a["stride"]), pads=self.onnx_pads(pads), ceil_mode=int(ceil)
        )
        if self.name == "avgpool":
            b.op("AveragePool", xs, out=y, count_include_pad=int(a["count_pad"]), **attrs)
        elif node.id in b.unpool_sources:  # an unpool reuses the indices
            b.op("MaxPool", xs, out=[y, y + ".indices"], outputs=2, **attrs)
        else:
            b.op("MaxPool", xs, out=y, **attrs)

    def onnx_import(self, reader, group):
        """MaxPool or AveragePool (``onnx_op``); unequal pads are ``lower``'s ceil mode or ``same``."""
        if group.types != {self.onnx_op}:
            return None
        node, a = group.main, group.a
        f = tuple(a["kernel_shape"])
        n = len(f)
        s = tuple(a.get("strides", [1] * n))
        pads = list(a.get("pads", [0] * 2 * n))
        ceil = bool(a.get("ceil_mode", 0))
        kw = {}
        if "count_pad" in self.keywords and a.get("count_include_pad", 0):
            kw["count_pad"] = True
        if pads[:n] != pads[n:]:
            # lower writes a ceil-mode pool as floor mode with extra end padding: undo that
            x, y = reader.shape(group.ext[0]), reader.shape(group.out)
            p = tuple(pads[:n])
            if x is not None and y is not None and tuple(map(_ceil_out, x[1:], f, s, p)) == y[1:]:
                ceil = True
            elif reader.same(node, a, pads, n):  # the same padded input either way: same computation
                return reader.fields(f, s, "same"), kw
            else:
                group.unsupported(f"pads {pads} differ before and after")
        if ceil:
            kw["ceil"] = True
        return reader.fields(f, s, pads[:n]), kw


def _ceil_out(size, f, stride, pad):
    return window_out(size, f, stride, pad, pad, ceil=True)


class MaxPool(_Pool):
    name = "maxpool"
    doc = "max pooling F/S/P (S defaults to F); ceil rounds up (Caffe)"
    onnx_op = "MaxPool"


class AvgPool(_Pool):
    name = "avgpool"
    doc = "average pooling F/S/P; count_pad counts padded zeros in the average"
    keywords = {**_Pool.keywords, "count_pad": Spec("bool", False)}
    onnx_op = "AveragePool"


class _Global(Kind):
    spatial = True

    def shape(self, a, x):
        return (x[0],) + (1,) * (len(x) - 1)

    def window(self, a, x, y):
        return full_window(x)

    def onnx_import(self, reader, group):
        """The one global pooling operator of ``lower``, or the reduction (``onnx_reduce``) over
        every spatial axis keeping them (torch's dynamo exporter writes AdaptiveAvgPool2d(1) so;
        the reader makes one without keepdims this and a Flatten)."""
        if len(group.nodes) != 1:
            return None
        if group.main.op_type == self.onnx_op:
            return [], {}
        if group.main.op_type != self.onnx_reduce or group.x is None or len(group.x) < 2:
            return None
        rank = len(group.x) + 1
        if group.a.get("keepdims", 1) and reader.reduce_axes(group.main, rank) == list(range(2, rank)):
            return [], {}
        return None


class Gap(_Global):
    name = "gap"
    doc = "global average pooling to Cx1x1"
    onnx_op = "GlobalAveragePool"
    onnx_reduce = "ReduceMean"

    def torch(self, t, node):
        return f"{t.x[0]}.mean({torch_axes(t.rank)}, keepdim=True)"

    def lower(self, b, node, xs, y):
        b.op("GlobalAveragePool", xs, out=y)


class Gmp(_Global):
    name = "gmp"
    doc = "global max pooling to Cx1x1"
    onnx_op = "GlobalMaxPool"
    onnx_reduce = "ReduceMax"

    def torch(self, t, node):
        return f"{t.x[0]}.amax({torch_axes(t.rank)}, keepdim=True)"

    def lower(self, b, node, xs, y):
        b.op("GlobalMaxPool", xs, out=y)


class Subsample(Kind):
    name = "subsample"
    doc = "LeNet subsampling: sum over an FxF window × trainable coefficient + bias, per map"
    spatial = True
    positional = (("size", Spec("spatial")),)

    def shape(self, a, x):
        return (x[0],) + sliding_window(x, a["size"], a["size"], _unpadded(a), 0)

    def params(self, a, x, y):
        return 2 * x[0], 0

    def connections(self, a, x, y):
        return prod(y) * (prod(a["size"]) + 1)

    def window(self, a, x, y):
        return a["size"], a["size"]

    def warnings(self, a, x, y):
        return stride_warnings(x, a["size"], a["size"], _unpadded(a))

    def torch(self, t, node):
        """The window sum (an average times its size) times a coefficient, plus a bias, per map."""
        a, c = node.attrs, t.in_shape[0]
        bshape = (c,) + (1,) * t.rank
        w = t.weights(weight=f"torch.full({bshape}, {1.0 / prod(a['size'])!r})", bias=f"torch.zeros({bshape})")
        total = f"F.avg_pool{t.rank}d({t.x[0]}, {torch_tuple(a['size'])}) * {float(prod(a['size']))!r}"
        return f"{total} * {w}.weight + {w}.bias"

    def lower(self, b, node, xs, y):
        # window sum (average × F^n) × trainable coefficient + bias, per map
        a, c = node.attrs, b.shape(node.inputs[0])[0]
        bshape = (c,) + (1,) * len(a["size"])
        avg = b.op("AveragePool", xs, kernel_shape=list(a["size"]), strides=list(a["size"]))
        total = b.op("Mul", [avg, b.scalar(float(prod(a["size"])))])
        w = b.weight("weight", bshape, "fill", value=1.0 / prod(a["size"]))
        scaled = b.op("Mul", [total, w])
        b.op("Add", [scaled, b.weight("bias", bshape, "fill")], out=y)

    def onnx_import(self, reader, group):
        """``lower``'s window sum × coefficient + bias: AveragePool, Mul, Add."""
        if group.types != {"AveragePool", "Mul", "Add"}:
            return None
        return [tuple(reader.attrs(group.first("AveragePool"))["kernel_shape"])], {}


def _unpadded(a):
    return ((0, 0),) * len(a["size"])


class Unpool(Kind):
    """``unpool of=@pool``: max unpooling with the indices of a labelled maxpool."""

    name = "unpool"
    doc = "max unpooling with the indices of the maxpool named by of=@label"
    spatial = True
    positional = (("size", Spec("spatial", None)), ("stride", Spec("spatial", None)))
    keywords = {"of": Spec("ref")}

    def canonical(self, a, x):
        """Size and stride default to those of the maxpool whose indices are reused."""
        pool = a["of"].node
        if pool.kind != MaxPool.name:
            got = f"a {pool.kind} layer" if pool.kind != "input" else "the input"
            raise LayerError(f"of=@{a['of'].name} must name a maxpool layer, but it names {got}", "of")
        size = pool.attrs["size"] if a["size"] is None else a["size"]
        stride = a["stride"]
        if stride is None:
            stride = pool.attrs["stride"] if size == pool.attrs["size"] else size
        return {**a, "size": size, "stride": stride}

    def check(self, a, x):
        pool = a["of"].node
        if a["size"] != pool.attrs["size"] or a["stride"] != pool.attrs["stride"]:
            raise LayerError(
                f"unpool {fmt_shape(a['size'])}/{fmt_shape(a['stride'])} does not match the maxpool "
                f"@{a['of'].name} ({fmt_shape(pool.attrs['size'])}/{fmt_shape(pool.attrs['stride'])})",
                "of",
            )
        if x != pool.shape:
            raise LayerError(
                f"unpool input {fmt_shape(x)} must have the shape of the output of @{a['of'].name} "
                f"({fmt_shape(pool.shape)})",
                "of",
            )

    def shape(self, a, x):
        return a["of"].input_shape

    def window(self, a, x, y):
        return (1,) * (len(x) - 1), tuple(fraction(1, s) for s in a["stride"])

    def index_sources(self, a):
        return (a["of"].node.id,)

    def torch(self, t, node):
        """F.max_unpoolNd with the indices the maxpool returned."""
        a = node.attrs
        pool = a["of"].node
        size = tuple(a["of"].input_shape[1:])
        pad = tuple(p for p, _ in pool.attrs["pads"])
        idx = t.indices(pool.id)
        return (
            f"F.max_unpool{t.rank}d({t.x[0]}, {idx}, {torch_tuple(a['size'])}, {torch_tuple(a['stride'])}, "
            f"{torch_tuple(pad)}, output_size={size})"
        )

    def lower(self, b, node, xs, y):
        # MaxUnpool cannot restore odd or padded sizes exactly; scatter instead. MaxPool's
        # indices index the whole flattened N·C·spatial tensor.
        np = b.np
        pool = b.node.attrs["of"].node
        shape = b.op("Shape", [b.tensor(pool.inputs[0])])
        flat = b.const(np.array([-1], np.int64))
        zeros = b.op(
            "Reshape", [b.op("ConstantOfShape", [shape], value=b.helper.make_tensor("zero", b.elem, [1], [0])), flat]
        )
        idx = b.op("Reshape", [pool.name + ".indices", flat])
        vals = b.op("Reshape", [xs[0], flat])
        b.op("Reshape", [b.op("ScatterElements", [zeros, idx, vals], axis=0), shape], out=y)

    def onnx_import(self, reader, group):
        """``lower``'s scatter of the values to the maxpool's indices (``<pool>.indices``)."""
        if "ScatterElements" not in group.types:
            return None
        idx = next(i for n in group.nodes for i in n.input if i.endswith(".indices"))
        pool = next((layer for layer in reader.layers if layer.name == idx[: -len(".indices")]), None)
        if pool is None:
            group.unsupported("the maxpool of the indices is unknown")
        data = next(n.input[0] for n in group.nodes if n.op_type == "Reshape" and n.input[0] in group.ext)
        return [], {"of": reader.ref(pool.name)}, [reader.producer[data]]


class Upsample(Kind):
    name = "upsample"
    doc = "upsampling by an integer factor per axis; mode nearest or linear"
    spatial = True
    positional = (("factor", Spec("spatial", 2)),)
    keywords = {"mode": Spec("enum", "nearest", choices=("nearest", "linear"))}

    def shape(self, a, x):
        return (x[0],) + tuple(w * f for w, f in zip(x[1:], a["factor"]))

    def window(self, a, x, y):
        return (1,) * (len(x) - 1), tuple(fraction(1, f) for f in a["factor"])

    def torch(self, t, node):
        a = node.attrs
        mode = "nearest" if a["mode"] == "nearest" else {1: "linear", 2: "bilinear", 3: "trilinear"}[t.rank]
        align = "" if mode == "nearest" else ", align_corners=False"
        factor = torch_tuple(tuple(float(f) for f in a["factor"]))
        return f"F.interpolate({t.x[0]}, scale_factor={factor}, mode={mode!r}{align})"

    def lower(self, b, node, xs, y):
        a = node.attrs
        scales = b.np.array([1.0, 1.0, *a["factor"]], dtype=b.np.float32)
        if a["mode"] == "nearest":
            extra = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            extra = dict(mode="linear", coordinate_transformation_mode="half_pixel")
        b.op("Resize", [xs[0], "", b.const(scales, cast=False)], out=y, **extra)

    def onnx_import(self, reader, group):
        """Resize (or the older Upsample) by constant integer scales."""
        main, a = group.main, group.a
        if group.types not in ({"Resize"}, {"Upsample"}):
            return None
        scales_input = main.input[2] if len(main.input) > 2 and main.input[2] else main.input[-1]
        scales = reader.const(scales_input)
        if scales is None or any(float(s) != int(s) for s in scales[2:]):
            group.unsupported("Resize needs constant integer scales")
        mode = reader.word(a.get("mode", b"nearest"))
        if mode not in ("nearest", "linear"):
            group.unsupported(f"Resize mode={mode}: upsample is nearest or linear")
        kw = {"mode": "linear"} if mode == "linear" else {}
        if main.op_type == "Resize":  # the sampling of lower's Resize; another is warned (W260)
            want = {"nearest": ("asymmetric", "floor"), "linear": ("half_pixel", None)}[mode]
            coords = reader.word(a.get("coordinate_transformation_mode", b"half_pixel"))
            rounding = reader.word(a.get("nearest_mode", b"round_prefer_floor")) if mode == "nearest" else None
            if (coords, rounding) != want:
                shown = f"coordinate_transformation_mode={coords}" + (f", nearest_mode={rounding}" if rounding else "")
                reader.warn(group, f"{shown}, not upsample {mode}'s {'/'.join(w for w in want if w)}")
        return [tuple(int(s) for s in scales[2:])], kw


def adaptive_cells(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows along one axis: output cell i reads the input positions
    floor(i·W/O) … ceil((i+1)·W/O) − 1, as (start, end) pairs."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


class _Adaptive(Kind):
    """Adaptive pooling to a given output size (PyTorch's AdaptiveAvgPool / AdaptiveMaxPool)."""

    spatial = True
    positional = (("size", Spec("spatial")),)

    def check(self, a, x):
        if any(o > w for o, w in zip(a["size"], x[1:])):
            raise LayerError(
                f"{self.name} to {fmt_shape(a['size'])} needs an input of at least {fmt_shape(a['size'])}; "
                f"received {fmt_shape(x)}",
                "size",
            )

    def shape(self, a, x):
        return (x[0],) + tuple(a["size"])

    def window(self, a, x, y):
        """The widest cell, and the mean step between cells, W/O (whole when O divides W)."""
        cells = [adaptive_cells(w, o) for w, o in zip(x[1:], a["size"])]
        widest = tuple(max(e - s for s, e in axis) for axis in cells)
        return widest, tuple(fraction(w, o) for w, o in zip(x[1:], a["size"]))

    def torch(self, t, node):
        op = "avg" if self.onnx_reduce == "ReduceMean" else "max"
        return f"F.adaptive_{op}_pool{t.rank}d({t.x[0]}, {torch_tuple(node.attrs['size'])})"

    def lower(self, b, node, xs, y):
        x, out = b.shape(node.inputs[0]), node.attrs["size"]
        if all(w % o == 0 for w, o in zip(x[1:], out)):  # an ordinary pool: window = stride = W/O
            k = [w // o for w, o in zip(x[1:], out)]
            b.op(self.onnx_pool, xs, out=y, kernel_shape=k, strides=k)
            return
        # Exactly, one axis after the other (both reductions are separable over a box): per output
        # cell a Slice of its positions and a Reduce{Mean,Max}; the cells concatenated. The last
        # axis first: then a maximum's gradient, routed to the first maximum of each reduction,
        # reaches the first maximum of the cell in row-major order, as in PyTorch.
        np = b.np
        v = xs[0]
        axes = [i for i, (w, o) in enumerate(zip(x[1:], out)) if w != o][::-1]
        for k, i in enumerate(axes):
            w, o, axis = x[1 + i], out[i], 2 + i
            last = k == len(axes) - 1
            if o == 1:
                v = b.reduce(self.onnx_reduce, v, [axis], out=y if last else None)
                continue
            parts = []
            for start, end in adaptive_cells(w, o):
                ints = [b.const(np.array([t], np.int64)) for t in (start, end, axis)]
                parts.append(b.reduce(self.onnx_reduce, b.op("Slice", [v, *ints]), [axis]))
            v = b.op("Concat", parts, out=y if last else None, axis=axis)

    def onnx_import(self, reader, group):
        """``lower``'s Slice, Reduce and Concat; the output size from the inferred shape. (When O
        divides W, ``lower`` writes an ordinary pool, which reads back as avgpool or maxpool: the
        same computation.)"""
        if self.onnx_reduce not in group.types or not group.types <= {"Slice", self.onnx_reduce, "Concat"}:
            return None
        y = reader.shape(group.out)
        if y is None or len(y) < 2:
            group.unsupported("adaptive pooling needs the output's inferred shape")
        rank = len(y) + 1
        for n in group.nodes:  # each reduction over spatial axes only, keeping them
            if n.op_type == self.onnx_reduce:
                axes = reader.reduce_axes(n, rank)
                if not reader.attrs(n).get("keepdims", 1) or not axes or not set(axes) <= set(range(2, rank)):
                    return None
        size = tuple(y[1:])
        return [size if len(set(size)) > 1 else size[0]], {}


class AdaptiveAvgPool(_Adaptive):
    name = "adaptive_avgpool"
    doc = "adaptive average pooling to the given output size (PyTorch's windows)"
    onnx_pool = "AveragePool"
    onnx_reduce = "ReduceMean"


class AdaptiveMaxPool(_Adaptive):
    name = "adaptive_maxpool"
    doc = "adaptive max pooling to the given output size (PyTorch's windows)"
    onnx_pool = "MaxPool"
    onnx_reduce = "ReduceMax"


# F.avg_poolNd pads equally on both sides; ``same`` with an even window pads one more at the end.
AVG_POOL_PADDED = """

def avg_pool_padded(x, size, stride, pads, count_pad):
    \"\"\"Average pooling after zero padding unequal before and after (F.pad order): the mean over
    the window's positions inside the input, or with count_pad over the whole window.\"\"\"
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[x.dim() - 3]
    mean = pool(F.pad(x, pads), size, stride)
    if count_pad:
        return mean
    inside = pool(F.pad(torch.ones_like(x[:1, :1]), pads), size, stride)
    return mean / inside
"""
