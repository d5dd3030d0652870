"""Spatial and channel rearrangement: crop, pad, shuffle, and the option-A shortcut."""

from __future__ import annotations

from .arith import fmt_shape
from .base import Kind, LayerError, Spec, fraction, full_window, torch_pads


class Crop(Kind):
    name = "crop"
    doc = (
        "crop to HxW (or to the spatial size of @label); from the top-left, centred with `center`, "
        "or from offset=Y (per axis: YxX), Caffe's Crop"
    )
    spatial = True
    # ``crop 388x388``, ``crop 388`` or one field per axis: ``crop 388/388``
    positional = (
        ("size", Spec("spatial", None)),
        ("size_2", Spec("int", None, min=1)),
        ("size_3", Spec("int", None, min=1)),
    )
    keywords = {"to": Spec("ref", None), "center": Spec("bool", False), "offset": Spec("spatial", None, min=0)}

    def canonical(self, a, x):
        """The size per axis, from the fields or from the shape of ``to=@label``."""
        size = a["size"]
        more = tuple(v for v in (a["size_2"], a["size_3"]) if v is not None)
        if more:
            if len(more) + 1 != len(x) - 1:
                raise LayerError(
                    f"crop takes one size per spatial axis; received {len(more) + 1} for the input {fmt_shape(x)}",
                    "size",
                )
            if len(set(size)) > 1:
                raise LayerError("crop takes either dimensions (4x5) or one field per axis (4/5), not both", "size")
            size = (size[0],) + more
        if (size is None) == (a["to"] is None):
            raise LayerError("crop needs either a size (crop 388x388) or to=@label, not both", "size")
        if a["to"] is not None:
            target = a["to"].node.shape
            if len(target) != len(x):
                raise LayerError(
                    f"crop to=@{a['to'].name} has shape {fmt_shape(target)}, which does not have the "
                    f"spatial axes of the input {fmt_shape(x)}",
                    "to",
                )
            size = tuple(target[1:])
        return {**a, "size": size}

    def check(self, a, x):
        if a["offset"] is not None and a["center"]:
            raise LayerError("crop takes center or offset=, not both", "offset")
        if any(t > w for t, w in zip(a["size"], x[1:])):
            raise LayerError(f"cannot crop {fmt_shape(x)} to {fmt_shape(a['size'])}: the crop is larger than the input")
        if a["offset"] is not None and any(o + t > w for o, t, w in zip(a["offset"], a["size"], x[1:])):
            raise LayerError(
                f"cannot crop {fmt_shape(x)} to {fmt_shape(a['size'])} from offset {fmt_shape(a['offset'])}: "
                "the window goes past the input",
                "offset",
            )

    def shape(self, a, x):
        return (x[0],) + tuple(a["size"])

    def offsets(self, a, x):
        """Per-axis start of the kept window."""
        if a["center"]:
            return tuple((w - t) // 2 for w, t in zip(x[1:], a["size"]))
        if a["offset"] is not None:
            return tuple(a["offset"])
        return (0,) * (len(x) - 1)

    def torch(self, t, node):
        start = self.offsets(node.attrs, t.in_shape)
        cuts = ", ".join(f"{s}:{s + w}" for s, w in zip(start, node.attrs["size"]))
        return f"{t.x[0]}[:, :, {cuts}]"

    def lower(self, b, node, xs, y):
        np = b.np
        a, x = node.attrs, b.shape(node.inputs[0])
        start = self.offsets(a, x)
        end = [s + t for s, t in zip(start, a["size"])]
        axes = list(range(2, 2 + len(start)))
        ints = [b.const(np.array(v, np.int64)) for v in (start, end, axes)]
        b.op("Slice", [xs[0], *ints], out=y)

    def onnx_import(self, reader, group):
        """A Slice to a known output shape; ``center`` when it starts at the centred window,
        ``offset=`` when elsewhere."""
        if group.types != {"Slice"}:
            return None
        y, starts = reader.shape(group.out), reader.const(group.main.input[1])
        if y is None or group.x is None or starts is None:
            group.unsupported("a Slice needs known shapes and constant starts")
        size = tuple(y[1:])
        begin = tuple(int(s) for s in starts)
        centred = tuple((w - t) // 2 for w, t in zip(group.x[1:], size))
        kw = {} if not any(begin) else {"center": True} if begin == centred else {"offset": reader.fields(begin)[0]}
        return [size if len(set(size)) > 1 else size[0]], kw


class Pad(Kind):
    name = "pad"
    doc = "pads P on both sides of every spatial axis; mode zeros, reflect or replicate"
    spatial = True
    positional = (("pad", Spec("spatial", min=0)),)
    keywords = {"mode": Spec("enum", "zeros", choices=("zeros", "reflect", "replicate"))}

    def check(self, a, x):
        if a["mode"] == "reflect" and any(p >= w for p, w in zip(a["pad"], x[1:])):
            raise LayerError(
                f"reflect padding must be smaller than the input; received pad={fmt_shape(a['pad'])} on {fmt_shape(x)}",
                "pad",
            )

    def shape(self, a, x):
        return (x[0],) + tuple(w + 2 * p for w, p in zip(x[1:], a["pad"]))

    def torch(self, t, node):
        p = node.attrs["pad"]
        mode = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}[node.attrs["mode"]]
        return f"F.pad({t.x[0]}, {torch_pads(tuple((v, v) for v in p))}, mode={mode!r})"

    def lower(self, b, node, xs, y):
        np = b.np
        p = list(node.attrs["pad"])
        pads = b.const(np.array([0, 0, *p, 0, 0, *p], np.int64))
        mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}[node.attrs["mode"]]
        if mode != "constant":
            b.op("Pad", [xs[0], pads], out=y, mode=mode)
            return
        # Zeros given as -0.0 (equal to 0.0, other bytes): onnxruntime's PadFusion (PR #18136)
        # moves a Pad whose value is all-zero bytes into a following MaxPool/AveragePool's
        # `pads`, where MaxPool pads with -inf (wrong values: `pad 1 -> maxpool 2` on negative
        # inputs) and a pad not smaller than the window makes the session fail to load.
        b.op("Pad", [xs[0], pads, b.scalar(-0.0)], out=y, mode=mode)

    def onnx_import(self, reader, group):
        """A Pad of the same amount before and after each spatial axis."""
        main, a = group.main, group.a
        if group.types != {"Pad"}:
            return None
        pads = reader.const(main.input[1]) if len(main.input) > 1 else a.get("pads")
        if pads is None:
            group.unsupported("Pad needs constant pads")
        mode = reader.word(a.get("mode", b"constant"))
        r = len(pads) // 2
        begins, ends = [int(v) for v in pads[:r]], [int(v) for v in pads[r:]]
        if begins != ends or any(begins[:2]):
            group.unsupported(f"Pad {list(pads)}: only the same padding before and after each spatial axis")
        kw = {"mode": {"reflect": "reflect", "edge": "replicate"}[mode]} if mode != "constant" else {}
        return reader.fields(begins[2:]), kw


