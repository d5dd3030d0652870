"""ONNX models to the import intermediate form (:mod:`cnndsl.importers.writer`).

Plain operators map one to one: Conv, ConvTranspose, MaxPool/AveragePool,
GlobalAveragePool/GlobalMaxPool, Gemm (and MatMul + Add of a bias), Flatten,
BatchNormalization, LRN, the activations, Softmax, Dropout/Identity, Concat,
Add, Mul, Pad, Resize/Upsample. Weight shapes give K, F, groups and the bias.

Layers that cnndsl lowers to several operators (scaled_tanh, subsample, rbf,
the elementary LRN, gn/ln/instnorm, shuffle, crop, unpool, a conv with a
connection table, the pad shortcut of ``residual(shortcut=pad)``) are
recognised in models that cnndsl itself wrote (``producer_name`` "cnndsl"): its
node names are ``<layer>`` for the operator computing a layer and
``<layer>/<Op>_k`` for the helpers, so the operators of one layer are grouped by
that prefix and the group's operators identify the kind.
"""

from __future__ import annotations

from collections import Counter
from math import log
from pathlib import Path

from cnndsl.errors import CnnError
from cnndsl.importers.writer import Layer, Net, Ref, Table


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def read_onnx(path: Path) -> Net:
    import onnx
    from onnx import numpy_helper

    try:
        if path.is_dir():
            raise CnnError(f"cannot read {path}: it is a directory", code="E260")
        model = onnx.load(str(path), load_external_data=False)
    except CnnError:
        raise
    except FileNotFoundError:
        raise CnnError(f"cannot read {path}: no such file", code="E260") from None
    except Exception as err:  # noqa: BLE001 - onnx raises many types for a file that is not a model
        raise CnnError(f"cannot read {path} as an ONNX model: {str(err).splitlines()[0][:200]}", code="E260") from None
    g = model.graph
    inits = {}
    for t in g.initializer:
        try:
            inits[t.name] = numpy_helper.to_array(t) if _size(t.dims) <= 1 << 16 else _Shape(tuple(t.dims))
        except Exception:  # noqa: BLE001 - external data that is not there: the shape is enough
            inits[t.name] = _Shape(tuple(t.dims))
    constants = set()  # indices of the nodes read as initializers
    for k, n in enumerate(g.node):
        if n.op_type == "Constant":
            value = _attrs(n).get("value")
            if value is not None:
                inits[n.output[0]] = numpy_helper.to_array(value)
                constants.add(k)
        elif n.op_type == "Identity" and n.input[0] in inits:  # torch's copies of a shared weight
            inits[n.output[0]] = inits[n.input[0]]
            constants.add(k)
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise CnnError(
            f"{path}: expected one input, found {len(inputs)} ({', '.join(i.name for i in inputs)})", code="E262"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    if not shape or any(d.dim_value <= 0 for d in dims[1:]):
        raise CnnError(f"{path}: the input {inputs[0].name} needs fixed sizes after the batch axis", code="E262")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        shapes = {
            vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)[1:]
            for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
        }
    except Exception:  # noqa: BLE001 - shape inference is a help (pools, crops), not a requirement
        shapes = {}
    ours = model.producer_name == "cnndsl"
    r = _Reader(inits, shapes, inputs[0].name, ours)
    r.read([n for k, n in enumerate(g.node) if k not in constants], [o.name for o in g.output])
    props = {p.key: p.value for p in model.metadata_props}
    name = props.get("cnndsl.network") or g.name or path.stem
    notes = ["ONNX layer names are in the comments"]
    return Net(name, shape, r.layers, r.outputs, notes=notes, tables=r.tables, output_names=r.output_names)


