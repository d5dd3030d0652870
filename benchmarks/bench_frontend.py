#!/usr/bin/env python3
"""Benchmark: the front end (parse + elaborate + report) as a user meets it.

Every figure is the wall time of a whole process (``cnndsl info FILE``, stdout
to /dev/null), interpreter start-up and imports included, median of several runs
(``.pyc`` files written and used, as an installed package has them: the benchmark
drops PYTHONDONTWRITEBYTECODE from the environment of what it runs):

1. ``cnndsl info networks/resnet.net --network resnet152``; target < 0.12 s: the console
   script's wall time (median of --runs) and its CPU time (user + system, min / median:
   on a machine other processes load, the wall time grows and the CPU time much less),
   then split into interpreter (``python -c pass``'s part: the interpreter and site),
   imports (cnndsl and what ``info`` imports), parser (loading the generated parse
   tables and compiling the lexer's regular expression: cnndsl.lang.lalr) and work
   (reading, parsing, elaborating and printing). Run it with the
   ``python`` of the install to measure (an editable install's site hook costs ~25 ms);
2. generated networks of 1,000 / 5,000 / 10,000 lines, one statement a line
   (``conv 16/3/1/1 -> relu``, ``bn``, ``add { _ ; conv 16/3/1/1 }``, ``relu``:
   6 layers per 4 lines), whole-process time and time per line above the start-up
   of a one-layer file, to show linear growth; target: 10,000 lines < 2 s;
3. a 200-deep nesting of blocks (b0 calls b1 ... calls b199) and of groups
   ``{ { ... } }``: both must compile (times printed);
4. ``info`` and ``check`` import neither onnx nor onnxruntime
   (``python -X importtime -m cnndsl ...``);
5. the cost per layer of a v2 file (EfficientNet-B7: fn calls, let, if,
   repeat ... as, float arithmetic) against a v1 file (ResNet-152): in-process CPU
   time of ``cnndsl.load`` and the plain table (the minimum of several runs) divided
   by the layers; target: B7 no dearer per layer.

    python benchmarks/bench_frontend.py            # ~1 min
    python benchmarks/bench_frontend.py --quick    # fewer runs
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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

TARGET_RESNET152_S = 0.12
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


def environment() -> dict:
    """The environment of every run: no colour, and .pyc files allowed (as installed)."""
    env = dict(os.environ, NO_COLOR="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_timed(args: list[str]) -> tuple[float, float]:
    """(wall time, CPU time: user + system) of one whole process ``cnndsl ARGS``."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [*cnndsl_command(), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=environment(),
            cwd=tempfile.gettempdir(),
        )
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            raise SystemExit(f"cnndsl {' '.join(args)} failed ({child.returncode}):\n{err.read().decode()}")
    return elapsed, usage.ru_utime + usage.ru_stime


def run_once(args: list[str]) -> float:
    return run_timed(args)[0]


def median_time(args: list[str], runs: int) -> float:
    run_once(args)  # warm the file-system cache and .pyc files
    return statistics.median(run_once(args) for _ in range(runs))


def timed_runs(args: list[str], runs: int) -> list[tuple[float, float]]:
    run_timed(args)  # warm the file-system cache and .pyc files
    return [run_timed(args) for _ in range(runs)]


