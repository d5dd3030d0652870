"""Element-wise activations. Only prelu has parameters (one slope per channel)."""

from __future__ import annotations

from .base import Kind, Spec


def _simple(kind_name: str, text: str):
    return type(kind_name.title().replace("_", ""), (Kind,), {"name": kind_name, "doc": text})


Relu = _simple("relu", "max(0, x)")
Relu6 = _simple("relu6", "min(max(0, x), 6)")
Sigmoid = _simple("sigmoid", "1 / (1 + e^−x)")
Tanh = _simple("tanh", "tanh(x)")
ScaledTanh = _simple("scaled_tanh", "1.7159·tanh(2x/3) (LeCun et al. 1998)")
Abs = _simple("abs", "|x|")
Gelu = _simple("gelu", "x·Φ(x) (exact, erf form)")
Silu = _simple("silu", "x·sigmoid(x)")
Hardswish = _simple("hardswish", "x·relu6(x + 3)/6")


class LeakyRelu(Kind):
    name = "leaky_relu"
    doc = "x if x > 0 else a·x"
    positional = (("a", Spec("float", 0.01)),)


class Elu(Kind):
    name = "elu"
    doc = "x if x > 0 else alpha·(e^x − 1)"
    keywords = {"alpha": Spec("float", 1.0)}


class PRelu(Kind):
    name = "prelu"
    doc = "leaky relu with one trainable slope per channel"

    def params(self, a, x, y):
        return x[0], 0
