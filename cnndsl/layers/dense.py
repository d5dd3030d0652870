"""Fully connected and friends: fc, rbf, flatten, softmax, dropout."""

from __future__ import annotations

import zlib

from .arith import prod
from .base import Kind, LayerError, Spec, full_window


class FC(Kind):
    name = "fc"
    doc = "fully connected with N outputs; flattens its input"
    positional = (("units", Spec("int", min=1)),)
    keywords = {"bias": Spec("bool", True)}

    def shape(self, a, x):
        return (a["units"],)

    def params(self, a, x, y):
        return (prod(x) + (1 if a["bias"] else 0)) * a["units"], 0

    def macs(self, a, x, y):
        return prod(x) * a["units"]

    def connections(self, a, x, y):
        return self.params(a, x, y)[0]

    def window(self, a, x, y):
        return full_window(x)

    def lower(self, b, node, xs, y):
        a, x = node.attrs, b.shape(node.inputs[0])
        flat = b.op("Flatten", xs, axis=1) if len(x) > 1 else xs[0]
        w = b.weight("weight", (a["units"], prod(x)), b.init_for(node), prod(x), a["units"])
        args = [flat, w] + ([b.weight("bias", (a["units"],), "fill")] if a["bias"] else [])
        b.op("Gemm", args, out=y, transB=1)


class RBF(Kind):
    name = "rbf"
    doc = "Euclidean radial basis units y_i = Σ_j (x_j − w_ij)² (LeNet-5 output)"
    positional = (("units", Spec("int", min=1)),)
    keywords = {"trainable": Spec("bool", False)}
    # the nearest centre is the likeliest class: the scores are the negated distances, and
    # LeNet-5's MAP criterion (cnndsl.train.step, loss "map") is the default loss
    output = "distances"

    def shape(self, a, x):
        return (a["units"],)

    def params(self, a, x, y):
        n = prod(x) * a["units"]
        return (n, 0) if a["trainable"] else (0, n)

    def macs(self, a, x, y):
        return prod(x) * a["units"]

    def connections(self, a, x, y):
        return prod(x) * a["units"]

    def window(self, a, x, y):
        return full_window(x)

    def lower(self, b, node, xs, y):
        # y_i = Σ_j (x_j − w_ij)² = Σx² − 2·x·w_i + Σw_i²
        a, x = node.attrs, b.shape(node.inputs[0])
        flat = b.op("Flatten", xs, axis=1) if len(x) > 1 else xs[0]
        w = b.weight("weight", (a["units"], prod(x)), "sign", trainable=a["trainable"])
        xx = b.reduce("ReduceSumSquare", flat, [1], keepdims=1)
        xw = b.op("Gemm", [flat, w], transB=1)
        ww = b.reduce("ReduceSumSquare", w, [1], keepdims=0)
        b.op("Add", [b.op("Sub", [xx, b.op("Mul", [xw, b.scalar(2.0)])]), ww], out=y)


class Flatten(Kind):
    name = "flatten"
    doc = "flattens C×spatial into one vector"

    def shape(self, a, x):
        return (prod(x),)

    def window(self, a, x, y):
        return full_window(x)

    def lower(self, b, node, xs, y):
        b.op("Flatten", xs, out=y, axis=1)


class Softmax(Kind):
    name = "softmax"
    doc = "softmax over the channel axis"
    output = "probabilities"  # a loss takes the scores before the softmax

    def lower(self, b, node, xs, y):
        b.op("Softmax", xs, out=y, axis=1)


class Dropout(Kind):
    name = "dropout"
    doc = "dropout with probability p (identity at inference)"
    positional = (("p", Spec("float", 0.5)),)

    def check(self, a, x):
        if not 0 <= a["p"] < 1:
            raise LayerError(f"p must be in [0, 1); received p={a['p']}", "p")

    def lower(self, b, node, xs, y):
        if not b.training or node.attrs["p"] == 0:
            b.op("Identity", xs, out=y)  # inference: dropout is the identity
            return
        # A fresh mask every step, scaled by 1/(1 − p); the seed makes a run reproducible.
        np = b.np
        seed = zlib.crc32(f"{b.seed}:{node.name}".encode()) % 2**31
        b.op(
            "Dropout",
            [xs[0], b.scalar(node.attrs["p"]), b.const(np.array(True))],
            out=[y, y + ".mask"],
            outputs=2,
            seed=seed,
        )
