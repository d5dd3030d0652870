"""Element-wise activations. Only prelu has parameters (one slope per channel)."""

from __future__ import annotations

from .base import Kind, LayerError, Spec


def _simple(kind_name: str, text: str, op: str, torch_fn: str, he_init: bool = False):
    def torch(self, t, node):
        return f"{torch_fn}({t.x[0]})"

    def lower(self, b, node, xs, y):
        b.op(op, xs, out=y)

    def onnx_import(self, reader, group):
        return ([], {}) if len(group.nodes) == 1 and group.main.op_type == op else None

    attrs = {"name": kind_name, "doc": text, "chains": "any", "he_init": he_init}
    attrs.update(lower=lower, onnx_import=onnx_import, torch=torch)
    return type(kind_name.title().replace("_", ""), (Kind,), attrs)


Relu = _simple("relu", "max(0, x)", "Relu", "torch.relu", he_init=True)
Sigmoid = _simple("sigmoid", "1 / (1 + e^−x)", "Sigmoid", "torch.sigmoid")
Tanh = _simple("tanh", "tanh(x)", "Tanh", "torch.tanh")
Abs = _simple("abs", "|x|", "Abs", "torch.abs")


class Hardswish(Kind):
    name = "hardswish"
    doc = "x·relu6(x + 3)/6"
    he_init = True
    chains = "any"
    onnx_chains = (("HardSigmoid", "Mul"),)

    def torch(self, t, node):
        return f"F.hardswish({t.x[0]})"

    def lower(self, b, node, xs, y):
        b.op("HardSwish", xs, out=y)

    def onnx_import(self, reader, group):
        """HardSwish, or x·HardSigmoid(x) with alpha 1/6 and beta 1/2 (torch before opset 14)."""
        if group.types == {"HardSwish"} and len(group.nodes) == 1:
            return [], {}
        if group.types == {"HardSigmoid", "Mul"} and len(group.nodes) == 2 and _times_input(group, "HardSigmoid"):
            a = reader.attrs(group.first("HardSigmoid"))
            if abs(a.get("alpha", 0.2) - 1 / 6) < 1e-6 and abs(a.get("beta", 0.5) - 0.5) < 1e-6:
                return [], {}
        return None


def _times_input(group, op: str) -> bool:
    """Whether the group's Mul multiplies its input by the output of its ``op`` of that input."""
    mul, inner = group.first("Mul"), group.first(op)
    return inner is not None and sorted(mul.input) == sorted([group.ext[0], inner.output[0]])


class Relu6(Kind):
    name = "relu6"
    doc = "min(max(0, x), 6)"
    he_init = True
    chains = "any"

    def torch(self, t, node):
        return f"F.relu6({t.x[0]})"

    def lower(self, b, node, xs, y):
        b.op("Clip", [xs[0], b.scalar(0.0), b.scalar(6.0)], out=y)

    def onnx_import(self, reader, group):
        """Clip(0, 6); another Clip has no equivalent."""
        main = group.main
        if main.op_type != "Clip":
            return None
        lo, hi = (reader.const(i) if i else None for i in (list(main.input) + ["", ""])[1:3])
        if lo is not None and hi is not None and float(lo) == 0 and float(hi) == 6:
            return [], {}
        group.unsupported("Clip other than relu6 (0, 6)")


class ScaledTanh(Kind):
    name = "scaled_tanh"
    doc = "1.7159·tanh(2x/3) (LeCun et al. 1998)"
    chains = "any"

    def torch(self, t, node):
        return f"torch.tanh({t.x[0]} * (2.0 / 3.0)) * 1.7159"

    def lower(self, b, node, xs, y):
        t = b.op("Tanh", [b.op("Mul", [xs[0], b.scalar(2.0 / 3.0)])])
        b.op("Mul", [t, b.scalar(1.7159)], out=y)

    def onnx_import(self, reader, group):
        """``lower``'s Mul, Tanh, Mul."""
        return ([], {}) if group.types == {"Mul", "Tanh"} and group.ops["Mul"] == 2 else None