def _size(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


class _Shape:
    """A large initializer: only its shape is read."""

    def __init__(self, shape):
        self.shape = shape


class _Reader:
    def __init__(self, inits, shapes, input_name, ours):
        self.inits = inits
        self.shapes = shapes
        self.producer = {input_name: "input"}  # tensor -> layer
        self.layers: list[Layer] = []
        self.outputs: list[str] = []
        self.tables: list[Table] = []
        self.output_names: dict[str, str] = {}
        self.ours = ours

    def const(self, name):
        v = self.inits.get(name)
        if v is None or isinstance(v, _Shape):
            return None
        return v

    def read(self, nodes, graph_outputs):
        groups: dict[str, list] = {}
        for n in nodes:
            if self.ours and n.op_type == "Identity" and n.output[0] in graph_outputs:
                key = n.output[0] + "#output"  # an output alias, on its own even when named <layer>/output
            else:
                key = (
                    (n.name.split("/")[0] or n.output[0]) if self.ours else (n.name or n.output[0]) + f"#{len(groups)}"
                )
            groups.setdefault(key, []).append(n)
        for key, group in groups.items():
            produced = {o for n in group for o in n.output}
            # the tensors the group reads, in order (repeated for Concat/Add/Mul of one tensor twice)
            ext = [i for n in group for i in n.input if i and i not in produced and i not in self.inits]
            if not (len(group) == 1 and group[0].op_type in ("Concat", "Add", "Mul", "Sum")):  # a combinator
                ext = list(dict.fromkeys(ext))
            missing = [i for i in ext if i not in self.producer and not i.endswith(".indices")]
            if missing:
                raise CnnError(
                    f"node {group[0].name or group[0].op_type} reads {missing[0]}, which nothing before it computes",
                    code="E262",
                )
            name = key.split("#")[0] if not self.ours else key
            out = key if self.ours and key in produced else group[-1].output[0]
            # an output alias written by cnndsl: Identity(layer) named after the output
            if (
                self.ours
                and len(group) == 1
                and group[0].op_type == "Identity"
                and out in graph_outputs
                and self.producer.get(group[0].input[0]) is not None
            ):  # (the input itself, too)
                self.producer[out] = self.producer[group[0].input[0]]
                continue
            try:
                layer = self.classify(name, group, ext, out)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
                # a foreign model with an operator in a form this reader does not know
                raise CnnError(
                    f"ONNX node {group[0].name or group[0].op_type} ({group[0].op_type}): unexpected "
                    f"inputs or attributes ({type(err).__name__}: {err})",
                    code="E262",
                ) from None
            if layer is None:  # folded into the layer before (the bias Add of a MatMul)
                for o in produced:
                    self.producer[o] = self.layers[-1].name
                continue
            if not layer.inputs:
                layer.inputs = [self.producer[i] for i in ext if not i.endswith(".indices")]
            self.layers.append(layer)
            for o in produced:
                self.producer[o] = layer.name
        seen = []
        for o in graph_outputs:
            p = self.producer.get(o)
            if p and p not in seen:
                seen.append(p)
                self.output_names[p] = o
        self.outputs = seen

    def shape(self, tensor):
        return self.shapes.get(tensor)

    def classify(self, name, group, ext, out):
        ops = Counter(n.op_type for n in group)
        main = next((n for n in group if out in n.output), group[-1])
        a = _attrs(main)
        kinds = set(ops)
        x = self.shape(ext[0]) if ext else None

        def unsupported(what):
            raise CnnError(f"ONNX node {main.name or main.op_type} ({'+'.join(sorted(ops))}): {what}", code="E261")

        if kinds <= {"Conv", "Mul", "Pad"} and ops["Conv"] == 1 and main.op_type == "Conv":
            w = self.inits.get(main.input[1])
            masked = next((n for n in group if n.op_type == "Mul" and main.input[1] in n.output), None)
            if w is None and masked is not None:  # a connection table: weight × mask
                w = next((self.inits[i] for i in masked.input if i in self.inits), None)
            if w is None:
                unsupported("the weights must be an initializer")
            k, f = w.shape[0], tuple(w.shape[2:])
            kw = {}
            if a.get("group", 1) != 1:
                kw["groups"] = a["group"]
            dil = tuple(a.get("dilations", [1] * len(f)))
            if set(dil) != {1}:
                kw["dilation"] = dil
            if len(main.input) < 3 or not main.input[2]:
                kw["bias"] = False
            pad = self.pads(main, a, len(f), unsupported)
            if "Pad" in kinds:
                pnode = next(n for n in group if n.op_type == "Pad")
                mode = _attrs(pnode).get("mode", b"constant")
                mode = mode.decode() if isinstance(mode, bytes) else mode
                kw["pad_mode"] = {"reflect": "reflect", "edge": "replicate", "constant": "zeros"}[mode]
                pads = self.const(pnode.input[1])
                n = len(f)
                pad = tuple(int(p) for p in pads[2 : 2 + n])
            if "Mul" in kinds:
                mul = next(n for n in group if n.op_type == "Mul")
                mask = next(
                    (
                        self.const(i)
                        for i in mul.input
                        if self.const(i) is not None and set(self.const(i).ravel().tolist()) <= {0.0, 1.0}
                    ),
                    None,
                )
                if mask is None:
                    unsupported("a weight mask must be a constant")
                rows = [[int(c) for c in range(mask.shape[1]) if mask[j, c].any()] for j in range(mask.shape[0])]
                table = Table(f"{_ident(name)}_table", rows)
                self.tables.append(table)
                kw["table"] = table.name
                k = mask.shape[0]
            return Layer(name, "conv", _fields(k, f, a.get("strides", [1] * len(f)), pad), kw)
        if kinds == {"ConvTranspose"}:
            w = self.inits.get(main.input[1])
            if w is None:
                unsupported("the weights must be an initializer")
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
            pad = self.pads(main, a, len(f), unsupported)
            return Layer(name, "deconv", _fields(w.shape[1] * g, f, a.get("strides", [1] * len(f)), pad), kw)
        if kinds in ({"MaxPool"}, {"AveragePool"}):
            return self.pool(name, main, a, ext, out, unsupported)
        if kinds == {"AveragePool", "Mul", "Add"}:  # subsample: window sum × coefficient + bias
            avg = next(n for n in group if n.op_type == "AveragePool")
            return Layer(name, "subsample", [tuple(_attrs(avg)["kernel_shape"])])
        simple = {
            "GlobalAveragePool": "gap",
            "GlobalMaxPool": "gmp",
            "Relu": "relu",
            "Sigmoid": "sigmoid",
            "Tanh": "tanh",
            "Abs": "abs",
            "HardSwish": "hardswish",
            "PRelu": "prelu",
            "Flatten": "flatten",
        }
        if len(group) == 1 and main.op_type in simple:
            return Layer(name, simple[main.op_type])
        if kinds == {"Flatten", "Gemm"} or kinds == {"Gemm"}:
            gemm = next(n for n in group if n.op_type == "Gemm")
            w = self.inits.get(gemm.input[1])
            if w is None:
                unsupported("the weights must be an initializer")
            units = w.shape[0] if _attrs(gemm).get("transB", 0) else w.shape[1]
            kw = {} if len(gemm.input) > 2 and gemm.input[2] else {"bias": False}
            return Layer(name, "fc", [int(units)], kw)
        if kinds == {"MatMul"}:
            w = self.inits.get(main.input[1])
            if w is None or len(w.shape) != 2:
                unsupported("MatMul is read as a fully connected layer: its second input must be a 2-D initializer")
            return Layer(name, "fc", [int(w.shape[1])], {"bias": False})
        if (
            kinds == {"Add"}
            and len(ext) == 1
            and self.layers
            and self.layers[-1].kind == "fc"
            and self.layers[-1].kw.get("bias") is False
            and self.producer.get(ext[0]) == self.layers[-1].name
        ):
            del self.layers[-1].kw["bias"]  # MatMul + Add of a bias vector
            return None
        if kinds == {"BatchNormalization"}:
            kw = {}
            eps = a.get("epsilon", 1e-5)
            if abs(eps - 1e-5) > 1e-9:
                kw["eps"] = float(f"{eps:.6g}")
            mom = 1.0 - a.get("momentum", 0.9)
            if abs(mom - 0.1) > 1e-6:
                kw["momentum"] = float(f"{mom:.6g}")
            return Layer(name, "bn", [], kw)
        if kinds == {"LRN"}:
            return Layer(
                name,
                "lrn",
                [a["size"]],
                {"alpha": _f(a.get("alpha", 1e-4)), "beta": _f(a.get("beta", 0.75)), "k": _f(a.get("bias", 1.0))},
            )
        if ops.get("Pow") and ops.get("Conv") and ops.get("Div"):  # the elementary LRN of cnndsl
            conv = next(n for n in group if n.op_type == "Conv")
            size = _attrs(conv)["kernel_shape"][0]
            pw = next(n for n in group if n.op_type == "Pow")
            beta = float(self.const(pw.input[1]))
            muls = [n for n in group if n.op_type == "Mul" and self.const(n.input[1]) is not None]
            alpha = float(self.const(muls[-1].input[1])) * size if muls else 1e-4
            adds = [n for n in group if n.op_type == "Add" and self.const(n.input[1]) is not None]
            k = float(self.const(adds[-1].input[1])) if adds else 1.0
            return Layer(name, "lrn", [size], {"alpha": _f(alpha), "beta": _f(beta), "k": _f(k)})
        if main.op_type == "LeakyRelu":
            return Layer(name, "leaky_relu", [_f(a.get("alpha", 0.01))])
        if main.op_type == "Elu":
            alpha = _f(a.get("alpha", 1.0))
            return Layer(name, "elu", [], {"alpha": alpha} if alpha != 1.0 else {})
        if main.op_type == "Clip":
            lo, hi = (self.const(i) if i else None for i in (list(main.input) + ["", ""])[1:3])
            if lo is not None and hi is not None and float(lo) == 0 and float(hi) == 6:
                return Layer(name, "relu6")
            unsupported("Clip other than relu6 (0, 6)")
        if kinds == {"Mul", "Tanh"} and ops["Mul"] == 2:
            return Layer(name, "scaled_tanh")
        if kinds == {"Mul", "Erf", "Add"} or main.op_type == "Gelu":
            return Layer(name, "gelu")
        if kinds == {"Mul", "Sigmoid"} and len(group) == 2:
            return Layer(name, "silu")
        if main.op_type == "Softmax":
            return Layer(name, "softmax")
        if kinds in ({"Identity"}, {"Dropout"}):
            ratio = (
                self.const(main.input[1])
                if main.op_type == "Dropout" and len(main.input) > 1 and main.input[1]
                else None
            )
            p = _f(float(ratio)) if ratio is not None else _f(a.get("ratio", 0.5))
            return Layer(name, "dropout", [p])
        if kinds == {"Concat"}:
            if a.get("axis", 1) != 1:
                unsupported("Concat along an axis other than channels")
            return Layer(name, "concat")
        if kinds in ({"Add"}, {"Mul"}) and all(i not in self.inits for n in group for i in n.input):
            return Layer(name, "add" if "Add" in kinds else "mul")
        if kinds == {"Slice", "Pad"}:  # residual(shortcut=pad)
            return Layer(name, "shortcut_pad")
        if kinds == {"Slice"}:
            y = self.shape(out)
            starts = self.const(main.input[1])
            if y is None or x is None or starts is None:
                unsupported("a Slice needs known shapes and constant starts")
            size = tuple(y[1:])
            kw = {"center": True} if any(int(s) for s in starts) else {}
            return Layer(name, "crop", [size if len(set(size)) > 1 else size[0]], kw)
        if kinds == {"Pad"}:
            pads = self.const(main.input[1]) if len(main.input) > 1 else a.get("pads")
            if pads is None:
                unsupported("Pad needs constant pads")
            mode = a.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            r = len(pads) // 2
            begins, ends = [int(v) for v in pads[:r]], [int(v) for v in pads[r:]]
            if begins != ends or any(begins[:2]):
                unsupported(f"Pad {list(pads)}: only the same padding before and after each spatial axis")
            kw = {"mode": {"reflect": "reflect", "edge": "replicate"}[mode]} if mode != "constant" else {}
            return Layer(name, "pad", _fields(begins[2:]), kw)
        if kinds == {"Reshape"} and x is not None:
            shape = self.const(main.input[1])
            if shape is not None and len(shape) == 2 and int(shape[1]) in (-1, _size(x)):
                return Layer(name, "flatten")  # x.view(N, -1)
        if kinds == {"Reshape", "Transpose"}:
            shape = self.const(group[0].input[1])
            return Layer(name, "shuffle", [int(shape[1])])
        if "InstanceNormalization" in kinds:
            shape = self.const(group[0].input[1])
            groups = int(shape[1])
            if groups == 1:
                return Layer(name, "ln")
            if x is not None and groups == x[0]:
                return Layer(name, "instnorm")
            return Layer(name, "gn", [groups])
        if "ReduceSumSquare" in kinds and "Gemm" in kinds:  # rbf
            gemm = next(n for n in group if n.op_type == "Gemm")
            return Layer(name, "rbf", [int(self.inits[gemm.input[1]].shape[0])])
        if "ScatterElements" in kinds:  # unpool with a maxpool's indices
            idx = next(i for n in group for i in n.input if i.endswith(".indices"))
            pool = next((lay for lay in self.layers if lay.name == idx[: -len(".indices")]), None)
            if pool is None:
                unsupported("the maxpool of the indices is unknown")
            data = next(n.input[0] for n in group if n.op_type == "Reshape" and n.input[0] in ext)
            return Layer(name, "unpool", [], {"of": Ref(pool.name)}, inputs=[self.producer[data]])
        if kinds in ({"Resize"}, {"Upsample"}):
            scales = self.const(main.input[2]) if len(main.input) > 2 and main.input[2] else self.const(main.input[-1])
            if scales is None or any(float(s) != int(s) for s in scales[2:]):
                unsupported("Resize needs constant integer scales")
            mode = a.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            factors = tuple(int(s) for s in scales[2:])
            kw = {"mode": "linear"} if mode == "linear" else {}
            return Layer(name, "upsample", [factors], kw)
        if kinds == {"Conv", "Sub", "Mul", "Sqrt", "ReduceMean", "Max", "Div"}:  # lcn: cnndsl's lowering
            w = self.const(next(n for n in group if n.op_type == "Conv").input[1])  # (1, C, s, …): a Gaussian
            size = int(w.shape[-1])
            kw = {}
            if size > 1:  # the window's profile along the last axis: g[c+1] / g[c] = exp(−1 / (2σ²))
                profile = w[(0, 0) + (size // 2,) * (w.ndim - 3)].astype(float)
                sigma = (-1 / (2 * log(profile[size // 2 + 1] / profile[size // 2]))) ** 0.5
                sigma = float(f"{sigma:.6g}")
                kw = {"sigma": sigma} if sigma != 1.0 else {}
            return Layer(name, "lcn", [size], kw)
        unsupported("this operator (or pattern) has no equivalent in the language")

    def pads(self, node, a, n, unsupported):
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            return "same"
        pads = list(a.get("pads", [0] * 2 * n))
        if pads[:n] != pads[n:]:
            if node.op_type != "ConvTranspose" and self._same(node, a, pads, n):
                return "same"  # cnndsl's (and TensorFlow's) same padding of an even window: the extra one at the end
            unsupported(f"pads {pads} differ before and after")
        return tuple(pads[:n])

    def _same(self, node, a, pads, n) -> bool:
        """Whether explicit pads are exactly what ``same`` gives for this input (layers/arith.same_pads)."""
        from cnndsl.layers.arith import same_pads

        x = self.shape(node.input[0])
        if x is None or len(x) < n:
            return False
        kernel = list(a.get("kernel_shape") or self.inits[node.input[1]].shape[2:])
        strides, dil = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
        want = [same_pads(w, d * (f - 1) + 1, s) for w, f, s, d in zip(x[-n:], kernel, strides, dil)]
        return pads == [p for p, _ in want] + [q for _, q in want]

    def pool(self, name, node, a, ext, out, unsupported):
        kind = "maxpool" if node.op_type == "MaxPool" else "avgpool"
        f = tuple(a["kernel_shape"])
        n = len(f)
        s = tuple(a.get("strides", [1] * n))
        pads = list(a.get("pads", [0] * 2 * n))
        ceil = bool(a.get("ceil_mode", 0))
        kw = {}
        if kind == "avgpool" and a.get("count_include_pad", 0):
            kw["count_pad"] = True
        if pads[:n] != pads[n:]:
            # cnndsl writes a ceil-mode pool as floor mode with extra end padding: undo that
            x, y = self.shape(ext[0]), self.shape(out)
            p = tuple(pads[:n])
            if (
                x is not None
                and y is not None
                and tuple(_ceil_out(w, k, st, q) for w, k, st, q in zip(x[1:], f, s, p)) == y[1:]
            ):
                ceil = True
            elif self._same(node, a, pads, n):  # the same padded input either way: same computation
                return Layer(name, kind, _fields(f, s, "same"), kw)
            else:
                unsupported(f"pads {pads} differ before and after")
        if ceil:
            kw["ceil"] = True
        return Layer(name, kind, _fields(f, s, pads[:n]), kw)


def _fields(*values) -> list:
    """Per-axis values as one integer when the axes agree (``3x3`` -> ``3``), so blocks can take them."""
    out = []
    for v in values:
        if isinstance(v, (tuple, list)):
            v = tuple(int(x) for x in v)
            v = v[0] if len(set(v)) == 1 else v
        out.append(int(v) if not isinstance(v, (tuple, str)) else v)
    return out


def _ceil_out(w, f, s, p):
    o = -(-(w + 2 * p - f) // s) + 1
    if (o - 1) * s >= w + p:
        o -= 1
    return o


def _f(v) -> float:
    """A float32 attribute as the short decimal it was written from (1e-4, not 9.99999974738e-05)."""
    return float(f"{float(v):.7g}")


def _ident(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "t"
