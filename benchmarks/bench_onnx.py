#!/usr/bin/env python3
"""Benchmark: cnndsl's ONNX export against torch.onnx.export, and the inference
latency of both exported models on onnxruntime (plus PyTorch eager).

For each network (ResNet-50, VGG-16, a MobileNet-v1) the same architecture is
written twice: as .net text (compiled by cnndsl) and as a torch.nn.Module in
this file, layer for layer; the trainable parameter counts must agree. Then:

1. export time: ``cnndsl.load`` + ``to_onnx`` + serialise to a file, against
   ``torch.onnx.export`` of the (already built) module to a file, opset 17,
   dynamic batch; repeated and interleaved, median;
2. output shapes of the two ONNX models must agree; then the torch weights are
   loaded into the cnndsl export (``to_onnx(weights=...)``, by order and shape)
   and both models must give the same outputs on the same input;
3. onnxruntime latency at batch 1 and 32 of both models, same SessionOptions
   (ORT_ENABLE_ALL, same intra-op threads, no spinning), runs interleaved
   (rotating which goes first), median and p90 after warm-up. An A/A
   control, a second session of our own model timed in the same rotation,
   shows how far a ratio moves by noise alone;
4. PyTorch eager latency on the same input (inference_mode, eval), after the
   onnxruntime runs (not interleaved: its OpenMP pool would disturb them);
5. the op counts of both graphs, as exported and after onnxruntime's
   optimisations, to explain a ratio above 1; and how much CPU other
   processes took meanwhile (they disturb the timings).

Ratios are ours/theirs ("theirs" = the torch-exported model on onnxruntime);
the target is <= 1.00.

    python benchmarks/bench_onnx.py                      # all three, ~6 min on 2 cores
    python benchmarks/bench_onnx.py --quick              # smoke run
    python benchmarks/bench_onnx.py --models mobilenet --provider auto

Needs torch (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OPSET = 17

# --------------------------------------------------------------------------- .net sources

MOBILENET_NET = """
# MobileNet-v1 (Howard et al. 2017, table 1), width 1.0, 224x224.
default conv bias=false

block dws(k, s = 1) {
    conv in.c/3/s/1 groups=in.c -> bn -> relu   # depthwise 3x3
    conv k/1 -> bn -> relu                      # pointwise 1x1
}

network mobilenet(classes = 1000) {
    input 3x224x224
    conv 32/3/2/1 -> bn -> relu     # 32x112x112
    dws(64)
    dws(128, 2) -> dws(128)         # 128x56x56
    dws(256, 2) -> dws(256)         # 256x28x28
    dws(512, 2)                     # 512x14x14
    dws(512) * 5
    dws(1024, 2) -> dws(1024)       # 1024x7x7
    gap -> fc classes
}
"""

VGG16_NET = """
# VGG-16 (Simonyan, Zisserman 2014, configuration D), 224x224.
block stage(c, n) {
    repeat n { conv c/3/1/1 -> relu }
    maxpool 2/2
}