class Gelu(Kind):
    name = "gelu"
    doc = "x·Φ(x) (exact, erf form)"
    he_init = True
    chains = "any"

    def torch(self, t, node):
        return f"F.gelu({t.x[0]})"

    def lower(self, b, node, xs, y):
        # 0.5·x·(1 + erf(x/√2)); the Gelu operator only exists from opset 20
        e = b.op("Erf", [b.op("Mul", [xs[0], b.scalar(0.7071067811865476)])])
        half = b.op("Mul", [xs[0], b.scalar(0.5)])
        b.op("Mul", [half, b.op("Add", [e, b.scalar(1.0)])], out=y)

    onnx_chains = (("Div", "Erf", "Add", "Mul", "Mul"),)  # torch's TorchScript exporter: x/√2, erf, +1, ·x, ·½

    def onnx_import(self, reader, group):
        """``lower``'s erf form, torch's (Div by √2, Erf, Add 1, Mul by x, Mul by 1/2), or the Gelu
        operator of opset 20 (its ``approximate`` tanh form has no equivalent)."""
        if group.types == {"Gelu"}:
            if reader.word(group.a.get("approximate", b"none")) != "none":
                group.unsupported("Gelu approximate=tanh: the language's gelu is the exact (erf) form")
            return [], {}
        if group.types == {"Mul", "Erf", "Add"}:
            return [], {}
        if group.types != {"Div", "Erf", "Add", "Mul"} or len(group.nodes) != 5:
            return None
        consts = {n.op_type + str(k): reader.const(i) for k, n in enumerate(group.nodes) for i in n.input[1:]}
        values = sorted(float(v) for v in consts.values() if v is not None and v.size == 1)
        div, mul = group.first("Div"), group.nodes[3]
        ok = (
            len(values) == 3
            and abs(values[0] - 0.5) < 1e-6
            and abs(values[1] - 1.0) < 1e-6
            and abs(values[2] - 2**0.5) < 1e-5
            and div.input[0] == group.ext[0]
            and group.ext[0] in mul.input
        )
        return ([], {}) if ok else None


class Silu(Kind):
    name = "silu"
    doc = "x·sigmoid(x)"
    he_init = True
    chains = "any"

    def torch(self, t, node):
        return f"F.silu({t.x[0]})"

    def lower(self, b, node, xs, y):
        b.op("Mul", [xs[0], b.op("Sigmoid", xs)], out=y)

    onnx_chains = (("Sigmoid", "Mul"),)  # torch's nn.SiLU

    def onnx_import(self, reader, group):
        """``lower``'s (and torch's) Mul(x, Sigmoid(x))."""
        if group.types == {"Mul", "Sigmoid"} and len(group.nodes) == 2 and _times_input(group, "Sigmoid"):
            return [], {}
        return None


class LeakyRelu(Kind):
    name = "leaky_relu"
    doc = "x if x > 0 else a·x"
    he_init = True
    chains = "any"
    positional = (("a", Spec("float", 0.01)),)

    def torch(self, t, node):
        return f"F.leaky_relu({t.x[0]}, {node.attrs['a']!r})"

    def lower(self, b, node, xs, y):
        if b.float64:  # alpha as a float64 constant (LeakyRelu's attribute is float32)
            above = b.op("Greater", [xs[0], b.scalar(0.0)])
            b.op("Where", [above, xs[0], b.op("Mul", [xs[0], b.scalar(node.attrs["a"])])], out=y)
            return
        b.op("LeakyRelu", xs, out=y, alpha=node.attrs["a"])

    def onnx_import(self, reader, group):
        return ([reader.short(group.a.get("alpha", 0.01))], {}) if group.main.op_type == "LeakyRelu" else None