class Shuffle(Kind):
    name = "shuffle"
    doc = "channel shuffle with `groups` groups (ShuffleNet)"
    positional = (("groups", Spec("int", min=1)),)

    def check(self, a, x):
        if x[0] % a["groups"]:
            raise LayerError(
                f"groups must divide the channels; received groups={a['groups']}, channels={x[0]}", "groups"
            )

    def torch(self, t, node):
        g, c = node.attrs["groups"], t.in_shape[0]
        return f"{t.x[0]}.unflatten(1, ({g}, {c // g})).transpose(1, 2).flatten(1, 2)"

    def lower(self, b, node, xs, y):
        np = b.np
        g, x = node.attrs["groups"], b.shape(node.inputs[0])
        split = b.op("Reshape", [xs[0], b.const(np.array([0, g, x[0] // g, -1], np.int64))])
        swapped = b.op("Transpose", [split], perm=[0, 2, 1, 3])
        b.op("Reshape", [swapped, b.const(np.array([0, *x], np.int64))], out=y)

    onnx_chains = (("Reshape", "Transpose", "Reshape"),)  # torchvision's channel_shuffle: view, transpose, view

    def onnx_import(self, reader, group):
        """``lower``'s Reshape to (N, groups, C/groups, −1), Transpose, Reshape; torchvision's
        channel_shuffle: Reshape to (N, groups, C/groups, H, W), Transpose of axes 1 and 2, Reshape
        back to the input's shape."""
        if group.types != {"Reshape", "Transpose"} or len(group.nodes) != 3 or group.x is None:
            return None
        split = reader.const(group.nodes[0].input[1])
        perm = list(reader.attrs(group.nodes[1]).get("perm", []))
        if split is None or len(split) < 3 or perm[:3] != [0, 2, 1] or perm[3:] != list(range(3, len(perm))):
            return None
        g = int(split[1])
        c = group.x[0]
        if g < 1 or c % g or int(split[2]) not in (c // g, -1) or reader.shape(group.out) != group.x:
            return None
        return [g], {}


class ShortcutPad(Kind):
    """``residual(shortcut=pad)``: the input subsampled by the stride, zero channels appended."""

    name = "shortcut_pad"
    internal = True
    doc = "parameter-free option-A shortcut (He et al. 2015 §4.2)"
    positional = (("stride", Spec("spatial", 1)), ("channels", Spec("int", min=1)))

    def check(self, a, x):
        if a["channels"] < x[0]:
            raise LayerError(
                f"shortcut=pad can only add channels; the body gives {a['channels']} from {x[0]}", "shortcut"
            )

    def shape(self, a, x):
        return (a["channels"],) + tuple(-(-w // s) for w, s in zip(x[1:], a["stride"]))

    def window(self, a, x, y):
        return (1,) * (len(x) - 1), tuple(fraction(s, 1) for s in a["stride"])

    def torch(self, t, node):
        a, x = node.attrs, t.in_shape
        steps = ", ".join(f"::{s}" for s in a["stride"])
        pads = (0, 0) * (len(x) - 1) + (0, a["channels"] - x[0])
        return f"F.pad({t.x[0]}[:, :, {steps}], {pads})"

    def lower(self, b, node, xs, y):
        np = b.np
        a, x = node.attrs, b.shape(node.inputs[0])
        n = len(x) - 1
        ints = [np.zeros(n), np.full(n, 2**62), np.arange(2, 2 + n), np.array(a["stride"])]
        sub = b.op("Slice", [xs[0], *(b.const(v.astype(np.int64)) for v in ints)])
        extra = a["channels"] - x[0]
        pads = b.const(np.array([0, 0] + [0] * n + [0, extra] + [0] * n, np.int64))
        b.op("Pad", [sub, pads], out=y, mode="constant")

    def onnx_import(self, reader, group):
        """``lower``'s Slice and Pad (read back for ``residual(shortcut=pad)``)."""
        return ([], {}) if group.types == {"Slice", "Pad"} else None


class ChannelSlice(Kind):
    """``slice FROM/TO``: the channels FROM … TO − 1 (ShuffleNetV2's channel split)."""

    name = "slice"
    doc = "the channels [FROM, TO) of the input (ShuffleNetV2's channel split)"
    positional = (("start", Spec("int", min=0)), ("end", Spec("int", min=1)))

    def check(self, a, x):
        if not a["start"] < a["end"] <= x[0]:
            raise LayerError(
                f"slice takes channels FROM/TO with FROM < TO ≤ {x[0]} (the input's channels); "
                f"received slice {a['start']}/{a['end']} on {x[0]} channels",
                "end" if a["start"] < a["end"] else "start",
            )

    def shape(self, a, x):
        return (a["end"] - a["start"],) + tuple(x[1:])

    def torch(self, t, node):
        return f"{t.x[0]}[:, {node.attrs['start']}:{node.attrs['end']}]"

    def lower(self, b, node, xs, y):
        np = b.np
        a = node.attrs
        ints = [b.const(np.array([v], np.int64)) for v in (a["start"], a["end"], 1)]
        b.op("Slice", [xs[0], *ints], out=y)

    def onnx_import(self, reader, group):
        """A Slice of the channel axis only, with step 1 (tried before crop, which slices space)."""
        main = group.main
        if group.types != {"Slice"} or len(main.input) < 4 or group.x is None:
            return None
        starts, ends, axes = (reader.const(i) for i in main.input[1:4])
        steps = reader.const(main.input[4]) if len(main.input) > 4 and main.input[4] else None
        if starts is None or ends is None or axes is None or [int(v) for v in axes] != [1]:
            return None
        if steps is not None and [int(v) for v in steps] != [1]:
            return None
        c = group.x[0]
        start, end = (min(max(int(v) + c if int(v) < 0 else int(v), 0), c) for v in (starts[0], ends[0]))
        return [start, end], {}


class SpaceToDepth(Kind):
    """``space_to_depth S``: every S×…×S block of positions becomes S^n channels.

    ``order=darknet`` is Darknet's ``[reorg]`` (reorg_cpu with forward=0, its forward pass): the
    input's buffer read as C/S² × H·S × W·S, its blocks moved into the channels, and the result
    read as C·S² × H/S × W/S; the same shape, another order, which mixes positions far apart."""

    name = "space_to_depth"
    doc = (
        "blocks of S per spatial axis moved into the channels: C·S^n × W/S (ONNX SpaceToDepth order; "
        "order=darknet: Darknet's [reorg])"
    )
    spatial = True
    positional = (("block", Spec("int", min=1)),)
    keywords = {"order": Spec("enum", "onnx", choices=("onnx", "darknet"))}
    shown_keywords = ("order",)

    def check(self, a, x):
        s = a["block"]
        if any(w % s for w in x[1:]):
            raise LayerError(
                f"space_to_depth {s} needs every spatial size divisible by {s}; received {fmt_shape(x)}", "block"
            )
        if a["order"] == "darknet" and (len(x) != 3 or x[0] % (s * s)):
            raise LayerError(
                f"space_to_depth {s} order=darknet needs a CxHxW input with C divisible by {s * s}; "
                f"received {fmt_shape(x)}",
                "order",
            )

    def shape(self, a, x):
        s = a["block"]
        return (x[0] * s ** (len(x) - 1),) + tuple(w // s for w in x[1:])

    def window(self, a, x, y):
        if a["order"] == "darknet":
            return full_window(x)  # an output position reads rows far apart
        s = (a["block"],) * (len(x) - 1)
        return s, s

    def torch(self, t, node):
        """The reshapes and transposition of ``lower`` (ONNX's order, or Darknet's)."""
        s, x = node.attrs["block"], t.in_shape
        n = len(x) - 1
        if node.attrs["order"] == "darknet":
            split = (-1, x[0] // (s * s), x[1], s, x[2], s)
            perm = (0, 3, 5, 1, 2, 4)
        else:
            split = (-1, x[0]) + tuple(v for w in x[1:] for v in (w // s, s))
            perm = (0, *range(3, 2 + 2 * n, 2), 1, *range(2, 2 + 2 * n, 2))
        return f"{t.x[0]}.reshape{split}.permute{perm}.reshape(-1, {', '.join(map(str, node.shape))})"

    def lower(self, b, node, xs, y):
        np = b.np
        s, x = node.attrs["block"], b.shape(node.inputs[0])
        n = len(x) - 1
        if node.attrs["order"] == "darknet":
            # reorg_cpu(forward=0): out[k][j][i] (C×H×W) = in'[k mod C'][j·S + o/S][i·S + o mod S] of the
            # buffer read as C' × H·S × W·S, C' = C/S², o = k div C': (N, C', H, S, W, S) → (N, S, S, C', H, W)
            c = x[0] // (s * s)
            split = [0, c, x[1], s, x[2], s]
            blocks = b.op("Reshape", [xs[0], b.const(np.array(split, np.int64))])
            moved = b.op("Transpose", [blocks], perm=[0, 3, 5, 1, 2, 4])
            b.op("Reshape", [moved, b.const(np.array([0, *node.shape], np.int64))], out=y)
            return
        if n == 2:
            b.op("SpaceToDepth", xs, out=y, blocksize=s)
            return
        # ONNX's order for any rank: (N, C, W1/S, S, W2/S, S, …) with the block offsets moved in
        # front of the channels, so output channel = ((o1·S + o2)·S + …)·C + c
        split = [0, x[0]] + [v for w in x[1:] for v in (w // s, s)]
        blocks = b.op("Reshape", [xs[0], b.const(np.array(split, np.int64))])
        perm = [0, *range(3, 2 + 2 * n, 2), 1, *range(2, 2 + 2 * n, 2)]
        moved = b.op("Transpose", [blocks], perm=perm)
        b.op("Reshape", [moved, b.const(np.array([0, *node.shape], np.int64))], out=y)

    def onnx_import(self, reader, group):
        """SpaceToDepth, or ``lower``'s Reshape, Transpose, Reshape for 1-D and 3-D, or Darknet's
        order (its first Reshape splits C/S² channels, not C) (tried before shuffle, whose
        Transpose swaps two axes only)."""
        if group.types == {"SpaceToDepth"}:
            return [int(group.a["blocksize"])], {}
        if group.types != {"Reshape", "Transpose"} or len(group.nodes) != 3:
            return None
        perm = list(reader.attrs(group.first("Transpose"))["perm"])
        n = (len(perm) - 2) // 2
        if n < 1 or perm != [0, *range(3, 2 + 2 * n, 2), 1, *range(2, 2 + 2 * n, 2)]:
            return None
        split = reader.const(group.nodes[0].input[1])
        if split is None or len(split) != 2 + 2 * n:
            return None
        s = int(split[3])
        if n == 2 and group.x is not None and int(split[1]) * s * s == group.x[0] and s > 1:
            return [s], {"order": "darknet"}
        return [s], {}
