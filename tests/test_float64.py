"""Float64 graphs are float64 throughout.

ONNX's float attributes are float32 (LeakyRelu's and Elu's alpha, HardSigmoid's
alpha and beta, the epsilon of InstanceNormalization and LayerNormalization, LRN's
fields), so a float64 graph writes those operators in elementary form with float64
tensor constants, and builds its constant tensors (lcn's Gaussian window) in
float64. Checked three ways: no float attribute and no float32 constant in any
float64 train graph; its forward pass equal to the float64 NumPy reference
(tests/numpy_ref.py) to 1e-12; one step equal to PyTorch's in float64 to 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import FIXED, Check
from numpy_ref import run_graph
from onnx import AttributeProto, TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator
from test_gradients import KINDS, _source

from cnndsl import load
from cnndsl.lower.export import to_onnx
from cnndsl.train.step import train_model


def _float32_parts(proto) -> list[str]:
    """Float attributes and float32 initializers, except Resize's scales (float32 by the standard)
    and attributes of exactly 0 (the training BatchNormalization's epsilon: 0.0 loses nothing;
    bn adds its epsilon to the variance as a float64 tensor)."""
    scales = {n.input[2] for n in proto.graph.node if n.op_type == "Resize" and len(n.input) > 2}
    found = [
        f"{n.op_type}.{a.name}"
        for n in proto.graph.node
        for a in n.attribute
        if a.type in (AttributeProto.FLOAT, AttributeProto.FLOATS) and (a.f != 0.0 or list(a.floats))
    ]
    found += [t.name for t in proto.graph.initializer if t.data_type == TensorProto.FLOAT and t.name not in scales]
    return found


@pytest.mark.parametrize("body", [b for _, b in KINDS], ids=[i for i, _ in KINDS])
def test_float64_graphs_hold_no_float32_constant(body):
    model = load(_source(body))
    assert _float32_parts(train_model(model, dtype="float64", momentum=0.9)) == []
    # the inference export too, but for BatchNormalization (epsilon; momentum unused), kept for --fold-bn
    inference = [p for p in _float32_parts(to_onnx(model, dtype="float64")) if not p.startswith("BatchNormalization.")]
    assert inference == []


# networks with every kind whose lowering had a float32 constant (each followed by fc 3)
EXACT = {
    "lcn-leaky-elu-instnorm": "input 2x6x6\n conv 3/3/1/1 -> lcn 3 -> leaky_relu 0.1 -> conv 3/3/1/1 -> elu alpha=0.7"
    " -> instnorm -> hardsigmoid",
    "gn-ln": "input 4x5x5\n conv 4/3/1/1 -> gn 2 eps=0.001 -> leaky_relu 0.3 -> ln over=channels eps=0.01 -> ln",
    "lrn": "input 5x3x3\n lrn 3 alpha=0.3 -> elu",
}


@pytest.mark.parametrize("body", list(EXACT.values()), ids=list(EXACT))
def test_float64_train_graph_computes_the_float64_reference(body):
    model = load(_source(body))
    check = Check(model)
    logits = ReferenceEvaluator(check.proto, new_ops=FIXED).run(["logits"], check.feeds())[0]
    (expected,) = run_graph(model, check.params, check.x).values()
    np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-14)


def _torch_net(torch, params):
    """The EXACT["lcn-leaky-elu-instnorm"] network in PyTorch (float64), on the given parameters."""
    F = torch.nn.functional

    def lcn(x, size=3, sigma=1.0):  # Jarrett et al. 2009 as cnndsl defines it (docs/language.md)
        r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g1 = torch.exp(-(r**2) / (2 * sigma**2))
        w = torch.outer(g1, g1).expand(1, x.shape[1], size, size)
        w = w / w.sum()
        mean = F.conv2d(x, w, padding=size // 2)
        v = x - mean
        s = torch.sqrt(F.conv2d(v * v, w, padding=size // 2))
        c = s.mean(dim=(2, 3), keepdim=True)
        return v / torch.maximum(torch.maximum(s, c), torch.tensor(1e-6, dtype=torch.float64))

    def forward(x):
        x = F.conv2d(x, params["conv.weight"], params["conv.bias"], padding=1)
        x = F.leaky_relu(lcn(x), 0.1)
        x = F.elu(F.conv2d(x, params["conv_1.weight"], params["conv_1.bias"], padding=1), alpha=0.7)
        gamma, beta = params["instnorm.weight"].reshape(-1), params["instnorm.bias"].reshape(-1)
        x = F.instance_norm(x, weight=gamma, bias=beta, eps=1e-5)
        # hardsigmoid as relu6(x + 3)/6: F.hardsigmoid's backward multiplies by 1.0f/6.0f, a
        # float32 constant, even in float64 (PyTorch 2.x, hardsigmoid_backward)
        x = F.relu6(x + 3) / 6
        return F.linear(x.flatten(1), params["fc.weight"], params["fc.bias"])

    return forward


def test_float64_sgd_step_equals_pytorch_in_float64():
    """One step with momentum and weight decay: every gradient and every update equal to
    PyTorch's (autograd, torch.optim.SGD) to 1e-12 relative — float32 constants (an alpha of
    0.1 stored as 0.100000001, a Gaussian summing to 0.99999999) would show at 1e-8."""
    torch = pytest.importorskip("torch")
    lr, mu, wd = 0.05, 0.9, 0.01
    model = load(_source(EXACT["lcn-leaky-elu-instnorm"]))
    check = Check(model, momentum=mu, weight_decay=wd, lr=lr)
    out = dict(zip([o.name for o in check.proto.graph.output], check.full.run(None, check.feeds())))
    params = {k: torch.tensor(v, requires_grad=True) for k, v in check.params.items()}
    opt = torch.optim.SGD(params.values(), lr=lr, momentum=mu, weight_decay=wd)
    loss = torch.nn.functional.cross_entropy(_torch_net(torch, params)(torch.tensor(check.x)), torch.tensor(check.y))
    loss.backward()
    grads = {k: p.grad.numpy().copy() for k, p in params.items()}
    opt.step()
    np.testing.assert_allclose(out["loss"], loss.item(), rtol=1e-13)
    for name, p in params.items():
        g = grads[name]
        assert np.linalg.norm(out[name + ".grad"] - g) <= 1e-12 * np.linalg.norm(g), name
        step, want = out[name + ".new"] - check.params[name], p.detach().numpy() - check.params[name]
        assert np.linalg.norm(step - want) <= 1e-12 * np.linalg.norm(want), name


def test_float32_graphs_are_unchanged():
    """The float32 export keeps ONNX's operators (LeakyRelu, Elu, InstanceNormalization …)."""
    ops = {n.op_type for n in to_onnx(load(_source(EXACT["lcn-leaky-elu-instnorm"]))).graph.node}
    assert {"LeakyRelu", "Elu", "InstanceNormalization", "HardSigmoid"} <= ops
    ops64 = {n.op_type for n in to_onnx(load(_source(EXACT["lcn-leaky-elu-instnorm"])), dtype="float64").graph.node}
    assert not ops64 & {"LeakyRelu", "Elu", "InstanceNormalization", "HardSigmoid"}
    kernel = next(
        numpy_helper.to_array(t)
        for t in to_onnx(load(_source("input 2x5x5\n lcn 3")), dtype="float64").graph.initializer
        if t.dims == [1, 2, 3, 3]
    )
    assert kernel.dtype == np.float64 and abs(kernel.sum() - 1) < 1e-15