network vgg16(classes = 1000) {
    input 3x224x224
    stage(64, 2) -> stage(128, 2) -> stage(256, 3) -> stage(512, 3) -> stage(512, 3)   # 512x7x7
    fc 4096 -> relu -> dropout 0.5
    fc 4096 -> relu -> dropout 0.5
    fc classes
}
"""

# --------------------------------------------------------------------------- torch models


def torch_models():
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        # torchvision's layout: stride on the 3x3; registration order = cnndsl's weight order
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.conv3 = nn.Conv2d(c, 4 * c, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(4 * c)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != 4 * c:
                self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * c, 1, stride, bias=False), nn.BatchNorm2d(4 * c))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            s = x if self.downsample is None else self.downsample(x)
            return self.relu(y + s)

    class ResNet50(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], 64
            for c, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                blocks = []
                for i in range(n):
                    blocks.append(Bottleneck(cin, c, stride if i == 0 else 1))
                    cin = 4 * c
                layers.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def vgg16(classes=1000):
        feats, cin = [], 3
        for c, n in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
            for _ in range(n):
                feats += [nn.Conv2d(cin, c, 3, 1, 1), nn.ReLU(inplace=True)]
                cin = c
            feats.append(nn.MaxPool2d(2, 2))
        return nn.Sequential(
            *feats,
            nn.Flatten(1),
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, classes),
        )

    def mobilenet(classes=1000):
        def cbr(cin, cout, k, s, groups=1):
            return [
                nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
        layers, cin = cbr(3, 32, 3, 2), 32
        for k, s in plan:
            layers += cbr(cin, cin, 3, s, groups=cin) + cbr(cin, k, 1, 1)
            cin = k
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(1024, classes))

    return {"resnet50": ResNet50, "vgg16": vgg16, "mobilenet": mobilenet}


# --------------------------------------------------------------------------- the networks

# per network: (runs at batch 1, runs at batch 32) for the default run; --quick uses the second pair.
# Multiples of 3, so that the three sessions (ours, torch's, A/A) take each place in the rotation equally.
RUNS = {
    "resnet50": ((30, 9), (6, None)),
    "vgg16": ((15, 6), (3, None)),
    "mobilenet": ((60, 15), (9, 3)),
}
EXPORT_REPEATS = {"resnet50": 3, "vgg16": 2, "mobilenet": 3}


def net_source(name):
    """(source for cnndsl.load, network name, where it comes from)."""
    if name == "resnet50":
        return str(ROOT / "networks" / "resnet.net"), "resnet50", "networks/resnet.net"
    if name == "vgg16":
        path = ROOT / "networks" / "vgg16.net"
        if path.exists():
            return str(path), "vgg16", "networks/vgg16.net"
        return VGG16_NET, "vgg16", "inline .net text (bench_onnx.py)"
    if name == "mobilenet":
        return MOBILENET_NET, "mobilenet", "inline .net text (bench_onnx.py)"
    raise SystemExit(f"unknown model {name!r}; choose resnet50, vgg16, mobilenet")


# --------------------------------------------------------------------------- helpers


def machine_lines(provider_used, threads, eager_device="cpu"):
    import onnx
    import onnxruntime as ort
    import torch

    import cnndsl

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = ""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kb = int(next(row for row in meminfo if row.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return [
        f"machine   : {cpu}, {os.cpu_count()} logical cores ({usable} usable){mem}, "
        f"{platform.system()} {platform.machine()}",
        f"software  : python {platform.python_version()}, cnndsl {cnndsl.__version__}, onnx {onnx.__version__}, "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, numpy {np.__version__}",
        f"provider  : {provider_used}; intra-op threads {threads} (onnxruntime and torch), inter-op 1, "
        f"graph optimisation ORT_ENABLE_ALL, spinning off; PyTorch eager on {eager_device}",
    ]


def percentile(values, q):
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def session_options(threads):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.log_severity_level = 3
    # Two sessions run alternately in one process: a session's pool spinning after
    # its run would steal the cores of the next run of the other session.
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return o


def providers_for(choice):
    import onnxruntime as ort

    available = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if choice == "cuda":
        if not cuda:
            raise SystemExit(f"--provider cuda: this onnxruntime has no CUDAExecutionProvider ({', '.join(available)})")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # auto: onnxruntime-gpu lists CUDA even without a GPU; only try it where a driver is
    gpu = cuda and (sys.platform != "linux" or os.path.exists("/dev/nvidiactl"))
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]


def preflight(providers, choice):
    """Start the first provider on a one-node model before the real work: fail fast for
    --provider cuda, fall back to the CPU quietly for auto."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if providers[0] == "CPUExecutionProvider":
        return providers
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "preflight",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    try:
        used = ort.InferenceSession(m.SerializeToString(), providers=providers).get_providers()[0]
    except Exception:  # noqa: BLE001 - reported below
        used = None
    if used == providers[0]:
        return providers
    if choice == "cuda":
        raise SystemExit("--provider cuda: the CUDA provider did not start (no GPU, or no CUDA libraries)")
    return ["CPUExecutionProvider"]


def make_session(path, threads, providers, optimized_to=None):
    import onnxruntime as ort

    o = session_options(threads)
    if optimized_to:
        o.optimized_model_filepath = str(optimized_to)
    t = time.perf_counter()
    s = ort.InferenceSession(str(path), sess_options=o, providers=providers)
    return s, time.perf_counter() - t


def op_counts(model_or_path):
    import onnx

    m = model_or_path
    if not hasattr(m, "graph"):
        m = onnx.load(str(m), load_external_data=False)
    c = collections.Counter(n.op_type for n in m.graph.node)
    return c, len(m.graph.initializer)


NEUTRAL_ATTRS = {("auto_pad", "NOTSET"), ("ceil_mode", 0), ("storage_order", 0), ("group", 1)}


