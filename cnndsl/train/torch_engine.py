"""``cnndsl train --engine torch``: the training loop of :mod:`cnndsl.train.trainer` on the
generated PyTorch module (:func:`cnndsl.lower.pytorch.to_torch`), data-parallel with
DistributedDataParallel when launched by ``--nproc`` or ``torch.distributed.run`` (docs/distributed.md).

:class:`TorchTrainer` has the interface of :class:`cnndsl.train.trainer.Trainer`, so the
loop (data order, schedules, held-out evaluation, checkpoints, resume, Ctrl-C) is the same
code for both engines. Its starting state is the one the onnxruntime engine starts from:
the initializers of the same train-step graph (:func:`cnndsl.train.step.train_graph`:
the seed's initialisation, ``--weights``/``--resume``, ``--freeze``/``--reset``), so a
checkpoint's weights and optimizer buffers carry across engines in both directions.

The optimizers are torch.optim's, with the hyper-parameters of :mod:`cnndsl.train.optim`
(whose formulas are PyTorch's): ``sgd`` SGD(momentum, nesterov, weight_decay), ``adam``
Adam, ``adamw`` AdamW. Their buffers map one to one: ``<param>.momentum`` is SGD's
``momentum_buffer``, ``<param>.exp_avg``/``.exp_avg_sq`` Adam's, ``train:step`` Adam's
``step``.

Data parallelism: every rank draws the same shuffled order (same seed) and takes the
samples ``batch[rank::world]`` of each global batch; the loss of each rank is scaled by
``world·(its samples)/(batch samples)``, so DDP's averaged gradient is the gradient of the
whole batch's mean loss even when the batch does not divide evenly. The reported loss and
logits are gathered from every rank. Checkpoints are written by rank 0 only; every rank
evaluates the held-out split (the weights are the same on all of them; a run that evaluated
on rank 0 alone hung in gloo between epochs, so the ranks stay symmetric). Batch norm
normalises with each rank's own batch statistics (no SyncBatchNorm), and its
running statistics follow rank 0's (DDP broadcasts buffers).
"""

from __future__ import annotations

import os

import numpy as np

from cnndsl.errors import CnnError
from cnndsl.train.optim import STEP, Optimizer

CLOSE_TIMEOUT_S = 120  # how long the ranks wait for each other at the end of a run
# The trainers of data-parallel runs that ended, kept alive until the process leaves (os._exit,
# cnndsl/cli.py): freeing DDP's reducer frees gloo's process group, whose destructor waits, with
# the GIL held, for a worker thread that needs the GIL to free its last work's tensors — a
# deadlock seen in 3 of about 140 two-rank runs (main thread in ~ProcessGroupGloo, the worker in
# ~AsyncWork waiting for the GIL).
_ENDED: list = []


