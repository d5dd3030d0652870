"""Independent NumPy references of every layer kind, and an interpreter of compiled networks.

Written from the definitions of ``shared/LANGUAGE.md`` and ``docs/language.md`` (and
the textbook definitions they name), never from the ONNX lowering: these are the
oracle the numerics tests hold onnxruntime's results against. Everything works in
float64 on arrays shaped ``N x C x spatial...`` with 1, 2 or 3 spatial axes.

    >>> import numpy as np
    >>> conv(np.ones((1, 1, 4)), np.ones((1, 1, 3)), stride=1, pad="same")[0, 0].tolist()
    [2.0, 3.0, 3.0, 2.0]
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ---------------------------------------------------------------------------
# window arithmetic (LANGUAGE.md §6, docs/language.md §6)


def per_axis(value, n: int) -> tuple:
    """A scalar applies to every spatial axis; a tuple gives one value per axis."""
    if isinstance(value, (tuple, list)):
        assert len(value) == n, (value, n)
        return tuple(int(v) for v in value)
    return (int(value),) * n


def effective(f: int, d: int) -> int:
    """A dilated kernel covers d·(F−1)+1 input positions."""
    return d * (f - 1) + 1


def pads_for(pad, sizes, f_eff, stride) -> tuple:
    """Per-axis (begin, end) padding. ``same`` gives ceil(W/S) outputs with the odd
    pixel at the end (SAME_UPPER); ``valid`` is no padding."""
    n = len(sizes)
    if pad == "valid":
        return ((0, 0),) * n
    if pad == "same":
        out = []
        for w, f, s in zip(sizes, f_eff, stride):
            total = max((-(-w // s) - 1) * s + f - w, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    return tuple((p, p) for p in per_axis(pad, n))


def window_count(w: int, f: int, s: int, pb: int, pe: int, ceil: bool = False) -> int:
    """floor((W + 2P − F)/S) + 1; with ``ceil`` rounded up, minus a last window that
    would start inside the end padding."""
    span = w + pb + pe - f
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= w + pb:
        out -= 1
    return out


def _patches(xp, f, stride, dilation, out):
    """Windows of a padded input: (N, C, *out, *f) — output position o, tap k reads
    xp at o·S + k·d on every axis."""
    n = xp.ndim - 2
    f_eff = tuple(effective(k, d) for k, d in zip(f, dilation))
    v = sliding_window_view(xp, f_eff, axis=tuple(range(2, 2 + n)))
    pos = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, stride))
    taps = tuple(slice(None, None, d) for d in dilation)
    return v[(slice(None), slice(None)) + pos + taps]


_NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def _spatial_pad(x, pads, mode="zeros", value=0.0):
    width = [(0, 0), (0, 0)] + [tuple(p) for p in pads]
    if mode == "zeros":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode=_NP_PAD_MODE[mode])


# ---------------------------------------------------------------------------
# convolutions


def conv(x, w, b=None, stride=1, pad=0, dilation=1, groups=1, pad_mode="zeros", table=None):
    """Cross-correlation y[n,k,o] = b[k] + Σ_{c in group of k} Σ_j w[k,c,j]·xp[n,c,o·S + j·d].

    ``w`` is (K, C/groups, *F); ``table`` lists, for each filter k, the input maps it
    reads: the other maps do not contribute whatever ``w`` holds there."""
    n = x.ndim - 2
    k_out, cg = w.shape[0], w.shape[1]
    f = w.shape[2:]
    stride, dilation = per_axis(stride, n), per_axis(dilation, n)
    f_eff = tuple(effective(k, d) for k, d in zip(f, dilation))
    pads = pads_for(pad, x.shape[2:], f_eff, stride)
    if table is not None:
        keep = np.zeros(w.shape[:2])
        for k, row in enumerate(table):
            keep[k, list(row)] = 1.0
        w = w * keep.reshape(keep.shape + (1,) * n)
    xp = _spatial_pad(x, pads, pad_mode)
    out = tuple(window_count(wi, fe, s, pb, pe) for wi, fe, s, (pb, pe) in zip(x.shape[2:], f_eff, stride, pads))
    p = _patches(xp, f, stride, dilation, out)  # (N, C, *out, *F)
    kg = k_out // groups
    ys = []
    for g in range(groups):
        pg = p[:, g * cg : (g + 1) * cg]
        wg = w[g * kg : (g + 1) * kg]
        axes_p = [1] + list(range(2 + n, 2 + 2 * n))
        axes_w = [1] + list(range(2, 2 + n))
        ys.append(np.moveaxis(np.tensordot(pg, wg, axes=(axes_p, axes_w)), -1, 1))
    y = np.concatenate(ys, axis=1)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * n)
    return y


def deconv(x, w, b=None, stride=1, pad=0, outpad=0, dilation=1, groups=1):
    """Transpose convolution by scattering: every input unit x[n,c,i] adds
    x·w[c,k,j] at position i·S + j·d of a full output, of which P positions are cut
    at the start and the output keeps (W−1)·S − 2P + d·(F−1) + outpad + 1.

    ``w`` is (C, K/groups, *F)."""
    n = x.ndim - 2
    c_in, kg = w.shape[0], w.shape[1]
    f = w.shape[2:]
    stride, pad, outpad, dilation = (per_axis(v, n) for v in (stride, pad, outpad, dilation))
    sizes = x.shape[2:]
    # the full scatter (plus outpad zeros at the end), before P is cut on both sides
    full = tuple((wi - 1) * s + d * (k - 1) + 1 + op for wi, s, d, k, op in zip(sizes, stride, dilation, f, outpad))
    out = tuple(m - 2 * p for m, p in zip(full, pad))
    cg = c_in // groups
    y = np.zeros((x.shape[0], kg * groups) + full)
    for g in range(groups):
        xg = x[:, g * cg : (g + 1) * cg]
        for tap in itertools.product(*(range(k) for k in f)):
            wt = w[(slice(g * cg, (g + 1) * cg), slice(None)) + tap]  # (cg, kg)
            contrib = np.moveaxis(np.tensordot(xg, wt, axes=([1], [0])), -1, 1)  # (N, kg, *sizes)
            where = tuple(
                slice(j * d, j * d + (wi - 1) * s + 1, s) for j, d, wi, s in zip(tap, dilation, sizes, stride)
            )
            y[(slice(None), slice(g * kg, (g + 1) * kg)) + where] += contrib
    y = y[(slice(None), slice(None)) + tuple(slice(p, p + o) for p, o in zip(pad, out))]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * n)
    return y


# ---------------------------------------------------------------------------
# pooling and resampling


def _pool_geometry(x, size, stride, pad, ceil):
    n = x.ndim - 2
    size = per_axis(size, n)
    stride = size if stride is None else per_axis(stride, n)
    pads = pads_for(pad, x.shape[2:], size, stride)
    out = tuple(window_count(w, f, s, pb, pe, ceil) for w, f, s, (pb, pe) in zip(x.shape[2:], size, stride, pads))
    # windows of a ceil-rounded last position may reach past the end padding
    beyond = tuple(
        max((o - 1) * s + f - (w + pb + pe), 0) for o, s, f, w, (pb, pe) in zip(out, stride, size, x.shape[2:], pads)
    )
    return size, stride, pads, out, beyond


def maxpool(x, size, stride=None, pad=0, ceil=False, indices=False):
    """Maximum over each window (padding never wins). With ``indices``, also the
    argmax of each window as a flat index into the input's spatial positions."""
    n = x.ndim - 2
    size, stride, pads, out, beyond = _pool_geometry(x, size, stride, pad, ceil)
    ext = tuple((pb, pe + e) for (pb, pe), e in zip(pads, beyond))
    xp = _spatial_pad(x, ext, value=-np.inf)
    p = _patches(xp, size, stride, (1,) * n, out)
    flat = p.reshape(p.shape[: 2 + n] + (-1,))
    y = flat.max(axis=-1)
    if not indices:
        return y
    arg = flat.argmax(axis=-1)  # offset inside the window
    taps = np.unravel_index(arg, size)
    coords = []
    for axis in range(n):
        o = np.arange(out[axis]).reshape((1, 1) + tuple(-1 if i == axis else 1 for i in range(n)))
        coords.append(o * stride[axis] + taps[axis] - pads[axis][0])
    coords = np.broadcast_arrays(*coords)
    return y, np.ravel_multi_index(tuple(coords), x.shape[2:])


