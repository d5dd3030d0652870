#!/usr/bin/env python3
"""Benchmark: the front end (parse + elaborate + report) as a user meets it.

Every figure is the wall time of a whole process (``cnndsl info FILE``, stdout
to /dev/null), interpreter start-up and imports included, median of several runs,
with the process's CPU time (user + system) beside it: on a shared machine the
wall time grows with the load and the CPU time hardly moves, so the CPU time is
what an idle machine's wall time would be, near enough (one thread; info and
check start no onnxruntime threads):

1. ``cnndsl info networks/resnet.net --network resnet152``; target < 0.25 s;
2. generated networks of 1,000 / 5,000 / 10,000 lines, one statement a line
   (``conv 16/3/1/1 -> relu``, ``bn``, ``add { _ ; conv 16/3/1/1 }``, ``relu``:
   6 layers per 4 lines), whole-process time and time per line above the start-up
   of a one-layer file, to show linear growth; target: 10,000 lines < 2 s;
3. a 200-deep nesting of blocks (b0 calls b1 ... calls b199) and of groups
   ``{ { ... } }``: both must compile (times printed);
4. ``info`` and ``check`` import neither onnx nor onnxruntime
   (``python -X importtime -m cnndsl ...``);
5. the cost per layer of a v2 file (EfficientNet-B7: fn calls, let, if,
   repeat ... as, float arithmetic) against a v1 file (ResNet-152): in-process
   CPU time of ``cnndsl.load`` (parse + elaborate; the minimum of several runs)
   divided by the layers; target: B7 no dearer per layer.

    python benchmarks/bench_frontend.py            # ~1 min
    python benchmarks/bench_frontend.py --quick    # fewer runs
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netgen import LAYERS_PER_PATTERN, PATTERN, long_network, nested_blocks, nested_groups  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESNET = ROOT / "networks" / "resnet.net"
EFFICIENTNET = ROOT / "networks" / "efficientnet.net"
B7 = ["-D", "width=2.0", "-D", "depth=3.1", "-D", "dropout=0.5"]

TARGET_RESNET152_S = 0.25
TARGET_10K_S = 2.0
SIZES = (1_000, 5_000, 10_000)
DEPTH = 200


def cnndsl_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m cnndsl``."""
    script = Path(sys.executable).parent / "cnndsl"
    if script.exists():
        return [str(script)]
    found = shutil.which("cnndsl")
    return [found] if found else [sys.executable, "-m", "cnndsl"]


