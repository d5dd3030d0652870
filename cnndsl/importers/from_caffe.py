"""Caffe ``.prototxt`` network definitions to the import intermediate form.

The protobuf text format is parsed here (it is small: ``name: value`` fields and
``name { ... }`` messages; repeated fields repeat). Blobs are tracked by name, so
in-place layers (``top == bottom``: ReLU, Dropout, BatchNorm, Scale) chain on.
Caffe's pooling rounds up, which is the language's ``ceil``; a ``BatchNorm``
followed by a ``Scale`` is one ``bn`` (2·C trainable, 2·C running statistics).
"""

from __future__ import annotations

import re
from pathlib import Path

from cnndsl.errors import CnnError, Span, did_you_mean
from cnndsl.importers.form import SourceLayer, SourceNet, read_text

_TOKEN = re.compile(
    r'\s+|#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')|(?P<punct>[{}:<>\[\],;])'
    r"|(?P<word>[A-Za-z0-9_.+\-]+)"
)

TYPES = (
    "Input",
    "Data",
    "Convolution",
    "Deconvolution",
    "Pooling",
    "LRN",
    "InnerProduct",
    "ReLU",
    "PReLU",
    "ELU",
    "Sigmoid",
    "TanH",
    "AbsVal",
    "Dropout",
    "Concat",
    "Eltwise",
    "BatchNorm",
    "Scale",
    "Softmax",
    "Flatten",
    "Split",
)


class Msg:
    """A message: fields in order, each (name, value, span); a value is a str/number or a Msg."""

    def __init__(self, span: Span):
        self.span = span
        self.fields: list[tuple[str, object, Span]] = []

    def all(self, name):
        return [v for k, v, _ in self.fields if k == name]

    def one(self, name, default=None):
        values = self.all(name)
        return values[-1] if values else default

    def span_of(self, name):
        return next((s for k, _, s in self.fields if k == name), self.span)


def parse_prototxt(text: str, file: str) -> Msg:
    tokens = []
    line, line_start = 1, 0
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            col = pos - line_start + 1
            raise CnnError(f"unexpected character {text[pos]!r}", Span(file, line, col, line, col + 1), code="E243")
        kind = m.lastgroup
        if kind:
            col = m.start() - line_start + 1
            tokens.append((kind, m.group(kind), Span(file, line, col, line, col + len(m.group(kind)))))
        chunk = m.group(0)
        if "\n" in chunk:
            line += chunk.count("\n")
            line_start = m.start() + chunk.rindex("\n") + 1
        pos = m.end()
    end = Span(file, line, pos - line_start + 1)
    root = Msg(Span(file, 1, 1))
    stack = [root]
    i = 0

    def tok(k):
        return tokens[k] if k < len(tokens) else ("eof", "end of file", end)

    while i < len(tokens):
        kind, value, span = tokens[i]
        if kind == "punct" and value == "}":
            if len(stack) == 1:
                raise CnnError("unexpected '}' without a matching '{'", span, code="E243")
            stack.pop()
            i += 1
            continue
        if kind == "punct" and value in ",;":
            i += 1
            continue
        if kind != "word":
            raise CnnError(f"expected a field name; received {value!r}", span, code="E243")
        i += 1
        k2, v2, s2 = tok(i)
        if k2 == "punct" and v2 == ":":
            i += 1
            k2, v2, s2 = tok(i)
        if k2 == "punct" and v2 in "{<":
            msg = Msg(span)
            stack[-1].fields.append((value, msg, span))
            stack.append(msg)
            i += 1
            continue
        if k2 == "str":
            stack[-1].fields.append((value, v2[1:-1], s2))
        elif k2 == "word":
            stack[-1].fields.append((value, _number(v2), s2))
        else:
            raise CnnError(f"expected a value or '{{' after {value}; received {v2!r}", s2, code="E243")
        i += 1
    if len(stack) > 1:
        raise CnnError(f"'{{' of {stack[-1].span.line}:{stack[-1].span.column} is never closed", end, code="E243")
    return root


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # an enum value: MAX, SUM, true ...


