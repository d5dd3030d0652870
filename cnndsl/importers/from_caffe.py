"""Caffe ``.prototxt`` network definitions to the import intermediate form.

Deploy files, train_val/train_test files and the V1 ``layers { }`` format are
read (:mod:`cnndsl.importers.prototxt` parses the text). A training file becomes
the deploy network: the layers of the TEST phase (``include``/``exclude``), the
data layers replaced by the network input, loss and accuracy layers dropped (the
value they read becomes an output). Blobs are tracked by name, so in-place layers
(``top == bottom``: ReLU, Dropout, BatchNorm, Scale) chain on.

Every field of a layer is honoured, refused (an error when ignoring it would
change the figures) or reported with a warning naming it and its line; the only
fields passed over in silence are those that cannot change inference (learning
rates, fillers, engines: :data:`SILENT`), as docs/import.md lists them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cnndsl.errors import CnnError, Diagnostic, Span, did_you_mean
from cnndsl.importers.form import SourceChannels, SourceLayer, SourceNet, SourceRef, read_text
from cnndsl.importers.prototxt import Msg, parse_prototxt

UNSUPPORTED, NO_BLOB, NO_INPUT, UNKNOWN, IGNORED = "E245", "E246", "E247", "E244", "W240"

# Fields that do not change the network's inference (training, initialisation, implementation).
SILENT = {
    "param",
    "blobs_lr",
    "weight_decay",
    "weight_filler",
    "bias_filler",
    "filler",
    "engine",
    "loss_weight",
    "propagate_down",
    "force_nd_im2col",
    "use_global_stats",
    "moving_average_fraction",
    "stable_prod_grad",
}
# Top-level fields: the network's name, its inputs, solver-side state.
TOP_LEVEL = {"name", "layer", "layers", "input", "input_dim", "input_shape", "force_backward", "state", "debug_info"}
DATA = ("Input", "Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData", "AnnotatedData")
DROPPED = (
    "SoftmaxWithLoss",
    "EuclideanLoss",
    "SigmoidCrossEntropyLoss",
    "HingeLoss",
    "InfogainLoss",
    "MultinomialLogisticLoss",
    "ContrastiveLoss",
    "Accuracy",
    "Silence",
)
# V1's LayerType enum (caffe.proto, V1LayerParameter) to the current type names.
V1_TYPES = {
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
    "ARGMAX": "ArgMax",
}
ELEMENTWISE = {"PReLU": "prelu", "Sigmoid": "sigmoid", "TanH": "tanh", "AbsVal": "abs", "ReLU6": "relu6"}


def read_caffe(path: Path, input_shape: tuple | None = None) -> SourceNet:
    """The network of a Caffe prototxt; ``input_shape`` (CxHxW, ``--input``) overrides the file's."""
    text = read_text(path)
    root = parse_prototxt(text, str(path))
    if root.has("layer") and root.has("layers"):
        raise CnnError(
            "a file has either layer { } (current format) or layers { } (V1), not both",
            root.span_of("layers"),
            code=UNSUPPORTED,
        )
    v1 = root.has("layers")
    r = _Reader(input_shape, v1)
    r.top_input(root)
    for m in root.all("layers" if v1 else "layer"):
        if not isinstance(m, Msg):
            raise CnnError("layer must be a message: layer { ... }", root.span_of("layer"), code="E243")
        r.layer(m)
    for k, _, span in root.fields:
        if k not in TOP_LEVEL:
            r.warn(f"field {k} is not read", span)
    shape = input_shape or r.shape
    if shape is None:
        raise CnnError(
            "no input shape: expected input/input_shape, input_dim, or an Input layer"
            + (" (a data layer's size is not in the file: give it with --input CxHxW)" if r.data_layer else ""),
            r.data_layer.span if r.data_layer else root.span,
            code=NO_INPUT,
        )
    name = root.one("name", path.stem)
    notes = ["Caffe layer names are in the comments"] + r.notes
    outputs = [o for o in dict.fromkeys(r.loss_inputs) if o != "input"]
    if outputs and r.layers and r.layers[-1].name not in outputs and not _read_later(r.layers, r.layers[-1].name):
        outputs.append(r.layers[-1].name)
    layers, folded = _fold_hard_activations(r.layers, outputs)
    if folded:
        notes.append(f"{folded} Power/ReLU6/Power patterns read as hardsigmoid or hardswish")
    net = SourceNet(str(name), tuple(shape), layers, outputs, notes=notes)
    net.warnings = r.warnings
    return net


