"""The Trainer's CPU form of its step graph: convolutions on onnxruntime's blocked (NCHWc) kernels.

onnxruntime runs a ``Conv`` in the blocked layout (channels in blocks of 8 or 16, the CPU's
vector width) only when its weights are constant: its graph transformer reorders them once.
In a training step the weights are inputs, so every ``Conv`` falls back to im2col and a GEMM,
about 1.3 times slower (benchmarks/RESULTS.md). This module rewrites each such ``Conv``, in
the session the Trainer builds and nowhere else (an exported step graph keeps standard
operators only), as the transformer would have: ``ReorderInput`` → the ``com.microsoft.nchwc``
``Conv`` with the weights reordered by standard operators in the graph (Reshape, Transpose;
tensors of a few thousand values) → ``ReorderOutput``.

The blocked layout is onnxruntime's own and depends on the CPU, so it is not assumed: at the
first use a probe asks onnxruntime to optimise a small constant-weight ``Conv``, reads back the
filter it reordered, and finds which block size gives the same bytes. Anything else — no
NCHWc kernels (an ARM or non-AVX2 CPU, another execution provider), a layout that matches no
block size, an error — leaves the graph as it is. ``CNNDSL_NCHWC=0`` switches the rewrite off.
"""

from __future__ import annotations

import os

import numpy as np

DOMAIN = "com.microsoft.nchwc"
PROBE_CHANNELS = 32  # a multiple of every block size tried, so the probe's Conv is eligible
BLOCKS = (16, 8, 4)
_probed: dict[str, int] = {}


# onnxruntime's ``OIHWBiBo`` filter order, [O/B][I/B][kh][kw][Bi][Bo]: the filter seen as
# (O/B, Bo, I/B, Bi, kh, kw) and transposed by FILTER_ORDER (in NumPy for the probe, in the graph
# for the rewrite)
FILTER_ORDER = (0, 2, 4, 5, 3, 1)


def _split_shape(shape, block: int) -> list[int]:
    o, i, kh, kw = shape
    return [o // block, block, i // block, block, kh, kw]


def reorder_filter(w: np.ndarray, block: int) -> np.ndarray:
    """(O, I, kh, kw) in onnxruntime's ``OIHWBiBo`` order."""
    return w.reshape(_split_shape(w.shape, block)).transpose(FILTER_ORDER).reshape(w.shape)


def cpu_form(proto):
    """(the step graph the Trainer's CPU session runs, the number of Conv rewritten): ``proto``
    with its convolutions on the NCHWc kernels where this CPU has them, else ``proto`` itself."""
    block = block_size()
    if not block:
        return proto, 0
    try:
        return rewrite(proto, block)
    except Exception:  # noqa: BLE001 - an optimisation only (e.g. shape inference refusing a graph)
        return proto, 0


def block_size() -> int:
    """The block size of onnxruntime's NCHWc kernels on this CPU, 0 when they are not there
    (or ``CNNDSL_NCHWC=0``). Probed once per process."""
    if os.environ.get("CNNDSL_NCHWC", "1") == "0":
        return 0
    if "block" not in _probed:
        try:
            _probed["block"] = _probe()
        except Exception:  # no NCHWc kernels, or an onnxruntime that optimises differently
            _probed["block"] = 0
    return _probed["block"]


def _probe() -> int:
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    c = PROBE_CHANNELS
    w = np.arange(c * c * 9, dtype=np.float32).reshape(c, c, 3, 3)  # every value distinct
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = os.path.join(tmp, "probe.onnx")
        opts.log_severity_level = 4
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        optimised = onnx.load(opts.optimized_model_filepath)
    conv = [n for n in optimised.graph.node if n.op_type == "Conv" and n.domain == DOMAIN]
    if len(conv) != 1:
        return 0
    filters = {t.name: numpy_helper.to_array(t) for t in optimised.graph.initializer}
    got = filters.get(conv[0].input[1])
    if got is None or got.size != w.size:
        return 0
    for block in BLOCKS:
        if np.array_equal(got.ravel(), reorder_filter(w, block).ravel()):
            return block
    return 0


def rewrite(proto, block: int):
    """``proto`` with every eligible ``Conv`` on the NCHWc kernels (a copy; ``proto`` is kept):
    2-D, ungrouped, float32, both channel counts multiples of ``block``, weights not constant.
    Returns (model, number of Conv rewritten)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type for v in (*inferred.graph.value_info, *inferred.graph.input)}
    inputs = {i.name for i in proto.graph.input}
    constant = {t.name for t in proto.graph.initializer if t.name not in inputs}
    constant |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}

    def shape(name):
        t = types.get(name)
        if t is None or t.elem_type != TensorProto.FLOAT:
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        return dims if dims and None not in dims else None

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    nodes, extra, count = [], [], 0
    for i, n in enumerate(proto.graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        # the weights' shape and type decide (the input's follow from them: Conv checks)
        w = shape(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        if (
            n.op_type != "Conv"
            or n.domain not in ("", "ai.onnx")
            or n.input[1] in constant
            or w is None
            or len(w) != 4
            or attrs.get("group", 1) != 1
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or w[0] % block
            or w[1] % block
        ):
            nodes.append(n)
            continue
        o, c, kh, kw = w
        p = f"nchwc{i}"
        nodes += [
            helper.make_node("Reshape", [n.input[1], f"{p}.s6"], [f"{p}.w6"]),
            helper.make_node("Transpose", [f"{p}.w6"], [f"{p}.w6t"], perm=list(FILTER_ORDER)),
            helper.make_node("Reshape", [f"{p}.w6t", f"{p}.s4"], [f"{p}.w"]),
            helper.make_node("ReorderInput", [n.input[0]], [f"{p}.x"], domain=DOMAIN, channels_last=0),
            helper.make_node(
                "Conv",
                [f"{p}.x", f"{p}.w", *n.input[2:]],
                [f"{p}.y"],
                domain=DOMAIN,
                name=n.name,
                **{k: v for k, v in attrs.items() if k in ("dilations", "pads", "strides", "kernel_shape")},
            ),
            helper.make_node("ReorderOutput", [f"{p}.y"], [n.output[0]], domain=DOMAIN, channels_last=0, channels=o),
        ]
        extra += [
            numpy_helper.from_array(np.array(_split_shape(w, block), np.int64), f"{p}.s6"),
            numpy_helper.from_array(np.array([o, c, kh, kw], np.int64), f"{p}.s4"),
        ]
        count += 1
    if not count:
        return proto, 0
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(extra)
    out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, count
