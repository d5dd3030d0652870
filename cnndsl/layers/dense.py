"""Fully connected and friends: fc, rbf, flatten, softmax, dropout."""

from __future__ import annotations

import zlib

from .arith import prod
from .base import Kind, LayerError, Spec, full_window


class FC(Kind):
    name = "fc"
    look_alikes = ("dense", "linear", "fully_connected", "innerproduct", "inner_product", "connected")
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

    def torch(self, t, node):
        a, x = node.attrs, t.in_shape
        bias = "" if a["bias"] else ", bias=False"
        v = f"torch.flatten({t.x[0]}, 1)" if len(x) > 1 else t.x[0]
        linear = f"nn.Linear({prod(x)}, {a['units']}{bias})"
        return f"{t.module(linear)}({v})"

    def lower(self, b, node, xs, y):
        a, x = node.attrs, b.shape(node.inputs[0])
        flat = b.op("Flatten", xs, axis=1) if len(x) > 1 else xs[0]
        w = b.weight("weight", (a["units"], prod(x)), b.init_for(node), prod(x), a["units"])
        args = [flat, w] + ([b.weight("bias", (a["units"],), "fill")] if a["bias"] else [])
        b.op("Gemm", args, out=y, transB=1)

    def onnx_import(self, reader, group):
        """``lower``'s (Flatten +) Gemm; a MatMul by a 2-D weight (torch) without bias, which the
        reader adds when an Add of a bias vector follows."""
        if group.types in ({"Flatten", "Gemm"}, {"Gemm"}):
            gemm = group.first("Gemm")
            w = reader.init(gemm.input[1])
            if w is None:
                group.unsupported("the weights must be an initializer")
            units = w.shape[0] if reader.attrs(gemm).get("transB", 0) else w.shape[1]
            return [int(units)], {} if len(gemm.input) > 2 and gemm.input[2] else {"bias": False}
        if group.types == {"MatMul"}:
            w = reader.init(group.main.input[1])
            if w is None or len(w.shape) != 2 or (group.x is not None and len(group.x) != 1):
                group.unsupported(
                    "MatMul is read as a fully connected layer: its input must be a vector and its second "
                    "input a 2-D initializer"
                )
            return [int(w.shape[1])], {"bias": False}
        return None


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

    def torch(self, t, node):
        """Σx² − 2·x·wᵢ + Σwᵢ² (as the ONNX export computes it); fixed ±1 centres are a buffer."""
        a, x = node.attrs, t.in_shape
        shape = (a["units"], prod(x))
        fixed = () if a["trainable"] else ("weight",)
        w = t.weights(fixed=fixed, weight=f"torch.randint(0, 2, {shape}) * 2.0 - 1.0")
        v = f"torch.flatten({t.x[0]}, 1)" if len(x) > 1 else t.x[0]
        return f"{t.helper('rbf', RBF_SOURCE)}({v}, {w}.weight)"

    def lower(self, b, node, xs, y):
        # y_i = Σ_j (x_j − w_ij)² = Σx² − 2·x·w_i + Σw_i²
        a, x = node.attrs, b.shape(node.inputs[0])
        flat = b.op("Flatten", xs, axis=1) if len(x) > 1 else xs[0]
        w = b.weight("weight", (a["units"], prod(x)), "sign", trainable=a["trainable"])
        xx = b.reduce("ReduceSumSquare", flat, [1], keepdims=1)
        xw = b.op("Gemm", [flat, w], transB=1)
        ww = b.reduce("ReduceSumSquare", w, [1], keepdims=0)
        b.op("Add", [b.op("Sub", [xx, b.op("Mul", [xw, b.scalar(2.0)])]), ww], out=y)

    def onnx_import(self, reader, group):
        """``lower``'s Σx² − 2·x·w + Σw²: ReduceSumSquare and Gemm; units from the weight."""
        if not {"ReduceSumSquare", "Gemm"} <= group.types:
            return None
        return [int(reader.init(group.first("Gemm").input[1]).shape[0])], {}


class Flatten(Kind):
    name = "flatten"
    doc = "flattens C×spatial into one vector"
    chains = "layer"

    def shape(self, a, x):
        return (prod(x),)

    def window(self, a, x, y):
        return full_window(x)

    def torch(self, t, node):
        return f"torch.flatten({t.x[0]}, 1)"

    def lower(self, b, node, xs, y):
        b.op("Flatten", xs, out=y, axis=1)

    def onnx_import(self, reader, group):
        """Flatten, or a Reshape to (N, −1) (torch's ``x.view(N, -1)``)."""
        if len(group.nodes) == 1 and group.main.op_type == "Flatten":
            if group.a.get("axis", 1) != 1:
                group.unsupported(f"Flatten from axis {group.a['axis']}: flatten keeps the batch axis only")
            return [], {}
        if group.types == {"Reshape"} and group.x is not None:
            shape = reader.const(group.main.input[1])
            n = prod(group.x)
            # (N, C·H·W), or (N, −1) with the batch kept (N of 1, 0 or −1)
            if shape is not None and len(shape) == 2:
                width, batch = int(shape[1]), int(shape[0])
                if width == n or (width == -1 and batch in (-1, 0, 1)):
                    return [], {}
        return None


