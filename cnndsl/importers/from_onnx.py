"""ONNX models to the import intermediate form (:mod:`cnndsl.importers.form`).

The operators are grouped, one group per layer, and each group is read by the
first layer kind whose recogniser accepts it (``Kind.onnx_import``, tried in the
order of ``cnndsl.layers.ONNX_IMPORT``). Plain operators are groups of one
(Conv, MaxPool, Gemm, the activations, Concat ...); weight shapes give the
filters, the window, the groups and the bias.

Layers that cnndsl lowers to several operators are recognised in models that
cnndsl itself wrote (``producer_name`` "cnndsl"): its node names are ``<layer>``
for the operator computing a layer and ``<layer>/<Op>_k`` for the helpers, so
the operators of one layer are grouped by that prefix and the group's operators
identify the kind. One foreign pattern is read here: torch's MatMul followed by
the Add of a bias vector is one fully connected layer.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from cnndsl.errors import CnnError
from cnndsl.files import read_bytes
from cnndsl.importers.form import SourceLayer, SourceNet, SourceRef, SourceTable
from cnndsl.layers import ONNX_IMPORT
from cnndsl.layers.arith import same_pads

READ_ERROR, KIND_ERROR, FORM_ERROR = "E260", "E261", "E262"


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def read_onnx(path: Path) -> SourceNet:
    import onnx
    from onnx import numpy_helper

    data = read_bytes(path, READ_ERROR)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # noqa: BLE001 - onnx raises many types for bytes that are not a model
        raise CnnError(f"cannot read {path} as an ONNX model: {_first_line(err)}", code=READ_ERROR) from None
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
            f"{path}: expected one input, found {len(inputs)} ({', '.join(i.name for i in inputs)})", code=FORM_ERROR
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    if not shape or any(d.dim_value <= 0 for d in dims[1:]):
        raise CnnError(f"{path}: the input {inputs[0].name} needs fixed sizes after the batch axis", code=FORM_ERROR)
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
    return SourceNet(name, shape, r.layers, r.outputs, notes=notes, tables=r.tables, output_names=r.output_names)


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


def _size(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


class _Shape:
    """A large initializer: only its shape is read."""

    def __init__(self, shape):
        self.shape = shape


class _Group:
    """The operators of one layer: ``ops`` counts them by type, ``types`` is their set; ``main``
    computes the layer's output ``out`` (``a``: its attributes); ``ext`` are the tensors the group
    reads, ``x`` the shape of the first (None when unknown)."""

    def __init__(self, name, nodes, ext, out, shape):
        self.name = name
        self.nodes = nodes
        self.ops = Counter(n.op_type for n in nodes)
        self.types = set(self.ops)
        self.main = next((n for n in nodes if out in n.output), nodes[-1])
        self.a = _attrs(self.main)
        self.ext = ext
        self.out = out
        self.x = shape(ext[0]) if ext else None

    def first(self, op: str):
        """The group's first operator of type ``op``, or None."""
        return next((n for n in self.nodes if n.op_type == op), None)

    def unsupported(self, what: str):
        main = self.main
        raise CnnError(f"ONNX node {main.name or main.op_type} ({'+'.join(sorted(self.ops))}): {what}", code=KIND_ERROR)