def _consume(m: Msg):
    m.used.update(k for k, _, _ in m.fields)
    for _, v, _ in m.fields:
        if isinstance(v, Msg):
            _consume(v)


def _read_later(layers, name) -> bool:
    return any(name in x.inputs for x in layers)


def _spatial(p: Msg, base: str, default):
    """kernel_size / kernel_h+kernel_w style fields (pad, stride too) as an int or HxW."""
    h, w = p.one(f"{base}_h"), p.one(f"{base}_w")
    name = {"kernel": "kernel_size"}.get(base, base)
    if h is not None or w is not None:
        p.all(name)
        return (p.int(f"{base}_h", default), p.int(f"{base}_w", default))
    values = p.ints(name) or [default]
    if len(values) > 2:
        return tuple(values)
    return values[0] if len(values) == 1 or values[0] == values[1] else tuple(values)


class _Layer:
    """One Caffe layer being read: its message, name, type, blobs and span."""

    def __init__(self, m: Msg, typ: str, index: int):
        self.m = m
        self.typ = typ
        self.name = str(m.one("name", f"layer{index}"))
        self.span = m.span_of("type")
        self.tops = [str(t) for t in m.all("top")]
        self.bottoms = [str(b) for b in m.all("bottom")]

    def refuse(self, what: str, field: str | None = None, where: Msg | None = None):
        span = (where or self.m).span_of(field) if field else self.span
        raise CnnError(
            f"layer {self.name} ({self.typ}): {what} has no equivalent in the language", span, code=UNSUPPORTED
        )


