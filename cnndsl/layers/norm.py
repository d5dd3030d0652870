"""Normalisation: bn, lrn, lcn, ln, gn, instnorm; and scale, the per-channel multiplier."""

from __future__ import annotations

from math import log

from .arith import prod
from .base import Kind, LayerError, Spec


class BatchNorm(Kind):
    name = "bn"
    look_alikes = ("batchnorm", "batch_norm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "batchnormalization")
    doc = "batch normalisation; momentum as PyTorch: running = (1 − m)·running + m·batch"
    init_transparent = True
    batch_statistics = True
    chains = "layer"
    keywords = {"eps": Spec("float", 1e-5, min=0), "momentum": Spec("float", 0.1, min=0)}

    def params(self, a, x, y):
        # γ and β are trained; the running mean and variance are not.
        return 2 * x[0], 2 * x[0]

    def torch(self, t, node):
        """nn.BatchNormNd without its num_batches_tracked counter (see ``BATCH_NORM``)."""
        a, x = node.attrs, t.in_shape
        n = max(1, len(x) - 1)
        helper = t.helper("batch_norm", BATCH_NORM)
        bn = f"nn.BatchNorm{n}d({x[0]}, eps={a['eps']!r}, momentum={a['momentum']!r})"
        return f"{t.module(f'{helper}({bn})')}({t.x[0]})"

    def lower(self, b, node, xs, y):
        a, x = node.attrs, b.shape(node.inputs[0])
        c = x[0]
        gamma, beta = b.weight("weight", (c,), "fill", value=1.0), b.weight("bias", (c,), "fill")
        mean_buf = b.weight("running_mean", (c,), "fill", trainable=False)
        var = b.weight("running_var", (c,), "fill", value=1.0, trainable=False)
        if not b.training:
            b.op(
                "BatchNormalization",
                [xs[0], gamma, beta, mean_buf, var],
                out=y,
                epsilon=a["eps"],
                momentum=1.0 - a["momentum"],
            )
            return
        # Training: normalise with the batch's statistics (biased variance) and update the
        # running ones with the unbiased variance, as PyTorch does. The statistics are
        # elementary operators; the normalisation is one BatchNormalization fed with them
        # (epsilon 0, added to the variance in the graph's dtype), whose adjoint rule
        # (cnndsl/train/adjoints.py) is the closed form through the statistics too.
        np = b.np
        axes = [0, *range(2, len(x) + 1)]
        flat = b.const(np.array([c], np.int64))
        mu = b.reduce("ReduceMean", xs[0], axes)
        xc = b.op("Sub", [xs[0], mu])
        count = b.op("Div", [b.op("Cast", [b.op("Size", xs)], to=b.elem), b.scalar(float(c))])
        biased = b.op("Reshape", [b.op("Div", [b.reduce("ReduceSumSquare", xc, axes), count]), flat])
        mean = b.op("Reshape", [mu, flat])
        shifted = b.op("Add", [biased, b.scalar(a["eps"])])
        b.op("BatchNormalization", [xs[0], gamma, beta, mean, shifted], out=y, epsilon=0.0)
        m = a["momentum"]
        unbiased = b.op("Div", [b.op("Mul", [biased, count]), b.op("Sub", [count, b.scalar(1.0)])])
        for buf, batch in ((mean_buf, mean), (var, unbiased)):
            keep = b.op("Mul", [buf, b.scalar(1.0 - m)])
            b.update(buf, b.op("Add", [keep, b.op("Mul", [batch, b.scalar(m)])]))

    def onnx_import(self, reader, group):
        """BatchNormalization; ONNX's momentum is PyTorch's 1 − momentum."""
        if group.types != {"BatchNormalization"}:
            return None
        kw = {}
        eps = group.a.get("epsilon", 1e-5)
        if abs(eps - 1e-5) > 1e-9:
            kw["eps"] = float(f"{eps:.6g}")
        mom = 1.0 - group.a.get("momentum", 0.9)
        if abs(mom - 0.1) > 1e-6:
            kw["momentum"] = float(f"{mom:.6g}")
        return [], kw


class LRN(Kind):
    name = "lrn"
    doc = (
        "local response normalisation across `size` channels: x / (k + alpha/size·Σx²)^beta; "
        "region=within: over a size×…×size spatial window of each channel, alpha/size^n"
    )
    chains = "layer"
    positional = (("size", Spec("int", min=1)),)
    keywords = {
        "alpha": Spec("float", 1e-4),
        "beta": Spec("float", 0.75),
        "k": Spec("float", 1.0),
        "region": Spec("enum", "across", choices=("across", "within")),
    }
    shown_keywords = ("region",)

    def check(self, a, x):
        if a["region"] == "within":
            if len(x) < 2:
                raise LayerError(f"lrn region=within needs spatial axes; received the input {x}", "region")
            if a["size"] % 2 == 0:
                raise LayerError(
                    f"lrn region=within needs an odd size (a window centred on each position); "
                    f"received size={a['size']}",
                    "size",
                )

    def window(self, a, x, y):
        if a["region"] != "within":
            return None
        return (a["size"],) * (len(x) - 1), (1,) * (len(x) - 1)

    def torch(self, t, node):
        """F.local_response_norm (odd sizes, spatial inputs: its window is centred as ours); else LRN_ACROSS."""
        a = node.attrs
        args = f"{a['size']}, alpha={a['alpha']!r}, beta={a['beta']!r}, k={a['k']!r}"
        if a["region"] == "within":
            return f"{t.helper('lrn_within', LRN_WITHIN)}({t.x[0]}, {args})"
        if a["size"] % 2 and t.rank >= 1:
            return f"F.local_response_norm({t.x[0]}, {args})"
        return f"{t.helper('lrn_across', LRN_ACROSS)}({t.x[0]}, {args})"

    def lower(self, b, node, xs, y):
        a, x = node.attrs, b.shape(node.inputs[0])
        if a["region"] == "within":
            self._lower_within(b, a, x, xs, y)
            return
        # onnxruntime's LRN: 4-D inputs and odd sizes only; training uses the elementary form,
        # whose gradient comes from its operators' adjoints.
        if len(x) == 3 and a["size"] % 2 and not b.training and not b.float64:  # (LRN's attributes: float32)
            b.op("LRN", xs, out=y, size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["k"])
            return
        # Σ over channels c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉ of x², as a ones-convolution
        # along the channel axis of x² reshaped to (N, 1, C, L).
        np = b.np
        size = a["size"]
        lo, hi = (size - 1) // 2, size // 2
        sq = b.op("Mul", [xs[0], xs[0]])
        col = b.op("Reshape", [sq, b.const(np.array([0, 1, x[0], -1], np.int64))])
        total = b.op(
            "Conv", [col, b.const(np.ones((1, 1, size, 1), np.float32))], kernel_shape=[size, 1], pads=[lo, 0, hi, 0]
        )
        total = b.op("Reshape", [total, b.op("Shape", xs)])
        scaled = b.op("Add", [b.op("Mul", [total, b.scalar(a["alpha"] / size)]), b.scalar(a["k"])])
        b.op("Div", [xs[0], b.op("Pow", [scaled, b.scalar(a["beta"])])], out=y)

    @staticmethod
    def _lower_within(b, a, x, xs, y):
        """Caffe's WITHIN_CHANNEL: the mean of x² over a size^n window (zero padding counted),
        x / (k + alpha·mean)^beta."""
        size, n = a["size"], len(x) - 1
        sq = b.op("Mul", [xs[0], xs[0]])
        mean = b.op(
            "AveragePool",
            [sq],
            kernel_shape=[size] * n,
            pads=[(size - 1) // 2] * (2 * n),
            count_include_pad=1,
        )
        scaled = b.op("Add", [b.op("Mul", [mean, b.scalar(a["alpha"])]), b.scalar(a["k"])])
        b.op("Div", [xs[0], b.op("Pow", [scaled, b.scalar(a["beta"])])], out=y)

    def onnx_import(self, reader, group):
        """The LRN operator, or ``lower``'s elementary forms: x / Pow(x²-window-sum·alpha/size + k,
        beta) (across), x / Pow(AveragePool(x²)·alpha + k, beta) (within)."""
        a, short = group.a, reader.short
        if group.types == {"LRN"}:
            kw = {
                "alpha": short(a.get("alpha", 1e-4)),
                "beta": short(a.get("beta", 0.75)),
                "k": short(a.get("bias", 1.0)),
            }
            return [a["size"]], kw
        within = bool(group.ops.get("AveragePool"))
        if not (group.ops.get("Pow") and (group.ops.get("Conv") or within) and group.ops.get("Div")):
            return None
        window = "AveragePool" if within else "Conv"
        size = reader.attrs(group.first(window))["kernel_shape"][0]
        beta = float(reader.const(group.first("Pow").input[1]))
        muls = [n for n in group.nodes if n.op_type == "Mul" and reader.const(n.input[1]) is not None]
        alpha = float(reader.const(muls[-1].input[1])) * (1 if within else size) if muls else 1e-4
        adds = [n for n in group.nodes if n.op_type == "Add" and reader.const(n.input[1]) is not None]
        k = float(reader.const(adds[-1].input[1])) if adds else 1.0
        kw = {"alpha": short(alpha), "beta": short(beta), "k": short(k)}
        return [size], {**kw, "region": "within"} if within else kw


class LCN(Kind):
    name = "lcn"
    doc = "local contrast normalisation over a size×size Gaussian window (Jarrett et al. 2009)"
    spatial = True
    positional = (("size", Spec("int", min=1)),)
    keywords = {"sigma": Spec("float", 1.0, min=0)}

    def check(self, a, x):
        if a["size"] % 2 == 0:
            raise LayerError(f"lcn size must be odd so that the window is centred; received size={a['size']}", "size")

    def torch(self, t, node):
        a = node.attrs
        return f"{t.helper('lcn', LCN_SOURCE)}({t.x[0]}, {a['size']}, {a['sigma']!r})"

    def lower(self, b, node, xs, y):
        # Jarrett et al. 2009: v = x − Σ w·x (Gaussian w over the window and all maps, Σw = 1);
        # y = v / max(mean σ, σ) with σ = sqrt(Σ w·v²).
        np = b.np
        a, x = node.attrs, b.shape(node.inputs[0])
        n, s = len(x) - 1, a["size"]
        r = np.arange(s) - (s - 1) / 2
        g1 = np.exp(-(r**2) / (2 * a["sigma"] ** 2))
        g = g1
        for _ in range(n - 1):
            g = np.multiply.outer(g, g1)
        w = np.broadcast_to(g, (1, x[0]) + (s,) * n).astype(np.float64)
        w = w / w.sum()
        kernel = b.const(w)  # in the export's dtype: a float64 graph's window sums to 1 in float64
        conv = dict(kernel_shape=[s] * n, pads=[(s - 1) // 2] * (2 * n))
        mean = b.op("Conv", [xs[0], kernel], **conv)
        v = b.op("Sub", [xs[0], mean])
        var = b.op("Conv", [b.op("Mul", [v, v]), kernel], **conv)
        sigma = b.op("Sqrt", [var])
        c = b.reduce("ReduceMean", sigma, list(range(2, 2 + n)))
        denom = b.op("Max", [b.op("Max", [sigma, c]), b.scalar(1e-6)])
        b.op("Div", [v, denom], out=y)

    # the operators of ``lower``
    _ONNX_OPS = {"Conv", "Sub", "Mul", "Sqrt", "ReduceMean", "Max", "Div"}

    def onnx_import(self, reader, group):
        """``lower``'s operators; ``sigma`` from the Gaussian window's profile."""
        if group.types != self._ONNX_OPS:
            return None
        w = reader.const(group.first("Conv").input[1])  # (1, C, s, …): a Gaussian
        size = int(w.shape[-1])
        kw = {}
        if size > 1:  # the window's profile along the last axis: g[c+1] / g[c] = exp(−1 / (2σ²))
            profile = w[(0, 0) + (size // 2,) * (w.ndim - 3)].astype(float)
            sigma = (-1 / (2 * log(profile[size // 2 + 1] / profile[size // 2]))) ** 0.5
            sigma = float(f"{sigma:.6g}")
            kw = {"sigma": sigma} if sigma != 1.0 else {}
        return [size], kw


def _normalise(b, x, axes, eps):
    """(x − mean) / √(biased variance + eps) over ``axes``, in elementary operators."""
    xc = b.op("Sub", [x, b.reduce("ReduceMean", x, axes)])
    var = b.reduce("ReduceMean", b.op("Mul", [xc, xc]), axes)
    return b.op("Div", [xc, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps)])])])


def _layer_norm_last(b, x, gamma, beta, eps, rank, out=None):
    """LayerNormalization over the last of ``rank`` axes; elementary in a float64 graph
    (the operator's epsilon is a float32 attribute)."""
    if not b.float64:
        return b.op("LayerNormalization", [x, gamma, beta], out=out, axis=-1, epsilon=eps)
    return b.op("Add", [b.op("Mul", [_normalise(b, x, [rank - 1], eps), gamma]), beta], out=out)


class _GroupNorm(Kind):
    keywords = {"eps": Spec("float", 1e-5, min=0)}

    def groups(self, a, x):
        return 1

    def check(self, a, x):
        g = self.groups(a, x)
        if x[0] % g:
            raise LayerError(f"groups must divide the channels; received groups={g}, channels={x[0]}", "groups")

    def params(self, a, x, y):
        return 2 * x[0], 0

    def torch(self, t, node):
        """F.group_norm, with the weights in the export's shape (C, 1, ...)."""
        x = t.in_shape
        bshape = (x[0],) + (1,) * (len(x) - 1)
        w = t.weights(weight=f"torch.ones({bshape})", bias=f"torch.zeros({bshape})")
        g = self.groups(node.attrs, x)
        normed = f"F.group_norm({t.x[0]}, {g}, eps={node.attrs['eps']!r})"
        return f"{normed} * {w}.weight + {w}.bias"

    def lower(self, b, node, xs, y):
        np = b.np
        a, x = node.attrs, b.shape(node.inputs[0])
        g, c = self.groups(a, x), x[0]
        bshape = (c,) + (1,) * (len(x) - 1)
        gamma = b.weight("weight", bshape, "fill", value=1.0)
        beta = b.weight("bias", bshape, "fill")
        grouped = b.op("Reshape", [xs[0], b.const(np.array([0, g, -1], np.int64))])
        if b.float64:  # eps as a float64 constant (InstanceNormalization's epsilon is float32)
            normed = _normalise(b, grouped, [2], a["eps"])
        else:
            ones, zeros = b.const(np.ones(g, np.float32)), b.const(np.zeros(g, np.float32))
            normed = b.op("InstanceNormalization", [grouped, ones, zeros], epsilon=a["eps"])
        back = b.op("Reshape", [normed, b.op("Shape", [xs[0]])])
        b.op("Add", [b.op("Mul", [back, gamma]), beta], out=y)

    @staticmethod
    def onnx_groups(reader, group):
        """The groups of ``lower``'s InstanceNormalization over (N, groups, −1), or None."""
        if "InstanceNormalization" not in group.types:
            return None
        return int(reader.const(group.nodes[0].input[1])[1])


class LayerNorm(_GroupNorm):
    """``ln``: over all of C×spatial (v1), or with ``over=channels`` over the C channels of every
    position (ConvNeXt's LayerNorm2d, torch's LayerNorm on a channels-last tensor)."""

    name = "ln"
    doc = "layer normalisation per sample over all of C×spatial (over=all) or per position over C (over=channels)"
    keywords = {**_GroupNorm.keywords, "over": Spec("enum", "all", choices=("all", "channels"))}
    shown_keywords = ("over",)

    def torch(self, t, node):
        """over=channels: nn.LayerNorm on the channels-last tensor; over=all: a group norm of one group."""
        if node.attrs["over"] == "all":
            return super().torch(t, node)
        m = t.module(f"nn.LayerNorm({t.in_shape[0]}, eps={node.attrs['eps']!r})")
        if t.rank == 0:
            return f"{m}({t.x[0]})"
        return f"{m}({t.x[0]}.movedim(1, -1)).movedim(-1, 1)"

    def lower(self, b, node, xs, y):
        if node.attrs["over"] == "all":
            super().lower(b, node, xs, y)
            return
        # As torch lowers LayerNorm2d: channels last, LayerNormalization over the last axis, back.
        x = b.shape(node.inputs[0])
        n, eps = len(x) - 1, node.attrs["eps"]
        gamma = b.weight("weight", (x[0],), "fill", value=1.0)
        beta = b.weight("bias", (x[0],), "fill")
        if n == 0:  # a vector: its channels are all there is
            _layer_norm_last(b, xs[0], gamma, beta, eps, 2, out=y)
            return
        last = b.op("Transpose", xs, perm=[0, *range(2, n + 2), 1])
        normed = _layer_norm_last(b, last, gamma, beta, eps, n + 2)
        b.op("Transpose", [normed], out=y, perm=[0, n + 1, *range(1, n + 1)])

    def onnx_import(self, reader, group):
        """One group of InstanceNormalization (tried before instnorm: for one channel, both are one
        group); or ``lower``'s LayerNormalization over the channels (``over=channels``)."""
        if "LayerNormalization" in group.types and group.types <= {"Transpose", "LayerNormalization"}:
            ln = group.first("LayerNormalization")
            if group.types == {"LayerNormalization"} and not (
                reader.channels_last(group.ext[0]) or (group.x is not None and len(group.x) == 1)
            ):
                group.unsupported(
                    "LayerNormalization of a channels-first tensor: the language's ln over=channels normalises "
                    "the channels of each position (torch's permute, LayerNorm, permute)"
                )
            w = reader.init(ln.input[1]) if len(ln.input) > 1 and ln.input[1] else None
            if w is not None and group.x is not None and tuple(w.shape) != (group.x[0],):
                group.unsupported(f"LayerNormalization with weights of shape {tuple(w.shape)}: one per channel is read")
            eps = float(reader.attrs(ln).get("epsilon", 1e-5))
            kw = {"over": "channels"}
            if abs(eps - 1e-5) > 1e-9:
                kw["eps"] = reader.short(eps)
            return [], kw
        return ([], {}) if self.onnx_groups(reader, group) == 1 else None


class GroupNorm(_GroupNorm):
    name = "gn"
    doc = "group normalisation with `groups` channel groups"
    positional = (("groups", Spec("int", min=1)),)

    def groups(self, a, x):
        return a["groups"]

    def onnx_import(self, reader, group):
        """Any other number of groups (tried after ln and instnorm)."""
        groups = self.onnx_groups(reader, group)
        return ([groups], {}) if groups is not None else None


class InstanceNorm(_GroupNorm):
    name = "instnorm"
    doc = "instance normalisation: per sample and channel, per-channel scale and shift"

    def groups(self, a, x):
        return x[0]

    def onnx_import(self, reader, group):
        """One group per channel."""
        groups = self.onnx_groups(reader, group)
        return ([], {}) if groups is not None and group.x is not None and groups == group.x[0] else None


class Scale(Kind):
    """``scale``: y = w·x (+ b), one trainable w (and b) per channel, w initialised to ``init``
    (ConvNeXt's layer scale, 1e-6 there)."""

    name = "scale"
    doc = "trainable per-channel multiplier initialised to init (ConvNeXt's layer scale); bias adds a shift"
    chains = "layer"
    keywords = {"init": Spec("float", 1.0), "bias": Spec("bool", False)}
    shown_keywords = ("bias",)

    def params(self, a, x, y):
        return x[0] * (2 if a["bias"] else 1), 0

    def connections(self, a, x, y):
        # LeNet's count, as for subsample: every output unit has fan-in 1 (its own input), plus the bias
        return prod(y) * (2 if a["bias"] else 1)

    def torch(self, t, node):
        a, x = node.attrs, t.in_shape
        bshape = (x[0],) + (1,) * (len(x) - 1)
        if not a["bias"]:
            w = t.weights(weight=f"torch.full({bshape}, {a['init']!r})")
            return f"{t.x[0]} * {w}.weight"
        w = t.weights(weight=f"torch.full({bshape}, {a['init']!r})", bias=f"torch.zeros({bshape})")
        return f"{t.x[0]} * {w}.weight + {w}.bias"

    def lower(self, b, node, xs, y):
        a, x = node.attrs, b.shape(node.inputs[0])
        bshape = (x[0],) + (1,) * (len(x) - 1)
        w = b.weight("weight", bshape, "fill", value=a["init"])
        if not a["bias"]:
            b.op("Mul", [xs[0], w], out=y)
            return
        b.op("Add", [b.op("Mul", [xs[0], w]), b.weight("bias", bshape, "fill")], out=y)

    def onnx_import(self, reader, group):
        """A Mul by one value per channel (an initializer of shape (C,) or (C, 1, …)), then
        optionally an Add of one per channel: ``lower``'s, and torch's layer scale."""
        if group.types not in ({"Mul"}, {"Mul", "Add"}) or len(group.nodes) != len(group.types) or group.x is None:
            return None

        def per_channel(node):
            """One value per channel: (C, 1, …) channels-first, (C,) channels-last or on a vector."""
            consts = [i for i in node.input if reader.const(i) is not None]
            computed = [i for i in node.input if i not in consts]
            if len(consts) != 1 or len(computed) != 1:
                return None
            return reader.per_channel(consts[0], computed[0])

        w = per_channel(group.first("Mul"))
        if w is None or ("Add" in group.types and per_channel(group.first("Add")) is None):
            return None
        kw = {"bias": True} if "Add" in group.types else {}
        if (w == w.flat[0]).all() and float(w.flat[0]) != 1.0:
            kw["init"] = reader.short(float(w.flat[0]))
        return [], kw


# torch.nn's batch norm keeps a num_batches_tracked counter that is only read when momentum is None;
# without it the state dict holds exactly the export's four tensors.
BATCH_NORM = """

def _drop_batch_count(module, state_dict, prefix, *args):
    state_dict.pop(prefix + "num_batches_tracked", None)


def batch_norm(bn):
    \"\"\"A torch.nn batch norm without its num_batches_tracked counter (unused with a fixed momentum).\"\"\"
    bn.register_buffer("num_batches_tracked", None)
    bn.register_load_state_dict_pre_hook(_drop_batch_count)
    return bn
"""

# Σ over channels c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉ of x² (``lower``'s window; F.local_response_norm
# centres even sizes the other way and needs spatial axes).
LRN_ACROSS = """

def lrn_across(x, size, alpha, beta, k):
    \"\"\"x / (k + alpha/size · Σ x² over `size` neighbouring channels)^beta.\"\"\"
    sq = (x * x).reshape(x.shape[0], 1, x.shape[1], -1)
    total = F.conv2d(F.pad(sq, (0, 0, (size - 1) // 2, size // 2)), torch.ones(1, 1, size, 1, dtype=x.dtype))
    return x / (total.reshape(x.shape) * (alpha / size) + k) ** beta
"""

LRN_WITHIN = """

def lrn_within(x, size, alpha, beta, k):
    \"\"\"Caffe's WITHIN_CHANNEL: x / (k + alpha · mean of x² over a size^n window)^beta.\"\"\"
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[x.dim() - 3]
    mean = pool(x * x, size, 1, (size - 1) // 2, count_include_pad=True)
    return x / (mean * alpha + k) ** beta
"""

LCN_SOURCE = """

def lcn(x, size, sigma):
    \"\"\"Local contrast normalisation (Jarrett et al. 2009): v = x − Σ w·x over a Gaussian
    size^n window of all maps (Σw = 1), y = v / max(mean σ, σ, 1e-6) with σ = sqrt(Σ w·v²).\"\"\"
    n = x.dim() - 2
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g1 = torch.exp(-(r**2) / (2 * sigma**2))
    g = g1
    for _ in range(n - 1):
        g = g.unsqueeze(-1) * g1
    w = g.expand((1, x.shape[1]) + (size,) * n)
    w = (w / w.sum()).to(x.dtype)
    conv = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    v = x - conv(x, w, padding=(size - 1) // 2)
    sigma_map = torch.sqrt(conv(v * v, w, padding=(size - 1) // 2))
    mean = sigma_map.mean(tuple(range(2, 2 + n)), keepdim=True)
    return v / torch.clamp(torch.maximum(sigma_map, mean), min=1e-6)
"""
