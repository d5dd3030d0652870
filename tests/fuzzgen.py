"""Grammar-aware generation of random, well-formed `.net` files (Hypothesis).

The generator follows the value's shape as it writes statements, so that most
choices fit (a window no wider than its input, groups dividing the channels,
branches that agree); a few choices are deliberately off (a kernel wider than
the input, an identity shortcut around a stride) so that errors are generated
too. The shape it follows is only a guide for plausible choices: the test's
oracle is the compiler's own inference checked against onnxruntime, never
this tracking.

    >>> from hypothesis import find
    >>> "network" in find(net_files(), lambda t: True)
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

ACTIVATIONS = [
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "scaled_tanh",
    "abs",
    "gelu",
    "silu",
    "hardswish",
    "prelu",
    "leaky_relu 0.1",
    "elu alpha=0.5",
    "hardsigmoid",
    "hardsigmoid alpha=0.2 beta=0.4",
    "mish",
    "softplus",
    "softplus beta=2",
]
# Largest spatial size per input rank: small tensors keep onnxruntime fast.
MAX_SIZE = {1: 24, 2: 12, 3: 6}
MAX_CHANNELS = 12
# Block templates (parameters and body); k_block knows the shape each gives.
BLOCKS = {
    "cbr": "(c, s = 1) {\n    conv c/3/s/1 -> bn -> relu\n}",
    "basic": (
        "(c) {\n    residual {\n        conv c/3/1/1 -> bn -> relu\n        conv c/3/1/1 -> bn\n    }\n    relu\n}"
    ),
    "widen": "(m = 2) {\n    conv (in.c * m)/1 -> relu\n}",
    "stack": "(n) {\n    repeat n { conv in.c/3/1/1 -> relu }\n}",
}


@dataclass
class Shape:
    c: int
    sp: tuple[int, ...]  # spatial sizes; () after fc/flatten

    @property
    def vector(self) -> bool:
        return not self.sp


@dataclass
class Gen:
    draw: object
    rank: int
    tables: list[str] = field(default_factory=list)
    blocks: dict[str, str] = field(default_factory=dict)  # template name -> block name once defined
    labels: dict[str, Shape] = field(default_factory=dict)
    pools: dict[str, Shape] = field(default_factory=dict)  # maxpool labels -> their input shape
    depth: int = 0
    at_start: bool = True  # labels and @refs only start a chain

    # -- small draws ---------------------------------------------------------------
    def int(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def pick(self, items):
        return self.draw(st.sampled_from(items))

    def coin(self, p=0.5):
        return self.draw(st.integers(0, 999)) < p * 1000

    def dims(self, values):
        return "x".join(map(str, values))

    def channels(self):
        return self.int(1, MAX_CHANNELS)

    # -- one step ------------------------------------------------------------------
    def step(self, x: Shape, keep_shape=False) -> tuple[str, Shape]:
        """A single layer (or block call, group, combinator) applied to x."""
        if x.vector:
            return self.vector_step(x, keep_shape)
        kinds = ["act", "bn", "norm", "dropout", "shuffle", "conv_same", "scale", "drop_path"]
        if not keep_shape:
            kinds += [
                "conv",
                "conv",
                "pool",
                "gpool",
                "subsample",
                "upsample",
                "deconv",
                "pad",
                "crop",
                "fc",
                "flatten",
                "conv_in_c",
                "slice",
                "adaptive",
                "space_to_depth",
            ]
        if self.depth < 3:
            kinds += ["residual", "add", "concat", "mul", "group", "repeat", "block"]
            if not keep_shape:
                kinds += ["ref", "unpool"]
        kind = self.pick(kinds)
        return getattr(self, "k_" + kind)(x, keep_shape)

    def vector_step(self, x, keep_shape):
        choices = ["act", "dropout", "softmax", "scale"] + ([] if keep_shape else ["fc", "fc", "rbf", "slice"])
        kind = self.pick(choices)
        if kind == "fc":
            n = self.int(1, 16)
            return f"fc {n}" + (" bias=false" if self.coin(0.2) else ""), Shape(n, ())
        if kind == "rbf":
            n = self.int(1, 10)
            return f"rbf {n}" + (" trainable=true" if self.coin(0.3) else ""), Shape(n, ())
        if kind == "softmax":
            return "softmax", x
        return getattr(self, "k_" + kind)(x, keep_shape)

    def k_act(self, x, _):
        return self.pick(ACTIVATIONS), x

    def k_bn(self, x, _):
        return self.pick(["bn", "bn eps=0.001", "bn momentum=0.01"]), x

    def k_dropout(self, x, _):
        return self.pick(["dropout", "dropout 0.3", "dropout 0"]), x

    def k_scale(self, x, _):
        return self.pick(["scale", "scale init=1e-6", "scale bias=true", "scale init=0.5 bias"]), x

    def k_drop_path(self, x, _):
        return self.pick(["drop_path 0.2", "drop_path 0", "drop_path (0.1 * 2)"]), x

    def k_slice(self, x, _):
        if self.coin(0.03):  # rarely outside the channels: an error
            return f"slice 0/{x.c + 1}", Shape(x.c + 1, x.sp)
        start = self.int(0, max(0, x.c - 1))
        end = self.int(start + 1, max(start + 1, x.c))
        return f"slice {start}/{end}", Shape(end - start, x.sp)

    def k_adaptive(self, x, _):
        kind = self.pick(["adaptive_avgpool", "adaptive_maxpool"])
        if self.coin(0.03):  # rarely larger than the input: an error
            return f"{kind} {max(x.sp) + 1}", Shape(x.c, (max(x.sp) + 1,) * len(x.sp))
        size = tuple(self.int(1, max(1, n)) for n in x.sp)  # (the tracked shape is only a guide)
        arg = str(size[0]) if len(set(size)) == 1 and self.coin() else self.dims(size)
        return f"{kind} {arg}", Shape(x.c, size)

    def k_space_to_depth(self, x, _):
        s = self.pick([2, 2, 3])
        if x.c * s ** len(x.sp) > 4 * MAX_CHANNELS or (any(n % s for n in x.sp) and not self.coin(0.05)):
            return self.k_act(x, _)
        return f"space_to_depth {s}", Shape(x.c * s ** len(x.sp), tuple(n // s for n in x.sp))

    def k_norm(self, x, _):
        divisors = [g for g in range(1, x.c + 1) if x.c % g == 0]
        return self.pick(
            [
                "lrn 3",
                "lrn 5 alpha=1e-4 beta=0.75 k=2",
                "lcn 3",
                "ln",
                "ln over=channels",
                "instnorm",
                f"gn {self.pick(divisors)}",
                "softmax",
            ]
        ), x

    def k_shuffle(self, x, _):
        return f"shuffle {self.pick([g for g in range(1, x.c + 1) if x.c % g == 0])}", x

    def k_conv_same(self, x, _):
        f = self.pick([1, 3])
        p = self.pick(["same", str(f // 2)])
        extra = self.pick(["", "", " bias=false", " pad_mode=reflect", " pad_mode=replicate"])
        if "reflect" in extra and min(x.sp) <= f // 2:
            extra = ""
        return f"conv {x.c}/{f}/1/{p}{extra}", x

    def k_conv_in_c(self, x, _):
        m = self.int(1, 2)
        return f"conv (in.c * {m})/1", Shape(min(x.c * m, 4 * MAX_CHANNELS), x.sp)

    def k_conv(self, x, _):
        k = self.channels()
        small = min(x.sp)
        f = self.int(1, max(1, min(5, small))) if not self.coin(0.05) else small + 2  # rarely too wide
        s = self.pick([1, 1, 2, 3])
        d = 2 if self.coin(0.1) and (2 * (f - 1) + 1) <= small else 1
        p = self.pick([0, 0, 1, "same", "valid"]) if not self.coin(0.05) else self.int(0, 3)
        text = f"conv {k}/{f}/{s}/{p}" if self.coin(0.8) else f"conv filters={k} size={f} stride={s} pad={p}"
        groups = 1
        if self.coin(0.2):
            common = [g for g in range(2, min(x.c, k) + 1) if x.c % g == 0 and k % g == 0]
            if common:
                groups = self.pick(common)
                text += f" groups={groups}"
        if d > 1:
            text += f" dilation={d}"
        if groups == 1 and d == 1 and self.coin(0.1) and x.c >= 2:
            rows = [sorted(self.draw(st.sets(st.integers(0, x.c - 1), min_size=1, max_size=x.c))) for _ in range(k)]
            name = f"t{len(self.tables)}"
            self.tables.append(f"table {name} = [{', '.join('[' + ','.join(map(str, r)) + ']' for r in rows)}]")
            text += f" table={name}"
        eff = d * (f - 1) + 1
        if p == "same":
            sp = tuple(-(-n // s) for n in x.sp)
        else:
            pp = 0 if p == "valid" else int(p)
            sp = tuple((n + 2 * pp - eff) // s + 1 for n in x.sp)
        return text, Shape(k, sp)

    def k_deconv(self, x, _):
        if max(x.sp) > MAX_SIZE[self.rank] // 2:
            return self.k_act(x, _)
        k = self.channels()
        f, s = self.pick([(2, 2), (3, 2), (3, 1), (1, 1), (4, 2)])
        p = 1 if f >= 3 and self.coin() else 0
        outpad = 1 if s > 1 and self.coin(0.2) else 0
        text = f"deconv {k}/{f}/{s}/{p}" + (f" outpad={outpad}" if outpad else "")
        if self.coin(0.1):
            text += " bias=false"
        return text, Shape(k, tuple((n - 1) * s - 2 * p + f + outpad for n in x.sp))

    def k_pool(self, x, _):
        kind = self.pick(["maxpool", "avgpool"])
        f = self.int(1, max(1, min(3, min(x.sp))))
        s = self.pick([None, 1, 2])
        p = self.int(0, f // 2)
        ceil = self.coin(0.3)
        text = f"{kind} {f}" + (f"/{s or f}" if s or p else "") + (f"/{p}" if p else "") + (" ceil" if ceil else "")
        if kind == "avgpool" and p and self.coin():
            text += " count_pad"
        s = s or f

        def out(n):
            if not ceil:
                return (n + 2 * p - f) // s + 1
            o = -(-(n + 2 * p - f) // s) + 1
            return o - 1 if (o - 1) * s >= n + p else o

        y = Shape(x.c, tuple(out(n) for n in x.sp))
        if kind == "maxpool" and self.at_start and self.coin(0.4) and not ceil:
            label = f"pool{len(self.pools)}"
            self.pools[label] = x
            self.labels[label] = y
            return f"{label}: {text}", y
        return text, y

    def k_unpool(self, x, _):
        for label, before in self.pools.items():
            if self.labels.get(label) == x:
                return f"unpool of=@{label}", before
        return self.k_act(x, _)

    def k_gpool(self, x, _):
        return self.pick(["gap", "gmp"]), Shape(x.c, (1,) * len(x.sp))

    def k_subsample(self, x, _):
        return "subsample 2", Shape(x.c, tuple(n // 2 for n in x.sp))

    def k_upsample(self, x, _):
        if max(x.sp) > MAX_SIZE[self.rank] // 2:
            return self.k_act(x, _)
        mode = self.pick(["", " mode=nearest", " mode=linear"])
        return f"upsample 2{mode}", Shape(x.c, tuple(2 * n for n in x.sp))

    def k_pad(self, x, _):
        mode = self.pick(["", " mode=zeros", " mode=replicate"] + ([" mode=reflect"] if min(x.sp) > 1 else []))
        return f"pad 1{mode}", Shape(x.c, tuple(n + 2 for n in x.sp))

    def k_crop(self, x, _):
        smaller = [
            lab
            for lab, s in self.labels.items()
            if len(s.sp) == len(x.sp) and s.sp <= x.sp and all(a <= b for a, b in zip(s.sp, x.sp))
        ]
        if smaller and self.coin(0.3):
            lab = self.pick(sorted(smaller))
            return f"crop to=@{lab}" + (" center" if self.coin() else ""), Shape(x.c, self.labels[lab].sp)
        size = tuple(max(1, n - self.int(0, 2)) for n in x.sp)
        arg = str(size[0]) if len(set(size)) == 1 and self.coin() else self.dims(size)
        return f"crop {arg}" + (" center" if self.coin() else ""), Shape(x.c, size)

    def k_fc(self, x, _):
        n = self.int(1, 16)
        return f"fc {n}", Shape(n, ())

    def k_flatten(self, x, _):
        n = x.c
        for s in x.sp:
            n *= s
        return "flatten", Shape(n, ())

    # -- compound steps --------------------------------------------------------------
    def chain(self, x, keep_shape=False, max_len=3):
        parts = []
        for i in range(self.int(1, max_len)):
            self.at_start = i == 0
            text, x = self.step(x, keep_shape)
            parts.append(text)
        return " -> ".join(parts), x

    def nested(self, fn, *args):
        self.depth += 1
        try:
            return fn(*args)
        finally:
            self.depth -= 1

    def k_group(self, x, keep):
        lines, y = self.nested(self.body, x, keep, 2)
        if self.coin(0.2):  # a default that reaches only this group
            lines.insert(0, self.pick(["default conv bias=false", "default maxpool ceil", "default bn eps=0.01"]))
        return "{ " + " ; ".join(lines) + " }", y

    def k_residual(self, x, keep):
        shortcut = self.pick(["", "", "(shortcut=auto)", "(shortcut=conv)", "(shortcut=pad)", "(shortcut=identity)"])
        if keep:
            shortcut = ""
            text, y = self.nested(self.chain, x, True)
        else:
            first = self.pick([f"conv {x.c}/3/1/1", f"conv {min(2 * x.c, MAX_CHANNELS)}/3/2/1", f"conv {x.c}/1"])
            text, y = self.nested(self.chain, x, True, 2)
            text = f"{first} -> {text}"
            k = int(first.split()[1].split("/")[0])
            y = Shape(k, tuple(-(-n // 2) for n in x.sp) if "/2/" in first else x.sp)
        return f"residual{shortcut} {{ {text} }}", y

    def k_add(self, x, _):
        text, _y = self.nested(self.chain, x, True, 2)
        return f"add {{ _ ; {text} }}", x

    def k_mul(self, x, _):
        mid = max(1, x.c // 2)
        gate = self.pick([f"gap -> conv {mid}/1 -> relu -> conv in.c/1 -> sigmoid", "sigmoid", "_"])
        return f"mul {{ _ ; {gate} }}", x

    def k_concat(self, x, _):
        branches, total = [], 0
        for _i in range(self.int(1, 3)):
            kind = self.pick(["id", "conv1", "conv3", "pool", "ref"])
            if kind == "ref":
                refs = [lab for lab, s in self.labels.items() if s.sp == x.sp]
                if refs:
                    lab = self.pick(refs)
                    branches.append(f"@{lab}")
                    total += self.labels[lab].c
                    continue
                kind = "id"
            if kind == "id":
                branches.append("_")
                total += x.c
            elif kind == "pool":
                branches.append("maxpool 3/1/1")
                total += x.c
            else:
                k = self.int(1, 6)
                branches.append(f"conv {k}/1 -> relu" if kind == "conv1" else f"conv {k}/3/1/1 -> relu")
                total += k
        crop = ""
        if self.coin(0.15) and min(x.sp) > 2:  # a shrinking branch, cropped back by crop=center
            branches.append("conv 2/3")
            total += 2
            crop = "(crop=center)"
            return f"concat{crop} {{ {' ; '.join(branches)} }}", Shape(total, tuple(n - 2 for n in x.sp))
        return f"concat {{ {' ; '.join(branches)} }}", Shape(total, x.sp)

    def k_repeat(self, x, _):
        n = self.pick(["0", "1", "2", "3", "(1 + 1)", "(5 // 2 - 1)"])
        if self.coin():
            text, y = self.nested(self.step, x, True)
            return f"{{ {text} }} * {n}" if " " in text else f"{text} * {n}", y
        lines, y = self.nested(self.body, x, True, 2)
        return f"repeat {n} {{ {' ; '.join(lines)} }}", y

    def k_ref(self, x, keep):
        if not self.labels or not self.at_start:
            return self.k_act(x, keep)
        lab = self.pick(sorted(self.labels))
        text, y = self.nested(self.chain, self.labels[lab], keep, 2)
        return f"@{lab} -> {text}", y

    def k_block(self, x, keep):
        template = self.pick(["basic", "stack"] if keep else sorted(BLOCKS))
        name = self.blocks.setdefault(template, f"{template}{len(self.blocks)}")
        if template == "cbr":
            c, s = self.channels(), self.pick([1, 2])
            call = self.pick([f"{name}({c})", f"{name}({c}, {s})", f"{name}(c={c}, s={s})", f"{name}({c}, s={s})"])
            if call == f"{name}({c})":
                s = 1
            return call, Shape(c, tuple((n - 1) // s + 1 for n in x.sp))
        if template == "basic":
            return self.pick([f"{name}({x.c})", f"{name}(in.c)", f"{name}({x.c}) * 2"]), x
        if template == "widen":
            m = self.int(1, 2)
            call = self.pick([name, f"{name}({m})", f"{name}(m={m})"])
            return call, Shape(x.c * (2 if call == name else m), x.sp)
        n = self.int(0, 2)
        return f"{name}({n})", x

    # -- bodies and files --------------------------------------------------------------
    def body(self, x, keep_shape=False, max_len=4):
        lines = []
        for _ in range(self.int(1, max_len)):
            text, y = self.chain(x, keep_shape)
            if self.coin(0.25) and self.depth == 0 and not text.startswith(("@", "pool")):
                label = f"l{len(self.labels)}"
                text = f"{label}: {text}"
                self.labels[label] = y
            lines.append(text)
            x = y
        return lines, x


@st.composite
def net_files(draw):
    """The text of one random, well-formed `.net` file with one network."""
    rank = draw(st.sampled_from([1, 2, 2, 2, 3]))
    g = Gen(draw, rank)
    c = draw(st.integers(1, 4))
    sp = tuple(draw(st.integers(2, MAX_SIZE[rank])) for _ in range(rank))
    x = Shape(c, sp)
    lines, y = g.body(x, max_len=6)
    if draw(st.booleans()):  # a classifier head with a network parameter
        heads = ["fc k", "fc k -> softmax"] + (
            [] if y.vector else ["gap -> fc k", "flatten -> fc k", "gap -> conv k/1"]
        )
        head = draw(st.sampled_from(heads))
        lines.append(f"head: {head}")
    outputs = []
    if draw(st.integers(0, 9)) == 0 and g.labels:
        outputs = draw(st.lists(st.sampled_from(sorted(g.labels)), min_size=1, max_size=2, unique=True))
    defaults_file = draw(st.sampled_from(["", "default conv bias=false\n", "default bn eps=0.001\n"]))
    # "default relu" has no keyword: a syntax error, rarely
    defaults_net = draw(
        st.sampled_from(
            ["", "", "    default maxpool ceil\n", "    default conv pad_mode=replicate\n"]
            + ["", "", ""] * 4
            + ["    default relu\n"]
        )
    )
    param = draw(st.integers(1, 10))
    out = [*g.tables, defaults_file]
    for template, name in g.blocks.items():
        out.append(f"block {name}{BLOCKS[template]}")
    out.append(f"network fuzz(k = {param}) {{")
    out.append(f"{defaults_net}    input {c}x{'x'.join(map(str, sp))}")
    out += [f"    {line}" for line in lines]
    if outputs:
        out.append(f"    output {', '.join(outputs)}")
    out.append("}")
    return "\n".join(line for line in out if line) + "\n"
