"""Convolutions: ``conv K/F/S/P`` and ``deconv K/F/S/P`` (transpose)."""

from __future__ import annotations

from .arith import dropped_input, effective_kernel, fmt_shape, prod, same_pads, transpose_out, window_out
from .base import Kind, LayerError, Spec, fraction, torch_pads, torch_tuple


def resolve_pads(pad, size, f_eff, stride):
    """Per-axis (begin, end) padding from an int tuple, 'same' or 'valid'."""
    if pad == "valid":
        return tuple((0, 0) for _ in size)
    if pad == "same":
        return tuple(same_pads(w, f, s) for w, f, s in zip(size, f_eff, stride))
    return tuple((p, p) for p in pad)


def extent(f, dilation=None) -> tuple:
    """Per axis, the input positions a (dilated) kernel covers."""
    return tuple(effective_kernel(k, d) for k, d in zip(f, dilation or (1,) * len(f)))


def sliding_window(x, f_eff, stride, pads, pad, dilation=None, ceil=False):
    """Output spatial size of a window sliding over x with the resolved ``pads`` (``pad`` as
    written, for the message); shared by conv and pooling."""
    size = x[1:]
    out = tuple(window_out(w, k, s, p0, p1, ceil) for w, k, s, (p0, p1) in zip(size, f_eff, stride, pads))
    if any(o < 1 for o in out):
        padding = (
            "same"
            if pad == "same"
            else fmt_shape(tuple(p0 for p0, _ in pads))
            if len(set(pads)) > 1
            else str(pads[0][0])
        )
        raise LayerError(
            f"{{call}} needs at least {fmt_shape(f_eff)} input, got {fmt_shape(x)} (padding {padding})"
            + (
                f"; dilation {fmt_shape(dilation)} widens the kernel to {fmt_shape(f_eff)}"
                if dilation and any(d > 1 for d in dilation)
                else ""
            )
        )
    return out


def stride_warnings(x, f_eff, stride, pads, ceil=False):
    """One warning when a stride does not tile its input and real positions are dropped."""
    if ceil:
        return []
    axes = "L" if len(f_eff) == 1 else ("HW" if len(f_eff) == 2 else "DHW")
    lost = {axis: dropped_input(w, f, s, p0, p1) for axis, w, f, s, (p0, p1) in zip(axes, x[1:], f_eff, stride, pads)}
    lost = {axis: n for axis, n in lost.items() if n}
    if not lost:
        return []
    where = ", ".join(f"{n} along {axis}" for axis, n in lost.items())
    return [
        (
            f"{{call}}: stride {fmt_shape(stride)} with window {fmt_shape(f_eff)} does not tile the input "
            f"{fmt_shape(x)}: the last input positions are dropped ({where})",
            "stride",
        )
    ]


