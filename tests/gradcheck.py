"""Finite-difference checks of the training graph, in float64 on onnx.reference.

onnxruntime's CPU provider has no float64 Conv, pooling or normalisation
kernels, so the checks run ONNX's own reference evaluator: an implementation
independent of both cnndsl and onnxruntime.
"""

from __future__ import annotations

import numpy as np
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from cnndsl import load
from cnndsl.train.step import train_model


class ConvTranspose(OpRun):
    """ConvTranspose as the ONNX specification defines it: every input position scatters
    ``x · w[k]`` to output ``i·s − p + k·d``. (onnx.reference's own mishandles groups.)"""

    op_domain = ""

    def _run(
        self,
        X,
        W,
        B=None,
        auto_pad=None,
        dilations=None,
        group=None,
        kernel_shape=None,
        output_padding=None,
        output_shape=None,
        pads=None,
        strides=None,
    ):
        r = X.ndim - 2
        size, f = X.shape[2:], W.shape[2:]
        strides, dilations = strides or [1] * r, dilations or [1] * r
        pads, extra = pads or [0] * (2 * r), output_padding or [0] * r
        g = group or 1
        n, c, m = X.shape[0], X.shape[1], W.shape[1] * g
        full = [(w - 1) * s + d * (k - 1) + 1 + e for w, s, d, k, e in zip(size, strides, dilations, f, extra)]
        y = np.zeros((n, m, *full), X.dtype)
        cg, mg = c // g, m // g
        for j in range(g):
            xs, ws = X[:, j * cg : (j + 1) * cg], W[j * cg : (j + 1) * cg]
            for k in np.ndindex(*f):
                part = np.einsum("nc...,cm->nm...", xs, ws[(slice(None), slice(None), *k)])
                where = tuple(
                    slice(ki * d, ki * d + (w - 1) * s + 1, s) for ki, d, w, s in zip(k, dilations, size, strides)
                )
                y[(slice(None), slice(j * mg, (j + 1) * mg), *where)] += part
        out = [fl - p0 - p1 for fl, p0, p1 in zip(full, pads[:r], pads[r:])]
        y = y[(slice(None), slice(None), *(slice(p0, p0 + o) for p0, o in zip(pads[:r], out)))]
        if B is not None:
            y = y + B.reshape(1, -1, *[1] * r)
        return (y,)


class Erf(OpRun):
    """onnx.reference's Erf computes in float32; the checks need float64."""

    op_domain = ""

    def _run(self, x):
        import math

        return (np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype),)


class GatherElements(OpRun):
    """onnx.reference's GatherElements uses np.choose, limited to 64 positions."""

    op_domain = ""

    def _run(self, data, indices, axis=None):
        axis = axis or 0
        return (np.take_along_axis(data, np.where(indices < 0, indices + data.shape[axis], indices), axis),)


