"""Optimizers, schedules and label smoothing, step by step.

Each optimizer's update in the float64 train graph (onnx.reference) is held, at every
one of several steps, against a NumPy transcription of PyTorch's documented algorithm
(the pseudo-code of torch.optim.SGD, Adam and AdamW), written here from those
formulas and not from cnndsl/train/optim.py; then the same steps against PyTorch
itself where it is installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import FIXED
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from cnndsl import load
from cnndsl.errors import CnnError
from cnndsl.train.optim import Optimizer, learning_rate
from cnndsl.train.step import train_model

NET = "network n {\n input 2x4x4\n conv 3/3/1/1 -> bn -> relu\n gap\n fc 3\n}"
STEPS = 4
RATES = [0.05, 0.03, 0.08, 0.01]  # a different lr each step: the graph's lr input


# ---------------------------------------------------------------- the NumPy transcriptions
def sgd_numpy(p, g, buf, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD: g += λp; b = μb + g (b = g at the first step); g = g + μb (nesterov) or b; p -= γg."""
    g = g + weight_decay * p
    if momentum:
        buf = momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, {"momentum": buf}


def adam_numpy(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """torch.optim.Adam / AdamW: m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), p −= γ·m̂/(√v̂ + ε); Adam adds λp
    to g, AdamW multiplies p by (1 − γλ) first."""
    b1, b2 = betas
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), {"exp_avg": m, "exp_avg_sq": v}


CASES = {
    "sgd": (Optimizer("sgd"), {}),
    "sgd-weight-decay": (Optimizer("sgd", weight_decay=0.1), {"weight_decay": 0.1}),
    "sgd-momentum": (Optimizer("sgd", momentum=0.9, weight_decay=0.01), {"momentum": 0.9, "weight_decay": 0.01}),
    "sgd-nesterov": (
        Optimizer("sgd", momentum=0.8, nesterov=True, weight_decay=0.01),
        {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
    ),
    "adam": (Optimizer("adam"), {}),
    "adam-l2": (Optimizer("adam", weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6), {"weight_decay": 0.1}),
    "adamw": (Optimizer("adamw", weight_decay=0.1), {"weight_decay": 0.1, "decoupled": True}),
}


def _graph_steps(opt):
    """Run STEPS steps of the float64 train graph; yields (state before, outputs) per step."""
    proto = train_model(load(NET), dtype="float64", optimizer=opt, gradients=True)
    ev = ReferenceEvaluator(proto, new_ops=FIXED)
    names = [o.name for o in proto.graph.output]
    inputs = {i.name for i in proto.graph.input}
    state = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if t.name in inputs and t.name != "lr"}
    rng = np.random.default_rng(0)
    for k in range(STEPS):
        feeds = {"x": rng.standard_normal((4, 2, 4, 4)), "y": rng.integers(0, 3, 4), "lr": np.array(RATES[k]), **state}
        out = dict(zip(names, ev.run(None, feeds)))
        yield k, state, out
        state = {n: out[n + ".new"] for n in state}


@pytest.mark.parametrize("case", list(CASES))
def test_every_step_is_the_numpy_transcription(case):
    opt, kw = CASES[case]
    params = None
    for k, before, out in _graph_steps(opt):
        params = params or [n[: -len(".grad")] for n in out if n.endswith(".grad")]
        for name in params:
            g, p, lr = out[name + ".grad"], before[name], RATES[k]
            if opt.name == "sgd":
                buf = before.get(name + ".momentum", np.zeros_like(p))
                want, buffers = sgd_numpy(p, g, buf, lr, **kw)
            else:
                assert before["train:step"] == k  # the steps taken so far
                m, v = before[name + ".exp_avg"], before[name + ".exp_avg_sq"]
                want, buffers = adam_numpy(p, g, m, v, k + 1, lr, opt.betas, opt.eps, **kw)
            np.testing.assert_allclose(out[name + ".new"], want, rtol=1e-12, atol=1e-15, err_msg=f"step {k}: {name}")
            for suffix in opt.buffers():
                np.testing.assert_allclose(out[f"{name}.{suffix}.new"], buffers[suffix], rtol=1e-12, atol=1e-15)
        assert np.abs(out["conv.weight.new"] - before["conv.weight"]).max() > 0  # the step moves the weights
    assert {n for n in out if n.endswith(".new") and not n.startswith("bn.running")} == {
        *(p + ".new" for p in params),
        *(f"{p}.{s}.new" for p in params for s in opt.buffers()),
        *(["train:step.new"] if opt.counts_steps else []),
    }


