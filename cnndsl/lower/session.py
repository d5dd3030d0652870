"""``cnndsl run``: run a model on onnxruntime and report latency and throughput.

``--provider auto`` takes CUDAExecutionProvider when onnxruntime has it and a
GPU answers, else the CPU; the provider actually used is printed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from cnndsl.errors import CnnError

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def providers_for(provider: str = "auto") -> list[str]:
    """The execution providers a session for ``--provider`` asks for, in order."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # a missing GPU is reported by us, not as a log dump
    available = ort.get_available_providers()
    if provider == "auto":
        # onnxruntime-gpu lists CUDA even on machines without a GPU; only try it where a driver is.
        gpu = "CUDAExecutionProvider" in available and (sys.platform != "linux" or os.path.exists("/dev/nvidiactl"))
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    else:
        name = PROVIDERS[provider]
        if name not in available:
            raise CnnError(
                f"--provider {provider}: this onnxruntime build has no {name} (it has {', '.join(available)})",
                code="E090",
            )
        wanted = [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]
    return wanted


def make_session(model_bytes: bytes, provider: str = "auto"):
    import onnxruntime as ort

    wanted = providers_for(provider)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # the CUDA provider's failure to find a GPU is reported by us, not as a log dump
    try:
        sess = ort.InferenceSession(model_bytes, sess_options=opts, providers=wanted)
    except Exception as err:  # an invalid model file, or a provider that cannot start
        raise CnnError(f"onnxruntime cannot load the model: {str(err).splitlines()[0]}", code="E091") from None
    used = sess.get_providers()[0]
    if provider == "cuda" and used != "CUDAExecutionProvider":
        raise CnnError("--provider cuda: the CUDA provider did not start (no GPU or no CUDA libraries)", code="E090")
    return sess, used


def percentile(values, q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def time_model(model_bytes: bytes, provider="auto", batch=1, iterations=20, data=None, warmup=3, progress=None):
    """Run ``iterations`` times; returns (outputs, latencies in seconds, provider used)."""
    import numpy as np

    sess, used = make_session(model_bytes, provider)
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float64 if "double" in inp.type else np.float32
    if data is None:
        shape = [batch if not isinstance(d, int) else d for d in inp.shape]
        data = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    else:
        want = [d for d in inp.shape[1:]]
        if len(data.shape) != len(inp.shape) or any(
            isinstance(w, int) and w != d for w, d in zip(want, data.shape[1:])
        ):
            raise CnnError(
                f"--data has shape {tuple(data.shape)}; the model takes (N, {', '.join(map(str, want))})",
                code="E092",
            )
        data = data.astype(dtype, copy=False)
    feed = {inp.name: data}
    for _ in range(warmup):
        outs = sess.run(None, feed)
    times = []
    for i in range(iterations):
        t = time.perf_counter()
        outs = sess.run(None, feed)
        times.append(time.perf_counter() - t)
        if progress:
            progress(i + 1, iterations)
    if iterations == 0:
        outs = sess.run(None, feed)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, outs)), times, used, data.shape[0]


def save_outputs(outputs: dict, path: Path) -> None:
    """One output to .npy, several to .npz; written atomically (cnndsl.files)."""
    import numpy as np

    from cnndsl.files import write_atomic

    path = Path(path)
    if path.suffix == ".npz":
        write_atomic(path, lambda f: np.savez(f, **outputs))
    elif len(outputs) != 1:
        raise CnnError(f"--output {path}: the model has {len(outputs)} outputs; use a .npz file", code="E093")
    else:
        write_atomic(path, lambda f: np.save(f, next(iter(outputs.values()))))


def bar(stream=sys.stderr):
    """A simple progress callback (rich when on a terminal, nothing when piped)."""
    if not stream.isatty():
        return None
    from rich.progress import Progress

    prog = Progress(transient=True)
    task = None

    def update(done, total):
        nonlocal task
        if task is None:
            prog.start()
            task = prog.add_task("running", total=total)
        prog.update(task, completed=done)
        if done == total:
            prog.stop()

    return update