class _Reader:
    def __init__(self, input_shape, v1: bool):
        self.given = input_shape
        self.v1 = v1
        self.blobs: dict[str, str] = {}  # blob -> producing layer ("input" for the data)
        self.labels: set[str] = set()  # blobs of a data layer other than the data (labels)
        self.layers: list[SourceLayer] = []
        self.shape = None
        self.data_layer: _Layer | None = None
        self.loss_inputs: list[str] = []
        self.bn: dict[str, SourceLayer] = {}  # blob -> the bn producing it, awaiting its Scale
        self.warnings: list[Diagnostic] = []
        self.notes: list[str] = []
        self.taken: set[str] = set()

    def warn(self, text: str, span: Span | None):
        self.warnings.append(Diagnostic("warning", text, span, [], IGNORED))

    # ---- the network input
    def top_input(self, root: Msg):
        inputs = root.all("input")
        if not inputs:
            return
        self.blobs[str(inputs[0])] = "input"
        shapes = root.all("input_shape")
        if shapes:
            where, dims = shapes[0], shapes[0].ints("dim")
        else:
            where, dims = root, root.ints("input_dim")
        if len(dims) < 2:
            raise CnnError(
                "input needs input_shape { dim: ... } or input_dim fields", root.span_of("input"), code=NO_INPUT
            )
        self.set_shape(tuple(dims[1:]), where.span_of("dim" if shapes else "input_dim"))
        for extra in inputs[1:]:
            raise CnnError(
                f"a second network input {extra!r}: cnndsl networks have one input", root.span, code=UNSUPPORTED
            )

    def set_shape(self, shape, span):
        if any(d < 1 for d in shape):
            raise CnnError(f"input dimensions must be at least 1; received {shape}", span, code=NO_INPUT)
        if self.shape is None:
            self.shape = shape

    # ---- phases
    @staticmethod
    def in_test_phase(m: Msg) -> bool:
        """Caffe's NetStateRule for the TEST phase: included by any ``include`` that matches
        (none given: included), excluded by any ``exclude`` that matches; ``phase`` of the layer too."""
        if m.has("phase"):
            return m.word("phase", "TEST") == "TEST"

        def matches(rule):
            return isinstance(rule, Msg) and rule.word("phase", "TEST") == "TEST"

        includes, excludes = m.all("include"), m.all("exclude")
        if includes and not any(matches(r) for r in includes):
            return False
        return not any(matches(r) for r in excludes)

    # ---- one layer
    def layer(self, m: Msg):
        typ = m.one("type")
        if self.v1:
            typ = V1_TYPES.get(str(typ), typ)
        if not isinstance(typ, str):
            raise CnnError('a layer needs type: "..."', m.span, code=UNKNOWN)
        if not self.in_test_phase(m):
            for rule in m.all("include") + m.all("exclude"):
                if isinstance(rule, Msg):
                    rule.all("phase")
            return
        x = _Layer(m, typ, len(self.layers))
        for rule in m.all("include") + m.all("exclude"):
            if isinstance(rule, Msg):
                rule.all("phase")
                for f, span in rule.unread():
                    self.warn(f"layer {x.name}: {f} of include/exclude is not read (only the phase)", span)
        if typ in DROPPED:
            self.loss_inputs += [self.blobs[b] for b in x.bottoms[:1] if b in self.blobs and b not in self.labels]
            _consume(m)  # the whole layer is dropped
            self.notes.append(f"{typ} layer {x.name} left out (training only)")
            return
        handler = HANDLERS.get(typ)
        if handler is None:
            raise CnnError(
                f"layer {x.name}: unknown or unsupported Caffe layer type {typ!r}{did_you_mean(typ, HANDLERS)}",
                x.span,
                code=UNKNOWN,
            )
        if typ not in DATA:
            for b in x.bottoms:
                if b in self.labels:
                    x.refuse(f"reading the data layer's labels ({b})", "bottom")
                if b not in self.blobs:
                    raise CnnError(
                        f"layer {x.name} reads blob {b!r}, which no layer before it produces",
                        m.span_of("bottom"),
                        code=NO_BLOB,
                    )
            if typ != "Split" and (not x.bottoms or not x.tops):
                raise CnnError(f"layer {x.name} ({typ}) needs bottom and top", x.span, code=NO_BLOB)
        handler(self, x)
        if typ in DATA:
            _consume(m)  # the source of the data, its batch, its augmentation: not the network
        for path_, span in m.unread():
            if path_.split(".")[-1] not in SILENT:
                self.warn(f"layer {x.name} ({typ}): field {path_} is not read", span)

    def add(self, x: _Layer, kind, args=(), kw=None, bottoms=None, name=None, tops=None):
        name = name or x.name
        if name in self.taken:
            raise CnnError(f"two layers are named {name}", x.span, code="E242")
        self.taken.add(name)
        bottoms = x.bottoms[:1] if bottoms is None else bottoms
        layer = SourceLayer(name, kind, list(args), dict(kw or {}), [self.blobs[b] for b in bottoms], x.span)
        self.layers.append(layer)
        for t in x.tops if tops is None else tops:
            self.blobs[t] = name
            self.bn.pop(t, None)
        return layer


# --------------------------------------------------------------------------- the layer types


