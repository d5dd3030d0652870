#!/usr/bin/env python3
"""Benchmark (issue 16 item 5): CIFAR ResNet-20 training on CPU, ``--engine torch`` against the
onnxruntime engine, samples/s, in the same run.

1. Steps, in one process: the two engines' trainers (``cnndsl.train.trainer.Trainer`` and
   ``cnndsl.train.torch_engine.TorchTrainer``) are built from the same .net file and seed, so they
   start from the same weights; blocks of steps alternate between them (which goes first
   alternates too); each step is timed on its own; samples/s is batch / median step. The first
   steps of both are compared (same loss) so that both compute the same thing.
2. Epochs, as a user runs them: ``cnndsl train`` on a generated ``.npz`` (random 3x32x32 images,
   10 classes) with each engine, and ``--engine torch --nproc 2`` (two gloo processes of one
   thread each, torch.distributed.run's default); the samples/s of the last epoch as printed.

    python benchmarks/bench_engines.py            # both parts, ~4 min on 2 cores
    python benchmarks/bench_engines.py --quick    # smoke run

Needs torch (``pip install -e '.[torch]'``). The CPU other processes took meanwhile is printed:
a result with more than a few percent of other load is not comparable.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NET, DEFINES = ROOT / "networks" / "cifar_resnet.net", {"depth": 20}


def other_cpu() -> float:
    """CPU seconds used by every process on the machine (from /proc/stat), for the load check."""
    with open("/proc/stat") as f:
        fields = [float(v) for v in f.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def steps(batch: int, blocks: int, per_block: int) -> dict:
    import torch

    from cnndsl import load
    from cnndsl.train.torch_engine import TorchTrainer
    from cnndsl.train.trainer import Trainer, labels_for

    torch.set_num_threads(os.cpu_count() or 1)
    model = load(NET, defines=DEFINES)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = labels_for(model, rng.integers(0, 10, batch))
    engines = {
        "onnxruntime": Trainer(model, lr=0.01, momentum=0.9, weight_decay=5e-4, provider="cpu"),
        "torch": TorchTrainer(model, lr=0.01, momentum=0.9, weight_decay=5e-4),
    }
    first = {name: e.step(x, y)[0] for name, e in engines.items()}
    print(f"   first step's loss: onnxruntime {first['onnxruntime']:.6f}, torch {first['torch']:.6f}")
    for e in engines.values():  # warm-up
        e.step(x, y)
    times = {name: [] for name in engines}
    order = list(engines)
    for b in range(blocks):
        for name in order if b % 2 == 0 else order[::-1]:
            for _ in range(per_block):
                t = time.perf_counter()
                engines[name].step(x, y)
                times[name].append(time.perf_counter() - t)
    return {name: batch / statistics.median(t) for name, t in times.items()}


def epochs(batch: int, samples: int, n_epochs: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar_like.npz"
        rng = np.random.default_rng(0)
        np.savez(data, x=rng.integers(0, 256, (samples, 3, 32, 32), dtype=np.uint8), y=rng.integers(0, 10, samples))
        base = [sys.executable, "-m", "cnndsl", "train", str(NET), "-D", "depth=20", "--data", str(data)]
        base += ["--epochs", str(n_epochs), "--batch", str(batch), "--held-out", "0", "--lr", "0.01"]
        for label, extra in (
            ("onnxruntime", ["--provider", "cpu"]),
            ("torch", ["--engine", "torch"]),
            ("torch --nproc 2", ["--engine", "torch", "--nproc", "2"]),
        ):
            cmd = base + extra + ["--out", str(Path(tmp) / "w.npz")]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if r.returncode:
                print(r.stderr, file=sys.stderr)
                raise SystemExit(f"{label}: exit {r.returncode}")
            rows = [line for line in r.stdout.splitlines() if re.match(rf"\s*{n_epochs}/{n_epochs}\s", line)]
            print(f"   {label:<16} {rows[-1].strip()}")
            results[label] = float(rows[-1].split()[-2].replace(",", ""))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, one small epoch")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    import onnxruntime
    import torch

    print("bench_engines.py " + " ".join(sys.argv[1:]))
    print(f"CIFAR ResNet-20 (networks/cifar_resnet.net depth=20), batch {args.batch}x3x32x32,", end=" ")
    print("SGD lr 0.01 momentum 0.9, CPU")
    wall, cpu0, own0 = time.perf_counter(), other_cpu(), own_cpu()
    print("\n== steps in one process, alternating blocks")
    s = steps(args.batch, 2 if args.quick else 10, 1 if args.quick else 3)
    print("\n== cnndsl train, last epoch's line")
    e = epochs(args.batch, args.batch * (2 if args.quick else 10), 1 if args.quick else 2)
    seconds = time.perf_counter() - wall
    others = max(0.0, (other_cpu() - cpu0) - (own_cpu() - own0))
    print(f"\n   CPU used by other processes meanwhile: {others:.1f} CPU-s over {seconds:.0f} s "
          f"({others / seconds / (os.cpu_count() or 1):.0%} of {os.cpu_count()} cores)")  # fmt: skip
    info = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    cpu = names[0] if names else platform.machine()
    print(f"\nmachine  : {cpu}, {os.cpu_count()} logical cores, {platform.system()}")
    versions = f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}"
    print(f"software : python {platform.python_version()}, {versions}")
    print("\nmeasurement                         onnxruntime engine  torch engine  torch/onnxruntime")
    row = "{:<36}{:>18}  {:>12}  {:>17}"
    ratio = lambda d: f"{d['torch'] / d['onnxruntime']:.2f}"  # noqa: E731
    print(row.format("steps in one process (samples/s)", f"{s['onnxruntime']:,.0f}", f"{s['torch']:,.0f}", ratio(s)))
    print(row.format("cnndsl train epoch (samples/s)", f"{e['onnxruntime']:,.0f}", f"{e['torch']:,.0f}", ratio(e)))
    two = e["torch --nproc 2"]
    print(f"cnndsl train --nproc 2 (samples/s)  {'':>18}  {two:>12,.0f}  {two / e['onnxruntime']:>17.2f}")


if __name__ == "__main__":
    main()