# (case, the torch.optim class and its arguments)
TORCH_CASES = [
    ("sgd-nesterov", "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("adam-l2", "Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", "AdamW", dict(lr=0.05, weight_decay=0.1)),
]


@pytest.mark.parametrize("case,cls,kw", TORCH_CASES, ids=[c for c, _, _ in TORCH_CASES])
def test_steps_equal_pytorchs_optimizers(case, cls, kw):
    """fc 5 -> relu -> fc 3 for five steps at lr 0.05: PyTorch's autograd and torch.optim give the
    same parameters after every step."""
    torch = pytest.importorskip("torch")
    opt = CASES[case][0]
    model = load("network n {\n input 6\n fc 5 -> relu\n fc 3\n}")
    proto = train_model(model, dtype="float64", optimizer=opt, lr=0.05)
    ev = ReferenceEvaluator(proto)
    names = [o.name for o in proto.graph.output]
    inputs = {i.name for i in proto.graph.input}
    state = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if t.name in inputs and t.name != "lr"}
    params = {
        n: torch.tensor(state[n], requires_grad=True) for n in ("fc.weight", "fc.bias", "fc_1.weight", "fc_1.bias")
    }
    torch_opt = getattr(torch.optim, cls)(params.values(), **kw)
    rng = np.random.default_rng(1)
    for step in range(5):
        x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
        out = dict(zip(names, ev.run(None, {"x": x, "y": y, **state})))
        state = {n: out[n + ".new"] for n in state}
        torch_opt.zero_grad()
        f = torch.nn.functional
        h = f.relu(f.linear(torch.tensor(x), params["fc.weight"], params["fc.bias"]))
        f.cross_entropy(f.linear(h, params["fc_1.weight"], params["fc_1.bias"]), torch.tensor(y)).backward()
        torch_opt.step()
        for n, p in params.items():
            np.testing.assert_allclose(state[n], p.detach().numpy(), rtol=1e-10, atol=1e-13, err_msg=f"{step}: {n}")


def test_optimizer_options_are_checked():
    cases = [
        (dict(name="rmsprop"), "--optimizer rmsprop: choose sgd, adam, adamw"),
        (dict(name="adam", momentum=0.9), "--momentum is SGD's"),
        (dict(name="sgd", nesterov=True), "--nesterov needs --optimizer sgd with a --momentum above 0"),
        (dict(name="adamw", weight_decay=-1), "must not be negative"),
    ]
    for kw, message in cases:
        with pytest.raises(CnnError, match=message):
            Optimizer(**kw)


# ---------------------------------------------------------------- schedules
def schedule_numpy(lr, schedule, steps, warmup):
    """Warm-up lr·(s + 1)/W for s < W, then at u = (s − W)/(S − W): constant, ½(1 + cos πu), ÷10 at ½, ÷100 at ¾."""
    out = []
    for s in range(steps):
        if s < warmup:
            out.append(lr * (s + 1) / warmup)
            continue
        u = (s - warmup) / (steps - warmup)
        out.append(
            {
                "constant": lr,
                "cosine": lr * (1 + math.cos(math.pi * u)) / 2,
                "step": lr * 0.1 ** (u >= 0.5) * 0.1 ** (u >= 0.75),
            }[schedule]
        )
    return np.array(out)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