def run_once(args: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, from the child's rusage) of one whole process.

    The CPU time hardly moves when other processes share the machine; the wall time does.
    """
    env = dict(os.environ, NO_COLOR="1")
    start = time.perf_counter()
    child = subprocess.Popen([*cnndsl_command(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"cnndsl {' '.join(args)} failed ({child.returncode}):\n{stderr.decode()}")
    return elapsed, usage.ru_utime + usage.ru_stime


class Timing:
    """Medians of whole-process wall and CPU time over several runs."""

    def __init__(self, args: list[str], runs: int):
        run_once(args)  # warm the file-system cache and .pyc files
        samples = [run_once(args) for _ in range(runs)]
        self.wall = statistics.median(s[0] for s in samples)
        self.cpu = statistics.median(s[1] for s in samples)

    def __str__(self) -> str:
        return f"{self.wall:.3f} s ({self.cpu:.3f})"


def elaboration_cpu(path: Path, network: str | None, defines: dict, runs: int) -> tuple[float, int]:
    """In-process CPU time of parse + elaborate (``cnndsl.load``), the minimum of several runs, and the layers."""
    sys.path.insert(0, str(ROOT))
    import cnndsl

    best, layers = float("inf"), 0
    for _ in range(runs + 1):
        start = time.process_time()
        model = cnndsl.load(path, network=network, defines=defines)
        best = min(best, time.process_time() - start)
        layers = len(model.layers)
    return best, layers


def heavy_imports(args: list[str]) -> list[str]:
    """Modules of onnx / onnxruntime the command imports, from ``-X importtime``."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cnndsl", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"cnndsl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    names = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    return [n for n in names if n.split(".")[0] in ("onnx", "onnxruntime")]


def row(name: str, value: str, target: str = "", ratio: float | None = None, cpu: str = "") -> str:
    verdict = "" if ratio is None else f"{ratio:5.2f}  {'ok' if ratio < 1 else 'OVER'}"
    return f"{name:<38} {value:>10} {cpu:>8} {target:>10}   {verdict}"


def timed_row(name: str, t: Timing, target: float | None = None) -> str:
    """A whole-process row: wall time, CPU time, and the wall time against its target."""
    ratio = None if target is None else t.wall / target
    return row(name, f"{t.wall:.3f} s", f"< {target} s" if target else "", ratio, cpu=f"{t.cpu:.3f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="runs per small measurement (median), default 10")
    p.add_argument("--big-runs", type=int, default=3, help="runs per generated large network, default 3")
    p.add_argument("--quick", action="store_true", help="3 and 1 runs")
    args = p.parse_args()
    runs, big_runs = (3, 1) if args.quick else (args.runs, args.big_runs)

    print(
        f"cnndsl front-end benchmark: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"command: {' '.join(cnndsl_command())}; whole-process wall time, median of {runs} "
        f"(large files: {big_runs}) runs\n"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="cnndsl-bench-") as tmp:
        tmp = Path(tmp)
        tiny = tmp / "tiny.net"
        tiny.write_text("network tiny {\n    input 3x8x8\n    relu\n}\n")
        start = Timing(["info", str(tiny)], runs)
        results.append(timed_row("start-up (one-layer file)", start))

        # 1. ResNet-152
        results.append(
            timed_row(
                "info resnet152", Timing(["info", str(RESNET), "--network", "resnet152"], runs), TARGET_RESNET152_S
            )
        )

        # 2. long generated files
        per_line = {}
        for n in SIZES:
            path = tmp / f"long{n}.net"
            path.write_text(long_network(n))
            t = Timing(["info", str(path)], big_runs)
            per_line[n] = (t.cpu - start.cpu) / n
            layers = n // len(PATTERN) * LAYERS_PER_PATTERN
            target = TARGET_10K_S if n == 10_000 else None
            results.append(timed_row(f"info {n:,} lines ({layers:,} layers)", t, target))
            results.append(row("   per line above start-up (CPU)", f"{per_line[n] * 1e6:.0f} us"))
        growth = per_line[SIZES[-1]] / per_line[SIZES[0]]
        results.append(row(f"   per-line time {SIZES[-1]:,} / {SIZES[0]:,}", f"{growth:.2f}x", "~1 linear"))

        # 3. deep nesting
        for name, text in (("blocks", nested_blocks(DEPTH)), ("groups", nested_groups(DEPTH))):
            path = tmp / f"nested_{name}.net"
            path.write_text(text)
            results.append(timed_row(f"info {DEPTH}-deep nested {name}", Timing(["info", str(path)], runs)))

        # 5. per layer: a v2 network against a v1 network, in-process CPU time (start-up excluded exactly)
        if EFFICIENTNET.exists():
            cost = {}
            for label, path, network, defines in (
                ("resnet152 (v1)", RESNET, "resnet152", {}),
                ("efficientnet B7 (v2)", EFFICIENTNET, None, {"width": 2.0, "depth": 3.1, "dropout": 0.5}),
            ):
                t, layers = elaboration_cpu(path, network, defines, runs)
                cost[label] = t / layers
                results.append(row(f"load {label}, {layers} layers", f"{t:.3f} s"))
                results.append(row("   per layer (in-process CPU)", f"{cost[label] * 1e6:.0f} us"))
            ratio = cost["efficientnet B7 (v2)"] / cost["resnet152 (v1)"]
            results.append(row("   per layer, B7 / resnet152", f"{ratio:.2f}x", "<= 1", ratio))

        # 4. no onnx in info / check
        for cmd in (["info", str(RESNET), "--network", "resnet152"], ["check", str(RESNET)]):
            heavy = heavy_imports(cmd)
            status = "none" if not heavy else f"{len(heavy)} modules"
            results.append(row(f"{cmd[0]}: onnx/onnxruntime imports", status, "none", None))
            if heavy:
                results.append(f"   imported: {', '.join(heavy[:8])}")

    print(f"{'measurement':<38} {'wall':>10} {'cpu':>8} {'target':>10}   ratio (wall)")
    print("-" * 84)
    for line in results:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
