"""Lowering the IR to an ONNX inference model.

The pass walks the IR in order and asks each layer kind to emit its operators
through a tiny :class:`Builder` (``op(type, inputs, **attrs) -> output name``).
The kinds' ``lower`` rules live beside their shape rules in ``cnndsl/layers``;
this module owns the graph, the weights and the model file. It is the only
module importing onnx (and only when exporting).

Deterministic: the opset and IR version are constants, tensor names come from
the source (a layer's output tensor is its hierarchical name, its weights are
``<name>.weight``/``.bias``/``.running_mean``/``.running_var``), weights come
from a seed, node order is the IR's order.
"""

from __future__ import annotations

import zlib

import numpy as np

from cnndsl.errors import CnnError
from cnndsl.layers import CATALOGUE

DEFAULT_OPSET = 17
MIN_OPSET = 17
MAX_OPSET = 21
PRODUCER = "cnndsl"


class Builder:
    """Collects nodes and initializers for one graph."""

    def __init__(
        self, graph, opset: int, dtype=np.float32, seed: int = 0, weights: dict | None = None, training: bool = False
    ):
        from onnx import helper

        self.helper = helper
        self.np = np  # for the lowering rules, so that the catalogue never imports numpy itself
        self.graph = graph
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        # ONNX's float attributes (LeakyRelu's alpha, epsilons) are float32: a float64 graph
        # writes those operators in elementary form with float64 tensor constants instead.
        self.float64 = self.dtype == np.float64
        self.seed = seed
        self.weights = weights  # name -> array given by the user (--weights)
        self.used_weights: set[str] = set()
        self.missing: list[str] = []
        self.partial = False  # weights may hold a subset: the rest from the seed (cnndsl train --weights)
        self.initialised: list[str] = []  # with partial weights: the names taken from the seed
        self.misshaped: list[str] = []
        self.nodes = []
        self.initializers = []  # (name, array)
        # Training form (cnndsl.train): batch statistics, dropout masks; the kinds' rules ask.
        self.training = training
        self.params: dict[str, bool] = {}  # every weight and buffer: name -> trainable
        self.updates: list[tuple[str, str]] = []  # (buffer, tensor holding its next value), training only
        self._counter = 0
        self.layer = ""  # name of the layer being lowered (prefix of helper tensors)
        self.node = None
        self._consumers: dict[int, list[int]] = {}
        for node in graph.nodes:
            for i in node.inputs:
                self._consumers.setdefault(i, []).append(node.id)
        # A layer's output tensor is its name, except where an `output` label claims that
        # name for another value (`l0: relu -> relu` + `output l0`: the label is the last
        # layer, `l0.relu`, while the first layer is named `l0`): ONNX names a value once.
        claimed = {name for name, nid in graph.outputs if graph.nodes[nid].name != name}
        self._tensors = {n.id: f"{n.name}/output" if n.name in claimed else n.name for n in graph.nodes}
        # pooling layers whose indices a later layer reuses (unpool)
        self.unpool_sources = {i for n in graph.nodes[1:] for i in CATALOGUE[n.kind].index_sources(n.attrs)}

    # ---- operators
    def op(self, op_type: str, inputs, out=None, outputs: int = 1, **attrs):
        """Emit one operator; returns its output name (or names when outputs > 1).

        ``out`` names the output (a list of names for several); the operator
        computing a layer's output takes the layer's name, helpers get
        ``<layer>/<Op>_<k>``."""
        self._counter += 1
        if isinstance(out, list):
            names = out
        else:
            names = [
                out if (i == 0 and out is not None) else f"{self.layer}/{op_type}_{self._counter}_{i}"
                for i in range(outputs)
            ]
        main = self.node is not None and names[0] == self._tensors.get(self.node.id)
        node_name = self.layer if names[0] == self.layer or main else f"{self.layer}/{op_type}_{self._counter}"
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, name=node_name, **attrs))
        return names[0] if len(names) == 1 else names

    def reduce(self, op_type: str, x: str, axes, keepdims: int = 1, out: str | None = None):
        """Reduce* operators took ``axes`` as an attribute before opset 18, as an input since."""
        if self.opset >= 18:
            return self.op(op_type, [x, self.const(np.array(axes, np.int64))], out=out, keepdims=keepdims)
        return self.op(op_type, [x], out=out, axes=list(axes), keepdims=keepdims)

    def const(self, value, name: str | None = None, cast: bool = True) -> str:
        """A constant initializer (not a weight): float constants take the export dtype
        unless ``cast=False`` (Resize scales are always float32)."""
        arr = np.asarray(value)
        if cast and arr.dtype.kind == "f":
            arr = arr.astype(self.dtype)
        if name is None:
            self._counter += 1
            name = f"{self.layer}/const_{self._counter}"
        self._add_init(name, arr)
        return name

    def scalar(self, value: float) -> str:
        return self.const(np.array(value, dtype=self.dtype))

    def update(self, buffer: str, value: str) -> None:
        """In the training form: ``value`` is the next value of the buffer (BN running statistics)."""
        self.updates.append((buffer, value))

    # ---- weights
    def weight(
        self,
        suffix: str,
        shape,
        init: str,
        fan_in: int = 1,
        fan_out: int = 1,
        value: float = 0.0,
        trainable: bool = True,
    ) -> str:
        """A parameter or buffer named ``<layer>.<suffix>``, from --weights or the seed;
        ``trainable=False`` for buffers (running statistics, fixed centres)."""
        name = f"{self.layer}.{suffix}"
        self.params[name] = trainable
        shape = tuple(int(s) for s in shape)
        if self.weights is not None and (name in self.weights or not self.partial):
            arr = self._given(name, shape)
        else:
            if self.weights is not None:  # partial weights: this one from the seed
                self.initialised.append(name)
            arr = self._initial(name, shape, init, fan_in, fan_out, value)
        self._add_init(name, arr.astype(self.dtype, copy=False))
        return name

    def _initial(self, name, shape, init, fan_in, fan_out, value):
        # One stream per tensor, keyed by its name: a layer's weights do not depend on the others.
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        if init == "he":
            w = rng.standard_normal(shape, dtype=np.float32)
            w *= np.float32(np.sqrt(2.0 / fan_in))
            return w
        if init == "xavier":
            w = rng.random(shape, dtype=np.float32)
            w *= np.float32(2 * np.sqrt(6.0 / (fan_in + fan_out)))
            w -= np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
            return w
        if init == "sign":  # ±1 (LeNet's RBF centres are ±1 bitmaps)
            return np.where(rng.random(shape, dtype=np.float32) < 0.5, -1.0, 1.0).astype(np.float32)
        return np.full(shape, value, dtype=np.float32)  # "fill"

    def _given(self, name, shape):
        arr = self.weights.get(name)
        if arr is None:
            self.missing.append(f"{name} {shape}")
            return np.zeros(shape)
        self.used_weights.add(name)
        arr = np.asarray(arr)
        if arr.shape != shape:
            if arr.size == int(np.prod(shape)) and arr.squeeze().shape == tuple(s for s in shape if s != 1):
                return arr.reshape(shape)  # (C,) given for a (C,1,1) broadcast parameter
            self.misshaped.append(f"{name}: expected {shape}, got {arr.shape}")
            return np.zeros(shape)
        return arr

    def _add_init(self, name, arr):
        self.initializers.append((name, arr))

    # ---- helpers for lowering rules
    def shape(self, node_id: int) -> tuple:
        return self.graph.nodes[node_id].shape

    def consumers(self, node_id: int):
        return self._consumers.get(node_id, ())

    def init_for(self, node) -> str:
        """'he' when the layer is followed (possibly through one init_transparent layer: bn) by
        an he_init (ReLU-like) activation, else 'xavier'."""
        seen = node.id
        for _ in range(2):
            nxt = self.consumers(seen)
            if len(nxt) != 1:
                return "xavier"
            kind = CATALOGUE[self.graph.nodes[nxt[0]].kind]
            if kind.he_init:
                return "he"
            if not kind.init_transparent:
                return "xavier"
            seen = nxt[0]
        return "xavier"

    def tensor(self, node_id: int) -> str:
        return self._tensors[node_id]