def _data(r: _Reader, x: _Layer):
    """A data layer: its first top is the network input, the others (labels) are read by losses only."""
    m = x.m
    r.data_layer = r.data_layer or x
    for i, t in enumerate(x.tops):
        if i == 0:
            r.blobs[t] = "input"
        else:
            r.labels.add(t)
    shape = None
    if x.typ == "Input":
        shapes = m.sub("input_param").all("shape")
        dims = shapes[0].ints("dim") if shapes and isinstance(shapes[0], Msg) else []
        if len(dims) < 2:
            raise CnnError(f"Input layer {x.name} needs input_param {{ shape {{ dim: ... }} }}", x.span, code=NO_INPUT)
        shape = tuple(dims[1:])
    elif x.typ == "DummyData":
        p = m.sub("dummy_data_param")
        shapes = p.all("shape")
        if shapes and isinstance(shapes[0], Msg):
            shape = tuple(shapes[0].ints("dim")[1:])
        elif p.has("channels"):
            shape = (p.ints("channels")[0], p.ints("height")[0], p.ints("width")[0])
    elif x.typ == "MemoryData":
        p = m.sub("memory_data_param")
        shape = (p.int("channels", 0), p.int("height", 0), p.int("width", 0))
    else:
        t = m.sub("transform_param")
        t.all("mirror"), t.all("mean_file"), t.all("mean_value"), t.all("scale")  # values, not sizes
        crop = t.int("crop_size", 0)
        channels = 3
        if x.typ == "ImageData":
            p = m.sub("image_data_param")
            channels = 3 if p.flag("is_color", True) else 1
            if not crop and p.int("new_height", 0) and p.int("new_width", 0):
                shape = (channels, p.int("new_height", 0), p.int("new_width", 0))
        if t.flag("force_gray", False):
            channels = 1
        if crop:
            shape = (channels, crop, crop)
        if shape is not None and r.given is None:
            r.warn(
                f"data layer {x.name}: the input's channels are not in the file; read as {channels} "
                f"(--input CxHxW gives them)",
                x.span,
            )
            r.notes.append(f"input {'x'.join(map(str, shape))} from data layer {x.name} (channels assumed)")
    if shape is not None and r.given is None:
        r.set_shape(shape, x.span)


def _conv(r: _Reader, x: _Layer):
    p = x.m.sub("convolution_param")
    if p.int("axis", 1) != 1:
        x.refuse("convolution along an axis other than 1", "axis", p)
    args = [p.int("num_output", 0), _spatial(p, "kernel", 1), _spatial(p, "stride", 1), _spatial(p, "pad", 0)]
    kw = {}
    if p.int("group", 1) != 1:
        kw["groups"] = p.int("group", 1)
    dil = p.ints("dilation") or [1]
    if dil != [1]:
        kw["dilation"] = dil[0] if len(set(dil)) == 1 else tuple(dil)
    if not p.flag("bias_term", True):
        kw["bias"] = False
    r.add(x, "conv" if x.typ == "Convolution" else "deconv", args, kw)


def _pool(r: _Reader, x: _Layer):
    p = x.m.sub("pooling_param")
    method = p.word("pool", "MAX")
    if method not in ("MAX", "AVE"):
        x.refuse(f"pool: {method}", "pool", p)
    if p.flag("global_pooling", False):
        for f in ("kernel_size", "kernel_h", "kernel_w", "stride", "stride_h", "stride_w", "pad", "pad_h", "pad_w"):
            p.all(f)  # Caffe ignores them for a global pooling
        r.add(x, "gmp" if method == "MAX" else "gap")
        return
    args = [_spatial(p, "kernel", 1), _spatial(p, "stride", 1), _spatial(p, "pad", 0)]
    # BVLC's round_mode (CEIL by default) and the forks' ceil_mode: Caffe's ceil also drops a
    # last window that would start in the padding, which is exactly the language's `ceil`
    if p.has("round_mode") and p.has("ceil_mode"):
        x.refuse("round_mode together with ceil_mode", "ceil_mode", p)
    mode = p.word("round_mode", "CEIL")
    if mode not in ("CEIL", "FLOOR"):
        raise CnnError(f"round_mode must be CEIL or FLOOR; received {mode}", p.span_of("round_mode"), code="E243")
    ceil = p.flag("ceil_mode", mode == "CEIL")
    kw = {"ceil": True} if ceil else {}
    if method == "AVE" and args[2] != 0:
        kw["count_pad"] = True  # Caffe's average counts the padding
    r.add(x, "maxpool" if method == "MAX" else "avgpool", args, kw)


