"""A long A/B run of ResNet-50 at batch 1 on onnxruntime: our export against
torch.onnx.export of the same network (the module from bench_onnx.py), runs
interleaved and alternating in order. Needs the optional torch==2.13.0.

    python benchmarks/ab_resnet50.py [RUNS]
"""

import pathlib
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_onnx as B  # noqa: E402

import cnndsl  # noqa: E402
from cnndsl.lower.export import to_onnx, write_model  # noqa: E402


def main(runs: int = 300) -> None:
    import torch

    d = pathlib.Path(tempfile.mkdtemp())
    root = pathlib.Path(__file__).resolve().parent.parent
    write_model(to_onnx(cnndsl.load(root / "networks" / "resnet.net", network="resnet50")), d / "ours.onnx")
    module = B.torch_models()["resnet50"]().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(1, 3, 224, 224),),
            str(d / "torch.onnx"),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
        )
    a, _ = B.make_session(d / "ours.onnx", 2, ["CPUExecutionProvider"])
    b, _ = B.make_session(d / "torch.onnx", 2, ["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for s in (a, b):
        for _ in range(5):
            s.run(None, {"input": x})
    times = {a: [], b: []}
    for i in range(runs):
        for s in (a, b) if i % 2 == 0 else (b, a):
            t = time.perf_counter()
            s.run(None, {"input": x})
            times[s].append(time.perf_counter() - t)
    ma, mb = np.median(times[a]), np.median(times[b])
    print(
        f"ResNet-50 batch 1, {runs} interleaved runs each (2 threads, CPU): ours median {ma * 1e3:.2f} ms, "
        f"torch-onnx {mb * 1e3:.2f} ms, ratio {ma / mb:.3f}; p90 {np.percentile(times[a], 90) * 1e3:.2f} / "
        f"{np.percentile(times[b], 90) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
