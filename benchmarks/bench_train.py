#!/usr/bin/env python3
"""Benchmark: one SGD training step, cnndsl's train-step graph on onnxruntime
(``cnndsl.train.trainer.Trainer``) against the same network in PyTorch eager.

Networks: LeNet-5 (networks/lenet5.net, batch 64, 1x32x32) and CIFAR ResNet-20
(networks/cifar_resnet.net depth=20, batch 128, 3x32x32). Each is written a
second time below as a torch.nn.Module with the same arithmetic (LeNet's
scaled tanh, trainable subsampling, C3 connection table as a fixed 0/1 mask
multiplied into the weight every forward, RBF output with fixed ±1 centres and
cross-entropy on the negative distances; ResNet's option-A shortcuts).
Both sides: SGD lr 0.01, momentum 0.9, weight decay 5e-4, cross-entropy.

1. Sanity check: our initial weights are copied into the torch module (by
   order, shapes checked); three steps on the same batches must give the same
   losses (1e-4 relative) and the same weights afterwards; this proves the two
   sides compute the same network, loss, gradient and update.
2. Timing: warm-up, then blocks of steps alternating ours / torch in one
   process (which goes first alternates too), each step timed on its own
   (ours: bind the batch, run, fetch loss and logits; torch: forward, loss,
   backward, opt.step, zero_grad, loss.item()); median samples/second, and
   the ratio within each pair of neighbouring blocks to show the drift. Both
   use all usable cores (onnxruntime's default; torch.set_num_threads); the
   CPU other processes took meanwhile is printed, since it slows torch's
   OpenMP barriers far more than onnxruntime (10 ms LeNet steps became 250+).

    python benchmarks/bench_train.py                  # both networks, ~2 min on 2 cores
    python benchmarks/bench_train.py --quick          # smoke run
    python benchmarks/bench_train.py --provider cuda --networks resnet20
    python benchmarks/bench_train.py --networks resnet20 --profile   # + onnxruntime's per-operator times

Needs torch (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
C3_TABLE = [
    [0, 1, 2],
    [1, 2, 3],
    [2, 3, 4],
    [3, 4, 5],
    [0, 4, 5],
    [0, 1, 5],
    [0, 1, 2, 3],
    [1, 2, 3, 4],
    [2, 3, 4, 5],
    [0, 3, 4, 5],
    [0, 1, 4, 5],
    [0, 1, 2, 5],
    [0, 1, 3, 4],
    [1, 2, 4, 5],
    [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]
# name: (.net file, defines, input shape, batch, (blocks, steps per block) full / quick)
NETWORKS = {
    "lenet5": ("networks/lenet5.net", {}, (1, 32, 32), 64, (20, 20), (2, 5)),
    "resnet20": ("networks/cifar_resnet.net", {"depth": 20}, (3, 32, 32), 128, (20, 2), (2, 2)),
}
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def torch_models():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def scaled_tanh(x):
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))

    class Subsample(nn.Module):  # sum of each 2x2 window x coefficient + bias, per map
        def __init__(self, c):
            super().__init__()
            self.weight = nn.Parameter(torch.full((c, 1, 1), 0.25))
            self.bias = nn.Parameter(torch.zeros(c, 1, 1))

        def forward(self, x):
            return F.avg_pool2d(x, 2) * 4.0 * self.weight + self.bias

    class TableConv(nn.Conv2d):  # a convolution whose weight is masked by a connection table
        def __init__(self, cin, cout, k, table):
            super().__init__(cin, cout, k)
            mask = torch.zeros(cout, cin, 1, 1)
            for i, row in enumerate(table):
                mask[i, row] = 1.0
            self.register_buffer("mask", mask, persistent=False)

        def forward(self, x):
            return self._conv_forward(x, self.weight * self.mask, self.bias)

    class RBF(nn.Module):  # y_i = sum_j (x_j - w_ij)^2, fixed centres
        def __init__(self, n_in, units):
            super().__init__()
            self.register_buffer("weight", torch.sign(torch.randn(units, n_in)))

        def forward(self, x):
            return (x * x).sum(1, keepdim=True) - 2.0 * x @ self.weight.t() + (self.weight**2).sum(1)

    class LeNet5(nn.Module):  # state_dict names and order = cnndsl's (C1.weight ... out.weight)
        def __init__(self):
            super().__init__()
            self.C1, self.S2 = nn.Conv2d(1, 6, 5), Subsample(6)
            self.C3, self.S4 = TableConv(6, 16, 5, C3_TABLE), Subsample(16)
            self.C5, self.F6, self.out = nn.Conv2d(16, 120, 5), nn.Linear(120, 84), RBF(84, 10)

        def forward(self, x):
            for layer in (self.C1, self.S2, self.C3, self.S4, self.C5):
                x = scaled_tanh(layer(x))
            return -self.out(scaled_tanh(self.F6(x.flatten(1))))  # logits = -distances

    class Basic(nn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
            self.conv_1, self.bn_1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
            self.stride, self.extra = stride, c - cin

        def forward(self, x):
            y = self.bn_1(self.conv_1(F.relu(self.bn(self.conv(x)))))
            s = x
            if self.stride != 1 or self.extra:  # option A: subsample, append zero channels
                s = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))
            return F.relu(y + s)

    class ResNet(nn.Module):  # registration order = cnndsl's weight order
        def __init__(self, depth=20, classes=10):
            super().__init__()
            n = (depth - 2) // 6
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for c, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(n):
                    blocks.append(Basic(cin, c, stride if i == 0 else 1))
                    cin = c
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            x = self.blocks(F.relu(self.bn1(self.conv1(x))))
            return self.fc(x.mean((2, 3)))

    return {"lenet5": LeNet5, "resnet20": ResNet}


def load_ours_into(module, weights: dict) -> int:
    """Copy cnndsl's weights (in their order) into the module's state (same order), shapes checked."""
    import torch

    theirs = [(k, v) for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")]
    ours = list(weights.items())
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    with torch.no_grad():
        for (name, arr), (tname, t) in zip(ours, theirs):
            assert tuple(arr.shape) == tuple(t.shape), (name, arr.shape, tname, tuple(t.shape))
            t.copy_(torch.from_numpy(arr))
    return len(ours)


class TorchSide:
    def __init__(self, module, device):
        import torch

        self.torch, self.device = torch, device
        self.model = module.to(device).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step(self, x, y):
        torch = self.torch
        xt, yt = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        logits = self.model(xt)
        loss = torch.nn.functional.cross_entropy(logits, yt)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item(), logits.detach().cpu()


def op_counts(model) -> str:
    from cnndsl.train.step import train_graph

    proto, _ = train_graph(model, loss="cross_entropy", lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    return f"{sum(ops.values())} nodes: " + ", ".join(f"{k} {v}" for k, v in ops.most_common())


def profile(model, batches, steps: int = 5, top: int = 15) -> list[str]:
    """onnxruntime's profiler (SessionOptions.enable_profiling) over ``steps`` steps of a second
    Trainer's graph, after one warm-up step: time per step by operator type (onnxruntime's
    fused forms, e.g. FusedMatMul, under their own names) and the slowest nodes."""
    import json

    import onnxruntime as ort

    from cnndsl.train.nchwc import cpu_form
    from cnndsl.train.step import train_graph

    proto, _ = train_graph(model, loss="cross_entropy", lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    proto = cpu_form(proto)[0]  # what the Trainer runs on the CPU: NCHWc convolutions where there are such kernels
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_train_profile")
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x, y = batches[0]
    wanted = [o.name for o in proto.graph.output]
    for _ in range(steps + 1):
        sess.run(wanted, {"x": x, "y": y})
    path = Path(sess.end_profiling())
    events = json.loads(path.read_text())
    path.unlink()
    runs = [e for e in events if e.get("name") == "model_run"][1:]  # the first is the warm-up
    start = runs[0]["ts"] if runs else 0
    by_op, by_node = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            by_op[e["args"].get("op_name", "?")] += e["dur"]
            by_node[e["name"][: -len("_kernel_time")]] += e["dur"]
    n = max(1, len(runs))
    total = sum(by_op.values()) / n / 1e3
    wall = sum(r["dur"] for r in runs) / n / 1e3
    lines = [
        f"   profile ({n} steps, onnxruntime's profiler): {wall:,.1f} ms a step, "
        f"{total:,.1f} ms in kernels; by operator:"
    ]
    lines += [
        f"     {op:<22} {v / n / 1e3:8.1f} ms  {100 * v / n / 1e3 / total:4.1f}%" for op, v in by_op.most_common(top)
    ]
    lines.append("   slowest nodes:")
    lines += [f"     {name[:60]:<60} {v / n / 1e3:8.1f} ms" for name, v in by_node.most_common(8)]
    return lines


def machine(ort_threads: int, torch_threads: int, provider: str) -> list[str]:
    import onnxruntime as ort
    import torch

    cpu = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    same = "" if ort_threads == torch_threads else " (they DIFFER)"
    lines = [
        (
            f"machine  : {cpu}, {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable), "
            f"{platform.system()} {platform.machine()}"
        )
    ]
    lines.append(
        f"software : python {platform.python_version()}, onnxruntime {ort.__version__}, "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )
    lines.append(
        f"threads  : onnxruntime intra-op {ort_threads} (counted; the Trainer's default session options), "
        f"torch {torch_threads}{same}"
    )
    if provider == "cuda":
        lines.append(f"GPU      : {torch.cuda.get_device_name(0)}")
    return lines


def cpu_seconds():
    """(CPU-seconds busy on the whole machine, this process's CPU-seconds, wall time)."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    t = os.times()
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.perf_counter()


def others(start) -> str:
    """CPU other processes took since ``start``: torch's OpenMP barriers suffer badly from it."""
    end = cpu_seconds()
    if start is None or end is None:
        return "CPU used by other processes meanwhile: unknown"
    busy, own, wall = (e - s for e, s in zip(end, start))
    other, cores = max(0.0, busy - own), os.cpu_count() or 1
    return (
        f"CPU used by other processes meanwhile: {other:.1f} CPU-s over {wall:.0f} s "
        f"({100 * other / (wall * cores):.0f}% of {cores} cores)"
    )


def thread_times() -> dict:
    """CPU ticks of each thread of this process (Linux), by thread id; {} elsewhere."""
    out = {}
    if not os.path.isdir("/proc/self/task"):
        return out
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return out


def busy_threads(run) -> int:
    """The threads that used the CPU while ``run()`` ran: onnxruntime's intra-op pool and the caller."""
    before = thread_times()
    run()
    after = thread_times()
    return sum(1 for tid, t in after.items() if t > before.get(tid, 0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps: a smoke run")
    p.add_argument("--provider", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--networks", default="lenet5,resnet20", help="comma-separated: " + ",".join(NETWORKS))
    p.add_argument("--blocks", type=int, help="blocks of steps per side (default 20; 2 with --quick)")
    p.add_argument(
        "--profile", action="store_true", help="also profile our step (onnxruntime's profiler): top operators by time"
    )
    args = p.parse_args(argv)
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    if unknown := [n for n in names if n not in NETWORKS]:
        p.error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    try:
        import torch
    except ImportError:
        print("bench_train.py needs torch: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    import onnxruntime as ort

    from cnndsl import load
    from cnndsl.train.trainer import Trainer

    device = "cpu"
    if args.provider == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers() or not torch.cuda.is_available():
            print(
                "--provider cuda: no GPU here (onnxruntime providers: "
                f"{', '.join(ort.get_available_providers())}; torch.cuda.is_available() = "
                f"{torch.cuda.is_available()}); skipped"
            )
            return 0
        device = "cuda"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print("bench_train.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(
        f"one SGD step (lr {LR}, momentum {MOMENTUM}, weight decay {WEIGHT_DECAY}, cross-entropy), "
        f"provider {args.provider}; ours = cnndsl Trainer on onnxruntime, torch = PyTorch eager"
    )
    classes, rows, ort_threads, status = torch_models(), [], 0, 0
    for name in names:
        path, defines, shape, batch, full, quick = NETWORKS[name]
        blocks, per_block = quick if args.quick else full
        blocks = args.blocks or blocks
        model = load(str(ROOT / path), defines=defines)
        t0 = time.perf_counter()
        ours = Trainer(
            model, loss="cross_entropy", lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, provider=args.provider
        )
        build = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        batches = [
            (rng.standard_normal((batch, *shape)).astype(np.float32), rng.integers(0, 10, batch).astype(np.int64))
            for _ in range(4)
        ]
        initial = {k: np.array(v) for k, v in ours.weights().items()}
        # before torch has run (its idle pool spins for a while after work): the threads that work
        # during our first step are the session's pool and the caller
        steps = []
        ort_threads = max(ort_threads, busy_threads(lambda: steps.append(ours.step(*batches[0])[0])))  # noqa: B023
        first = steps[0]
        torch.manual_seed(0)
        module = classes[name]()
        mapped = load_ours_into(module, initial)
        theirs = TorchSide(module, device)
        print(f"\n== {name}: {path} {defines or ''} batch {batch}x{'x'.join(map(str, shape))}")
        blocked = f"; {ours.nchwc} Conv on onnxruntime's NCHWc kernels" if ours.nchwc else ""
        print(f"   Trainer built in {build:.2f} s (train graph + session); provider {ours.provider}{blocked}")
        print(f"   train graph: {op_counts(model)}")

        # ---- the two sides compute the same thing
        worst = 0.0
        losses = []
        for i, (x, y) in enumerate(batches[:3]):
            a = first if i == 0 else ours.step(x, y)[0]
            b = theirs.step(x, y)[0]
            losses.append((a, b))
            worst = max(worst, abs(a - b) / abs(b))
        w_ours = ours.weights()
        sd = [v for k, v in theirs.model.state_dict().items() if not k.endswith("num_batches_tracked")]
        wdiff = max(float(np.abs(a - t.cpu().numpy()).max()) for a, t in zip(w_ours.values(), sd))
        ok = worst < 1e-4 and wdiff < 1e-4
        status = status or (0 if ok else 1)
        print(
            f"   same weights ({mapped} tensors of ours copied into torch by order, shapes agree): "
            "losses of 3 steps "
            + ", ".join(f"{a:.6f}/{b:.6f}" for a, b in losses)
            + f" (ours/torch); max relative difference {worst:.1e}; after 3 steps max |weight difference| "
            f"{wdiff:.1e}: {'agree' if ok else 'DISAGREE'}"
        )

        # ---- timing: warm-up, then alternating blocks
        sides = {"ours": ours.step, "torch": theirs.step}
        for side in sides.values():
            for i in range(max(3, per_block // 2)):
                side(*batches[i % 4])
        times = {"ours": [], "torch": []}  # per block, per step
        t_start, cpu_start = time.perf_counter(), cpu_seconds()
        for k in range(blocks):
            order = ("ours", "torch") if k % 2 == 0 else ("torch", "ours")
            for side in order:
                times[side].append([])
                for i in range(per_block):
                    x, y = batches[i % 4]
                    sync()
                    t = time.perf_counter()
                    loss = sides[side](x, y)[0]
                    sync()
                    times[side][-1].append(time.perf_counter() - t)
                    if not np.isfinite(loss):
                        raise SystemExit(f"{name}: {side}'s loss became {loss}")
        steps = {s: sorted(t for block in v for t in block) for s, v in times.items()}
        rate = {s: batch / statistics.median(v) for s, v in steps.items()}
        # ours/torch within each pair of neighbouring blocks: how far the machine's speed drifts
        pairs = sorted(statistics.median(t) / statistics.median(o) for o, t in zip(times["ours"], times["torch"]))
        print(
            f"   {blocks} blocks x {per_block} steps each side, alternating ({time.perf_counter() - t_start:.0f} s): "
            + "; ".join(
                f"{s} median {statistics.median(v) * 1e3:,.1f} ms/step ({rate[s]:,.0f} samples/s), "
                f"p10-p90 {v[int(0.1 * (len(v) - 1))] * 1e3:,.1f}-{v[int(0.9 * (len(v) - 1))] * 1e3:,.1f} ms"
                for s, v in steps.items()
            )
        )
        print(
            f"   ours/torch per block pair: median {statistics.median(pairs):.2f}, range {pairs[0]:.2f}-{pairs[-1]:.2f}"
        )
        print(f"   {others(cpu_start)}")
        if args.profile and args.provider == "cpu":
            for line in profile(model, batches):
                print(line)
        rows.append((name, batch, rate["ours"], rate["torch"], rate["ours"] / rate["torch"]))

    print()
    for line in machine(ort_threads, torch.get_num_threads(), device):
        print(line)
    print(f"\n{'network':<10} {'batch':>5} {'ours samples/s':>15} {'torch samples/s':>16} {'ours/torch':>11}")
    print(f"{'-' * 10} {'-' * 5} {'-' * 15} {'-' * 16} {'-' * 11}")
    for name, batch, a, b, r in rows:
        print(f"{name:<10} {batch:>5} {a:>15,.0f} {b:>16,.0f} {r:>11.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())
