"""Normalisation: bn, lrn, lcn, ln, gn, instnorm."""

from __future__ import annotations

from .base import Kind, LayerError, Spec


class BatchNorm(Kind):
    name = "bn"
    doc = "batch normalisation; momentum as PyTorch: running = (1 − m)·running + m·batch"
    keywords = {"eps": Spec("float", 1e-5, min=0), "momentum": Spec("float", 0.1, min=0)}

    def params(self, a, x, y):
        # γ and β are trained; the running mean and variance are not.
        return 2 * x[0], 2 * x[0]


class LRN(Kind):
    name = "lrn"
    doc = "local response normalisation across `size` channels: x / (k + alpha/size·Σx²)^beta"
    positional = (("size", Spec("int", min=1)),)
    keywords = {
        "alpha": Spec("float", 1e-4),
        "beta": Spec("float", 0.75),
        "k": Spec("float", 1.0),
    }


class LCN(Kind):
    name = "lcn"
    doc = "local contrast normalisation over a size×size Gaussian window (Jarrett et al. 2009)"
    spatial = True
    positional = (("size", Spec("int", min=1)),)
    keywords = {"sigma": Spec("float", 1.0, min=0)}

    def check(self, a, x):
        if a["size"] % 2 == 0:
            raise LayerError(f"lcn size must be odd so that the window is centred; received size={a['size']}", "size")


class _GroupNorm(Kind):
    keywords = {"eps": Spec("float", 1e-5, min=0)}

    def groups(self, a, x):
        return 1

    def check(self, a, x):
        g = self.groups(a, x)
        if x[0] % g:
            raise LayerError(f"groups must divide the channels; received groups={g}, channels={x[0]}", "groups")

    def params(self, a, x, y):
        return 2 * x[0], 0


class LayerNorm(_GroupNorm):
    name = "ln"
    doc = "layer normalisation over all of C×spatial per sample, per-channel scale and shift"


class GroupNorm(_GroupNorm):
    name = "gn"
    doc = "group normalisation with `groups` channel groups"
    positional = (("groups", Spec("int", min=1)),)

    def groups(self, a, x):
        return a["groups"]


class InstanceNorm(_GroupNorm):
    name = "instnorm"
    doc = "instance normalisation: per sample and channel, per-channel scale and shift"

    def groups(self, a, x):
        return x[0]