def node_signatures(path):
    """Per node, in graph order: op type, domain, attributes, and the shapes of its constant inputs
    (tensor names differ between the two exporters, so they are left out)."""
    import onnx
    from onnx import helper

    m = onnx.load(str(path), load_external_data=False)
    dims = {t.name: tuple(t.dims) for t in m.graph.initializer}
    out = []
    for n in m.graph.node:
        attrs = []
        for a in sorted(n.attribute, key=lambda a: a.name):
            v = helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = ("tensor", tuple(v.dims))
            elif isinstance(v, bytes):
                v = v.decode(errors="replace")
            elif isinstance(v, list):
                v = tuple(x.decode(errors="replace") if isinstance(x, bytes) else x for x in v)
            if (
                (a.name, v) in NEUTRAL_ATTRS
                or (a.name in ("dilations", "strides") and set(v) == {1})
                or (a.name == "pads" and set(v) == {0})
            ):
                continue  # a default written out: the same operator
            attrs.append((a.name, v))
        consts = tuple(dims.get(i) for i in n.input)
        out.append((n.op_type, n.domain, tuple(attrs), consts))
    return out


def compare_signatures(a, b):
    if a == b:
        return "identical (same operators in the same order, same attributes, same weight shapes)"
    if sorted(map(repr, a)) == sorted(map(repr, b)):
        return "the same operators, attributes and weight shapes, in a different order"
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if not diff:
        return f"differ in length: ours {len(a)} nodes, torch {len(b)}"
    i = diff[0]
    return (
        f"{len(diff)} of {min(len(a), len(b))} nodes differ (ours {len(a)}, torch {len(b)}); first at node {i}: "
        f"ours {a[i]} / torch {b[i]}"
    )


def fmt_counts(c):
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def file_mib(path):
    """Size of a model file with its external data (the dynamo exporter writes <name>.data)."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".data")) if p.exists()) / 2**20


def loadavg():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_seconds():
    """(CPU seconds busy on the whole machine, CPU seconds of this process, wall time), or None off Linux."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(f) - f[3] - (f[4] if len(f) > 4 else 0)  # all but idle and iowait
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.perf_counter()


def others_line(start):
    """How much CPU other processes took since ``start``: they disturb the timings."""
    end = cpu_seconds()
    if start is None or end is None:
        return "CPU used by other processes: unknown"
    busy, own, wall = (e - s for e, s in zip(end, start))
    other = max(0.0, busy - own)
    cores = os.cpu_count() or 1
    return (
        f"CPU used by other processes meanwhile: {other:.1f} CPU-s over {wall:.0f} s "
        f"({100 * other / (wall * cores):.0f}% of {cores} cores)"
    )


def ms(x):
    return f"{x * 1e3:,.1f}"