# Runs `cnndsl ARGS` as the console script does, timing its phases inside the process.
SPLIT_PROBE = r"""
import time
t0 = time.perf_counter()
import contextlib, os, sys
import cnndsl.cli, cnndsl.ir.compile, cnndsl.tools.table
t1 = time.perf_counter()
import cnndsl.lang.lalr  # the tables and the lexer (Lark's parser is loaded only for a syntax error)
t2 = time.perf_counter()
with open(os.devnull, "w") as out, contextlib.redirect_stdout(out):
    code = cnndsl.cli.main(sys.argv[1:])
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, code, file=sys.stderr)
"""


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def split_once(args: list[str]) -> tuple[float, float, float, float, float, float]:
    """(whole, interpreter, imports, parser, work, CPU time) of one run of ``cnndsl ARGS``.

    The CPU time (user + system) of the process is about its wall time on an idle
    machine; on a loaded one (other processes on the cores) the wall time grows, not it."""
    cpu = _child_cpu()
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", SPLIT_PROBE, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        cwd=tempfile.gettempdir(),  # not a checkout's cnndsl instead of the installed one (sys.path[0] of -c)
        check=False,
    )
    whole = time.perf_counter() - start
    cpu = _child_cpu() - cpu
    *phases, code = r.stderr.split()[-4:]
    if r.returncode != 0 or code != "0":
        raise SystemExit(f"cnndsl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    imports, parse, work = map(float, phases)
    return whole, whole - imports - parse - work, imports, parse, work, cpu


def split_times(args: list[str], runs: int) -> list[tuple[str, float, float]]:
    """(phase, minimum, median) over ``runs`` runs for whole/interpreter/imports/parser/work."""
    split_once(args)
    samples = [split_once(args) for _ in range(runs)]
    names = ("whole process", "interpreter", "imports", "parser", "work", "CPU time of the process")
    return [(n, min(c), statistics.median(c)) for n, c in zip(names, zip(*samples))]


def info_cpu(path: Path, network: str | None, defines: dict, runs: int) -> tuple[float, int]:
    """In-process CPU time of what ``info`` does after start-up (``cnndsl.load`` and the plain
    table), the minimum of several runs, and the layers: no interpreter or import noise."""
    sys.path.insert(0, str(ROOT))
    import cnndsl
    from cnndsl.tools.table import format_plain

    best, layers = float("inf"), 0
    for _ in range(runs + 1):
        start = time.process_time()
        model = cnndsl.load(path, network=network, defines=defines)
        format_plain(model)
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
        env=environment(),
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"cnndsl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    names = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    return [n for n in names if n.split(".")[0] in ("onnx", "onnxruntime")]


def row(name: str, value: str, target: str = "", ratio: float | None = None) -> str:
    verdict = "" if ratio is None else f"{ratio:5.2f}  {'ok' if ratio < 1 else 'OVER'}"
    return f"{name:<38} {value:>12} {target:>10}   {verdict}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="runs per small measurement (median), default 20")
    p.add_argument("--big-runs", type=int, default=3, help="runs per generated large network, default 3")
    p.add_argument("--quick", action="store_true", help="3 and 1 runs")
    p.add_argument("--startup-only", action="store_true", help="only the ResNet-152 start-up and its split")
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
        startup = median_time(["info", str(tiny)], runs)
        results.append(row("start-up (one-layer file)", f"{startup:.3f} s"))

        # 1. ResNet-152, and where its time goes
        r152 = ["info", str(RESNET), "--network", "resnet152"]
        walls, cpus = zip(*timed_runs(r152, runs))
        t = statistics.median(walls)
        results.append(
            row("info resnet152 (console script)", f"{t:.3f} s", f"< {TARGET_RESNET152_S} s", t / TARGET_RESNET152_S)
        )
        cpu = statistics.median(cpus)
        results.append(
            row(
                "   CPU time (min / median)",
                f"{min(cpus):.3f} / {cpu:.3f}",
                f"< {TARGET_RESNET152_S} s",
                cpu / TARGET_RESNET152_S,
            )
        )
        results.append(
            f"split (python -c: the console script's work, timed inside; load average {os.getloadavg()[0]:.2f}):"
        )
        for phase, low, mid in split_times(r152, runs):
            timed = phase in ("whole process", "CPU time of the process")
            target, ratio = (f"< {TARGET_RESNET152_S} s", low / TARGET_RESNET152_S) if timed else ("", None)
            results.append(row(f"   {phase} (min / median)", f"{low:.3f} / {mid:.3f}", target, ratio))
        if args.startup_only:
            print(f"{'measurement':<38} {'result':>12} {'target':>10}   ratio")
            print("-" * 76)
            print("\n".join(results))
            return 0

        # 2. long generated files
        per_line = {}
        for n in SIZES:
            path = tmp / f"long{n}.net"
            path.write_text(long_network(n))
            t = median_time(["info", str(path)], big_runs)
            per_line[n] = (t - startup) / n
            layers = n // len(PATTERN) * LAYERS_PER_PATTERN
            target, ratio = (f"< {TARGET_10K_S} s", t / TARGET_10K_S) if n == 10_000 else ("", None)
            results.append(row(f"info {n:,} lines ({layers:,} layers)", f"{t:.3f} s", target, ratio))
            results.append(row("   per line above start-up", f"{per_line[n] * 1e6:.0f} us"))
        growth = per_line[SIZES[-1]] / per_line[SIZES[0]]
        results.append(row(f"   per-line time {SIZES[-1]:,} / {SIZES[0]:,}", f"{growth:.2f}x", "~1 linear"))

        # 3. deep nesting
        for name, text in (("blocks", nested_blocks(DEPTH)), ("groups", nested_groups(DEPTH))):
            path = tmp / f"nested_{name}.net"
            path.write_text(text)
            t = median_time(["info", str(path)], runs)
            results.append(row(f"info {DEPTH}-deep nested {name}", f"{t:.3f} s", "compiles", None))

        # 5. per layer: a v2 network against a v1 network, in-process CPU time (start-up excluded exactly)
        if EFFICIENTNET.exists():
            cost = {}
            for label, path, network, defines in (
                ("resnet152 (v1)", RESNET, "resnet152", {}),
                ("efficientnet B7 (v2)", EFFICIENTNET, None, {"width": 2.0, "depth": 3.1, "dropout": 0.5}),
            ):
                t, layers = info_cpu(path, network, defines, runs)
                cost[label] = t / layers
                results.append(row(f"load + table {label}, {layers} layers", f"{t:.3f} s"))
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

    print(f"{'measurement':<38} {'result':>12} {'target':>10}   ratio")
    print("-" * 76)
    for line in results:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