def avgpool(x, size, stride=None, pad=0, ceil=False, count_pad=False):
    """Mean over each window. Padding zeros count in the divisor only with
    ``count_pad``; positions past the end padding (a ceil-rounded window) never count."""
    n = x.ndim - 2
    size, stride, pads, out, beyond = _pool_geometry(x, size, stride, pad, ceil)
    ext = tuple((pb, pe + e) for (pb, pe), e in zip(pads, beyond))
    xp = _spatial_pad(x, ext)
    if count_pad:  # the declared padding counts, what lies beyond it does not
        padded = tuple(w + pb + pe for w, (pb, pe) in zip(x.shape[2:], pads))
        real = _spatial_pad(np.ones((1, 1) + padded), tuple((0, e) for e in beyond))
    else:
        real = _spatial_pad(np.ones((1, 1) + x.shape[2:]), ext)
    axes = tuple(range(2 + n, 2 + 2 * n))
    total = _patches(xp, size, stride, (1,) * n, out).sum(axis=axes)
    count = _patches(real, size, stride, (1,) * n, out).sum(axis=axes)
    return total / count


def adaptive_pool(x, size, reduce="mean"):
    """PyTorch's adaptive pooling: along each axis, output cell i reads the input positions
    floor(i·W/O) … ceil((i+1)·W/O) − 1; the cell's value is the mean (or max) of its box."""
    n = x.ndim - 2
    size = per_axis(size, n)
    cells = [[(i * w // o, -(-(i + 1) * w // o)) for i in range(o)] for w, o in zip(x.shape[2:], size)]
    y = np.zeros(x.shape[:2] + size)
    for index in itertools.product(*(range(o) for o in size)):
        box = x[(slice(None), slice(None)) + tuple(slice(*cells[a][i]) for a, i in enumerate(index))]
        flat = box.reshape(box.shape[:2] + (-1,))
        y[(slice(None), slice(None)) + index] = flat.mean(-1) if reduce == "mean" else flat.max(-1)
    return y


def gap(x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


def gmp(x):
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


def subsample(x, size, w, b):
    """LeNet subsampling: the sum over each F window (stride F) × w[c] + b[c]."""
    n = x.ndim - 2
    size = per_axis(size, n)
    out = tuple(s // f for s, f in zip(x.shape[2:], size))
    total = _patches(x, size, size, (1,) * n, out).sum(axis=tuple(range(2 + n, 2 + 2 * n)))
    shape = (1, -1) + (1,) * n
    return total * np.reshape(w, shape) + np.reshape(b, shape)


def unpool(y, indices, spatial):
    """Max unpooling: zeros of the pool's input shape, each value put back where its
    window's maximum was."""
    n_, c = y.shape[:2]
    out = np.zeros((n_, c, int(np.prod(spatial))))
    np.put_along_axis(out, indices.reshape(n_, c, -1), y.reshape(n_, c, -1), axis=-1)
    return out.reshape((n_, c) + tuple(spatial))


def upsample(x, factor, mode="nearest"):
    """Integer-factor upsampling. ``nearest``: output i reads input floor(i / f).
    ``linear``: separable (bi/tri)linear interpolation at the half-pixel source
    coordinate (i + 0.5)/f − 0.5, clamped to the input (PyTorch align_corners=False)."""
    n = x.ndim - 2
    factor = per_axis(factor, n)
    for axis, f in zip(range(2, 2 + n), factor):
        w = x.shape[axis]
        if mode == "nearest":
            x = np.repeat(x, f, axis=axis)
            continue
        src = np.clip((np.arange(w * f) + 0.5) / f - 0.5, 0, w - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, w - 1)
        lam = (src - i0).reshape((-1,) + (1,) * (x.ndim - 1 - axis))
        x = np.take(x, i0, axis=axis) * (1 - lam) + np.take(x, i1, axis=axis) * lam
    return x


# ---------------------------------------------------------------------------
# normalisation


def _channel(v, n):
    return np.reshape(v, (1, -1) + (1,) * n)


def bn(x, gamma, beta, mean, var, eps=1e-5):
    """Inference batch norm with the running statistics."""
    n = x.ndim - 2
    return (x - _channel(mean, n)) / np.sqrt(_channel(var, n) + eps) * _channel(gamma, n) + _channel(beta, n)


def lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha/size · Σ x²)^beta, the sum over channels c − floor((size−1)/2)
    to c + ceil((size−1)/2) (clipped to the existing channels)."""
    c_count = x.shape[1]
    sq = x**2
    total = np.zeros_like(x)
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    for c in range(c_count):
        total[:, c] = sq[:, max(0, c - lo) : min(c_count, c + hi + 1)].sum(axis=1)
    return x / (k + alpha / size * total) ** beta


def power(x, exponent=1.0, scale=1.0, shift=0.0):
    """Caffe's Power layer (power_layer.cpp): (shift + scale·x)^power."""
    return (shift + scale * x) ** exponent


def lrn_within(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's LRN with norm_region WITHIN_CHANNEL (lrn_layer.cpp: a Power, an AVE Pooling of
    pad (size−1)/2 and a Power): x / (k + alpha/size^n · Σ x²)^beta, the sum over the size^n
    window centred on each position, zeros beyond the borders (the divisor is always size^n)."""
    n = x.ndim - 2
    r = (size - 1) // 2
    sq = np.pad(x**2, [(0, 0), (0, 0)] + [(r, r)] * n)
    total = np.zeros_like(x)
    for pos in itertools.product(*(range(w) for w in x.shape[2:])):
        box = sq[(slice(None), slice(None)) + tuple(slice(p, p + size) for p in pos)]
        total[(slice(None), slice(None)) + pos] = box.reshape(box.shape[:2] + (-1,)).sum(-1)
    return x / (k + alpha / size**n * total) ** beta


def lcn(x, size, sigma=1.0):
    """Local contrast normalisation (Jarrett et al. 2009, as cnndsl defines it): with a
    Gaussian w of standard deviation sigma over a size^n window and all maps, Σw = 1,
    v = x − Σ w·x, σ = sqrt(Σ w·v²), y = v / max(mean of σ over the positions, σ).
    Windows see zeros beyond the borders."""
    n = x.ndim - 2
    r = np.arange(size) - (size - 1) / 2
    g1 = np.exp(-(r**2) / (2 * sigma**2))
    g = g1
    for _ in range(n - 1):
        g = np.multiply.outer(g, g1)
    w = np.broadcast_to(g, (1, x.shape[1]) + g.shape)
    w = w / w.sum()
    half = (size - 1) // 2
    mean = conv(x, w, pad=half)  # (N, 1, *spatial)
    v = x - mean
    s = np.sqrt(conv(v * v, w, pad=half))
    c = s.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
    return v / np.maximum(np.maximum(s, c), 1e-6)


def group_norm(x, groups, gamma, beta, eps=1e-5):
    """Normalise each sample over each group of C/groups channels × all positions
    (biased variance), then a per-channel scale and shift."""
    n_, c = x.shape[:2]
    g = x.reshape(n_, groups, -1)
    mu = g.mean(axis=-1, keepdims=True)
    var = ((g - mu) ** 2).mean(axis=-1, keepdims=True)
    y = ((g - mu) / np.sqrt(var + eps)).reshape(x.shape)
    n = x.ndim - 2
    return y * _channel(gamma, n) + _channel(beta, n)


def layer_norm(x, gamma, beta, eps=1e-5):
    return group_norm(x, 1, gamma, beta, eps)


def layer_norm_channels(x, gamma, beta, eps=1e-5):
    """ln over=channels (ConvNeXt's LayerNorm2d): every sample and position normalised over its C
    channels (biased variance), then γ[c]·x̂ + β[c]."""
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    n = x.ndim - 2
    return (x - mu) / np.sqrt(var + eps) * _channel(gamma, n) + _channel(beta, n)


def scale(x, w, b=None):
    """y = w[c]·x (+ b[c])."""
    n = x.ndim - 2
    y = x * _channel(np.reshape(w, -1), n)
    return y if b is None else y + _channel(np.reshape(b, -1), n)


def instnorm(x, gamma, beta, eps=1e-5):
    return group_norm(x, x.shape[1], gamma, beta, eps)


# ---------------------------------------------------------------------------
# dense


def flatten(x):
    return x.reshape(x.shape[0], -1)


def fc(x, w, b=None):
    """y = W·flatten(x) + b, W of shape (N_out, in)."""
    y = flatten(x) @ w.T
    return y if b is None else y + b


def rbf(x, w):
    """Euclidean RBF units y_i = Σ_j (x_j − w_ij)²."""
    d = flatten(x)[:, None, :] - w[None, :, :]
    return (d**2).sum(axis=-1)


def softmax(x):
    """Softmax over the channel axis (axis 1)."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def dropout(x):
    return x  # inference


# ---------------------------------------------------------------------------
# activations

_erf = np.vectorize(math.erf, otypes=[float])


def relu(x):
    return np.maximum(x, 0)


def relu6(x):
    return np.minimum(np.maximum(x, 0), 6)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def tanh(x):
    return np.tanh(x)


def scaled_tanh(x):
    return 1.7159 * np.tanh(2 * x / 3)


def abs_(x):
    return np.abs(x)


def leaky_relu(x, a=0.01):
    return np.where(x > 0, x, a * x)


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))


def gelu(x):
    """x·Φ(x), the exact erf form."""
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def silu(x):
    return x * sigmoid(x)


def hardswish(x):
    return x * relu6(x + 3) / 6


def hardsigmoid(x, alpha=1 / 6, beta=0.5):
    return np.maximum(0, np.minimum(1, alpha * x + beta))


def softplus(x, beta=1.0):
    """log(1 + e^(βx)) / β, written without overflow: max(βx, 0) + log1p(e^−|βx|)."""
    z = beta * x
    return (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta


def mish(x):
    return x * np.tanh(softplus(x))


def drop_path(x):
    return x  # inference


def prelu(x, slope):
    """x where positive, slope[c]·x elsewhere."""
    return np.where(x > 0, x, _channel(np.reshape(slope, -1), x.ndim - 2) * x)


# ---------------------------------------------------------------------------
# rearrangement and combination


def crop(x, size, center=False, offset=None):
    """Keep a window of ``size`` per spatial axis: top-left, centred with offset
    floor((W − size)/2), or from ``offset`` (Caffe's Crop: offset per axis)."""
    n = x.ndim - 2
    size = per_axis(size, n)
    start = [(w - t) // 2 if center else 0 for w, t in zip(x.shape[2:], size)]
    if offset is not None:
        start = list(per_axis(offset, n))
    return x[(slice(None), slice(None)) + tuple(slice(s, s + t) for s, t in zip(start, size))]


def pad(x, p, mode="zeros"):
    """P on both sides of every spatial axis: zeros, reflect (mirror without the
    edge) or replicate (the edge repeated)."""
    n = x.ndim - 2
    return _spatial_pad(x, tuple((q, q) for q in per_axis(p, n)), mode)


def shuffle(x, groups):
    """ShuffleNet channel shuffle: C as (groups, C/groups), transposed, flattened."""
    n_, c = x.shape[:2]
    y = x.reshape((n_, groups, c // groups) + x.shape[2:])
    return np.swapaxes(y, 1, 2).reshape(x.shape)


def channel_slice(x, start, end):
    return x[:, start:end]


def reorg_darknet(x, s):
    """Darknet's [reorg] forward pass, transcribed from reorg_cpu (blas.c) with forward=0, which
    forward_reorg_layer calls (reorg_layer.c): w, h, c are the layer's input sizes, and
    out[in_index] = x[out_index]. The output buffer is then read as C·S² × H/S × W/S."""
    batch, c, h, w = x.shape
    flat, out = x.reshape(-1), np.zeros(x.size)
    out_c = c // (s * s)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2 = k % out_c
                    offset = k // out_c
                    w2 = i * s + offset % s
                    h2 = j * s + offset // s
                    out_index = w2 + w * s * (h2 + h * s * (c2 + out_c * b))
                    out[in_index] = flat[out_index]
    return out.reshape(batch, c * s * s, h // s, w // s)


def space_to_depth(x, s):
    """ONNX SpaceToDepth, transcribed from its definition (onnx/reference/ops/op_space_to_depth.py)
    for any number of spatial axes: x reshaped to (N, C, W1/S, S, W2/S, S, …), the block offsets
    moved before the channels, flattened: output channel ((o1·S + o2)·S + …)·C + c."""
    n = x.ndim - 2
    n_, c = x.shape[:2]
    split = (n_, c) + tuple(v for w in x.shape[2:] for v in (w // s, s))
    perm = (0,) + tuple(range(3, 2 + 2 * n, 2)) + (1,) + tuple(range(2, 2 + 2 * n, 2))
    return np.transpose(x.reshape(split), perm).reshape((n_, c * s**n) + tuple(w // s for w in x.shape[2:]))


def shortcut_pad(x, stride, channels):
    """Option-A shortcut: x[..., ::S, ::S], then zero channels appended."""
    n = x.ndim - 2
    sub = x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in per_axis(stride, n))]
    zeros = np.zeros((sub.shape[0], channels - sub.shape[1]) + sub.shape[2:])
    return np.concatenate([sub, zeros], axis=1)


def add(*xs):
    return sum(xs[1:], xs[0])


def shortcut_darknet(out, add_):
    """Darknet's [shortcut] forward (forward_shortcut_layer: the output starts as a copy of the
    current value, then shortcut_cpu of blas.c adds the `from` layer ``add_``), transcribed:
    w1, h1, c1 are the `from` layer's sizes, w2, h2, c2 the output's."""
    batch, c2, h2, w2 = out.shape
    _, c1, h1, w1 = add_.shape
    out, flat = out.copy().reshape(-1), add_.reshape(-1)
    stride, sample = w1 // w2, w2 // w1
    assert stride == h1 // h2 and sample == h2 // h1
    stride, sample = max(stride, 1), max(sample, 1)
    minw, minh, minc = min(w1, w2), min(h1, h2), min(c1, c2)
    for b in range(batch):
        for k in range(minc):
            for j in range(minh):
                for i in range(minw):
                    out_index = i * sample + w2 * (j * sample + h2 * (k + c2 * b))
                    add_index = i * stride + w1 * (j * stride + h1 * (k + c1 * b))
                    out[out_index] += flat[add_index]
    return out.reshape(batch, c2, h2, w2)


def mul(*xs):
    y = xs[0]
    for other in xs[1:]:
        y = y * other  # broadcasting of size-1 axes
    return y


def concat(*xs):
    return np.concatenate(xs, axis=1)


# ---------------------------------------------------------------------------
# the interpreter


def onnx_weights(proto) -> dict:
    """The weights of an exported model by name (``<layer>.weight`` …), as float64."""
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer if "/" not in t.name}


def _run_node(node, xs, weights, values, pool_indices):
    a, k = node.attrs, node.kind
    x = xs[0] if xs else None

    def wt(suffix):
        return weights[f"{node.name}.{suffix}"]

    if k == "conv":
        table = a["table"].rows if a["table"] is not None else None
        return conv(
            x,
            wt("weight"),
            wt("bias") if a["bias"] else None,
            a["stride"],
            a["pad"],
            a["dilation"],
            a["groups"],
            a["pad_mode"],
            table,
        )
    if k == "deconv":
        return deconv(
            x,
            wt("weight"),
            wt("bias") if a["bias"] else None,
            a["stride"],
            a["pad"],
            a["outpad"],
            a["dilation"],
            a["groups"],
        )
    if k == "maxpool":
        y, idx = maxpool(x, a["size"], a["stride"], a["pad"], a["ceil"], indices=True)
        pool_indices[node.id] = idx
        return y
    if k == "avgpool":
        return avgpool(x, a["size"], a["stride"], a["pad"], a["ceil"], a["count_pad"])
    if k == "unpool":
        pool = a["of"].node
        return unpool(x, pool_indices[pool.id], values[pool.inputs[0]].shape[2:])
    if k == "upsample":
        return upsample(x, a["factor"], a["mode"])
    if k == "subsample":
        return subsample(x, a["size"], wt("weight"), wt("bias"))
    if k == "bn":
        return bn(x, wt("weight"), wt("bias"), wt("running_mean"), wt("running_var"), a["eps"])
    if k == "lrn" and a["region"] == "within":
        return lrn_within(x, a["size"], a["alpha"], a["beta"], a["k"])
    if k == "lrn":
        return lrn(x, a["size"], a["alpha"], a["beta"], a["k"])
    if k == "lcn":
        return lcn(x, a["size"], a["sigma"])
    if k == "ln" and a["over"] == "channels":
        return layer_norm_channels(x, wt("weight"), wt("bias"), a["eps"])
    if k == "scale":
        return scale(x, wt("weight"), wt("bias") if a["bias"] else None)
    if k == "hardsigmoid":
        return hardsigmoid(x, a["alpha"], a["beta"])
    if k == "power":
        return power(x, a["exponent"], a["scale"], a["shift"])
    if k == "softplus":
        return softplus(x, a["beta"])
    if k == "slice":
        return channel_slice(x, a["start"], a["end"])
    if k == "space_to_depth" and a["order"] == "darknet":
        return reorg_darknet(x, a["block"])
    if k == "space_to_depth":
        return space_to_depth(x, a["block"])
    if k in ("adaptive_avgpool", "adaptive_maxpool"):
        return adaptive_pool(x, a["size"], "mean" if k == "adaptive_avgpool" else "max")
    if k in ("ln", "gn", "instnorm"):
        groups = {"ln": 1, "gn": a.get("groups"), "instnorm": x.shape[1]}[k]
        return group_norm(x, groups, wt("weight"), wt("bias"), a["eps"])
    if k == "fc":
        return fc(x, wt("weight"), wt("bias") if a["bias"] else None)
    if k == "rbf":
        return rbf(x, wt("weight"))
    if k == "prelu":
        return prelu(x, wt("weight"))
    if k == "leaky_relu":
        return leaky_relu(x, a["a"])
    if k == "elu":
        return elu(x, a["alpha"])
    if k == "crop":
        return crop(x, a["size"] if a["to"] is None else a["to"].node.shape[1:], a["center"], a["offset"])
    if k == "pad":
        return pad(x, a["pad"], a["mode"])
    if k == "shuffle":
        return shuffle(x, a["groups"])
    if k == "shortcut_pad":
        return shortcut_pad(x, a["stride"], a["channels"])
    if k == "add" and a["fit"] == "first":
        y = xs[0]
        for other in xs[1:]:
            y = shortcut_darknet(y, other)
        return y
    if k in ("add", "residual"):
        return add(*xs)
    if k == "mul":
        return mul(*xs)
    if k == "concat":
        return concat(*xs)
    simple = {
        "gap": gap,
        "gmp": gmp,
        "flatten": flatten,
        "softmax": softmax,
        "dropout": dropout,
        "relu": relu,
        "relu6": relu6,
        "sigmoid": sigmoid,
        "tanh": tanh,
        "scaled_tanh": scaled_tanh,
        "abs": abs_,
        "gelu": gelu,
        "silu": silu,
        "hardswish": hardswish,
        "mish": mish,
        "drop_path": drop_path,
    }
    if k in simple:
        return simple[k](x)
    raise NotImplementedError(f"no NumPy reference for layer kind {k!r}")


def run_graph(model, weights: dict, x) -> dict:
    """Evaluate a compiled network (``cnndsl.load``) in float64 NumPy.

    ``weights`` maps ``<layer>.<suffix>`` to arrays (``onnx_weights(proto)``);
    returns the network's outputs by name."""
    graph = getattr(model, "graph", model)
    values: dict[int, np.ndarray] = {}
    pool_indices: dict[int, np.ndarray] = {}
    for node in graph.nodes:
        if node.kind == "input":
            values[node.id] = np.asarray(x, dtype=np.float64)
            continue
        y = _run_node(node, [values[i] for i in node.inputs], weights, values, pool_indices)
        assert y.shape[1:] == tuple(node.shape), (node.name, y.shape, node.shape)
        values[node.id] = y
    return {name: values[nid] for name, nid in graph.outputs}