# --------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, args):
        import torch

        self.args = args
        self.torch = torch
        self.threads = args.threads
        self.providers = preflight(providers_for(args.provider), args.provider)
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
        self.rows = []  # (model, metric, ours, theirs, eager, unit, A/A)
        self.provider_used = None
        self.eager_device = "cpu"

    def say(self, line=""):
        print(line, flush=True)

    # -- export ------------------------------------------------------------
    def export_ours(self, src, network, path):
        import cnndsl
        import cnndsl.lower.export

        t0 = time.perf_counter()
        m = cnndsl.load(src, network=network, input="3x224x224")
        t1 = time.perf_counter()
        proto = cnndsl.lower.export.to_onnx(m, opset=OPSET, seed=0)
        t2 = time.perf_counter()
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())
        t3 = time.perf_counter()
        return m, proto, (t3 - t0, t1 - t0, t2 - t1, t3 - t2)

    def export_theirs(self, module, path):
        torch = self.torch
        x = torch.randn(1, 3, 224, 224)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = dict(
                opset_version=OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
            )
            if self.args.torch_exporter == "dynamo":
                # the dynamo exporter prints its progress (and opset down-conversion notes): keep them out of the report
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    torch.onnx.export(module, (x,), str(path), dynamo=True, **kw)
            else:
                torch.onnx.export(module, (x,), str(path), dynamo=False, **kw)
        return time.perf_counter() - t0

    # -- latency ------------------------------------------------------------
    def ort_latency(self, sessions, x, runs, warmup):
        feeds = [{s.get_inputs()[0].name: x} for s in sessions]
        for _ in range(warmup):
            for s, f in zip(sessions, feeds):
                s.run(None, f)
        times = [[] for _ in sessions]
        n = len(sessions)
        for i in range(runs):
            # rotate which session goes first, so that each takes each place equally often
            for j in [(i + k) % n for k in range(n)]:
                t = time.perf_counter()
                sessions[j].run(None, feeds[j])
                times[j].append(time.perf_counter() - t)
        return times

    def eager_latency(self, module, x, runs, warmup):
        torch = self.torch
        dev = self.eager_device
        xt = torch.from_numpy(x).to(dev)
        times = []
        with torch.inference_mode():
            for i in range(warmup + runs):
                if dev != "cpu":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                y = module(xt)
                if dev != "cpu":
                    torch.cuda.synchronize()
                if i >= warmup:
                    times.append(time.perf_counter() - t)
        return times, tuple(y.shape)

    # -- one network ----------------------------------------------------------
    def run_model(self, name):
        torch = self.torch
        args = self.args
        src, network, origin = net_source(name)
        self.say(f"== {name}: {network} from {origin}")
        cpu0 = cpu_seconds()
        torch.manual_seed(0)
        t = time.perf_counter()
        module = torch_models()[name]().eval()
        t_build = time.perf_counter() - t
        n_torch = sum(p.numel() for p in module.parameters())

        ours_path, theirs_path = self.tmp / f"{name}.cnndsl.onnx", self.tmp / f"{name}.torch.onnx"
        reps = 1 if args.quick else EXPORT_REPEATS[name]
        ours_t, parts, theirs_t = [], [], []
        for r in range(reps):
            # interleaved, alternating which goes first
            for who in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
                gc.collect()
                if who == "ours":
                    m, proto, t = self.export_ours(src, network, ours_path)
                    ours_t.append(t[0])
                    parts.append(t[1:])
                    if r < reps - 1:
                        del proto
                else:
                    theirs_t.append(self.export_theirs(module, theirs_path))
        n_ours = m.totals.trainable_params
        assert n_ours == n_torch, f"{name}: cnndsl has {n_ours:,} trainable parameters, torch {n_torch:,}"
        self.say(
            f"   parameters: cnndsl trainable {n_ours:,} = torch {n_torch:,}; "
            f"files: ours {file_mib(ours_path):,.1f} MiB, torch {file_mib(theirs_path):,.1f} MiB"
        )
        eo, et = statistics.median(ours_t), statistics.median(theirs_t)
        lp, tp, sp = (statistics.median(p[i] for p in parts) for i in range(3))
        self.say(
            f"   export (median of {reps}): cnndsl {eo:.3f} s "
            f"(load {lp:.3f} + to_onnx {tp:.3f} + serialise/write {sp:.3f}); "
            f"torch.onnx.export ({args.torch_exporter}) {et:.3f} s "
            f"(building the torch module and its random weights, {t_build:.3f} s once, not counted)"
        )
        self.rows.append((name, "export time (s)", eo, et, None, "s", None))

        # graphs as exported
        co, io = op_counts(proto)
        ct, it = op_counts(theirs_path)
        self.say(f"   graph ours  : {sum(co.values())} nodes, {io} initializers: {fmt_counts(co)}")
        self.say(f"   graph torch : {sum(ct.values())} nodes, {it} initializers: {fmt_counts(ct)}")

        # sessions (and their optimised graphs)
        s_ours, init_o = make_session(
            ours_path,
            self.threads,
            self.providers,
            self.tmp / f"{name}.cnndsl.opt.onnx" if args.optimized_graphs else None,
        )
        s_theirs, init_t = make_session(
            theirs_path,
            self.threads,
            self.providers,
            self.tmp / f"{name}.torch.opt.onnx" if args.optimized_graphs else None,
        )
        used = s_ours.get_providers()[0]
        if args.provider == "cuda" and used != "CUDAExecutionProvider":
            raise SystemExit("--provider cuda: the CUDA provider did not start")
        self.provider_used = self.provider_used or used
        self.say(f"   onnxruntime session creation: ours {init_o:.2f} s, torch {init_t:.2f} s ({used})")
        if args.optimized_graphs:
            sigs = {}
            for who in ("cnndsl", "torch"):
                p = self.tmp / f"{name}.{who}.opt.onnx"
                if p.exists():
                    c, _ = op_counts(p)
                    sigs[who] = node_signatures(p)
                    self.say(f"   optimised {who:6s}: {sum(c.values())} nodes: {fmt_counts(c)}")
                    p.unlink()
                    for extra in p.parent.glob(p.name + "*"):
                        extra.unlink()
            if len(sigs) == 2:
                self.say("   optimised graphs: " + compare_signatures(sigs["cnndsl"], sigs["torch"]))

        # shapes, then numerics with the same weights
        rng = np.random.default_rng(0)
        x2 = rng.standard_normal((2, 3, 224, 224), dtype=np.float32)
        yo = s_ours.run(None, {"input": x2})[0]
        yt = s_theirs.run(None, {"input": x2})[0]
        assert yo.shape == yt.shape, f"{name}: output shapes differ: ours {yo.shape}, torch {yt.shape}"
        self.say(f"   output shapes agree: {yo.shape}")
        if not args.no_numeric_check:
            self.same_weights_check(name, m, proto, module, s_theirs, x2, yt)
        del proto
        gc.collect()

        # latency; A/A: a second session of our own model, run in the same rotation, shows the noise
        s_aa = None if args.no_aa else make_session(ours_path, self.threads, self.providers)[0]
        self.eager_device = "cuda" if used == "CUDAExecutionProvider" and torch.cuda.is_available() else "cpu"
        module = module.to(self.eager_device)
        (r1, r32), (q1, q32) = RUNS[name]
        plan = [(1, q1 if args.quick else r1), (32, q32 if args.quick else r32)]
        if args.runs:
            plan = [(b, args.runs if n else None) for b, n in plan]
        for batch, runs in plan:
            if not runs:
                continue
            warm = 2 if batch == 1 else 1
            x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
            t0 = time.perf_counter()
            sessions = [s_ours, s_theirs] + ([s_aa] if s_aa is not None else [])
            to, tt, *taa = self.ort_latency(sessions, x, runs, warm)
            taa = taa[0] if taa else None
            te, shape_e = self.eager_latency(module, x, runs, warm)
            assert shape_e == yo.shape[:0] + (batch,) + yo.shape[1:], f"{name}: eager output {shape_e}"
            self.say(
                f"   batch {batch:2d}, {runs} runs after {warm} warm-up ({time.perf_counter() - t0:.0f} s): "
                f"ours median {ms(statistics.median(to))} ms p90 {ms(percentile(to, 0.9))}; "
                f"torch-onnx median {ms(statistics.median(tt))} ms p90 {ms(percentile(tt, 0.9))}; "
                f"eager median {ms(statistics.median(te))} ms p90 {ms(percentile(te, 0.9))}"
                + (
                    ""
                    if taa is None
                    else f"; ours again (A/A) median {ms(statistics.median(taa))} ms p90 {ms(percentile(taa, 0.9))}"
                )
            )
            self.rows.append(
                (
                    name,
                    f"ORT batch {batch} median (ms)",
                    statistics.median(to),
                    statistics.median(tt),
                    statistics.median(te),
                    "ms",
                    None if taa is None else statistics.median(taa),
                )
            )
            self.rows.append(
                (
                    name,
                    f"ORT batch {batch} p90 (ms)",
                    percentile(to, 0.9),
                    percentile(tt, 0.9),
                    percentile(te, 0.9),
                    "ms",
                    None if taa is None else percentile(taa, 0.9),
                )
            )
        self.say("   " + others_line(cpu0))
        del s_ours, s_theirs, s_aa, module
        for p in self.tmp.glob(f"{name}.*"):
            p.unlink()
        gc.collect()
        self.say()

    def same_weights_check(self, name, m, proto, module, s_theirs, x, y_theirs):
        """Export ours again with torch's weights (matched by order and shape); outputs must agree."""
        import cnndsl.lower.export

        ours = [t for t in proto.graph.initializer if "/" not in t.name]  # weights, not helper constants
        theirs = [(k, v) for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")]
        if len(ours) != len(theirs):
            raise AssertionError(f"{name}: {len(ours)} cnndsl weights, {len(theirs)} torch tensors")
        weights = {}
        for t, (k, v) in zip(ours, theirs):
            suffix_o, suffix_t = t.name.rsplit(".", 1)[1], k.rsplit(".", 1)[1]
            if tuple(t.dims) != tuple(v.shape) or suffix_o != suffix_t:
                raise AssertionError(f"{name}: weight order differs at {t.name} {tuple(t.dims)} / {k} {tuple(v.shape)}")
            weights[t.name] = v.detach().cpu().numpy()
        p2 = cnndsl.lower.export.to_onnx(m, opset=OPSET, weights=weights)
        path = self.tmp / f"{name}.cnndsl.torchweights.onnx"
        path.write_bytes(p2.SerializeToString())
        del p2, weights
        s, _ = make_session(path, self.threads, self.providers)
        y = s.run(None, {"input": x})[0]
        del s
        path.unlink()
        scale = float(np.abs(y_theirs).max()) or 1.0
        err = float(np.abs(y - y_theirs).max())
        ok = err <= 1e-3 * scale + 1e-5
        self.say(
            f"   same weights (torch's loaded into cnndsl): max |ours - torch| = {err:.2e} "
            f"(max |output| {scale:.2e}): {'agree' if ok else 'DISAGREE'}"
        )
        assert ok, f"{name}: outputs differ with the same weights"

    # -- table ----------------------------------------------------------------
    def table(self):
        head = ("model", "metric", "ours", "torch-onnx", "ratio", "eager", "ours/eager", "A/A")
        lines = []
        for model, metric, o, t, e, unit, aa in self.rows:
            f = (lambda v: f"{v:.3f}") if unit == "s" else (lambda v: f"{v * 1e3:,.1f}")
            ratio = o / t
            lines.append(
                (
                    model,
                    metric,
                    f(o),
                    f(t),
                    f"{ratio:.2f}" + (" *" if round(ratio, 2) > 1.0 else ""),
                    "" if e is None else f(e),
                    "" if e is None else f"{o / e:.2f}",
                    "" if aa is None else f"{o / aa:.2f}",
                )
            )
        widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
        right = {2, 3, 4, 5, 6, 7}

        def row(cells):
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        out = [row(head), row(tuple("-" * w for w in widths))]
        out += [row(r) for r in lines]
        return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--provider",
        choices=("cpu", "cuda", "auto"),
        default="auto",
        help="onnxruntime provider (auto: CUDA when this onnxruntime has it and a GPU driver is present)",
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer iterations, batch 32 only for mobilenet")
    ap.add_argument("--models", default="resnet50,vgg16,mobilenet", help="comma-separated: resnet50,vgg16,mobilenet")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the usable cores)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per batch size (overrides the built-in counts)")
    ap.add_argument(
        "--torch-exporter",
        choices=("legacy", "dynamo"),
        default="legacy",
        help="torch.onnx.export(dynamo=False) (TorchScript, default) or dynamo=True (needs onnxscript)",
    )
    ap.add_argument(
        "--no-optimized-graphs",
        dest="optimized_graphs",
        action="store_false",
        help="skip saving and counting onnxruntime's optimised graphs",
    )
    ap.add_argument(
        "--no-aa",
        action="store_true",
        help="skip the A/A control (a second session of our model timed alongside, to show the noise)",
    )
    ap.add_argument("--no-numeric-check", action="store_true", help="skip the same-weights comparison")
    args = ap.parse_args(argv)
    if args.threads is None:
        try:
            args.threads = len(os.sched_getaffinity(0))
        except AttributeError:
            args.threads = os.cpu_count() or 1
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        net_source(m)

    try:
        import torch
    except ImportError:
        raise SystemExit(
            "this benchmark needs torch: pip install torch==2.13.0 (or pip install -e '.[bench]')"
        ) from None
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # a provider that cannot start is reported by us, not as a log dump
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, str(ROOT))

    bench = Bench(args)
    t0 = time.perf_counter()
    load0 = loadavg()
    cpu0 = cpu_seconds()
    print(f"bench_onnx.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(
        f"opset {OPSET}, input Nx3x224x224 float32, torch exporter: {args.torch_exporter}"
        f"{', quick' if args.quick else ''}; ratio = ours / torch-onnx (target <= 1.00; * marks > 1.00);"
    )
    print("A/A = ours / a second session of the same model file timed in the same rotation: the noise floor")
    print()
    try:
        for m in models:
            bench.run_model(m)
    finally:
        for p in bench.tmp.glob("*"):
            p.unlink()
        bench.tmp.rmdir()
    for line in machine_lines(bench.provider_used or bench.providers[0], args.threads, bench.eager_device):
        print(line)
    print(f"load avg  : {load0} at start, {loadavg()} at end (1/5/15 min); {others_line(cpu0)}")
    print()
    for line in bench.table():
        print(line)
    print()
    print(f"total time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
