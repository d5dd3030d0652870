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
identify the kind.

Models written by others (torch's two exporters) are first made plain: the
shape arithmetic that the TorchScript exporter leaves in the graph (Shape,
Gather, Div ... of sizes that are known) is computed; a ReduceMean without
``keepdims`` over the spatial axes becomes the global pooling and a Flatten, a
Split of the channels one Slice per part, Identity nodes are no layers. Chains
of operators that an exporter writes for one layer (torch's erf-form GELU:
Div, Erf, Add, Mul, Mul) are grouped when a kind lists them (``Kind.onnx_chains``)
and its recogniser accepts the group. A Transpose to channels-last (torch's
``permute(0, 2, 3, 1)``, ConvNeXt) and back is no layer: the operators between
them are read channels-first where that is the same computation (element-wise
operators, LayerNormalization over the last axis, MatMul by a weight, per-channel
constants) and refused otherwise. torch's MatMul followed by the Add of a bias
vector is one fully connected (or, channels-last, 1x1 convolution) layer.

Foreign files are untrusted: the file size, every tensor's declared size (against
the bytes it holds, and a limit) and every external-data location (inside the
model's folder only, no ``..``, no absolute path, no symbolic link out of it) are
checked before anything is read or allocated.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path, PurePosixPath, PureWindowsPath

from cnndsl.errors import CnnError, Diagnostic
from cnndsl.files import read_bytes
from cnndsl.importers.form import SourceLayer, SourceNet, SourceRef, SourceTable
from cnndsl.layers import ONNX_IMPORT
from cnndsl.layers.arith import same_pads

READ_ERROR, KIND_ERROR, FORM_ERROR = "E260", "E261", "E262"
TENSOR_ERROR, DATA_ERROR = "E263", "E264"

MAX_MODEL_BYTES = 2**31 - 1  # protobuf's limit for one message: larger is not an ONNX file
MAX_TENSOR_BYTES = 2**36  # 64 GiB: a declared tensor larger than this is refused, not counted
SMALL = 1 << 16  # tensors of at most this many elements are read (constants, shapes, masks)
# Operators whose values are computed when all their inputs are known (the TorchScript
# exporter's shape arithmetic: Shape -> Gather -> Div -> Mul -> Slice's ends).
FOLDED = {
    "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Add", "Sub", "Mul", "Div", "Cast", "Slice",
    "Reshape", "Identity", "Floor", "Ceil", "Neg", "Equal", "Where", "Min", "Max", "Sqrt",
    "ConstantOfShape", "Range",
}  # fmt: skip
# Operators that compute the same channels-first as channels-last when their constants are
# scalars or one value per channel (the channel axis is the last there).
ELEMENTWISE = {
    "Relu", "Sigmoid", "Tanh", "Abs", "HardSwish", "HardSigmoid", "Softplus", "Mish", "Elu", "LeakyRelu",
    "Clip", "Gelu", "Erf", "Identity", "Dropout", "Add", "Mul", "Sub", "Div", "Pow", "Sqrt", "Exp", "Neg",
}  # fmt: skip


# The attributes of foreign operators that the kinds' recognisers read (honoured, or refused
# there when the language lacks the value). Any other attribute must be at its ONNX default (or
# an equivalent: strides and dilations of 1, allowzero without a 0 in the shape): E261 otherwise.
READ = {
    "Conv": {"kernel_shape", "strides", "pads", "auto_pad", "group", "dilations"},
    "ConvTranspose": {"kernel_shape", "strides", "pads", "auto_pad", "group", "dilations", "output_padding"},
    "MaxPool": {"kernel_shape", "strides", "pads", "ceil_mode"},
    "AveragePool": {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad"},
    "Gemm": {"transB"},
    "BatchNormalization": {"epsilon", "momentum"},
    "LRN": {"size", "alpha", "beta", "bias"},
    "LeakyRelu": {"alpha"},
    "Elu": {"alpha"},
    "HardSigmoid": {"alpha", "beta"},
    "Softmax": {"axis"},
    "Concat": {"axis"},
    "Flatten": {"axis"},
    "Transpose": {"perm"},
    "LayerNormalization": {"axis", "epsilon"},
    "ReduceMean": {"axes", "keepdims", "noop_with_empty_axes"},
    "ReduceMax": {"axes", "keepdims", "noop_with_empty_axes"},
    "Pad": {"mode", "pads"},
    "Resize": {"mode", "coordinate_transformation_mode", "nearest_mode"},
    "Upsample": {"mode", "scales"},
    "SpaceToDepth": {"blocksize"},
    "Gelu": {"approximate"},
    "Dropout": {"ratio"},
}
# Attributes that change no figure and no value of an inference network: passed over in silence.
SILENT = {("Dropout", "seed"), ("LayerNormalization", "stash_type"), ("MaxPool", "storage_order")}
WARNING = "W260"  # a form whose figures are the layer's, its values not quite (Reader.warn)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def read_onnx(path: Path) -> SourceNet:
    import onnx

    path = Path(path)
    data = read_bytes(path, READ_ERROR, limit=(MAX_MODEL_BYTES, READ_ERROR))
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # noqa: BLE001 - onnx raises many types for bytes that are not a model
        raise CnnError(f"cannot read {path} as an ONNX model: {_first_line(err)}", code=READ_ERROR) from None
    g = model.graph
    folder = path.parent
    inits = {t.name: _tensor(t, path, folder) for t in g.initializer}
    nodes = []
    for n in g.node:
        if n.op_type == "Constant":
            value = _constant(n, path, folder)
            if value is not None:
                inits[n.output[0]] = value
                continue
        elif n.op_type == "Identity" and n.input and n.input[0] in inits:  # torch's copies of a shared weight
            inits[n.output[0]] = inits[n.input[0]]
            continue
        nodes.append(n)
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise CnnError(
            f"{path}: expected one input, found {len(inputs)} ({', '.join(i.name for i in inputs)})", code=FORM_ERROR
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims[1:])
    if not shape or any(d.dim_value <= 0 for d in dims[1:]):
        raise CnnError(f"{path}: the input {inputs[0].name} needs fixed sizes after the batch axis", code=FORM_ERROR)
    ours = model.producer_name == "cnndsl"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    shapes = _infer(model, nodes, inits, opset)
    if not ours:
        nodes = _fold(nodes, inits, shapes, opset)
        nodes = _plain(nodes, inits, shapes)
        shapes = _infer(model, nodes, inits, opset)
    r = _Reader(inits, {k: v[1:] for k, v in shapes.items()}, inputs[0].name, ours)
    r.opset, r.path = opset, path
    r.read(nodes, [o.name for o in g.output])
    props = {p.key: p.value for p in model.metadata_props}
    name = props.get("cnndsl.network") or g.name or path.stem
    notes = ["ONNX layer names are in the comments"]
    net = SourceNet(name, shape, r.layers, r.outputs, notes=notes, tables=r.tables, output_names=r.output_names)
    net.warnings = r.warnings
    return net


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


# ---------------------------------------------------------------- tensors, checked before they are read


def _tensor(t, path: Path, folder: Path, where: str = ""):
    """An initializer's (or a Constant's) value as an array, or for one over SMALL elements its
    shape only; its declared size is checked against the bytes it holds (and the limit), and an
    external file's location against the model's folder, before anything is read."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    name = where or f"tensor {t.name or '(unnamed)'}"
    dims = [int(d) for d in t.dims]
    shown = "x".join(map(str, dims)) or "a scalar"
    if any(d < 0 for d in dims):
        raise CnnError(f"{path}: {name} has a negative size ({dims})", code=TENSOR_ERROR)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
    except (KeyError, TypeError, ValueError):
        raise CnnError(f"{path}: {name} has the unknown element type {t.data_type}", code=TENSOR_ERROR) from None
    if t.data_type == TensorProto.STRING:
        raise CnnError(f"{path}: {name} holds strings, not numbers", code=TENSOR_ERROR)
    n = _size(dims)
    packed = t.data_type in (TensorProto.INT4, TensorProto.UINT4) or t.data_type == getattr(
        TensorProto, "FLOAT4E2M1", -1
    )
    nbytes = (n + 1) // 2 if packed else n * dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise CnnError(
            f"{path}: {name} declares {shown} {dtype.name} values ({nbytes:,} bytes), more than the limit of "
            f"{MAX_TENSOR_BYTES:,} bytes",
            code=TENSOR_ERROR,
        )
    if t.data_location == TensorProto.EXTERNAL:
        info = {e.key: e.value for e in t.external_data}
        file = _external_file(info.get("location", ""), path, folder, name)
        try:
            offset = int(info.get("offset", "0"))
            length = int(info.get("length", str(nbytes)))
        except ValueError:
            raise CnnError(
                f"{path}: {name}: external data offset or length is not a number", code=TENSOR_ERROR
            ) from None
        have = file.stat().st_size
        if length != nbytes or offset < 0:
            raise CnnError(
                f"{path}: {name} declares {shown} {dtype.name} values ({nbytes:,} bytes) but its external data "
                f"has length {length:,}",
                code=TENSOR_ERROR,
            )
        if offset + length > have:
            raise CnnError(
                f"{path}: {name} needs bytes {offset:,} to {offset + length:,} of {info['location']}, which has "
                f"{have:,}",
                code=TENSOR_ERROR,
            )
        if n > SMALL or packed:
            return _Shape(tuple(dims))
        with open(file, "rb") as f:
            f.seek(offset)
            raw = f.read(length)
        return np.frombuffer(raw, dtype=dtype).reshape(dims).copy()
    if t.raw_data:
        held, want, unit = len(t.raw_data), nbytes, "bytes"
    else:
        field = helper.tensor_dtype_to_field(t.data_type)
        held, unit = len(getattr(t, field)), "values"
        want = n * (2 if t.data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128) else 1)
        want = (n + 1) // 2 if packed else want
    if held != want:
        raise CnnError(
            f"{path}: {name} declares {shown} {dtype.name} values ({want:,} {unit}) but holds {held:,}",
            code=TENSOR_ERROR,
        )
    if n > SMALL:
        return _Shape(tuple(dims))
    return numpy_helper.to_array(t)


def _external_file(location: str, path: Path, folder: Path, name: str) -> Path:
    """The file of an external tensor: a path relative to the model's folder that stays inside it."""
    if not location:
        raise CnnError(f"{path}: {name} is stored in an external file but names none", code=DATA_ERROR)
    leaves = f"{path}: {name}: external data location {location}"
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
    ):
        raise CnnError(f"{leaves} is an absolute path; only files in the model's folder are read", code=DATA_ERROR)
    if ".." in re.split(r"[/\\]", location):
        raise CnnError(
            f"{leaves} leaves the model's folder; only files in the model's folder are read", code=DATA_ERROR
        )
    try:
        base = folder.resolve()
        target = (folder / location).resolve()
        inside, there = target.is_relative_to(base), target.is_file()
    except (OSError, ValueError) as err:  # a NUL byte, a name too long, a loop of links
        raise CnnError(f"{leaves}: cannot be resolved ({err})", code=DATA_ERROR) from None
    if not inside:
        raise CnnError(
            f"{leaves} resolves to {target}, outside the model's folder (a symbolic link); only files in the "
            "model's folder are read",
            code=DATA_ERROR,
        )
    if not there:
        raise CnnError(f"{leaves}: no such file next to the model", code=DATA_ERROR)
    return target


def _constant(node, path: Path, folder: Path):
    """A Constant node's value (an array, or a large one's shape), or None for a form not read."""
    import numpy as np

    for a in node.attribute:
        where = f"Constant {node.name or node.output[0]}"
        if a.name == "value":
            return _tensor(a.t, path, folder, where)
        if a.name in ("value_float", "value_int"):
            return np.array(
                a.f if a.name == "value_float" else a.i, np.float32 if a.name == "value_float" else np.int64
            )
        if a.name in ("value_floats", "value_ints"):
            values = a.floats if a.name == "value_floats" else a.ints
            return np.array(list(values), np.float32 if a.name == "value_floats" else np.int64)
    return None


# ---------------------------------------------------------------- foreign graphs made plain


def _infer(model, nodes, inits, opset) -> dict:
    """Full shapes (batch included; a dynamic batch read as 1) of the tensors of ``nodes``, the
    known constants given as small initializers."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    given = _names(g.initializer)
    extra = [numpy_helper.from_array(v, k) for k, v in inits.items() if not isinstance(v, _Shape) and k not in given]
    large = [
        helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, list(v.shape))
        for k, v in inits.items()
        if isinstance(v, _Shape) and k not in given
    ]
    graph = helper.make_graph(
        list(nodes), g.name or "g", list(g.input) + large, list(g.output), list(g.initializer) + extra
    )
    m = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version or onnx.IR_VERSION)
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:  # noqa: BLE001 - shape inference is a help (pools, crops), not a requirement
        return {}
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.dim_value > 0 or k else 1 for k, d in enumerate(dims))
    return shapes


def _names(tensors) -> set:
    return {t.name for t in tensors}


def _fold(nodes, inits, shapes, opset) -> list:
    """``nodes`` less those whose values are computed here (all inputs known, a FOLDED operator,
    small results); their outputs become constants in ``inits``."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    kept = []
    for n in nodes:
        values = [inits.get(i) if i else None for i in n.input]
        if n.op_type == "Shape" and n.input[0] in shapes and all(d > 0 for d in shapes[n.input[0]]):
            a = _attrs(n)
            full = shapes[n.input[0]]
            inits[n.output[0]] = np.array(full[a.get("start", 0) : a.get("end", len(full))], np.int64)
            continue
        known = all(v is not None and not isinstance(v, _Shape) for v, i in zip(values, n.input) if i)
        if n.op_type not in FOLDED or n.op_type == "Shape" or not n.input or not known or len(n.output) != 1:
            kept.append(n)
            continue
        bound = _size(max(1, v.size) for v in values if v is not None)
        if n.op_type == "ConstantOfShape":
            bound = _size(int(d) for d in values[0].ravel()) if values[0].size else 1
        elif n.op_type == "Range":
            start, limit, delta = (float(v) for v in values)
            bound = abs(int((limit - start) / delta)) + 1 if delta else SMALL + 1
        if bound > SMALL:
            kept.append(n)
            continue
        try:
            feeds = {i: v for i, v in zip(n.input, values) if i}
            (out,) = ReferenceEvaluator(n, opsets={"": opset}).run(None, feeds)
        except Exception:  # noqa: BLE001 - not computable here: read as an operator (and refused there)
            kept.append(n)
            continue
        inits[n.output[0]] = np.asarray(out)
    return kept


def _plain(nodes, inits, shapes) -> list:
    """Foreign forms rewritten as the operators the kinds read: ReduceMean/ReduceMax without
    keepdims over every spatial axis as the reduction with keepdims and a Flatten; a Split of the
    channels as one Slice per part; a Gather of all the elements in order from Reshape(x, [-1])
    (dynamo's as_strided of a permute) as an Identity."""
    import numpy as np
    from onnx import helper

    consumers = Counter(i for n in nodes for i in n.input)
    out = []
    flat_of = {}  # Reshape(x, [-1]) outputs -> x
    for n in nodes:
        a = _attrs(n)
        x = shapes.get(n.input[0]) if n.input else None
        if n.op_type in ("ReduceMean", "ReduceMax") and not a.get("keepdims", 1) and x is not None:
            axes = reduce_axes(n, inits, len(x))
            if axes is not None and axes == list(range(2, len(x))) and len(x) > 2:
                kept = n.output[0] + "#kept"
                node = helper.make_node(n.op_type, list(n.input), [kept], name=n.name, **{**a, "keepdims": 1})
                flat = helper.make_node(
                    "Flatten", [kept], [n.output[0]], name=(n.name or n.op_type) + "/Flatten", axis=1
                )
                out += [node, flat]
                shapes[kept] = x[:2] + (1,) * (len(x) - 2)
                continue
        if n.op_type == "Split" and x is not None and len(x) > 1:
            axis = a.get("axis", 0)
            axis = axis + len(x) if axis < 0 else axis
            sizes = inits.get(n.input[1]) if len(n.input) > 1 and n.input[1] else a.get("split")
            if sizes is None:
                k = a.get("num_outputs", len(n.output))
                step = -(-x[axis] // k)
                sizes = [min(step, x[axis] - step * j) for j in range(k)]
            if axis == 1 and not isinstance(sizes, type(None)) and len(list(sizes)) == len(n.output):
                start = 0
                for j, (o, size) in enumerate(zip(n.output, [int(s) for s in sizes])):
                    ints = [f"{o}#{w}" for w in ("start", "end", "axis")]
                    for key, v in zip(ints, (start, start + size, 1)):
                        inits[key] = np.array([v], np.int64)
                    out.append(helper.make_node("Slice", [n.input[0], *ints], [o], name=f"{n.name or 'Split'}_{j}"))
                    start += size
                continue
        if n.op_type == "Reshape" and x is not None and consumers[n.output[0]] == 1:
            target = inits.get(n.input[1])
            if target is not None and not isinstance(target, _Shape) and [int(v) for v in target.ravel()] == [-1]:
                flat_of[n.output[0]] = (n.input[0], x, n)
                out.append(n)
                continue
        if n.op_type == "Gather" and n.input[0] in flat_of and a.get("axis", 0) == 0:
            source, full, reshape = flat_of[n.input[0]]
            idx = inits.get(n.input[1])
            whole = idx is not None and not isinstance(idx, _Shape) and idx.shape == tuple(full)
            if whole and np.array_equal(idx.ravel(), np.arange(idx.size)):
                out.remove(reshape)
                out.append(helper.make_node("Identity", [source], [n.output[0]], name=n.name))
                continue
        out.append(n)
    return out


def reduce_axes(node, inits, rank: int):
    """The axes of a Reduce* operator (an attribute before opset 18, an input after), made
    non-negative and sorted; all axes when none are given; None when not constant."""
    a = _attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        v = inits.get(node.input[1])
        if v is None or isinstance(v, _Shape):
            return None
        axes = [int(d) for d in v.ravel()]
    if axes is None:
        return None if a.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(int(d) + rank if int(d) < 0 else int(d) for d in axes)


# ---------------------------------------------------------------- groups and the reader


class _Group:
    """The operators of one layer: ``ops`` counts them by type, ``types`` is their set; ``main``
    computes the layer's output ``out`` (``a``: its attributes); ``ext`` are the tensors the group
    reads, ``x`` the shape of the first (None when unknown; channels first, also for a
    channels-last tensor)."""

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


class _Unread(Exception):
    """A chain of operators that no kind reads as one layer: its operators are read one by one."""


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
        self.last: set[str] = set()  # channels-last tensors (after a Transpose to channels-last)
        self.opset = 17
        self.path = None
        self.warnings: list[Diagnostic] = []

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
        """The inferred shape of a tensor after the batch axis, channels first, or None."""
        s = self.shapes.get(tensor)
        if s is not None and tensor in self.last and s:
            return (s[-1],) + tuple(s[:-1])
        return s

    def channels_last(self, tensor) -> bool:
        """Whether the tensor is channels-last (torch's permute(0, 2, 3, 1) before it)."""
        return tensor in self.last

    def per_channel(self, name, tensor):
        """The constant ``name`` as one value per channel of ``tensor`` when that is how it
        broadcasts there ((C, 1, 1) channels-first, (C,) channels-last or for a vector), or None."""
        v, x = self.const(name), self.shapes.get(tensor)
        if v is None or x is None or not x:
            return None
        axis = len(x) if tensor in self.last else 1  # the channel axis, batch included
        full = (1, *x)
        if v.ndim > len(full):
            return None
        padded = (1,) * (len(full) - v.ndim) + tuple(v.shape)
        c = full[axis]
        if padded[axis] != c or any(d != 1 for k, d in enumerate(padded) if k != axis):
            return None
        return v.reshape(-1)

    def warn(self, group, what: str):
        """Warning W260 on the group: read as a layer with the same figures, values that may differ."""
        main = group.main
        self.warnings.append(
            Diagnostic(
                "warning",
                f"{self.path}: ONNX node {main.name or main.op_type} ({main.op_type}): {what} (the figures are "
                "equal; the values may differ from the layer's)",
                code=WARNING,
            )
        )

    def reduce_axes(self, node, rank: int):
        """A Reduce* operator's axes, non-negative and sorted (None when not constant)."""
        return reduce_axes(node, self.inits, rank)

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

    # ---- grouping
    def _groups(self, nodes, graph_outputs) -> list:
        """(key, nodes, chained) per layer, in order: cnndsl's own by name prefix; others one
        operator each, or a chain of Kind.onnx_chains (``chained``: read one by one if no kind
        accepts the chain)."""
        groups: dict[str, list] = {}
        if self.ours:
            for n in nodes:
                if n.op_type == "Identity" and n.output[0] in graph_outputs:
                    key = n.output[0] + "#output"  # an output alias, on its own even when named <layer>/output
                else:
                    key = n.name.split("/")[0] or n.output[0]
                groups.setdefault(key, []).append(n)
            return [(key, group, False) for key, group in groups.items()]
        chains = sorted({c for kind in ONNX_IMPORT for c in kind.onnx_chains}, key=len, reverse=True)
        readers: dict[str, list] = {}
        for k, n in enumerate(nodes):
            for i in n.input:
                readers.setdefault(i, []).append(k)
        member, ends = {}, {}
        for k in range(len(nodes)):
            if k in member:
                continue
            for chain in chains:
                found = self._chain(nodes, k, chain, readers, graph_outputs, member)
                if found:
                    for j in found:
                        member[j] = found[-1]
                    ends[found[-1]] = found
                    break
        out = []
        for k in range(len(nodes)):
            if k in member and member[k] != k:
                continue
            chain = [nodes[j] for j in ends.get(k, [k])]
            out.append(((chain[0].name or chain[0].output[0]) + f"#{len(out)}", chain, len(chain) > 1))
        return out

    @staticmethod
    def _chain(nodes, k, chain, readers, graph_outputs, member):
        """The node indices of ``chain`` starting at node ``k``, each the only reader of the one
        before's output, or None."""
        if nodes[k].op_type != chain[0]:
            return None
        found = [k]
        for op in chain[1:]:
            prev = nodes[found[-1]]
            tensor = prev.output[0]
            next_ = readers.get(tensor, [])
            if len(next_) != 1 or tensor in graph_outputs or any(readers.get(o) for o in prev.output[1:] if o):
                return None
            j = next_[0]
            if nodes[j].op_type != op or j in member:
                return None
            found.append(j)
        return found

    def read(self, nodes, graph_outputs):
        for key, group, chained in self._groups(nodes, graph_outputs):
            if not chained:
                self._read_group(key, group, graph_outputs)
                continue
            try:
                self._read_group(key, group, graph_outputs, chained=True)
            except _Unread:
                for k, n in enumerate(group):
                    self._read_group(f"{n.name or n.output[0]}#{key}.{k}", [n], graph_outputs)
        seen = []
        for o in graph_outputs:
            p = self.producer.get(o)
            if o in self.last and len(self.shapes.get(o) or ()) > 1:
                raise CnnError(
                    f"the graph output {o} is channels-last (after a Transpose): the language's layers are "
                    "channels-first",
                    code=KIND_ERROR,
                )
            if p and p not in seen:
                seen.append(p)
                self.output_names[p] = o
        self.outputs = seen

    def _read_group(self, key, group, graph_outputs, chained=False):
        produced = {o for n in group for o in n.output}
        # the tensors the group reads, in order (repeated for Concat/Add/Mul of one tensor twice)
        ext = [i for n in group for i in n.input if i and i not in produced and i not in self.inits]
        if not (len(group) == 1 and group[0].op_type in ("Concat", "Add", "Mul", "Sum")):  # a combinator
            ext = list(dict.fromkeys(ext))
        if chained and len(ext) != 1:
            raise _Unread
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
            return
        if not self.ours:
            for n in group:
                self._check_attributes(n)
            if self._alias(group, ext):
                return
        last = [i for i in ext if i in self.last]
        if last:
            self._check_channels_last(group, ext, last)
        try:
            layer = self.classify(_Group(name, group, ext, out, self.shape), chained)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
            if chained:
                raise _Unread from None
            # a foreign model with an operator in a form this reader does not know
            raise CnnError(
                f"ONNX node {group[0].name or group[0].op_type} ({group[0].op_type}): unexpected "
                f"inputs or attributes ({type(err).__name__}: {err})",
                code=FORM_ERROR,
            ) from None
        if last:
            self.last |= produced
        if layer is None:  # folded into the layer before (the bias Add of a MatMul)
            for o in produced:
                self.producer[o] = self.layers[-1].name
            return
        if not layer.inputs:
            layer.inputs = [self.producer[i] for i in ext if not i.endswith(".indices")]
        self.matmul = layer if [n.op_type for n in group] == ["MatMul"] else None
        self.layers.append(layer)
        for o in produced:
            self.producer[o] = layer.name

    def _check_attributes(self, node):
        """Every attribute of a foreign operator is read (READ), at its default, changes nothing
        (SILENT) or changes values only (NUMERICS: a warning); otherwise E261."""
        from onnx import defs, helper

        read = READ.get(node.op_type, set())
        try:
            schema = defs.get_schema(node.op_type, self.opset)
        except Exception:  # noqa: BLE001 - an operator onnx does not know: refused by the kinds
            return
        for a in node.attribute:
            if a.name in read or (node.op_type, a.name) in SILENT:
                continue
            value = helper.get_attribute_value(a)
            spec = schema.attributes.get(a.name)
            default = (
                helper.get_attribute_value(spec.default_value) if spec is not None and spec.default_value.type else None
            )
            if value == default or (a.name in ("strides", "dilations") and set(value) <= {1}):
                continue
            if a.name == "allowzero" and node.op_type == "Reshape":
                target = self.const(node.input[1])
                if target is not None and 0 not in target.ravel().tolist():
                    continue  # allowzero only matters for a 0 in the shape
            shown = self.word(value) if isinstance(value, bytes) else value
            raise CnnError(
                f"ONNX node {node.name or node.op_type} ({node.op_type}): attribute {a.name}={shown} is not read "
                "(no equivalent in the language)",
                code=KIND_ERROR,
            )

    def _alias(self, group, ext) -> bool:
        """Foreign operators that are no layer: an Identity, a Transpose to channels-last and back
        (the tensor is then marked channels-last, or no longer)."""
        if len(group) != 1 or len(ext) != 1:
            return False
        n = group[0]
        perm = list(_attrs(n).get("perm", [])) if n.op_type == "Transpose" else None
        if n.op_type == "Identity":
            last = ext[0] in self.last
        elif perm is not None and len(perm) >= 3:
            r = len(perm)
            if ext[0] not in self.last and perm == [0, *range(2, r), 1]:
                last = True
            elif ext[0] in self.last and perm == [0, r - 1, *range(1, r - 1)]:
                last = False
            else:
                return False
        else:
            return False
        self.producer[n.output[0]] = self.producer[ext[0]]
        if last:
            self.last.add(n.output[0])
        return True

    def _check_channels_last(self, group, ext, last):
        """The operators of a group that reads channels-last tensors compute what their
        channels-first reading computes: element-wise operators with scalar or per-channel
        constants, LayerNormalization over the last axis, MatMul by a 2-D weight."""
        if len(last) != len(ext):
            group_ = _Group(group[0].name, group, ext, group[-1].output[0], self.shape)
            group_.unsupported("reads a channels-last tensor (after a Transpose) and a channels-first one")
        for n in group:
            x = self.shapes.get(n.input[0]) if n.input else None
            problem = None
            if n.op_type == "LayerNormalization":
                axis = _attrs(n).get("axis", -1)
                if x is None or axis not in (-1, len(x)):
                    problem = f"LayerNormalization over axis {axis} of a channels-last tensor: only the last is read"
            elif n.op_type == "MatMul":
                w = self.init(n.input[1])
                if w is None or len(w.shape) != 2:
                    problem = "MatMul of a channels-last tensor is read as a 1x1 convolution: its weight must be 2-D"
            elif n.op_type in ELEMENTWISE:
                for i in n.input[1:]:
                    v = self.init(i)
                    if i and v is not None and _size(v.shape) != 1 and self.per_channel(i, ext[0]) is None:
                        problem = f"{n.op_type} by a constant of shape {tuple(v.shape)} on a channels-last tensor"
            else:
                problem = f"{n.op_type} of a channels-last tensor (after a Transpose)"
            if problem:
                group_ = _Group(n.name, [n], ext, n.output[0], self.shape)
                group_.unsupported(
                    problem + "; element-wise operators, LayerNormalization over the channels, MatMul by a "
                    "weight and per-channel constants are read there"
                )

    def classify(self, group: _Group, chained: bool = False) -> SourceLayer | None:
        """The layer the group computes: the first kind (in ONNX_IMPORT's order) whose recogniser
        accepts it; None for the bias Add of a MatMul, which goes onto the layer before."""
        if self._bias_of_matmul(group):
            del self.matmul.kw["bias"]
            return None
        for kind in ONNX_IMPORT:
            try:
                found = kind.onnx_import(self, group)
            except CnnError:
                if chained:
                    raise _Unread from None
                raise
            if found is not None:
                args, kw, *inputs = found
                return SourceLayer(group.name, kind.name, list(args), dict(kw), *inputs)
        if chained:
            raise _Unread
        group.unsupported("this operator (or pattern) has no equivalent in the language")

    def _bias_of_matmul(self, group: _Group) -> bool:
        """torch writes a linear layer as MatMul, then Add of the bias vector (one per output)."""
        last = self.matmul
        if not (
            group.types == {"Add"}
            and len(group.nodes) == 1
            and len(group.ext) == 1
            and last is not None
            and self.layers
            and self.layers[-1] is last
            and last.kw.get("bias") is False
            and self.producer.get(group.ext[0]) == last.name
        ):
            return False
        bias = next((i for i in group.main.input if i != group.ext[0]), None)
        return bias is not None and self.per_channel(bias, group.ext[0]) is not None

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