def read_caffe(path: Path) -> SourceNet:
    text = read_text(path)
    root = parse_prototxt(text, str(path))
    if root.all("layers"):
        raise CnnError(
            "the V1 'layers { }' format is not supported; upgrade the file with Caffe's upgrade_net_proto_text",
            root.span_of("layers"),
            code="E245",
        )
    blobs: dict[str, str] = {}  # blob -> producing layer ("input" for the data)
    shape = None
    inputs = root.all("input")
    if inputs:
        blobs[inputs[0]] = "input"
        dims = root.all("input_dim")
        shapes = root.all("input_shape")
        if shapes:
            dims = shapes[0].all("dim")
        if len(dims) < 2:
            raise CnnError(
                "input needs input_shape { dim: ... } or input_dim fields", root.span_of("input"), code="E247"
            )
        where = root if root.all("input_dim") and not shapes else shapes[0]
        shape = tuple(_one_int(where, "dim" if shapes else "input_dim", d) for d in dims[1:])
    r = _Reader(blobs)
    for layer in root.all("layer"):
        if not isinstance(layer, Msg):
            raise CnnError("layer must be a message: layer { ... }", root.span_of("layer"), code="E243")
        got = r.layer(layer, shape)
        if got is not None:
            shape = got
    if shape is None:
        raise CnnError(
            "no input shape: expected input/input_shape, input_dim, or an Input layer", root.span, code="E247"
        )
    name = root.one("name", path.stem)
    return SourceNet(str(name), shape, r.layers, notes=["Caffe layer names are in the comments"])


def _get(msg: Msg, name: str, default, type_):
    """A numeric field, with a diagnostic at the value when it is not a number."""
    value = msg.one(name, default)
    if isinstance(value, (Msg, bool)) or (type_ is int and isinstance(value, float)):
        value = str(value)
    try:
        return type_(value)
    except (TypeError, ValueError):
        what = "an integer" if type_ is int else "a number"
        raise CnnError(f"{name} must be {what}; received {name}: {value}", msg.span_of(name), code="E243") from None


def _ints(msg: Msg, name: str, default):
    return [_one_int(msg, name, v) for v in msg.all(name)] or default


