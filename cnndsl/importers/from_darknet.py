"""Darknet ``.cfg`` files to the import intermediate form (:mod:`cnndsl.importers.form`).

Sections follow darknet's parser.c: ``[net]`` gives the input, each later
section is one layer numbered from 0, and ``[route]``/``[shortcut]`` refer to
layers by those numbers (negative: relative). Darknet's figures are reproduced:
a ``[maxpool]`` of size F and stride S pads ``padding = F − 1`` in total by
default (its own rule, output ``(W + padding − F)/S + 1``), which is the
language's ``maxpool F/S/same`` (YOLOv3-tiny's 2/1 maxpool keeps 13x13).

Detection heads (``[yolo]``, ``[region]``, ``[detection]``) decode boxes and are
not layers of the language: the tensor entering each one becomes a network
output. ``[cost]`` is the training criterion: it passes its input on.
"""

from __future__ import annotations

from pathlib import Path

from cnndsl.errors import CnnError, Span, did_you_mean
from cnndsl.importers.form import SourceLayer, SourceNet, read_text

ACTIVATIONS = {
    "linear": None,
    "relu": ("relu", []),
    "leaky": ("leaky_relu", [0.1]),
    "logistic": ("sigmoid", []),
    "tanh": ("tanh", []),
    "elu": ("elu", []),
    "relu6": ("relu6", []),
    "swish": ("silu", []),
    "gelu": ("gelu", []),
    "hardswish": ("hardswish", []),
}
SECTIONS = (
    "net",
    "network",
    "convolutional",
    "conv",
    "maxpool",
    "max",
    "avgpool",
    "avg",
    "route",
    "shortcut",
    "upsample",
    "connected",
    "softmax",
    "dropout",
    "yolo",
    "region",
    "detection",
    "cost",
    "deconvolutional",
    "deconv",
    "batchnorm",
)
SHORT = {"convolutional": "conv", "deconvolutional": "deconv", "connected": "fc", "max": "maxpool", "avg": "avgpool"}
HEADS = ("yolo", "region", "detection")


class _Section:
    def __init__(self, kind: str, span: Span):
        self.kind = kind
        self.span = span
        self.options: dict[str, tuple[str, Span]] = {}
        self.used: set[str] = set()

    def get(self, key, default=None, type_=int):
        if key not in self.options:
            return default
        self.used.add(key)
        text, span = self.options[key]
        try:
            return type_(text)
        except ValueError:
            what = "an integer" if type_ is int else "a number" if type_ is float else "a value"
            raise CnnError(f"[{self.kind}] {key} must be {what}; received {key}={text}", span, code="E250") from None


def parse_cfg(text: str, file: str) -> list[_Section]:
    sections: list[_Section] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#")[0].split(";")[0].strip()
        col = len(raw) - len(raw.lstrip()) + 1
        if not line:
            continue
        span = Span(file, no, col, no, col + len(line))
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise CnnError(f"malformed section header {line!r}; expected [name]", span, code="E250")
            kind = line[1:-1].strip().lower()
            if kind not in SECTIONS:
                raise CnnError(f"unknown Darknet section [{kind}]{did_you_mean(kind, SECTIONS)}", span, code="E251")
            sections.append(_Section(kind, span))
        elif "=" in line:
            if not sections:
                raise CnnError("an option before the first [section]", span, code="E250")
            key, value = (s.strip() for s in line.split("=", 1))
            sections[-1].options[key] = (value, span)
        else:
            raise CnnError(f"expected key=value or [section]; received {line!r}", span, code="E250")
    if not sections or sections[0].kind not in ("net", "network"):
        raise CnnError("a Darknet .cfg starts with a [net] section", Span(file, 1, 1), code="E250")
    return sections


def read_darknet(path: Path) -> SourceNet:
    text = read_text(path)
    sections = parse_cfg(text, str(path))
    net = sections[0]
    shape = (net.get("channels", 3), net.get("height", 0), net.get("width", 0))
    if shape[1] < 1 or shape[2] < 1 or shape[0] < 1:
        raise CnnError("[net] needs width, height and channels of at least 1", net.span, code="E250")
    r = _Reader(shape)
    for index, s in enumerate(sections[1:]):
        r.section(index, s)
    name = path.stem.replace("-", "_").replace(".", "_")
    outputs = r.outputs
    if outputs and sections[-1].kind not in HEADS + ("cost",):
        outputs.append(r.current[0])
    return SourceNet(
        name, shape, r.layers, outputs, notes=["Darknet layer numbers are in the comments: l0_conv is layer 0"]
    )