def _lrn(r: _Reader, x: _Layer):
    p = x.m.sub("lrn_param")
    region = p.word("norm_region", "ACROSS_CHANNELS")
    size = p.int("local_size", 5)
    kw = {"alpha": p.number("alpha", 1.0), "beta": p.number("beta", 0.75)}
    if region == "WITHIN_CHANNEL":
        if size % 2 == 0:
            x.refuse("an even local_size within the channel (Caffe refuses it too)", "local_size", p)
        kw["region"] = "within"  # Caffe uses 1 for k here (its k field is not read: a warning)
    elif region == "ACROSS_CHANNELS":
        kw["k"] = p.number("k", 1.0)
    else:
        raise CnnError(f"unknown norm_region {region}", p.span_of("norm_region"), code="E243")
    r.add(x, "lrn", [size], kw)


def _fc(r: _Reader, x: _Layer):
    p = x.m.sub("inner_product_param")
    if p.int("axis", 1) != 1:
        x.refuse("an inner product from an axis other than 1", "axis", p)
    if p.flag("transpose", False):
        x.refuse("transpose: true (the weights' layout only; the figures are equal)", "transpose", p)
    r.add(x, "fc", [p.int("num_output", 0)], {} if p.flag("bias_term", True) else {"bias": False})


def _relu(r: _Reader, x: _Layer):
    slope = x.m.sub("relu_param").number("negative_slope", 0.0)
    r.add(x, "leaky_relu" if slope else "relu", [slope] if slope else [])


def _elu(r: _Reader, x: _Layer):
    alpha = x.m.sub("elu_param").number("alpha", 1.0)
    r.add(x, "elu", [], {"alpha": alpha} if alpha != 1.0 else {})


def _elementwise(r: _Reader, x: _Layer):
    if x.typ == "PReLU" and x.m.sub("prelu_param").flag("channel_shared", False):
        x.refuse("channel_shared: true (one slope for all channels)", "prelu_param")
    r.add(x, ELEMENTWISE[x.typ])


def _softmax(r: _Reader, x: _Layer):
    if x.m.sub("softmax_param").int("axis", 1) != 1:
        x.refuse("softmax along an axis other than the channels", "softmax_param")
    r.add(x, "softmax")


def _flatten(r: _Reader, x: _Layer):
    p = x.m.sub("flatten_param")
    if p.int("axis", 1) != 1 or p.int("end_axis", -1) != -1:
        x.refuse("flattening other axes than 1 to the end", "flatten_param")
    r.add(x, "flatten")


def _reshape(r: _Reader, x: _Layer):
    p = x.m.sub("reshape_param")
    dims = p.sub("shape").ints("dim")
    if p.int("axis", 0) != 0 or p.int("num_axes", -1) != -1 or len(dims) != 2 or dims[0] not in (0, 1) or dims[1] != -1:
        x.refuse("a Reshape other than to a vector (shape { dim: 0 dim: -1 })", "reshape_param")
    r.add(x, "flatten")


def _dropout(r: _Reader, x: _Layer):
    p = x.m.sub("dropout_param")
    if not p.flag("scale_train", True):
        x.refuse("scale_train: false (inference multiplies by 1 − ratio)", "scale_train", p)
    r.add(x, "dropout", [p.number("dropout_ratio", 0.5)])


def _concat(r: _Reader, x: _Layer):
    p = x.m.sub("concat_param")
    if p.int("axis", p.int("concat_dim", 1)) != 1:
        x.refuse("concatenation along an axis other than channels", "concat_param")
    r.add(x, "concat", bottoms=x.bottoms)


def _eltwise(r: _Reader, x: _Layer):
    p = x.m.sub("eltwise_param")
    op = p.word("operation", "SUM")
    if op not in ("SUM", "PROD"):
        x.refuse(f"operation: {op} (the language has add and mul)", "operation", p)
    if any(not isinstance(c, (int, float)) or float(c) != 1.0 for c in p.all("coeff")):
        x.refuse("coeff other than 1", "coeff", p)
    r.add(x, "add" if op == "SUM" else "mul", bottoms=x.bottoms)