def lower_graph(
    graph,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    weights: dict | None = None,
    dtype=np.float32,
    batch: int | None = None,
    metadata: dict | None = None,
):
    """Build the ONNX ModelProto of an elaborated network (see module doc)."""
    from onnx import helper

    b = lower_nodes(graph, opset, seed, weights, dtype)
    elem = b.elem
    n = batch if batch is not None else "N"

    def vi(name, shape):
        return helper.make_tensor_value_info(name, elem, [n, *shape])

    inputs = [vi("input", graph.input_shape)]
    value_info = [vi(b.tensor(node.id), node.shape) for node in graph.nodes[1:]]
    outputs = []
    for name, nid in graph.outputs:
        src = b.tensor(nid)
        if src != name:
            layers = {node.name for node in graph.nodes}
            b.layer = f"{name}/output" if name in layers else name  # ONNX node names are unique too
            b.op("Identity", [src], out=name)
        outputs.append(vi(name, graph.nodes[nid].shape))
    value_info = [v for v in value_info if v.name not in {o.name for o in outputs}]
    return assemble(b, inputs, outputs, value_info, metadata)


# A training checkpoint's optimizer buffers (``<param>.<buffer>``, cnndsl.train.optim) and its
# training state (``train:epoch``, ``train:step`` …; no layer name holds a colon) belong to
# ``cnndsl train``, not to the network.
OPTIMIZER_BUFFERS = ("momentum", "exp_avg", "exp_avg_sq")
TRAINING_STATE = "train:"


