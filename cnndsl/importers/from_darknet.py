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

from cnndsl.errors import CnnError, Diagnostic, Span, did_you_mean
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
    "mish": ("mish", []),
}
# Darknet's activations (activations.c) that the language lacks: refused, named (E252).
NO_EQUIVALENT = (
    "selu",
    "relie",
    "ramp",
    "plse",
    "hardtan",
    "lhtan",
    "loggy",
    "stair",
    "hard_mish",
    "normalize_channels",
)
# Options that do not change inference: training, augmentation, the detection heads' decoding.
SILENT_NET = {
    "batch",
    "subdivisions",
    "momentum",
    "decay",
    "angle",
    "saturation",
    "exposure",
    "hue",
    "learning_rate",
    "burn_in",
    "max_batches",
    "policy",
    "steps",
    "scales",
    "step",
    "gamma",
    "power",
    "mosaic",
    "jitter",
    "letter_box",
    "flip",
    "blur",
    "mixup",
    "cutmix",
    "max_crop",
    "min_crop",
    "aspect",
    "adam",
    "B1",
    "B2",
    "eps",
    "label_smooth_eps",
    "track",
    "time_steps",
    "inputs",
    "max_chart_loss",
    "seed",
    "resize",
}
SILENT = {"stopbackward", "stop_backward", "dontload", "dontloadscales", "learning_rate", "burnin_update", "train"}
# Options that change the figures and have no equivalent (AlexeyAB's): refused.
REFUSED = (
    "stride_x",
    "stride_y",
    "antialiasing",
    "maxpool_depth",
    "share_index",
    "deform",
    "sway",
    "rotate",
    "stretch",
    "stretch_sway",
    "binary",
    "xnor",
    "coordconv",
    "assisted_excitation",
)
MAX_SECTIONS = 100_000
MAX_OPTIONS = 1_000_000
INT_LIMIT = 2**31 - 1  # C's int, which darknet's option_find_int returns
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
    "reorg",
    "reorg3d",
    "crop",
    "scale_channels",
    "sam",
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
            value = type_(text)
            if type_ is int and abs(value) > INT_LIMIT:
                raise CnnError(f"[{self.kind}] {key}={text} is out of the range of an integer", span, code="E250")
            return value
        except ValueError:
            what = "an integer" if type_ is int else "a number" if type_ is float else "a value"
            raise CnnError(f"[{self.kind}] {key} must be {what}; received {key}={text}", span, code="E250") from None


def parse_cfg(text: str, file: str) -> list[_Section]:
    """The sections of a .cfg text (E250/E251), at most MAX_SECTIONS of MAX_OPTIONS options in all."""
    sections: list[_Section] = []
    options = 0
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
            if len(sections) >= MAX_SECTIONS:
                raise CnnError(f"the file has more than {MAX_SECTIONS:,} sections (the limit)", span, code="E250")
            sections.append(_Section(kind, span))
        elif "=" in line:
            if not sections:
                raise CnnError("an option before the first [section]", span, code="E250")
            options += 1
            if options > MAX_OPTIONS:
                raise CnnError(f"the file has more than {MAX_OPTIONS:,} options (the limit)", span, code="E250")
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
        silent = SILENT | (set(s.options) if s.kind in HEADS + ("cost",) else set())
        r.unread(s, silent)
    r.unread(net, SILENT_NET | {"width", "height", "channels"})
    name = path.stem.replace("-", "_").replace(".", "_")
    outputs = r.outputs
    if outputs and sections[-1].kind not in HEADS + ("cost",):
        outputs.append(r.current[0])
    net = SourceNet(
        name, shape, r.layers, outputs, notes=["Darknet layer numbers are in the comments: l0_conv is layer 0"]
    )
    net.warnings = r.warnings
    return net