class Elu(Kind):
    name = "elu"
    doc = "x if x > 0 else alpha·(e^x − 1)"
    he_init = True
    chains = "any"
    keywords = {"alpha": Spec("float", 1.0)}

    def torch(self, t, node):
        return f"F.elu({t.x[0]}, {node.attrs['alpha']!r})"

    def lower(self, b, node, xs, y):
        if b.float64:  # alpha as a float64 constant (Elu's attribute is float32)
            above = b.op("Greater", [xs[0], b.scalar(0.0)])
            below = b.op("Where", [above, b.scalar(0.0), xs[0]])  # no Exp of large x
            neg = b.op("Mul", [b.op("Sub", [b.op("Exp", [below]), b.scalar(1.0)]), b.scalar(node.attrs["alpha"])])
            b.op("Where", [above, xs[0], neg], out=y)
            return
        b.op("Elu", xs, out=y, alpha=node.attrs["alpha"])

    def onnx_import(self, reader, group):
        if group.main.op_type != "Elu":
            return None
        alpha = reader.short(group.a.get("alpha", 1.0))
        return [], {"alpha": alpha} if alpha != 1.0 else {}


class PRelu(Kind):
    name = "prelu"
    doc = "leaky relu with one trainable slope per channel"
    he_init = True
    chains = "any"

    def params(self, a, x, y):
        return x[0], 0

    def torch(self, t, node):
        """One slope per channel, in the export's shape (C, 1, ...)."""
        x = t.in_shape
        w = t.weights(weight=f"torch.full({(x[0],) + (1,) * (len(x) - 1)}, 0.25)")
        return f"torch.where({t.x[0]} < 0, {t.x[0]} * {w}.weight, {t.x[0]})"

    def lower(self, b, node, xs, y):
        x = b.shape(node.inputs[0])
        slope = b.weight("weight", (x[0],) + (1,) * (len(x) - 1), "fill", value=0.25)
        b.op("PRelu", [xs[0], slope], out=y)

    def onnx_import(self, reader, group):
        return ([], {}) if len(group.nodes) == 1 and group.main.op_type == "PRelu" else None


class HardSigmoid(Kind):
    name = "hardsigmoid"
    doc = "max(0, min(1, alpha·x + beta)) (PyTorch's relu6(x + 3)/6 with the defaults)"
    chains = "any"
    keywords = {"alpha": Spec("float", 1.0 / 6.0), "beta": Spec("float", 0.5)}

    def torch(self, t, node):
        a = node.attrs
        return f"torch.clamp({t.x[0]} * {a['alpha']!r} + {a['beta']!r}, 0.0, 1.0)"

    def lower(self, b, node, xs, y):
        a = node.attrs
        if b.float64:  # alpha and beta as float64 constants (HardSigmoid's attributes are float32)
            z = b.op("Add", [b.op("Mul", [xs[0], b.scalar(a["alpha"])]), b.scalar(a["beta"])])
            b.op("Clip", [z, b.scalar(0.0), b.scalar(1.0)], out=y)
            return
        b.op("HardSigmoid", xs, out=y, alpha=a["alpha"], beta=a["beta"])

    def onnx_import(self, reader, group):
        """HardSigmoid (ONNX's default alpha is 0.2, Keras's; torch writes 1/6)."""
        if group.types != {"HardSigmoid"}:
            return None
        kw = {}
        for key, onnx_default in (("alpha", 0.2), ("beta", 0.5)):
            value = float(group.a.get(key, onnx_default))
            if abs(value - self.keywords[key].default) > 1e-7:  # a float32 attribute: 1/6 is 0.16666667
                kw[key] = reader.short(value)
        return [], kw