def world() -> tuple[int, int]:
    """(rank, world size) from torch.distributed.run's environment; (0, 1) without it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class TorchTrainer:
    """One network's training session on PyTorch (see module doc)."""

    def __init__(
        self,
        model,
        loss=None,
        lr=0.01,
        momentum=0.9,
        weight_decay=0.0,
        seed=0,
        weights=None,
        optimizer=None,
        label_smoothing=0.0,
        freeze=(),
        reset=(),
        partial=False,
        device="cpu",
        ignore_index=None,
    ):
        from onnx import numpy_helper

        from cnndsl.lower.pytorch import to_torch
        from cnndsl.train.step import default_loss, output_meaning, train_graph

        try:
            import torch
        except ImportError:
            raise CnnError("--engine torch needs PyTorch (pip install 'cnndsl[torch]')", code="E088") from None
        self.torch = torch
        self.model = model
        self.loss = default_loss(model) if loss is None else loss
        self.output = output_meaning(model)
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.opt = optimizer or Optimizer("sgd", momentum=momentum, weight_decay=weight_decay)
        self.tuning = {}
        # the onnxruntime engine's starting state: the same graph's initializers
        proto, params = train_graph(
            model,
            loss=self.loss,
            lr=lr,
            optimizer=self.opt,
            seed=seed,
            weights=weights,
            label_smoothing=label_smoothing,
            freeze=freeze,
            reset=reset,
            partial=partial,
            tuning=self.tuning,
            ignore_index=ignore_index,
        )
        inputs = {i.name for i in proto.graph.input}
        init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        self.state_names = [n for n in init if n in inputs and n != "lr"]
        self.initial = {n: init[n] for n in self.state_names}
        self.fixed = {n: v for n, v in init.items() if n not in inputs and n in params}
        self.rank, self.world = world()
        if device == "cuda" and not torch.cuda.is_available():
            raise CnnError("--device cuda: torch sees no CUDA device", code="E084")
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if device == "cuda" else "cpu")
        self.provider = f"torch {device}" + (f", {self.world} processes" if self.world > 1 else "")
        net = to_torch(model)
        tensors = {n: torch.from_numpy(np.array(v)) for n, v in {**self.initial, **self.fixed}.items()}
        own = net.state_dict()
        net.load_state_dict({n: v for n, v in tensors.items() if n in own}, strict=False)
        self.net = net.to(self.device)
        self.params = dict(self.net.named_parameters())
        trainable = [n for n in self.params if n in self.initial]
        for n, p in self.params.items():
            p.requires_grad_(n in self.initial)
        group = [self.params[n] for n in trainable]
        o = self.opt
        if o.name == "sgd":
            self.optim = torch.optim.SGD(
                group, lr=lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
            )
        else:
            cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
            self.optim = cls(group, lr=lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        for n in trainable:  # the buffers of the graph (zero, or --resume's), as torch.optim's state
            p = self.params[n]
            dev = lambda a: torch.from_numpy(np.array(a)).to(self.device)  # noqa: E731
            if o.name == "sgd" and o.momentum:
                self.optim.state[p] = {"momentum_buffer": dev(self.initial[n + ".momentum"])}
            elif o.name != "sgd":
                self.optim.state[p] = {
                    "step": torch.tensor(float(self.initial[STEP])),
                    "exp_avg": dev(self.initial[n + ".exp_avg"]),
                    "exp_avg_sq": dev(self.initial[n + ".exp_avg_sq"]),
                }
        self.trainable = trainable
        self.ddp = None
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if device == "cuda" else "gloo")
            self.dist = dist
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if device == "cuda" else None
            )
        self.set_lr(lr)
        self.dtype = np.float32

    @property
    def writes(self) -> bool:
        """Whether this rank evaluates the held-out split and writes checkpoints (rank 0)."""
        return self.rank == 0

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        for g in self.optim.param_groups:
            g["lr"] = lr

    def agree(self, flag: bool) -> bool:
        """Whether any rank says so (Ctrl-C on one rank stops all of them at the same step)."""
        if self.world == 1:
            return bool(flag)
        t = self.torch.tensor([int(bool(flag))])
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item())

    def _loss(self, out, y):
        F = self.torch.nn.functional
        if self.loss == "mse":
            return F.mse_loss(out, y, reduction="sum"), out
        if self.output == "probabilities":  # the scores before the softmax, up to a constant
            scores = self.torch.log(out.clamp_min(1e-30))
        elif self.output == "distances":  # the nearest centre is the most likely class
            scores = -out
        else:
            scores = out
        logits = scores
        if self.loss == "map":  # one more, constant score −j (cnndsl.train.step.MAP_J)
            from cnndsl.train.step import MAP_J

            column = self.torch.full((scores.shape[0], 1, *scores.shape[2:]), -MAP_J, dtype=scores.dtype)
            scores = self.torch.cat([scores, column.to(scores.device)], 1)
        ignore = -100 if self.ignore_index is None else self.ignore_index  # -100: PyTorch's default, no label
        loss = F.cross_entropy(scores, y, reduction="sum", label_smoothing=self.label_smoothing, ignore_index=ignore)
        return loss, logits

    def step(self, x: np.ndarray, y: np.ndarray):
        """One optimizer step on the global batch (this rank's share of it); returns the whole
        batch's (loss, logits) on the host."""
        torch = self.torch
        n = len(x)
        xs, ys = x[self.rank :: self.world], y[self.rank :: self.world]
        xt = torch.from_numpy(np.ascontiguousarray(xs, self.dtype)).to(self.device)
        yt = torch.from_numpy(np.ascontiguousarray(ys)).to(self.device)
        self.net.train()
        out = (self.ddp or self.net)(xt)
        total, logits = self._loss(out, yt)
        if self.loss == "mse":
            count = n * out[0].numel()
        elif self.ignore_index is not None:  # the whole batch's labelled positions (PyTorch's mean)
            count = max(int((y != self.ignore_index).sum()), 1)
        else:
            count = n * max(int(np.prod(ys.shape[1:])), 1)
        # the mean over the whole batch; DDP averages over ranks, hence ·world
        loss = total * (self.world / count)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        local_sum = total.detach().reshape(1)
        logits = logits.detach()
        if self.world > 1:
            self.dist.all_reduce(local_sum)
            rows = (n + self.world - 1) // self.world
            pad = torch.zeros((rows, *logits.shape[1:]), dtype=logits.dtype, device=logits.device)
            pad[: len(logits)] = logits
            parts = [torch.empty_like(pad) for _ in range(self.world)]
            self.dist.all_gather(parts, pad)
            whole = torch.empty((n, *logits.shape[1:]), dtype=logits.dtype)
            for r, part in enumerate(parts):
                whole[r :: self.world] = part[: len(range(r, n, self.world))].cpu()
            logits = whole
        return float(local_sum.item()) / count, logits.cpu().numpy()

    def weights(self) -> dict:
        from cnndsl.lower.builder import OPTIMIZER_BUFFERS

        return {
            k: v
            for k, v in self.checkpoint().items()
            if k.rpartition(".")[2] not in OPTIMIZER_BUFFERS and not k.startswith("train:")
        }

    def checkpoint(self) -> dict:
        """The arrays of the onnxruntime engine's checkpoint: weights, running statistics,
        optimizer buffers (and ``train:step``), fixed tensors — same names, shapes, dtypes."""
        own = {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        out = {}
        for name in self.state_names:
            like = self.initial[name]
            if name in own:
                value = own[name]
            elif name == STEP:
                state = self.optim.state[self.params[self.trainable[0]]] if self.trainable else {}
                value = float(state["step"]) if "step" in state else like
            else:
                param, _, suffix = name.rpartition(".")
                key = {"momentum": "momentum_buffer"}.get(suffix, suffix)
                state = self.optim.state.get(self.params.get(param), {}) if param in self.params else {}
                value = state[key].detach().cpu().numpy() if key in state else like
            out[name] = np.asarray(value, like.dtype).reshape(like.shape)
        out.update(self.fixed)
        return out

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int):
        """Held-out (loss, accuracy, predictions) with the module in eval mode."""
        from cnndsl.train.step import held_out_figures

        torch = self.torch
        self.net.eval()
        with torch.no_grad():
            outs = np.concatenate(
                [
                    self.net(torch.from_numpy(np.ascontiguousarray(x[i : i + batch], self.dtype)).to(self.device))
                    .cpu()
                    .numpy()
                    for i in range(0, len(x), batch)
                ]
            )
        return held_out_figures(self.loss, self.output, outs, y, self.ignore_index)

    def close(self) -> None:
        if self.world > 1 and self.dist.is_initialized():
            _ENDED.append(self)  # never freed before the process leaves (see _ENDED)
            # no rank leaves while another still talks to it; on gloo a bounded wait that names
            # the rank that never came, instead of a run that does not end
            if self.device.type == "cpu":
                from datetime import timedelta

                try:
                    self.dist.monitored_barrier(timeout=timedelta(seconds=CLOSE_TIMEOUT_S))
                except RuntimeError as err:
                    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    raise CnnError(
                        f"rank {self.rank}: the other ranks did not finish within {CLOSE_TIMEOUT_S} s ({first})",
                        code="E084",
                    ) from None
            else:
                self.dist.barrier()
            # not destroy_process_group(): it would leave the reducer the group's last owner (above)