def _batchnorm(r: _Reader, x: _Layer):
    eps = x.m.sub("batch_norm_param").number("eps", 1e-5)
    layer = r.add(x, "bn", [], {"eps": eps} if eps != 1e-5 else {})
    for t in x.tops:
        r.bn[t] = layer


def _scale(r: _Reader, x: _Layer):
    """After a BatchNorm: its γ and β (one ``bn``); with two bottoms: a product (SE's gate);
    alone it is refused (docs/import.md)."""
    p = x.m.sub("scale_param")
    if p.int("axis", 1) != 1 or p.int("num_axes", 1) != 1:
        x.refuse("a Scale over other axes than the channels", "scale_param")
    bias = p.flag("bias_term", False)
    if len(x.bottoms) == 2:
        if bias:
            x.refuse("bias_term with a second bottom", "bias_term", p)
        r.add(x, "mul", bottoms=x.bottoms)
        return
    bn = r.bn.get(x.bottoms[0])
    if bn is not None:
        if not bias:
            r.warn(
                f"layer {x.name} (Scale) without bias_term after BatchNorm {bn.name}: written as bn, "
                "which has β too (C trainable parameters more than the source)",
                x.span,
            )
        r.bn.pop(x.bottoms[0])
        for t in x.tops:
            r.blobs[t] = bn.name
        return
    x.refuse("a Scale that does not follow a BatchNorm (and has one bottom)")


def _split(r: _Reader, x: _Layer):
    for t in x.tops:
        r.blobs[t] = r.blobs[x.bottoms[0]]


def _slice(r: _Reader, x: _Layer):
    """Each top is ``slice FROM/TO`` of the channels; the last part ends at the channel count,
    and without slice_point the channels divide equally (both resolved once shapes are known)."""
    p = x.m.sub("slice_param")
    if p.int("axis", p.int("slice_dim", 1)) != 1:
        x.refuse("a Slice along an axis other than channels", "slice_param")
    points = p.ints("slice_point")
    if points and len(points) != len(x.tops) - 1:
        raise CnnError(
            f"layer {x.name} (Slice): {len(points)} slice_point for {len(x.tops)} tops; expected {len(x.tops) - 1}",
            p.span_of("slice_point"),
            code="E243",
        )
    n = len(x.tops)
    for i, t in enumerate(x.tops):
        if points:
            start = points[i - 1] if i else 0
            end = points[i] if i < len(points) else SourceChannels(1)
        else:
            start, end = (SourceChannels(i, n) if i else 0), SourceChannels(i + 1, n)
        r.add(x, "slice", [start, end], name=f"{x.name}_{i}" if len(x.tops) > 1 else x.name, tops=[t])


def _crop(r: _Reader, x: _Layer):
    p = x.m.sub("crop_param")
    if len(x.bottoms) != 2:
        x.refuse("a Crop without the second bottom that gives the size", "bottom")
    if p.int("axis", 2) != 2:
        x.refuse("cropping from an axis other than 2 (the spatial axes)", "axis", p)
    offsets = p.ints("offset") or [0]
    kw = {"to": SourceRef(r.blobs[x.bottoms[1]])}
    if any(offsets):
        kw["offset"] = offsets[0] if len(set(offsets)) == 1 else tuple(offsets)
    r.add(x, "crop", [], kw)


def _power(r: _Reader, x: _Layer):
    p = x.m.sub("power_param")
    power, scale, shift = p.number("power", 1.0), p.number("scale", 1.0), p.number("shift", 0.0)
    kw = {k: v for k, v, d in (("scale", scale, 1.0), ("shift", shift, 0.0)) if v != d}
    r.add(x, "power", [power] if power != 1.0 else [], kw)


def _clip(r: _Reader, x: _Layer):
    p = x.m.sub("clip_param")
    lo, hi = p.number("min", None), p.number("max", None)
    if (lo, hi) != (0.0, 6.0):
        x.refuse(f"clip_param min: {lo} max: {hi} (only 0 and 6, relu6, has an equivalent)", "clip_param")
    r.add(x, "relu6")


