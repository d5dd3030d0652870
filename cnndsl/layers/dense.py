"""Fully connected and friends: fc, rbf, flatten, softmax, dropout."""

from __future__ import annotations

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


class RBF(Kind):
    name = "rbf"
    doc = "Euclidean radial basis units y_i = Σ_j (x_j − w_ij)² (LeNet-5 output)"
    positional = (("units", Spec("int", min=1)),)
    keywords = {"trainable": Spec("bool", False)}

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


class Flatten(Kind):
    name = "flatten"
    doc = "flattens C×spatial into one vector"

    def shape(self, a, x):
        return (prod(x),)

    def window(self, a, x, y):
        return full_window(x)


class Softmax(Kind):
    name = "softmax"
    doc = "softmax over the channel axis"


class Dropout(Kind):
    name = "dropout"
    doc = "dropout with probability p (identity at inference)"
    positional = (("p", Spec("float", 0.5)),)

    def check(self, a, x):
        if not 0 <= a["p"] < 1:
            raise LayerError(f"p must be in [0, 1); received p={a['p']}", "p")