class _Reader:
    """Reads the groups in order; its methods are the helpers the kinds' recognisers use."""

    def __init__(self, inits, shapes, input_name, ours):
        self.inits = inits
        self.shapes = shapes
        self.producer = {input_name: "input"}  # tensor -> layer
        self.layers: list[SourceLayer] = []
        self.outputs: list[str] = []
        self.tables: list[SourceTable] = []
        self.output_names: dict[str, str] = {}
        self.ours = ours
        self.matmul: SourceLayer | None = None  # the layer read from the last group, if a MatMul

    # ---- helpers for Kind.onnx_import
    attrs = staticmethod(_attrs)

    def init(self, name):
        """An initializer (an array, or for a large one an object with only ``shape``), or None."""
        return self.inits.get(name)

    def const(self, name):
        """A constant's array, or None (not a constant, or too large to have been read)."""
        v = self.inits.get(name)
        if v is None or isinstance(v, _Shape):
            return None
        return v

    def shape(self, tensor):
        """The inferred shape of a tensor after the batch axis, or None."""
        return self.shapes.get(tensor)

    @staticmethod
    def word(v) -> str:
        """A string attribute (bytes in ONNX) as text."""
        return v.decode() if isinstance(v, bytes) else v

    @staticmethod
    def fields(*values) -> list:
        return _fields(*values)

    @staticmethod
    def short(v) -> float:
        return _f(v)

    def table(self, layer_name: str, rows: list) -> str:
        """A connection table for the layer; returns its name."""
        table = SourceTable(f"{_ident(layer_name)}_table", rows)
        self.tables.append(table)
        return table.name

    @staticmethod
    def ref(layer_name: str) -> SourceRef:
        """A keyword value naming a layer read before (``of=@pool``)."""
        return SourceRef(layer_name)

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
                    code=FORM_ERROR,
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
                layer = self.classify(_Group(name, group, ext, out, self.shape))
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
                # a foreign model with an operator in a form this reader does not know
                raise CnnError(
                    f"ONNX node {group[0].name or group[0].op_type} ({group[0].op_type}): unexpected "
                    f"inputs or attributes ({type(err).__name__}: {err})",
                    code=FORM_ERROR,
                ) from None
            if layer is None:  # folded into the layer before (the bias Add of a MatMul)
                for o in produced:
                    self.producer[o] = self.layers[-1].name
                continue
            if not layer.inputs:
                layer.inputs = [self.producer[i] for i in ext if not i.endswith(".indices")]
            self.matmul = layer if [n.op_type for n in group] == ["MatMul"] else None
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

    def classify(self, group: _Group) -> SourceLayer | None:
        """The layer the group computes: the first kind (in ONNX_IMPORT's order) whose recogniser
        accepts it; None for the bias Add of a MatMul, which goes onto the layer before."""
        if self._bias_of_matmul(group):
            del self.matmul.kw["bias"]
            return None
        for kind in ONNX_IMPORT:
            found = kind.onnx_import(self, group)
            if found is not None:
                args, kw, *inputs = found
                return SourceLayer(group.name, kind.name, list(args), dict(kw), *inputs)
        group.unsupported("this operator (or pattern) has no equivalent in the language")

    def _bias_of_matmul(self, group: _Group) -> bool:
        """torch writes a linear layer as MatMul, then Add of the bias vector."""
        last = self.matmul
        return (
            group.types == {"Add"}
            and len(group.ext) == 1
            and last is not None
            and self.layers
            and self.layers[-1] is last
            and last.kw.get("bias") is False
            and self.producer.get(group.ext[0]) == last.name
        )

    def pads(self, node, a, n, group):
        """A Conv's or ConvTranspose's padding: ``same`` (auto_pad, or the explicit pads that
        ``same`` gives), or the per-axis pads, equal before and after."""
        auto = self.word(a.get("auto_pad", b"NOTSET"))
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            return "same"
        pads = list(a.get("pads", [0] * 2 * n))
        if pads[:n] != pads[n:]:
            if node.op_type != "ConvTranspose" and self.same(node, a, pads, n):
                return "same"  # cnndsl's (and TensorFlow's) same padding of an even window: the extra one at the end
            group.unsupported(f"pads {pads} differ before and after")
        return tuple(pads[:n])

    def same(self, node, a, pads, n) -> bool:
        """Whether explicit pads are exactly what ``same`` gives for this input (layers/arith.same_pads)."""
        x = self.shape(node.input[0])
        if x is None or len(x) < n:
            return False
        kernel = list(a.get("kernel_shape") or self.inits[node.input[1]].shape[2:])
        strides, dil = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
        want = [same_pads(w, d * (f - 1) + 1, s) for w, f, s, d in zip(x[-n:], kernel, strides, dil)]
        return pads == [p for p, _ in want] + [q for _, q in want]


def _fields(*values) -> list:
    """Per-axis values as one integer when the axes agree (``3x3`` -> ``3``), so blocks can take them."""
    out = []
    for v in values:
        if isinstance(v, (tuple, list)):
            v = tuple(int(x) for x in v)
            v = v[0] if len(set(v)) == 1 else v
        out.append(int(v) if not isinstance(v, (tuple, str)) else v)
    return out


def _f(v) -> float:
    """A float32 attribute as the short decimal it was written from (1e-4, not 9.99999974738e-05)."""
    return float(f"{float(v):.7g}")


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "t"