class Softplus(Kind):
    name = "softplus"
    doc = "log(1 + e^(beta·x)) / beta"
    chains = "any"
    keywords = {"beta": Spec("float", 1.0)}
    onnx_chains = (("Mul", "Softplus", "Div"),)  # torch's F.softplus(x, beta)

    def check(self, a, x):
        if a["beta"] <= 0:
            raise LayerError(f"beta must be positive; received beta={a['beta']}", "beta")

    def torch(self, t, node):
        beta = node.attrs["beta"]
        return f"F.softplus({t.x[0]})" if beta == 1.0 else f"F.softplus({t.x[0]}, beta={beta!r})"

    def lower(self, b, node, xs, y):
        beta = node.attrs["beta"]
        if beta == 1.0:
            b.op("Softplus", xs, out=y)
            return
        # ONNX's Softplus has no beta: Softplus(beta·x) / beta
        sp = b.op("Softplus", [b.op("Mul", [xs[0], b.scalar(beta)])])
        b.op("Div", [sp, b.scalar(beta)], out=y)

    def onnx_import(self, reader, group):
        """Softplus, or ``lower``'s Softplus(beta·x) / beta."""
        if group.types == {"Softplus"} and len(group.nodes) == 1:
            return [], {}
        if group.types == {"Mul", "Softplus", "Div"} and len(group.nodes) == 3:
            beta = reader.const(group.first("Div").input[1])
            times = reader.const(group.first("Mul").input[1])
            if beta is not None and times is not None and beta.size == 1 and float(beta) == float(times):
                return [], {"beta": reader.short(float(beta))}
        return None


class Mish(Kind):
    name = "mish"
    doc = "x·tanh(softplus(x)) (Misra 2019; YOLOv4)"
    he_init = True  # as silu
    chains = "any"
    onnx_chains = (("Softplus", "Tanh", "Mul"),)  # torch's F.mish before opset 18

    def torch(self, t, node):
        return f"F.mish({t.x[0]})"

    def lower(self, b, node, xs, y):
        if b.opset >= 18 and not b.training:
            b.op("Mish", xs, out=y)  # the Mish operator exists from opset 18
            return
        b.op("Mul", [xs[0], b.op("Tanh", [b.op("Softplus", xs)])], out=y)

    def onnx_import(self, reader, group):
        """The Mish operator, or ``lower``'s Mul(x, Tanh(Softplus(x)))."""
        if group.types == {"Mish"}:
            return [], {}
        if group.types == {"Softplus", "Tanh", "Mul"} and len(group.nodes) == 3:
            return (
                ([], {}) if _times_input(group, "Tanh") and group.first("Softplus").input[0] == group.ext[0] else None
            )
        return None


class Power(Kind):
    """``power P scale=a shift=b``: (b + a·x)^P, Caffe's Power layer."""

    name = "power"
    doc = "(shift + scale·x)^exponent, element-wise (Caffe's Power)"
    chains = "any"
    positional = (("exponent", Spec("float", 1.0)),)
    keywords = {"scale": Spec("float", 1.0), "shift": Spec("float", 0.0)}
    shown_keywords = ("scale", "shift")

    def torch(self, t, node):
        a = node.attrs
        v = t.x[0]
        if a["scale"] != 1.0:
            v = f"{v} * {a['scale']!r}"
        if a["shift"] != 0.0:
            v = f"({v} + {a['shift']!r})"
        return f"torch.pow({v}, {a['exponent']!r})"

    def lower(self, b, node, xs, y):
        a = node.attrs
        t = xs[0]
        if a["scale"] != 1.0:
            t = b.op("Mul", [t, b.scalar(a["scale"])])
        if a["shift"] != 0.0:
            t = b.op("Add", [t, b.scalar(a["shift"])])
        b.op("Pow", [t, b.scalar(a["exponent"])], out=y)  # always a Pow: the pattern read back

    def onnx_import(self, reader, group):
        """``lower``'s Mul by a constant, Add of a constant, Pow by a constant (tried after lrn)."""
        if "Pow" not in group.types or not group.types <= {"Mul", "Add", "Pow"}:
            return None
        if any(count > 1 for count in group.ops.values()):
            return None
        consts = {n.op_type: reader.const(n.input[1]) for n in group.nodes}
        if any(v is None for v in consts.values()):
            return None
        values = {"Pow": 1.0, "Mul": 1.0, "Add": 0.0} | {k: float(v) for k, v in consts.items()}
        kw = {k: reader.short(values[op]) for k, op in (("scale", "Mul"), ("shift", "Add")) if op in consts}
        return [reader.short(values["Pow"])], kw
