"""The optimizers and learning-rate schedules of ``cnndsl train``, PyTorch's definitions.

Each optimizer's update is written once, here, as a formula on one parameter ``p``
with gradient ``g`` (the loss's), learning rate ``lr`` and step number ``t`` (1 at
the first step); :func:`emit_update` writes it into the train-step graph in ONNX
operators, and tests/test_optim.py holds an independent NumPy transcription of
the same lines. Buffers start at zero (``<param>.<buffer>`` in a checkpoint).

``sgd`` (torch.optim.SGD, dampening 0)::

    g ← g + weight_decay·p
    v ← momentum·v + g                    (buffer ``momentum``; with momentum > 0)
    g ← g + momentum·v  if nesterov, else  g ← v
    p ← p − lr·g

``adam`` (torch.optim.Adam, amsgrad off; weight decay is L2, added to the gradient)::

    g ← g + weight_decay·p
    m ← β₁·m + (1 − β₁)·g                 (buffer ``exp_avg``)
    s ← β₂·s + (1 − β₂)·g²                (buffer ``exp_avg_sq``)
    p ← p − (lr / (1 − β₁ᵗ)) · m / (√s / √(1 − β₂ᵗ) + ε)

``adamw`` (torch.optim.AdamW; decoupled weight decay, Loshchilov & Hutter 2019)::

    p ← p·(1 − lr·weight_decay)
    then adam's lines without the L2 term.

The step number ``t`` is one more graph input and output (``train:step``, the
steps taken so far; it counts for adam and adamw only). Weight decay applies to
every trainable parameter (biases and BN scales included), as PyTorch's optimizers
do on ``model.parameters()``.

Schedules (:func:`learning_rate`) are functions of the step: an optional linear
warm-up over the first ``warmup`` steps, lr·(s + 1)/warmup, then over the
remaining steps, at position u = (s − warmup)/(steps − warmup) ∈ [0, 1):
``constant`` lr; ``cosine`` lr·½(1 + cos πu) (SGDR without restarts, Loshchilov &
Hutter 2017); ``step`` lr, ÷10 from u = ½, ÷100 from u = ¾ (ResNet's CIFAR recipe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnndsl.errors import CnnError
from cnndsl.lower.builder import OPTIMIZER_BUFFERS, TRAINING_STATE

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
STEP = TRAINING_STATE + "step"  # the graph input (and checkpoint array) counting the steps taken
BUFFERS = {"sgd": ("momentum",), "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq")}
assert {s for names in BUFFERS.values() for s in names} <= set(OPTIMIZER_BUFFERS)  # what exports ignore


@dataclass(frozen=True)
class Optimizer:
    """One optimizer and its hyperparameters (the module doc gives the formulas)."""

    name: str = "sgd"
    momentum: float = 0.0  # sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    eps: float = 1e-8  # adam, adamw

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise CnnError(f"--optimizer {self.name}: choose {', '.join(OPTIMIZERS)}", code="E084")
        if self.momentum < 0 or self.weight_decay < 0:
            raise CnnError("--lr, --momentum and --weight-decay must not be negative", code="E084")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise CnnError("--nesterov needs --optimizer sgd with a --momentum above 0", code="E084")
        if self.name != "sgd" and self.momentum:
            raise CnnError(
                f"--momentum is SGD's; {self.name} keeps its own moving averages (betas "
                f"{self.betas[0]}, {self.betas[1]})",
                code="E084",
            )

    def buffers(self) -> tuple[str, ...]:
        """The per-parameter buffers (suffixes) this optimizer keeps."""
        if self.name == "sgd":
            return ("momentum",) if self.momentum else ()
        return BUFFERS[self.name]

    @property
    def counts_steps(self) -> bool:
        return self.name in ("adam", "adamw")

    def describe(self) -> str:
        """One line for the user: ``SGD momentum 0.9``, ``AdamW weight decay 0.01`` …"""
        if self.name == "sgd":
            text = "SGD" + (f" momentum {self.momentum:g}" if self.momentum else "")
            text += " nesterov" if self.nesterov else ""
        else:
            text = {"adam": "Adam", "adamw": "AdamW"}[self.name]
            text += f" betas {self.betas[0]:g}, {self.betas[1]:g}"
        return text + (f" weight decay {self.weight_decay:g}" if self.weight_decay else "")


def emit_update(b, opt: Optimizer, name: str, grad: str, buffers: dict[str, str], step: str | None) -> dict[str, str]:
    """Write one parameter's update into the builder ``b``: ``grad`` is the loss's gradient,
    ``buffers`` maps each of ``opt.buffers()`` to its graph input, ``step`` is the graph input
    counting the steps taken (adam, adamw). Returns {output name: tensor} for the parameter's
    next value (``<name>.new``) and each buffer's (``<name>.<buffer>.new``)."""

    def mul(x, y, out=None):
        return b.op("Mul", [x, y], out=out)

    def add(x, y, out=None):
        return b.op("Add", [x, y], out=out)

    def sub(x, y, out=None):
        return b.op("Sub", [x, y], out=out)

    c = b.scalar
    p = name
    if opt.name == "sgd":
        out = {}
        g = add(grad, mul(p, c(opt.weight_decay))) if opt.weight_decay else grad
        if opt.momentum:
            v = add(mul(buffers["momentum"], c(opt.momentum)), g, out=name + ".momentum.new")
            out[name + ".momentum.new"] = v
            g = add(g, mul(v, c(opt.momentum))) if opt.nesterov else v
        return {name + ".new": sub(p, mul("lr", g), out=name + ".new"), **out}
    beta1, beta2 = opt.betas
    g = grad
    if opt.name == "adamw" and opt.weight_decay:  # decoupled: the parameter shrinks first
        p = mul(p, sub(c(1.0), mul("lr", c(opt.weight_decay))))
    elif opt.weight_decay:
        g = add(g, mul(name, c(opt.weight_decay)))
    m = add(mul(buffers["exp_avg"], c(beta1)), mul(g, c(1.0 - beta1)), out=name + ".exp_avg.new")
    s = add(mul(buffers["exp_avg_sq"], c(beta2)), mul(mul(g, g), c(1.0 - beta2)), out=name + ".exp_avg_sq.new")
    t = add(step, c(1.0))
    correction1 = sub(c(1.0), b.op("Pow", [c(beta1), t]))
    correction2 = sub(c(1.0), b.op("Pow", [c(beta2), t]))
    denom = add(b.op("Div", [b.op("Sqrt", [s]), b.op("Sqrt", [correction2])]), c(opt.eps))
    size = b.op("Div", ["lr", correction1])
    new = sub(p, mul(size, b.op("Div", [m, denom])), out=name + ".new")
    return {name + ".new": new, name + ".exp_avg.new": m, name + ".exp_avg_sq.new": s}