def _one_int(msg: Msg, name: str, value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CnnError(f"{name} must be an integer; received {name}: {value}", msg.span_of(name), code="E243")


def _spatial(p: Msg, base: str, default):
    """kernel_size / kernel_h+kernel_w style fields (pad, stride too) as an int or HxW."""
    h, w = p.one(f"{base}_h"), p.one(f"{base}_w")
    if h is not None or w is not None:
        return (
            _one_int(p, f"{base}_h", h if h is not None else default),
            _one_int(p, f"{base}_w", w if w is not None else default),
        )
    name = {"kernel": "kernel_size"}.get(base, base)
    values = _ints(p, name, [default])
    if len(values) > 2:
        return tuple(values)
    return values[0] if len(values) == 1 or values[0] == values[1] else tuple(values)


class _Reader:
    def __init__(self, blobs):
        self.blobs = blobs
        self.layers: list[SourceLayer] = []
        self.pending_bn: SourceLayer | None = None

    def add(self, name, kind, args, kw, bottoms, tops, span):
        layer = SourceLayer(name, kind, args, kw, [self.blobs[b] for b in bottoms], span)
        self.layers.append(layer)
        for t in tops:
            self.blobs[t] = name
        return layer

    def layer(self, m: Msg, shape):
        name = str(m.one("name", f"layer{len(self.layers)}"))
        typ = m.one("type")
        span = m.span_of("type")
        tops = [str(t) for t in m.all("top")]
        bottoms = [str(b) for b in m.all("bottom")]
        if typ == "Input":
            p = m.one("input_param") or Msg(span)
            dims = (p.one("shape") or Msg(span)).all("dim")
            if len(dims) < 2:
                raise CnnError(f"Input layer {name} needs input_param {{ shape {{ dim: ... }} }}", span, code="E247")
            for t in tops:
                self.blobs[t] = "input"
            return tuple(_one_int(p, "dim", d) for d in dims[1:])
        if typ not in TYPES:
            raise CnnError(
                f"layer {name}: unknown or unsupported Caffe layer type {typ!r}{did_you_mean(str(typ), TYPES)}",
                span,
                code="E244",
            )
        for b in bottoms:
            if b not in self.blobs:
                raise CnnError(
                    f"layer {name} reads blob {b!r}, which no layer before it produces",
                    m.span_of("bottom"),
                    code="E246",
                )
        if typ != "Split" and (not bottoms or not tops):
            raise CnnError(f"layer {name} ({typ}) needs bottom and top", span, code="E246")

        def unsupported(what):
            raise CnnError(f"layer {name} ({typ}): {what} has no equivalent in the language", span, code="E245")

        if typ in ("Convolution", "Deconvolution"):
            p = m.one("convolution_param") or Msg(span)
            args = [
                _get(p, "num_output", 0, int),
                _spatial(p, "kernel", 1),
                _spatial(p, "stride", 1),
                _spatial(p, "pad", 0),
            ]
            kw = {}
            if _get(p, "group", 1, int) != 1:
                kw["groups"] = _get(p, "group", 1, int)
            dil = _ints(p, "dilation", [1])
            if dil != [1]:
                kw["dilation"] = dil[0] if len(dil) == 1 else tuple(dil)
            if str(p.one("bias_term", "true")) == "false":
                kw["bias"] = False
            self.add(name, "conv" if typ == "Convolution" else "deconv", args, kw, bottoms[:1], tops, span)
        elif typ == "Pooling":
            p = m.one("pooling_param") or Msg(span)
            method = str(p.one("pool", "MAX"))
            if method not in ("MAX", "AVE"):
                unsupported(f"pool: {method}")
            if str(p.one("global_pooling", "false")) == "true":
                self.add(name, "gmp" if method == "MAX" else "gap", [], {}, bottoms, tops, span)
            else:
                f = _spatial(p, "kernel", 1)
                args = [f, _spatial(p, "stride", 1), _spatial(p, "pad", 0)]
                # Caffe rounds the output size up; its average pooling counts the padding
                kw = {"ceil": True}
                if method == "AVE" and args[2] != 0:
                    kw["count_pad"] = True
                self.add(name, "maxpool" if method == "MAX" else "avgpool", args, kw, bottoms, tops, span)
        elif typ == "LRN":
            p = m.one("lrn_param") or Msg(span)
            if str(p.one("norm_region", "ACROSS_CHANNELS")) != "ACROSS_CHANNELS":
                unsupported("norm_region: WITHIN_CHANNEL")
            kw = {
                "alpha": _get(p, "alpha", 1.0, float),
                "beta": _get(p, "beta", 0.75, float),
                "k": _get(p, "k", 1.0, float),
            }
            self.add(name, "lrn", [_get(p, "local_size", 5, int)], kw, bottoms, tops, span)
        elif typ == "InnerProduct":
            p = m.one("inner_product_param") or Msg(span)
            kw = {"bias": False} if str(p.one("bias_term", "true")) == "false" else {}
            self.add(name, "fc", [_get(p, "num_output", 0, int)], kw, bottoms, tops, span)
        elif typ == "ReLU":
            slope = _get((m.one("relu_param") or Msg(span)), "negative_slope", 0.0, float)
            self.add(name, "leaky_relu" if slope else "relu", [slope] if slope else [], {}, bottoms, tops, span)
        elif typ in ("PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "Softmax", "Flatten"):
            kind = {
                "PReLU": "prelu",
                "ELU": "elu",
                "Sigmoid": "sigmoid",
                "TanH": "tanh",
                "AbsVal": "abs",
                "Softmax": "softmax",
                "Flatten": "flatten",
            }[typ]
            self.add(name, kind, [], {}, bottoms, tops, span)
        elif typ == "Dropout":
            ratio = _get((m.one("dropout_param") or Msg(span)), "dropout_ratio", 0.5, float)
            self.add(name, "dropout", [ratio], {}, bottoms, tops, span)
        elif typ == "Concat":
            p = m.one("concat_param") or Msg(span)
            if _get(p, "axis", _get(p, "concat_dim", 1, int), int) != 1:
                unsupported("concatenation along an axis other than channels")
            self.add(name, "concat", [], {}, bottoms, tops, span)
        elif typ == "Eltwise":
            p = m.one("eltwise_param") or Msg(span)
            op = str(p.one("operation", "SUM"))
            if op == "MAX":
                unsupported("operation: MAX (the language has add and mul)")
            if any(not isinstance(c, (int, float)) or float(c) != 1.0 for c in p.all("coeff")):
                unsupported("coeff other than 1")
            self.add(name, "add" if op == "SUM" else "mul", [], {}, bottoms, tops, span)
        elif typ == "BatchNorm":
            p = m.one("batch_norm_param") or Msg(span)
            eps = _get(p, "eps", 1e-5, float)
            self.pending_bn = self.add(name, "bn", [], {"eps": eps} if eps != 1e-5 else {}, bottoms, tops, span)
        elif typ == "Scale":
            bn = self.pending_bn
            if bn is None or self.blobs.get(bottoms[0]) != bn.name:
                unsupported("a Scale that does not follow a BatchNorm")
            for t in tops:
                self.blobs[t] = bn.name
            self.pending_bn = None
        elif typ == "Split":
            for t in tops:
                self.blobs[t] = self.blobs[bottoms[0]]
        elif typ == "Data":
            raise CnnError(
                f"layer {name}: a Data layer reads a database; use a deploy prototxt with an Input "
                "layer or input_shape",
                span,
                code="E247",
            )
        return None
