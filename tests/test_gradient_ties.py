"""Gradients at ties, for every kind whose lowering takes a maximum.

Where several inputs share a maximum the loss has a kink, and the gradient is a
convention. cnndsl follows PyTorch's per operator (docs/training.md, "Ties"):

- a **pooling maximum** (``maxpool``, ``gmp``, ``adaptive_maxpool``; ``unpool``
  reuses maxpool's indices) routes each window's gradient to one position, the
  first maximum in row-major order — PyTorch's max_pool / adaptive_max_pool
  kernels (``if (val > maxval)``); torch exports ``adaptive_max_pool(1)`` as
  ONNX's GlobalMaxPool, cnndsl's ``gmp``;
- an **element-wise maximum of two tensors** (``lcn``'s floor
  ``max(σ, mean σ)``) splits a tie evenly, as ``torch.maximum`` does — which is
  also what central differences see at a two-way tie.

Three kinds of checks: (1) finite differences of the loss with respect to the
input *before* a layer that creates ties (``upsample``, an overlapping
``maxpool``): there the loss is smooth, so any rule that hands every tied
maximum the whole gradient is caught (it was four times too large after
``upsample 2 -> gmp``); (2) the input gradient at exact ties against a NumPy
transcription of first-maximum routing and against PyTorch's backward; (3) exact
two-way ties of ``lcn`` against central differences.
"""

from __future__ import annotations

import itertools

import gradcheck
import numpy as np
import pytest
from gradcheck import Check
from numpy_ref import adaptive_pool, maxpool
from test_gradients import KINDS, TOLERANCE, _kind, _source

from cnndsl import load
from cnndsl.lower.export import to_onnx

MAX_OPS = {"MaxPool", "GlobalMaxPool", "ReduceMax", "Max"}

# ---------------------------------------------------------------- (1) smooth losses through tie-making layers
THROUGH_TIES = [
    ("gmp-after-upsample", "input 2x3x3\n upsample 2\n gmp"),
    ("gmp-after-overlapping-maxpool", "input 2x5x5\n maxpool 3/1\n gmp"),
    ("gmp-1d-after-upsample", "input 2x4\n upsample 3\n gmp"),
    ("maxpool-after-upsample", "input 2x4x4\n upsample 2\n maxpool 3/2"),
    ("maxpool-overlapping-after-upsample", "input 2x3x3\n upsample 2\n maxpool 2/1"),
    ("maxpool-ceil-pad-after-upsample", "input 2x4x4\n upsample 2\n maxpool 3/2/1 ceil=true"),
    ("adaptive_maxpool-cells-after-upsample", "input 2x3x3\n upsample 2\n adaptive_maxpool 4"),
    ("adaptive_maxpool-uniform-after-upsample", "input 2x3x3\n upsample 2\n adaptive_maxpool 3x2"),
    ("adaptive_maxpool-3d-after-upsample", "input 1x2x3x2\n upsample 2\n adaptive_maxpool 3x4x3"),
    ("unpool-after-upsample", "input 2x3x3\n upsample 2\n p: maxpool 2\n conv 2/1\n unpool of=@p"),
]