class _Reader:
    def __init__(self, shape):
        self.layers: list[SourceLayer] = []
        self.values: list[tuple[str, tuple]] = []  # per Darknet layer: (value name, shape)
        self.current = ("input", shape)
        self.outputs: list[str] = []
        self.warnings: list[Diagnostic] = []

    def unread(self, s: _Section, silent: set):
        for key, (value, span) in s.options.items():
            if key not in s.used and key not in silent:
                self.warnings.append(Diagnostic("warning", f"[{s.kind}] {key}={value} is not read", span, [], "W240"))

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
        if act == "gelu":
            self.warnings.append(
                Diagnostic(
                    "warning",
                    "activation=gelu: Darknet computes the tanh approximation of gelu; the language's gelu is exact "
                    "(the figures are equal, the values differ by up to about 1e-3)",
                    s.options["activation"][1],
                    [],
                    "W240",
                )
            )
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
        for key in REFUSED:
            if key in s.options and not (key in ("stride_x", "stride_y") and s.get(key) == s.get("stride", 1)):
                raise CnnError(f"[{s.kind}] {key} has no equivalent in the language", s.options[key][1], code="E252")
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
            self.route(s, index, base)
        elif kind == "shortcut":
            self.shortcut(s, index, base)
        elif kind in ("reorg", "reorg3d"):
            # [reorg] is reorg_cpu's Darknet order in both darknets (AlexeyAB reads it as REORG_OLD);
            # AlexeyAB's [reorg3d] is ONNX's SpaceToDepth order
            st = s.get("stride", 1)
            if s.get("reverse", 0) or s.get("flatten", 0) or s.get("extra", 0):
                raise CnnError(f"[{kind}] reverse/flatten/extra has no equivalent in the language", s.span, code="E252")
            kw = {"order": "darknet"} if kind == "reorg" else {}
            out = (c * st * st, *(w // st for w in spatial))
            self.add(base, "space_to_depth", [st], kw, span=s.span, shape=out)
        elif kind == "crop":
            # test mode (crop_layer.c): a centred crop, then 2x − 1 unless noadjust
            h, w = s.get("crop_height", 1), s.get("crop_width", 1)
            for k in ("flip", "angle", "saturation", "exposure", "shift"):
                s.get(k, 0, float)  # augmentation: training only
            self.add(base, "crop", [(h, w) if h != w else h], {"center": True}, span=s.span, shape=(c, h, w))
            if not s.get("noadjust", 0):
                self.add(f"{base}_adjust", "power", [], {"scale": 2.0, "shift": -1.0})
        elif kind in ("scale_channels", "sam"):
            self.gate(s, index, base)
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

    def route(self, s, index, base):
        text, span = s.options.get("layers", ("", s.span))
        s.used.add("layers")
        refs = [self.ref(s, index, t.strip(), span) for t in text.split(",") if t.strip()]
        if not refs:
            raise CnnError("[route] needs layers=...", s.span, code="E253")
        groups, gid = s.get("groups", 1), s.get("group_id", 0)
        values = [self.values[j] for j in refs]
        if groups != 1:
            # route_layer.c: of each routed layer, the group_id-th of `groups` equal channel parts
            if groups < 1 or not 0 <= gid < groups:
                raise CnnError(f"[route] group_id={gid} is not one of groups={groups}", s.span, code="E252")
            parts = []
            for j, (name, shape) in zip(refs, values):
                if shape[0] % groups:
                    raise CnnError(
                        f"[route] groups={groups} does not divide the {shape[0]} channels of layer {j} "
                        "(a channel slice takes equal parts)",
                        s.options["groups"][1],
                        code="E252",
                    )
                step = shape[0] // groups
                sliced = f"{base}_part{len(parts)}" if len(values) > 1 else base
                self.current = (name, shape)
                self.add(
                    sliced,
                    "slice",
                    [gid * step, (gid + 1) * step],
                    span=s.span,
                    inputs=[name],
                    shape=(step, *shape[1:]),
                )
                parts.append(self.current)
            values = parts
            if len(values) == 1:
                return
        if len(values) == 1:
            self.current = values[0]
            return
        if len({v[1][1:] for v in values}) > 1:
            raise CnnError(
                f"[route] layers {text} have different sizes: " + ", ".join("x".join(map(str, v[1])) for v in values),
                span,
                code="E253",
            )
        channels = sum(v[1][0] for v in values)
        name = base if groups == 1 else f"{base}_concat"
        self.add(name, "concat", inputs=[v[0] for v in values], span=s.span, shape=(channels, *values[0][1][1:]))

    def shortcut(self, s, index, base):
        """shortcut_cpu (blas.c): the current value plus the `from` layer, fitted to the current
        value's shape (channels beyond it ignored, missing ones zero, a larger size strided)."""
        text, span = s.options.get("from", ("", s.span))
        s.used.add("from")
        if "," in text:
            raise CnnError("[shortcut] from several layers has no equivalent in the language", span, code="E252")
        if s.get("weights_type", "none", str) != "none":
            raise CnnError("[shortcut] weights_type (a weighted shortcut) has no equivalent", s.span, code="E252")
        s.get("weights_normalization", "none", str)
        j = self.ref(s, index, text, span)
        other, mine = self.values[j], self.current
        kw = {}
        if other[1] != mine[1]:
            o, m = other[1], mine[1]
            ok = (
                len(o) == len(m)
                and all(w >= f for w, f in zip(o[1:], m[1:]))
                and len({w // f for w, f in zip(o[1:], m[1:])}) == 1
            )
            if not ok:
                raise CnnError(
                    f"[shortcut] from={text}: shapes {'x'.join(map(str, o))} and {'x'.join(map(str, m))}: "
                    "Darknet's shortcut of a smaller layer (upsampled) has no equivalent",
                    span,
                    code="E252",
                )
            kw = {"fit": "first"}
        self.add(base, "add", [], kw, inputs=[mine[0], other[0]], span=s.span)
        self.activation(s, base)

    def gate(self, s, index, base):
        """[scale_channels] (a Cx1x1 value times the `from` layer, channel by channel) and [sam]
        (element by element): a product, shaped as the `from` layer."""
        text, span = s.options.get("from", ("", s.span))
        s.used.add("from")
        if s.get("scale_wh", 0):
            raise CnnError("[scale_channels] scale_wh has no equivalent in the language", s.span, code="E252")
        j = self.ref(s, index, text, span)
        other = self.values[j]
        self.add(base, "mul", inputs=[self.current[0], other[0]], span=s.span, shape=other[1])
        self.activation(s, base)