class Conv(Kind):
    name = "conv"
    look_alikes = ("conv2d", "conv1d", "conv3d", "convolution", "convolutional")
    doc = "convolution: K filters of extent F, stride S, zero padding P"
    spatial = True
    shown_keywords = ("groups", "dilation")
    positional = (
        ("filters", Spec("int", min=1)),
        ("size", Spec("spatial")),
        ("stride", Spec("spatial", 1)),
        ("pad", Spec("pad", 0)),
    )
    keywords = {
        "groups": Spec("int", 1, min=1),
        "dilation": Spec("spatial", 1),
        "bias": Spec("bool", True),
        "pad_mode": Spec("enum", "zeros", choices=("zeros", "reflect", "replicate")),
        "table": Spec("table", None),
    }
    stated_defaults = ("bias",)

    def check(self, a, x):
        c, k, g = x[0], a["filters"], a["groups"]
        if c % g or k % g:
            raise LayerError(
                f"groups must divide both the input channels and the filters; received groups={g}, "
                f"input channels={c}, filters={k}",
                "groups",
            )
        table = a["table"]
        if table is not None:
            if g != 1:
                raise LayerError("a connection table cannot be combined with groups", "table")
            rows = table.rows
            if len(rows) != k:
                raise LayerError(
                    f"table {table.name} has {len(rows)} rows but the layer has {k} filters; "
                    "each filter needs one row listing its input maps",
                    "table",
                )
            for i, row in enumerate(rows):
                if not isinstance(row, list) or not row:
                    raise LayerError(f"row {i} of table {table.name} must be a non-empty list of input maps", "table")
                for m in row:
                    if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < c:
                        raise LayerError(
                            f"table {table.name} row {i} lists input map {m}, but the input has {c} maps (0..{c - 1})",
                            "table",
                        )
                if len(set(row)) != len(row):
                    raise LayerError(f"table {table.name} row {i} lists an input map twice", "table")

    def canonical(self, a, x):
        f_eff = extent(a["size"], a["dilation"])
        return {**a, "pads": resolve_pads(a["pad"], x[1:], f_eff, a["stride"])}

    def shape(self, a, x):
        pads = a["pads"]
        out = sliding_window(x, extent(a["size"], a["dilation"]), a["stride"], pads, a["pad"], a["dilation"])
        if a["pad_mode"] == "reflect" and any(max(p) >= w for p, w in zip(pads, x[1:])):
            # as for the pad layer: a reflection needs that many elements besides the edge
            raise LayerError(
                f"reflect padding must be smaller than the input; received pad="
                f"{fmt_shape(tuple(max(p) for p in pads))} on {fmt_shape(x)}",
                "pad",
            )
        return (a["filters"],) + out

    def _fan_in(self, a, x):
        """Σ over filters of the input maps each one reads, times F^n."""
        kernel = prod(a["size"])
        if a["table"] is not None:
            return sum(len(r) for r in a["table"].rows) * kernel
        return a["filters"] * x[0] // a["groups"] * kernel

    def params(self, a, x, y):
        return self._fan_in(a, x) + (a["filters"] if a["bias"] else 0), 0

    def macs(self, a, x, y):
        return prod(y[1:]) * self._fan_in(a, x)

    def connections(self, a, x, y):
        return prod(y[1:]) * (self._fan_in(a, x) + (a["filters"] if a["bias"] else 0))

    def window(self, a, x, y):
        return extent(a["size"], a["dilation"]), a["stride"]

    def warnings(self, a, x, y):
        return stride_warnings(x, extent(a["size"], a["dilation"]), a["stride"], a["pads"])

    def torch(self, t, node):
        """nn.ConvNd; unequal padding before it as F.pad; a connection table as MaskedConvNd."""
        a, x, n = node.attrs, t.in_shape, t.rank
        pads = a["pads"]
        equal = all(p == q for p, q in pads)
        mode = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}[a["pad_mode"]]
        args = f"{x[0]}, {a['filters']}, {torch_tuple(a['size'])}"
        if set(a["stride"]) != {1}:
            args += f", stride={torch_tuple(a['stride'])}"
        if equal and any(p for p, _ in pads):
            args += f", padding={torch_tuple(tuple(p for p, _ in pads))}"
            if a["pad_mode"] != "zeros" and any(p for p, _ in pads):
                args += f", padding_mode={a['pad_mode']!r}"
        if set(a["dilation"]) != {1}:
            args += f", dilation={torch_tuple(a['dilation'])}"
        if a["groups"] != 1:
            args += f", groups={a['groups']}"
        if not a["bias"]:
            args += ", bias=False"
        if a["table"] is not None:
            cls = t.helper(f"MaskedConv{n}d", MASKED_CONV.format(n=n))
            table = a["table"]
            rows = "".join(f"    {list(r)!r},\n" for r in table.rows)
            name = t.helper(
                f"TABLE_{table.name.upper()}",
                f"# table {table.name}: the input maps filter i reads\nTABLE_{table.name.upper()} = [\n{rows}]\n",
            )
            m = t.module(f"{cls}({name}, {args})")
        else:
            m = t.module(f"nn.Conv{n}d({args})")
        v = t.x[0]
        if not equal:
            v = f"F.pad({v}, {torch_pads(pads)}, mode={mode!r})"
        return f"{m}({v})"

    def lower(self, b, node, xs, y):
        a, x = node.attrs, b.shape(node.inputs[0])
        k, c, g, f = a["filters"], x[0], a["groups"], a["size"]
        kernel = prod(f)
        fan_in = (self._fan_in(a, x) // k) if a["table"] is not None else c // g * kernel
        w = b.weight("weight", (k, c // g, *f), b.init_for(node), fan_in, k // g * kernel)
        np = b.np
        if a["table"] is not None:
            mask = np.zeros((k, c) + (1,) * len(f), dtype=np.float32)
            for i, row in enumerate(a["table"].rows):
                mask[i, row] = 1.0
            w = b.op("Mul", [w, b.const(mask)])  # the masked weights stay zero whatever is loaded
        args = [xs[0], w] + ([b.weight("bias", (k,), "fill")] if a["bias"] else [])
        pads = self.onnx_pads(a["pads"])
        if a["pad_mode"] != "zeros" and any(pads):
            full = [0, 0, *pads[: len(f)], 0, 0, *pads[len(f) :]]
            mode = "reflect" if a["pad_mode"] == "reflect" else "edge"
            args[0] = b.op("Pad", [xs[0], b.const(np.array(full, np.int64))], mode=mode)
            pads = [0] * len(pads)
        b.op(
            "Conv",
            args,
            out=y,
            kernel_shape=list(f),
            strides=list(a["stride"]),
            pads=pads,
            dilations=list(a["dilation"]),
            group=g,
        )

    def onnx_import(self, reader, group):
        """Conv, after a Pad of another mode (``pad_mode``), its weights masked by a Mul (``table=``);
        a MatMul of a channels-last tensor by a (C, K) weight (torch's Linear after a permute,
        ConvNeXt) is a 1x1 convolution, its bias the Add after it."""
        main, a = group.main, group.a
        if group.types == {"MatMul"} and reader.channels_last(group.ext[0]):
            w = reader.init(main.input[1])
            if w is None or len(w.shape) != 2 or group.x is None or w.shape[0] != group.x[0]:
                group.unsupported("MatMul of a channels-last tensor needs a (channels, outputs) weight")
            return [int(w.shape[1]), 1], {"bias": False}
        if not (group.types <= {"Conv", "Mul", "Pad"} and group.ops["Conv"] == 1 and main.op_type == "Conv"):
            return None
        w = reader.init(main.input[1])
        masked = next((n for n in group.nodes if n.op_type == "Mul" and main.input[1] in n.output), None)
        if w is None and masked is not None:  # a connection table: weight × mask
            w = next((reader.init(i) for i in masked.input if reader.init(i) is not None), None)
        if w is None:
            group.unsupported("the weights must be an initializer")
        k, f = w.shape[0], tuple(w.shape[2:])
        kw = {}
        if a.get("group", 1) != 1:
            kw["groups"] = a["group"]
        dil = tuple(a.get("dilations", [1] * len(f)))
        if set(dil) != {1}:
            kw["dilation"] = dil
        if len(main.input) < 3 or not main.input[2]:
            kw["bias"] = False
        pad = reader.pads(main, a, len(f), group)
        pnode = group.first("Pad")
        if pnode is not None:
            mode = reader.word(reader.attrs(pnode).get("mode", b"constant"))
            kw["pad_mode"] = {"reflect": "reflect", "edge": "replicate", "constant": "zeros"}[mode]
            pad = tuple(int(p) for p in reader.const(pnode.input[1])[2 : 2 + len(f)])
        mul = group.first("Mul")
        if mul is not None:
            masks = (reader.const(i) for i in mul.input)
            mask = next((m for m in masks if m is not None and set(m.ravel().tolist()) <= {0.0, 1.0}), None)
            if mask is None:
                group.unsupported("a weight mask must be a constant")
            rows = [[int(c) for c in range(mask.shape[1]) if mask[j, c].any()] for j in range(mask.shape[0])]
            kw["table"] = reader.table(group.name, rows)
            k = mask.shape[0]
        return reader.fields(k, f, a.get("strides", [1] * len(f)), pad), kw


class Deconv(Kind):
    name = "deconv"
    doc = "transpose convolution: output (W−1)·S − 2P + d·(F−1) + outpad + 1"
    spatial = True
    shown_keywords = ("groups", "dilation")
    positional = (
        ("filters", Spec("int", min=1)),
        ("size", Spec("spatial")),
        ("stride", Spec("spatial", 1)),
        ("pad", Spec("spatial", 0, min=0)),
    )
    keywords = {
        "outpad": Spec("spatial", 0, min=0),
        "groups": Spec("int", 1, min=1),
        "dilation": Spec("spatial", 1),
        "bias": Spec("bool", True),
        "trainable": Spec("bool", True),  # false: fixed weights (FCN's bilinear upsampling)
    }

    def check(self, a, x):
        c, k, g = x[0], a["filters"], a["groups"]
        if c % g or k % g:
            raise LayerError(
                f"groups must divide both the input channels and the filters; received groups={g}, "
                f"input channels={c}, filters={k}",
                "groups",
            )
        for op, s, d in zip(a["outpad"], a["stride"], a["dilation"]):
            if op >= max(s, d):
                raise LayerError(
                    f"outpad must be smaller than the stride or the dilation; received outpad={op}, stride={s}",
                    "outpad",
                )

    def shape(self, a, x):
        out = tuple(
            transpose_out(w, f, s, p, d, op)
            for w, f, s, p, d, op in zip(x[1:], a["size"], a["stride"], a["pad"], a["dilation"], a["outpad"])
        )
        if any(o < 1 for o in out):
            raise LayerError(f"{{call}} gives an empty output on input {fmt_shape(x)}: padding too large", "pad")
        return (a["filters"],) + out

    def _weights(self, a, x):
        return x[0] * (a["filters"] // a["groups"]) * prod(a["size"])

    def params(self, a, x, y):
        n = self._weights(a, x) + (a["filters"] if a["bias"] else 0)
        return (n, 0) if a["trainable"] else (0, n)

    def macs(self, a, x, y):
        # Counted over input positions: every input unit scatters into K/groups·F^n outputs.
        return prod(x[1:]) * self._weights(a, x)

    def connections(self, a, x, y):
        # Only products that land inside the output are some output unit's fan-in: with
        # padding, the ones scattered into the cropped border reach no unit.
        landed = 1
        for w, f, s, p, d, out in zip(x[1:], a["size"], a["stride"], a["pad"], a["dilation"], y[1:]):
            landed *= sum(1 for i in range(w) for k in range(f) if 0 <= i * s - p + k * d < out)
        return x[0] * (a["filters"] // a["groups"]) * landed + (prod(y) if a["bias"] else 0)

    def window(self, a, x, y):
        # Each output sees ceil(F_eff / S) input positions; the jump shrinks by S.
        f_eff = extent(a["size"], a["dilation"])
        return tuple(-(-f // s) for f, s in zip(f_eff, a["stride"])), tuple(fraction(1, s) for s in a["stride"])

    def torch(self, t, node):
        """nn.ConvTransposeNd (weights fixed with trainable=false)."""
        a, x = node.attrs, t.in_shape
        args = f"{x[0]}, {a['filters']}, {torch_tuple(a['size'])}, stride={torch_tuple(a['stride'])}"
        args += f", padding={torch_tuple(a['pad'])}"
        if set(a["outpad"]) != {0}:
            args += f", output_padding={torch_tuple(a['outpad'])}"
        if a["groups"] != 1:
            args += f", groups={a['groups']}"
        if not a["bias"]:
            args += ", bias=False"
        if set(a["dilation"]) != {1}:
            args += f", dilation={torch_tuple(a['dilation'])}"
        fixed = "" if a["trainable"] else ".requires_grad_(False)"
        return f"{t.module(f'nn.ConvTranspose{t.rank}d({args}){fixed}')}({t.x[0]})"

    def lower(self, b, node, xs, y):
        a, x = node.attrs, b.shape(node.inputs[0])
        k, c, g, f = a["filters"], x[0], a["groups"], a["size"]
        w = b.weight(
            "weight", (c, k // g, *f), b.init_for(node), c // g * prod(f), k // g * prod(f), trainable=a["trainable"]
        )
        args = [xs[0], w] + ([b.weight("bias", (k,), "fill", trainable=a["trainable"])] if a["bias"] else [])
        b.op(
            "ConvTranspose",
            args,
            out=y,
            kernel_shape=list(f),
            strides=list(a["stride"]),
            pads=list(a["pad"]) * 2,
            dilations=list(a["dilation"]),
            output_padding=list(a["outpad"]),
            group=g,
        )

    def onnx_import(self, reader, group):
        """ConvTranspose; ``filters`` from the weight's shape (C, K/groups, F...)."""
        main, a = group.main, group.a
        if group.types != {"ConvTranspose"}:
            return None
        w = reader.init(main.input[1])
        if w is None:
            group.unsupported("the weights must be an initializer")
        g = a.get("group", 1)
        f = tuple(w.shape[2:])
        kw = {}
        if g != 1:
            kw["groups"] = g
        if len(main.input) < 3 or not main.input[2]:
            kw["bias"] = False
        dil = tuple(a.get("dilations", [1] * len(f)))
        if set(dil) != {1}:
            kw["dilation"] = dil
        outpad = tuple(a.get("output_padding", [0] * len(f)))
        if set(outpad) != {0}:
            kw["outpad"] = outpad
        pad = reader.pads(main, a, len(f), group)
        return reader.fields(w.shape[1] * g, f, a.get("strides", [1] * len(f)), pad), kw


# A conv whose weight is multiplied by a fixed 0/1 mask (``table=``): filter i reads only the input
# maps that row i of the table lists, whatever weights are loaded (the mask is not in the state dict).
MASKED_CONV = """

class MaskedConv{n}d(nn.Conv{n}d):
    \"\"\"nn.Conv{n}d reading, for filter i, only the input maps listed in rows[i] (a connection table).\"\"\"

    def __init__(self, rows, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mask = torch.zeros(self.weight.shape[:2] + (1,) * (self.weight.dim() - 2))
        for i, row in enumerate(rows):
            mask[i, row] = 1.0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask, self.bias)
"""