class _Reader:
    def __init__(self, shape):
        self.layers: list[SourceLayer] = []
        self.values: list[tuple[str, tuple]] = []  # per Darknet layer: (value name, shape)
        self.current = ("input", shape)
        self.outputs: list[str] = []

    def add(self, name, kind, args=None, kw=None, inputs=None, span=None, shape=None):
        layer = SourceLayer(name, kind, list(args or []), dict(kw or {}), list(inputs or [self.current[0]]), span)
        self.layers.append(layer)
        self.current = (name, shape if shape is not None else self.current[1])
        return name

    def ref(self, s, index, text, span) -> int:
        try:
            k = int(text)
        except ValueError:
            raise CnnError(f"[{s.kind}] expected a layer number; received {text!r}", span, code="E253") from None
        j = index + k if k < 0 else k
        if not 0 <= j < index:
            raise CnnError(
                f"[{s.kind}] layer {text} refers to layer {j}, which is not before layer {index}", span, code="E253"
            )
        return j

    def activation(self, s, base):
        act = s.get("activation", "linear", str)
        if act not in ACTIVATIONS:
            raise CnnError(
                f"activation={act} has no equivalent in the language{did_you_mean(act, ACTIVATIONS)}",
                s.options["activation"][1],
                code="E252",
            )
        if ACTIVATIONS[act]:
            kind, args = ACTIVATIONS[act]
            self.add(f"{base}_{act}", kind, args)

    def section(self, index: int, s: _Section):
        c, *spatial = self.current[1]
        base = f"l{index}_{SHORT.get(s.kind, s.kind)}"
        kind = s.kind
        if kind in ("convolutional", "conv", "deconvolutional", "deconv"):
            k, f, st = s.get("filters", 1), s.get("size", 1), s.get("stride", 1)
            pad = s.get("padding", f // 2 if s.get("pad", 0) else 0)
            groups = s.get("groups", 1)
            bn = s.get("batch_normalize", 0)
            kw = {}
            if groups != 1:
                kw["groups"] = groups
            if s.get("dilation", 1) != 1:
                kw["dilation"] = s.get("dilation")
            if bn:
                kw["bias"] = False
            if kind.startswith("deconv"):
                out = tuple((w - 1) * st - 2 * pad + f for w in spatial)
                self.add(base, "deconv", [k, f, st, pad], kw, span=s.span, shape=(k, *out))
            else:
                out = tuple((w + 2 * pad - f) // st + 1 for w in spatial)
                self.add(base, "conv", [k, f, st, pad], kw, span=s.span, shape=(k, *out))
            if bn:
                self.add(f"{base}_bn", "bn")
            self.activation(s, base)
        elif kind in ("maxpool", "max"):
            st = s.get("stride", 1)
            f = s.get("size", st)
            padding = s.get("padding", f - 1)
            out = tuple((w + padding - f) // st + 1 for w in spatial)
            if out == tuple((w - f) // st + 1 for w in spatial):
                args = [f, st]  # the padding is never reached (2/2 on even sizes)
            elif padding % 2 == 0 and padding // 2 <= f // 2:
                args = [f, st, padding // 2]
            elif out == tuple(-(-w // st) for w in spatial):
                args = [f, st, "same"]
            else:
                raise CnnError(
                    f"[maxpool] padding={padding} with size={f} stride={st} has no equivalent in the "
                    "language (an odd padding other than size-1)",
                    s.span,
                    code="E252",
                )
            self.add(base, "maxpool", args, span=s.span, shape=(c, *out))
        elif kind in ("avgpool", "avg"):
            self.add(base, "gap", span=s.span, shape=(c,) + (1,) * len(spatial))
        elif kind == "route":
            text, span = s.options.get("layers", ("", s.span))
            s.used.add("layers")
            refs = [self.ref(s, index, t.strip(), span) for t in text.split(",") if t.strip()]
            if not refs:
                raise CnnError("[route] needs layers=...", s.span, code="E253")
            if s.get("groups", 1) != 1:
                raise CnnError(
                    "[route] groups/group_id (a channel slice) has no equivalent in the language",
                    s.options["groups"][1],
                    code="E252",
                )
            values = [self.values[j] for j in refs]
            if len(values) == 1:
                self.current = values[0]
            else:
                if len({v[1][1:] for v in values}) > 1:
                    raise CnnError(
                        f"[route] layers {text} have different sizes: "
                        + ", ".join("x".join(map(str, v[1])) for v in values),
                        span,
                        code="E253",
                    )
                channels = sum(v[1][0] for v in values)
                self.add(
                    base, "concat", inputs=[v[0] for v in values], span=s.span, shape=(channels, *values[0][1][1:])
                )
        elif kind == "shortcut":
            text, span = s.options.get("from", ("", s.span))
            s.used.add("from")
            j = self.ref(s, index, text, span)
            other = self.values[j]
            if other[1] != self.current[1]:
                raise CnnError(
                    f"[shortcut] from={text}: shapes {'x'.join(map(str, other[1]))} and "
                    f"{'x'.join(map(str, self.current[1]))} differ (Darknet's padded shortcut has no "
                    "equivalent)",
                    span,
                    code="E252",
                )
            self.add(base, "add", inputs=[self.current[0], other[0]], span=s.span)
            self.activation(s, base)
        elif kind == "upsample":
            st = s.get("stride", 2)
            if st < 1:
                raise CnnError("[upsample] a negative stride (downsampling) has no equivalent", s.span, code="E252")
            self.add(base, "upsample", [st], span=s.span, shape=(c, *(w * st for w in spatial)))
        elif kind == "connected":
            n = s.get("output", 1)
            kw = {"bias": False} if s.get("batch_normalize", 0) else {}
            self.add(base, "fc", [n], kw, span=s.span, shape=(n,))
            if kw:
                self.add(f"{base}_bn", "bn")
            self.activation(s, base)
        elif kind == "softmax":
            self.add(base, "softmax", span=s.span)
        elif kind == "dropout":
            self.add(base, "dropout", [s.get("probability", 0.5, float)], span=s.span)
        elif kind == "batchnorm":
            self.add(base, "bn", span=s.span)
        elif kind in HEADS:
            self.outputs.append(self.current[0])
        elif kind == "cost":
            pass
        else:  # [net] twice
            raise CnnError(f"[{kind}] may only be the first section", s.span, code="E250")
        self.values.append(self.current)