def _fold_hard_activations(layers: list, outputs: list) -> tuple[list, int]:
    """MobileNetV3's activations as Caffe files write them, folded: Power(scale k, shift s), ReLU6
    (or Clip 0..6), Power(scale 1/6) is relu6(k·x + s)/6, ``hardsigmoid alpha=k/6 beta=s/6``; an
    Eltwise PROD of x and hardsigmoid(x) with torch's 1/6 and 1/2 is ``hardswish``. Only when the
    intermediate values are read by the next step alone. Returns the layers and how many folded."""
    readers = Counter(i for layer in layers for i in layer.inputs)
    readers.update(outputs)
    out: list = []
    folded, i = 0, 0

    def only_reader(a, b) -> bool:
        return b.inputs == [a.name] and readers[a.name] == 1

    def unit_power(layer, **want) -> bool:
        return layer.kind == "power" and layer.args in ([], [1.0]) and all(k in want for k in layer.kw)

    while i < len(layers):
        a = layers[i]
        chain = layers[i : i + 3]
        if (
            len(chain) == 3
            and unit_power(a, scale=1, shift=1)
            and chain[1].kind == "relu6"
            and unit_power(chain[2], scale=1)
            and only_reader(a, chain[1])
            and only_reader(chain[1], chain[2])
            and abs(chain[2].kw.get("scale", 1.0) - 1 / 6) < 1e-6
        ):
            k, s = a.kw.get("scale", 1.0), a.kw.get("shift", 0.0)
            kw = {}
            if abs(k - 1.0) > 1e-6:
                kw["alpha"] = float(f"{k / 6:.7g}")
            if abs(s - 3.0) > 1e-6:
                kw["beta"] = float(f"{s / 6:.7g}")
            out.append(SourceLayer(chain[2].name, "hardsigmoid", [], kw, list(a.inputs), a.span))
            folded += 1
            i += 3
            continue
        out.append(a)
        i += 1
    # x · hardsigmoid(x) -> hardswish
    readers = Counter(i for layer in out for i in layer.inputs)
    readers.update(outputs)
    by_name = {layer.name: layer for layer in out}
    gone = set()
    for k, layer in enumerate(out):
        if layer.kind != "mul" or len(layer.inputs) != 2:
            continue
        for gate, x in (layer.inputs, layer.inputs[::-1]):
            hs = by_name.get(gate)
            if hs is not None and hs.kind == "hardsigmoid" and not hs.kw and hs.inputs == [x] and readers[gate] == 1:
                out[k] = SourceLayer(layer.name, "hardswish", [], {}, [x], layer.span)
                gone.add(gate)
                break
    return [layer for layer in out if layer.name not in gone], folded


def _axpy(r: _Reader, x: _Layer):
    """Axpy (SENet forks): bottoms a (Cx1x1), x, y; top a·x + y: a mul and an add."""
    if len(x.bottoms) != 3:
        x.refuse("an Axpy without its three bottoms (a, x, y)", "bottom")
    a, xx, y = x.bottoms
    prod = r.add(x, "mul", bottoms=[xx, a], name=f"{x.name}_ax", tops=[])
    r.blobs[f"{x.name}/ax"] = prod.name
    r.add(x, "add", bottoms=[f"{x.name}/ax", y])


HANDLERS = {
    **dict.fromkeys(DATA, _data),
    "Convolution": _conv,
    "Deconvolution": _conv,
    "Pooling": _pool,
    "LRN": _lrn,
    "InnerProduct": _fc,
    "ReLU": _relu,
    "ELU": _elu,
    **dict.fromkeys(ELEMENTWISE, _elementwise),
    "Softmax": _softmax,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _dropout,
    "Concat": _concat,
    "Eltwise": _eltwise,
    "BatchNorm": _batchnorm,
    "Scale": _scale,
    "Split": _split,
    "Slice": _slice,
    "Crop": _crop,
    "Power": _power,
    "Axpy": _axpy,
    "Clip": _clip,
}