class Softmax(Kind):
    name = "softmax"
    doc = "softmax over the channel axis"
    chains = "layer"
    output = "probabilities"  # a loss takes the scores before the softmax

    def torch(self, t, node):
        return f"torch.softmax({t.x[0]}, 1)"

    def lower(self, b, node, xs, y):
        b.op("Softmax", xs, out=y, axis=1)

    def onnx_import(self, reader, group):
        """Softmax over the channels: axis 1 (from opset 13, where each axis is its own; before it,
        axis 1 of a vector only, as earlier opsets flatten the axes after it)."""
        if group.main.op_type != "Softmax":
            return None
        x = group.x
        axis = group.a.get("axis", -1 if reader.opset >= 13 else 1)
        if x is not None:
            rank = len(x) + 1
            axis = axis + rank if axis < 0 else axis
            if axis != 1 or (reader.opset < 13 and rank > 2):
                group.unsupported(f"Softmax over axis {axis} of a {rank}-axis tensor: softmax is over the channels")
        return [], {}


class Dropout(Kind):
    name = "dropout"
    doc = "dropout with probability p (identity at inference)"
    chains = "layer"
    positional = (("p", Spec("float", 0.5)),)

    def check(self, a, x):
        if not 0 <= a["p"] < 1:
            raise LayerError(f"p must be in [0, 1); received p={a['p']}", "p")

    def torch(self, t, node):
        return f"F.dropout({t.x[0]}, {node.attrs['p']!r}, self.training)"

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

    def onnx_import(self, reader, group):
        """Dropout, or the Identity of inference (``p`` then the default)."""
        main = group.main
        if group.types not in ({"Identity"}, {"Dropout"}):
            return None
        ratio = (
            reader.const(main.input[1]) if main.op_type == "Dropout" and len(main.input) > 1 and main.input[1] else None
        )
        return [reader.short(float(ratio)) if ratio is not None else reader.short(group.a.get("ratio", 0.5))], {}


class DropPath(Kind):
    """``drop_path p``: stochastic depth (Huang et al. 2016), per sample rather than per unit."""

    name = "drop_path"
    doc = "stochastic depth: in training each sample is zeroed with probability p, the rest scaled by 1/(1 − p)"
    chains = "layer"
    positional = (("p", Spec("float")),)

    def check(self, a, x):
        if not 0 <= a["p"] < 1:
            raise LayerError(f"p must be in [0, 1); received p={a['p']}", "p")

    def torch(self, t, node):
        return f"{t.helper('drop_path', DROP_PATH)}({t.x[0]}, {node.attrs['p']!r}, self.training)"

    def lower(self, b, node, xs, y):
        np = b.np
        p = node.attrs["p"]
        if not b.training:
            # Inference: the identity, written as an inference-mode Dropout so that the rate (and the
            # kind: dropout's inference form is an Identity) survives `cnndsl import`.
            b.op("Dropout", [xs[0], b.scalar(p)], out=y)
            return
        if p == 0:
            b.op("Identity", xs, out=y)
            return
        # One draw per sample: the mask of a Dropout of the (N, 1, …, 1) corner of the input (only
        # its shape matters), scaled by 1/(1 − p), times the input. A fresh mask every step; the
        # seed, as dropout's, makes a run reproducible.
        rank = len(b.shape(node.inputs[0]))
        ones = [b.const(np.array(v, np.int64)) for v in ([0] * rank, [1] * rank, list(range(1, rank + 1)))]
        corner = b.op("Slice", [xs[0], *ones])
        seed = zlib.crc32(f"{b.seed}:{node.name}".encode()) % 2**31
        _, mask = b.op("Dropout", [corner, b.scalar(p), b.const(np.array(True))], outputs=2, seed=seed)
        keep = b.op("Mul", [b.op("Cast", [mask], to=b.elem), b.scalar(1.0 / (1.0 - p))])
        b.op("Mul", [xs[0], keep], out=y)

    def onnx_import(self, reader, group):
        """``lower``'s inference-mode Dropout (one output, no training input) in a model cnndsl wrote:
        cnndsl's dropout writes an Identity there, so such a Dropout is a drop_path."""
        main = group.main
        if not reader.ours or group.types != {"Dropout"} or len(main.input) != 2 or len(main.output) != 1:
            return None
        ratio = reader.const(main.input[1])
        return ([reader.short(float(ratio))], {}) if ratio is not None else None


RBF_SOURCE = """

def rbf(x, w):
    \"\"\"Euclidean radial basis units y_i = Σ_j (x_j − w_ij)² = Σx² − 2·x·w_i + Σw_i².\"\"\"
    return (x * x).sum(1, keepdim=True) - (x @ w.T) * 2.0 + (w * w).sum(1)
"""

DROP_PATH = """

def drop_path(x, p, training):
    \"\"\"Stochastic depth: in training each sample is zeroed with probability p, the rest scaled by 1/(1 − p).\"\"\"
    if not training or p == 0:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device) >= p
    return x * keep.to(x.dtype) / (1.0 - p)
"""