def learning_rate(lr: float, schedule: str, step: int, steps: int, warmup: int = 0) -> float:
    """The learning rate of ``step`` (0-based) of ``steps``, after ``warmup`` warm-up steps
    (module doc).

    >>> [round(learning_rate(0.1, "cosine", s, 4), 4) for s in range(4)]
    [0.1, 0.0854, 0.05, 0.0146]
    >>> [learning_rate(1.0, "step", s, 8) for s in range(8)]
    [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    >>> [round(learning_rate(1.0, "cosine", s, 6, warmup=2), 4) for s in range(6)]
    [0.5, 1.0, 1.0, 0.8536, 0.5, 0.1464]
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    u = (step - warmup) / max(steps - warmup, 1)
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * u))
    if schedule == "step":
        return lr / 10 ** ((u >= 0.5) + (u >= 0.75))
    return lr


def default_lr(opt: Optimizer, output: str, batch_norm: bool) -> float:
    """The learning rate when ``--lr`` is not given. adam and adamw: 0.001 (Kingma & Ba 2015's
    and PyTorch's default). SGD (momentum 0.9): 0.001 on a network ending in rbf distances
    (LeNet-5: its saturating tanh units and RBF output diverge at 0.01); 0.1 on a network with
    batch normalisation (He et al. 2016's ResNet recipe); 0.01 otherwise (Krizhevsky et al.
    2012, Simonyan & Zisserman 2015, networks without it). ``output`` is
    :func:`cnndsl.train.step.output_meaning`'s.

    >>> sgd = Optimizer("sgd", momentum=0.9)
    >>> default_lr(sgd, "scores", False), default_lr(sgd, "scores", True), default_lr(sgd, "distances", False)
    (0.01, 0.1, 0.001)
    >>> default_lr(Optimizer("adam"), "scores", True)
    0.001
    """
    if opt.name != "sgd" or output == "distances":
        return 0.001
    return 0.1 if batch_norm else 0.01