@pytest.mark.parametrize("warmup", [0, 1, 7])
def test_schedules_step_by_step(schedule, warmup):
    got = np.array([learning_rate(0.1, schedule, s, 40, warmup) for s in range(40)])
    np.testing.assert_allclose(got, schedule_numpy(0.1, schedule, 40, warmup), rtol=1e-14)


def test_warmup_then_cosine_equals_pytorchs_schedulers():
    """LinearLR from lr/W over W steps (start_factor 1/W, W − 1 iterations), then CosineAnnealingLR
    over the remaining steps, as torch.optim.lr_scheduler chains them."""
    torch = pytest.importorskip("torch")
    steps, warmup = 30, 5
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler
    warm = sched.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
    cos = sched.CosineAnnealingLR(opt, T_max=steps - warmup)
    chain = sched.SequentialLR(opt, [warm, cos], milestones=[warmup])
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        chain.step()
    ours = [learning_rate(0.1, "cosine", s, steps, warmup) for s in range(steps)]
    np.testing.assert_allclose(ours, rates, rtol=1e-12)


def test_the_trainer_feeds_the_schedule_to_every_step(monkeypatch):
    """Through train(): the lr input of each step is the schedule's for that step, across epochs."""
    from cnndsl.train.data import Data
    from cnndsl.train.trainer import Trainer, train

    fed = []
    original = Trainer.set_lr

    def record(self, lr):
        fed.append(lr)
        original(self, lr)

    monkeypatch.setattr(Trainer, "set_lr", record)
    rng = np.random.default_rng(0)
    data = Data(rng.standard_normal((50, 4)).astype(np.float32), rng.integers(0, 3, 50), 3, ("0", "1", "2"), "t")
    train(load("network n { input 4\n fc 3 }"), data, None, epochs=3, batch=16, lr=0.2, schedule="cosine", warmup=1.5)
    per_epoch = 4  # 16, 16, 16, 2
    total = 3 * per_epoch
    np.testing.assert_allclose(fed[1:], schedule_numpy(0.2, "cosine", total, 6), rtol=1e-12)  # fed[0]: the session's


# ---------------------------------------------------------------- label smoothing
def test_label_smoothing_is_pytorchs():
    """Loss −Σ q·log p with q = (1 − ε)·onehot + ε/K, gradient (p − q)/N, by hand in NumPy, and
    PyTorch's cross_entropy(label_smoothing=ε) where installed."""
    eps = 0.2
    proto = train_model(load("network n { input 4\n fc 3 }"), dtype="float64", label_smoothing=eps, gradients=True)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 4)), np.array([0, 2, 1, 2, 0])
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    out = dict(
        zip(
            [o.name for o in proto.graph.output],
            ReferenceEvaluator(proto).run(None, {"x": x, "y": y, "fc.weight": w, "fc.bias": b}),
        )
    )
    z = x @ w.T + b
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    q = (1 - eps) * np.eye(3)[y] + eps / 3
    np.testing.assert_allclose(out["loss"], -(q * logp).sum(1).mean(), rtol=1e-13)
    np.testing.assert_allclose(out["fc.weight.grad"], ((np.exp(logp) - q) / 5).T @ x, rtol=1e-12)
    torch = pytest.importorskip("torch")
    zt = torch.tensor(z, requires_grad=True)
    torch_loss = torch.nn.functional.cross_entropy(zt, torch.tensor(y), label_smoothing=eps)
    np.testing.assert_allclose(out["loss"], torch_loss.item(), rtol=1e-13)


def test_label_smoothing_is_for_cross_entropy_only():
    with pytest.raises(CnnError, match="--label-smoothing is for the cross_entropy loss, not map"):
        train_model(load("network n { input 4\n rbf 3 }"), label_smoothing=0.1)
    with pytest.raises(CnnError, match=r"--label-smoothing must be in \[0, 1\)"):
        train_model(load("network n { input 4\n fc 3 }"), label_smoothing=1.0)