@pytest.mark.parametrize("body", [b for _, b in THROUGH_TIES], ids=[i for i, _ in THROUGH_TIES])
def test_gradient_through_tied_maxima_matches_finite_differences(body):
    errors = Check(_source(body)).errors()
    bad = {k: v for k, v in errors.items() if v > TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


# ---------------------------------------------------------------- (2) routing at exact ties
# (id, body, the PyTorch function of the same pooling)
AT_TIES = [
    ("maxpool", "input 2x6x6\n maxpool 3/2", lambda F, x: F.max_pool2d(x, 3, 2)),
    ("maxpool-overlapping", "input 2x5x5\n maxpool 2/1", lambda F, x: F.max_pool2d(x, 2, 1)),
    (
        "maxpool-ceil-pad",
        "input 2x8x8\n maxpool 3/2/1 ceil=true",
        lambda F, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    ),
    ("maxpool-1d", "input 2x9\n maxpool 3/2", lambda F, x: F.max_pool1d(x, 3, 2)),
    ("gmp", "input 2x4x4\n gmp", lambda F, x: F.adaptive_max_pool2d(x, 1)),
    ("gmp-3d", "input 2x3x2x3\n gmp", lambda F, x: F.adaptive_max_pool3d(x, 1)),
    ("adaptive_maxpool", "input 2x7x5\n adaptive_maxpool 3x2", lambda F, x: F.adaptive_max_pool2d(x, (3, 2))),
    ("adaptive_maxpool-uniform", "input 2x6x4\n adaptive_maxpool 3x2", lambda F, x: F.adaptive_max_pool2d(x, (3, 2))),
    ("adaptive_maxpool-3d", "input 1x3x4x5\n adaptive_maxpool 2x3x2", lambda F, x: F.adaptive_max_pool3d(x, (2, 3, 2))),
]


def _tied_input(shape, seed=0):
    """Values from {0, 1, 2}: most windows hold several maxima."""
    return np.random.default_rng(seed).integers(0, 3, (2, *shape)).astype(np.float64)


def _boxes(model, x):
    """Per output position of the pooling layer, the input box it reads (per-axis slices)."""
    node = model.graph.nodes[1]
    a, spatial, out = node.attrs, x.shape[2:], node.shape[1:]
    if node.kind == "gmp":
        return {(0,) * len(spatial): tuple(slice(0, w) for w in spatial)}
    if node.kind == "adaptive_maxpool":
        cells = [[(i * w // o, -(-(i + 1) * w // o)) for i in range(o)] for w, o in zip(spatial, out)]
    else:  # maxpool: window j covers j·s − p … j·s − p + f − 1, inside the input
        cells = [
            [(max(j * s - p, 0), min(j * s - p + f, w)) for j in range(o)]
            for w, o, f, s, (p, _) in zip(spatial, out, a["size"], a["stride"], a["pads"])
        ]
    return {idx: tuple(slice(*cells[k][i]) for k, i in enumerate(idx)) for idx in itertools.product(*map(range, out))}


def _numpy_input_gradient(model, check):
    """fc + cross-entropy after the pooling, in NumPy; each window's gradient to its first maximum."""
    x, y = check.x, check.y
    boxes = _boxes(model, x)
    out = model.graph.nodes[1].shape
    pooled = np.zeros((len(x), *out))
    for idx, box in boxes.items():
        pooled[(slice(None), slice(None), *idx)] = x[(slice(None), slice(None), *box)].reshape(*x.shape[:2], -1).max(-1)
    w, b = check.params["fc.weight"], check.params["fc.bias"]
    z = pooled.reshape(len(x), -1) @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    gp = ((p - np.eye(3)[y]) / len(x) @ w).reshape(pooled.shape)
    grad = np.zeros_like(x)
    for idx, box in boxes.items():
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
            window = x[(n, c, *box)]
            first = np.unravel_index(np.argmax(window), window.shape)  # argmax: the first maximum, row-major
            at = tuple(s.start + k for s, k in zip(box, first))
            grad[(n, c, *at)] += gp[(n, c, *idx)]
    return pooled, grad


def _tied_windows(model, x) -> int:
    """How many (sample, channel, window) hold more than one maximum."""
    count = 0
    for box in _boxes(model, x).values():
        flat = x[(slice(None), slice(None), *box)].reshape(*x.shape[:2], -1)
        count += int(((flat == flat.max(-1, keepdims=True)).sum(-1) > 1).sum())
    return count


def _graph_input_gradient(body, seed=0):
    model = load(_source(body))
    check = Check(model)
    check.x = _tied_input(model.graph.input_shape, seed)
    return model, check, check.gradients()["input.grad"]


@pytest.mark.parametrize("body", [b for _, b, _ in AT_TIES], ids=[i for i, _, _ in AT_TIES])
def test_tied_maxima_route_the_gradient_to_the_first_maximum(body):
    model, check, ours = _graph_input_gradient(body)
    pooled, expected = _numpy_input_gradient(model, check)
    # the windows are the kind's own: the reference's pooled values, compared with numpy_ref's
    node = model.graph.nodes[1]
    if node.kind == "maxpool":
        a = node.attrs
        np.testing.assert_array_equal(pooled, maxpool(check.x, a["size"], a["stride"], a["pad"], a["ceil"]))
    elif node.kind == "adaptive_maxpool":
        np.testing.assert_array_equal(pooled, adaptive_pool(check.x, node.shape[1:], "max"))
    tied = _tied_windows(model, check.x)
    assert tied > 0  # the input does tie
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)
    # one position per window and channel holds the gradient: never every tied maximum
    assert (ours != 0).sum() <= len(_boxes(model, check.x)) * np.prod(check.x.shape[:2])


@pytest.mark.parametrize("body,torch_pool", [(b, f) for _, b, f in AT_TIES], ids=[i for i, _, _ in AT_TIES])
def test_tied_maxima_route_the_gradient_as_pytorch_does(body, torch_pool):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model, check, ours = _graph_input_gradient(body)
    x = torch.tensor(check.x, requires_grad=True)
    w, b = (torch.tensor(check.params[k]) for k in ("fc.weight", "fc.bias"))
    loss = F.cross_entropy(torch_pool(F, x).flatten(1) @ w.T + b, torch.tensor(check.y))
    loss.backward()
    np.testing.assert_allclose(ours, x.grad.numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- (3) lcn: exact two-way ties of max(σ, mean σ)
def test_lcn_ties_split_the_gradient_evenly_as_central_differences_see_it(monkeypatch):
    """lcn 1 over two channels x₀ = a + ½, x₁ = a − ½ (a a multiple of ¼, so that every value is
    exact): the window's mean is a, σ = ½ at every position, and so is mean σ — the floor
    max(σ, mean σ) ties at all 16 positions. Central differences see the mean of the slopes on
    either side of a kink, the even split of torch.maximum."""
    body = "input 2x4x4\n lcn 1"
    check = Check(_source(body))
    a = np.random.default_rng(7).integers(-8, 8, (2, 1, 4, 4)) / 4
    check.x = np.concatenate([a + 0.5, a - 0.5], axis=1)
    sigma = np.sqrt(((check.x - check.x.mean(1, keepdims=True)) ** 2).mean(1))
    assert (sigma == 0.5).all()  # every position ties with the mean
    # at a kink the stencil's error is of order h (the two sides' curvatures differ), not h⁴
    monkeypatch.setattr(gradcheck, "H", 1e-7)
    errors = check.errors(samples=32)
    bad = {k: v for k, v in errors.items() if v > TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


# ---------------------------------------------------------------- every max-like kind is here
def test_every_kind_that_takes_a_maximum_has_a_tie_check():
    takes_max = set()
    for case, body in KINDS:
        for dtype in ("float32", "float64"):
            ops = {n.op_type for n in to_onnx(load(_source(body)), dtype=dtype).graph.node}
            if ops & MAX_OPS:
                takes_max.add(_kind(case))
    checked = {_kind(i) for i, _ in THROUGH_TIES + [(i, b) for i, b, _ in AT_TIES]} | {"lcn"}
    assert takes_max == {"maxpool", "gmp", "adaptive_maxpool", "unpool", "lcn"}
    assert takes_max <= checked


# ---------------------------------------------------------------- kinks of the activations
KINKS = [
    ("relu", lambda F, x: F.relu(x)),
    ("relu6", lambda F, x: F.relu6(x)),
    ("leaky_relu 0.1", lambda F, x: F.leaky_relu(x, 0.1)),
    ("elu alpha=0.7", lambda F, x: F.elu(x, 0.7)),
    ("hardsigmoid", lambda F, x: F.relu6(x + 3) / 6),  # F.hardsigmoid's backward is float32 (test_float64)
    ("hardswish", lambda F, x: F.hardswish(x)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer,torch_fn", KINKS, ids=[k for k, _ in KINKS])
def test_activation_kinks_take_pytorchs_side(layer, torch_fn, dtype):
    """Inputs exactly at −3, 0, 3 and 6: the gradient is PyTorch's at each kink."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = load(_source(f"input 8\n {layer}"))
    check = Check(model)
    check.x = np.array([[-3.0, 0.0, 3.0, 6.0, -1.0, 1.0, 0.0, 6.0], [0.0, -3.0, 6.0, 3.0, 2.0, -2.0, 0.0, 0.0]])
    if dtype == "float64":
        ours = check.gradients()["input.grad"]
    else:  # the float32 graph (ONNX's own operators) on onnxruntime
        import onnxruntime as ort

        from cnndsl.train.step import train_model

        proto = train_model(model, gradients=True, wrt_input=True)
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in check.feeds().items()}
        ours = sess.run(["input.grad"], feeds)[0]
    x = torch.tensor(check.x, requires_grad=True)
    w, b = (torch.tensor(check.params[k]) for k in ("fc.weight", "fc.bias"))
    F.cross_entropy(torch_fn(F, x) @ w.T + b, torch.tensor(check.y)).backward()
    np.testing.assert_allclose(ours, x.grad.numpy(), rtol=1e-12 if dtype == "float64" else 1e-5, atol=1e-7)