def training_state(name: str, params) -> bool:
    """Whether a checkpoint array is optimizer or training state rather than a weight of ``params``."""
    if name.startswith(TRAINING_STATE):
        return True
    param, _, suffix = name.rpartition(".")
    return suffix in OPTIMIZER_BUFFERS and param in params


def lower_nodes(
    graph,
    opset: int,
    seed: int = 0,
    weights: dict | None = None,
    dtype=np.float32,
    training: bool = False,
    partial: bool = False,
) -> Builder:
    """Run every layer's ``lower`` rule in IR order; returns the builder holding the nodes.
    With ``partial``, ``weights`` may lack some names: those come from the seed
    (``Builder.initialised`` lists them)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise CnnError(f"--opset {opset} is not supported; choose {MIN_OPSET} to {MAX_OPSET}", code="E080")
    b = Builder(graph, opset, dtype, seed, weights, training)
    b.partial = partial
    for node in graph.nodes[1:]:
        b.layer = node.name
        b.node = node
        CATALOGUE[node.kind].lower(b, node, [b.tensor(i) for i in node.inputs], b.tensor(node.id))
    problems = []
    if weights is not None:
        extra = sorted(n for n in set(weights) - b.used_weights if not training_state(n, b.used_weights))
        if b.missing:
            problems.append("missing: " + ", ".join(b.missing))
        if extra:
            problems.append("not in the network: " + ", ".join(extra))
        if b.misshaped:
            problems.append("wrong shape: " + "; ".join(b.misshaped))
        if problems:
            raise CnnError("the weights file does not fit the network: " + " | ".join(problems), code="E081")
    return b


def assemble(b: Builder, inputs, outputs, value_info=(), metadata: dict | None = None, initializers=None):
    """The ModelProto of the builder's nodes and initializers, built in place:
    make_graph/make_model would copy every weight twice."""
    import onnx
    from onnx import helper

    from cnndsl.version import __version__

    model = onnx.ModelProto()
    model.ir_version = ONNX_IR_VERSION[b.opset]
    model.producer_name = PRODUCER
    model.producer_version = __version__
    model.opset_import.append(helper.make_opsetid("", b.opset))
    g = model.graph
    g.name = b.graph.network
    g.node.extend(b.nodes)
    g.input.extend(inputs)
    g.output.extend(outputs)
    g.value_info.extend(value_info)
    for name, arr in b.initializers if initializers is None else initializers:
        arr = np.asarray(arr, order="C")  # (ascontiguousarray would make scalars 1-D)
        t = g.initializer.add()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        t.raw_data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    props = {"cnndsl.version": __version__, "cnndsl.network": b.graph.network, "cnndsl.source": b.graph.file}
    props.update(metadata or {})
    helper.set_model_props(model, {k: _utf8(v) for k, v in props.items()})
    return model


def _utf8(text: str) -> str:
    """Text a protobuf string field accepts. A file name that is not UTF-8 reaches
    Python with its bytes as lone surrogates (PEP 383), which protobuf refuses:
    such bytes become U+FFFD, as a file manager shows them."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# The IR version that goes with each opset (onnx/helper.py VERSION_TABLE).
ONNX_IR_VERSION = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
