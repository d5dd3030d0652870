"""Spatial and channel rearrangement: crop, pad, shuffle, and the option-A shortcut."""

from __future__ import annotations

from .arith import fmt_shape
from .base import Kind, LayerError, Spec, fraction


class Crop(Kind):
    name = "crop"
    doc = "crop to HxW (or to the spatial size of @label); from the top-left, or centred with `center`"
    spatial = True
    positional = (("size", Spec("spatial", None)),)
    keywords = {"to": Spec("ref", None), "center": Spec("bool", False)}

    def check(self, a, x):
        if (a["size"] is None) == (a["to"] is None):
            raise LayerError("crop needs either a size (crop 388x388) or to=@label, not both", "size")
        if a["to"] is not None:
            target = a["to"].node.shape
            if len(target) != len(x):
                raise LayerError(
                    f"crop to=@{a['to'].name} has shape {fmt_shape(target)}, which does not have the "
                    f"spatial axes of the input {fmt_shape(x)}",
                    "to",
                )
            a["size"] = tuple(target[1:])
        if any(t > w for t, w in zip(a["size"], x[1:])):
            raise LayerError(f"cannot crop {fmt_shape(x)} to {fmt_shape(a['size'])}: the crop is larger than the input")

    def shape(self, a, x):
        return (x[0],) + tuple(a["size"])

    def offsets(self, a, x):
        """Per-axis start of the kept window."""
        if a["center"]:
            return tuple((w - t) // 2 for w, t in zip(x[1:], a["size"]))
        return (0,) * (len(x) - 1)


class Pad(Kind):
    name = "pad"
    doc = "pads P on both sides of every spatial axis; mode zeros, reflect or replicate"
    spatial = True
    positional = (("pad", Spec("spatial", min=0)),)
    keywords = {"mode": Spec("enum", "zeros", choices=("zeros", "reflect", "replicate"))}

    def check(self, a, x):
        if a["mode"] == "reflect" and any(p >= w for p, w in zip(a["pad"], x[1:])):
            raise LayerError(
                f"reflect padding must be smaller than the input; received pad={fmt_shape(a['pad'])} "
                f"on {fmt_shape(x)}",
                "pad",
            )

    def shape(self, a, x):
        return (x[0],) + tuple(w + 2 * p for w, p in zip(x[1:], a["pad"]))


class Shuffle(Kind):
    name = "shuffle"
    doc = "channel shuffle with `groups` groups (ShuffleNet)"
    positional = (("groups", Spec("int", min=1)),)

    def check(self, a, x):
        if x[0] % a["groups"]:
            raise LayerError(
                f"groups must divide the channels; received groups={a['groups']}, channels={x[0]}", "groups"
            )


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