class MaxPool(OpRun):
    """MaxPool with indices into the unpadded N·C·spatial input (ONNX specification; the
    indices of onnx.reference's own go out of range for some shapes)."""

    op_domain = ""

    def _run(
        self, x, auto_pad=None, ceil_mode=0, dilations=None, kernel_shape=None, pads=None, storage_order=0, strides=None
    ):
        r = x.ndim - 2
        k, s = list(kernel_shape), list(strides or [1] * r)
        pads = list(pads or [0] * (2 * r))
        out, ends = [], []
        for w, f, st, p0, p1 in zip(x.shape[2:], k, s, pads[:r], pads[r:]):
            span = w + p0 + p1 - f
            o = (-(-span // st) if ceil_mode else span // st) + 1
            out.append(o)
            ends.append(max((o - 1) * st + f - w - p0, 0))
        widths = [(0, 0), (0, 0)] + list(zip(pads[:r], ends))
        xp = np.pad(x, widths, constant_values=-np.inf)
        where = np.pad(np.arange(x.size).reshape(x.shape), widths, constant_values=-1)
        axes = tuple(range(2, 2 + r))
        pick = (slice(None), slice(None), *(slice(0, (o - 1) * st + 1, st) for o, st in zip(out, s)))
        vals = np.lib.stride_tricks.sliding_window_view(xp, k, axis=axes)[pick]
        idx = np.lib.stride_tricks.sliding_window_view(where, k, axis=axes)[pick]
        vals = vals.reshape(*vals.shape[: 2 + r], -1)
        best = vals.argmax(-1)[..., None]
        return (
            np.take_along_axis(vals, best, -1)[..., 0],
            np.take_along_axis(idx.reshape(vals.shape), best, -1)[..., 0].astype(np.int64),
        )


class GlobalMaxPool(OpRun):
    """The maximum over every spatial axis (onnx.reference's own reduces the wrong axes of a
    1-D or 3-D input)."""

    op_domain = ""

    def _run(self, x):
        return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)


FIXED = [ConvTranspose, Erf, GatherElements, GlobalMaxPool, MaxPool]
# Five-point central differences, (8·(f(x+h) − f(x−h)) − (f(x+2h) − f(x−2h))) / 12h: truncation
# ~h⁴, rounding ~1e-16·|loss|/h; with h = 1e-5 both are far below 1e-6 relative even for
# LeNet-5's RBF loss (~90 at initialisation, strongly curved).
H = 1e-5
FLOOR = 1e-4  # a gradient whose norm is below this is compared absolutely (a bias before bn: exactly 0)
SAMPLES = 12  # coordinates compared per tensor (all of them when it is smaller)


def prune(proto, outputs):
    """A copy of the model computing only ``outputs`` (the forward pass and the loss)."""
    import onnx

    need = set(outputs)
    keep = []
    for node in reversed(proto.graph.node):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(i for i in node.input if i)
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    del m.graph.node[:]
    m.graph.node.extend(reversed(keep))
    del m.graph.output[:]
    m.graph.output.extend(o for o in proto.graph.output if o.name in outputs)
    return m


class Check:
    """One network's train graph: its gradients against central differences of its loss."""

    def __init__(self, source, batch=2, loss="cross_entropy", seed=0, classes=None, **kw):
        model = load(source) if isinstance(source, str) else source
        self.proto = train_model(model, loss=loss, dtype="float64", gradients=True, wrt_input=True, seed=seed, **kw)
        self.full = ReferenceEvaluator(self.proto, new_ops=FIXED)
        self.forward = ReferenceEvaluator(prune(self.proto, ["loss"]), new_ops=FIXED)
        rng = np.random.default_rng(seed + 1)
        shape = model.graph.input_shape
        self.x = rng.standard_normal((batch, *shape))
        out = model.graph.nodes[model.graph.outputs[0][1]].shape
        if loss in ("cross_entropy", "map"):
            self.y = rng.integers(0, out[0], (batch, *out[1:])).astype(np.int64)
        else:
            self.y = rng.standard_normal((batch, *out))
        self.params = {
            t.name: __import__("onnx").numpy_helper.to_array(t)
            for t in self.proto.graph.initializer
            if t.name.endswith((".weight", ".bias")) and any(i.name == t.name for i in self.proto.graph.input)
        }
        # random parameters instead of the initial ones (BN scale 1 / bias 0 hides mistakes)
        self.params = {
            k: rng.standard_normal(v.shape) * (0.5 if k.endswith(".weight") else 0.1)
            + (1.0 if k.endswith(".weight") and v.ndim == 1 else 0.0)
            for k, v in self.params.items()
        }

    def feeds(self, **override):
        f = {"x": self.x, "y": self.y, **self.params}
        f.update(override)
        return f

    def loss(self, **override) -> float:
        return float(self.forward.run(["loss"], self.feeds(**override))[0])

    def gradients(self) -> dict[str, np.ndarray]:
        names = [o.name for o in self.proto.graph.output if o.name.endswith(".grad")]
        return dict(zip(names, self.full.run(names, self.feeds())))

    def numeric(self, name: str, flat_index) -> float:
        if name == "input":
            base = self.x
        else:
            base = self.params[name]
        key = "x" if name == "input" else name

        def at(step):
            moved = base.copy()
            moved.flat[flat_index] += step
            return self.loss(**{key: moved})

        return (8 * (at(H) - at(-H)) - (at(2 * H) - at(-2 * H))) / (12 * H)

    def errors(self, samples: int = SAMPLES, seed: int = 0) -> dict[str, float]:
        """Relative error ‖g − fd‖ / max(‖g‖, ‖fd‖) per tensor over sampled coordinates.

        A gradient that is zero by construction (a bias before bn) has no relative
        error: there the absolute error counts, scaled so that 1e-6 means ‖g − fd‖ ≤ 1e-9 (the rounding noise of a central
        difference is about 1e-16/h = 1e-11 per coordinate)."""
        rng = np.random.default_rng(seed)
        out = {}
        for gname, g in self.gradients().items():
            name = gname[: -len(".grad")]
            idx = np.arange(g.size) if g.size <= samples else rng.choice(g.size, samples, replace=False)
            ours = g.reshape(-1)[idx]
            fd = np.array([self.numeric(name, int(i)) for i in idx])
            scale = max(np.linalg.norm(ours), np.linalg.norm(fd))
            diff = np.linalg.norm(ours - fd)
            out[name] = float(diff / scale) if scale >= FLOOR else float(diff * 1e3)
        return out
