"""``cnndsl export``: lower, check, and write an ONNX model atomically.

>>> from cnndsl import load
>>> from cnndsl.lower.export import to_onnx
>>> to_onnx(load("network n { input 3x8x8\\n conv 4/3 }")).graph.output[0].name
'output'
"""

from __future__ import annotations

import os
import tempfile
from math import prod
from pathlib import Path

from cnndsl.errors import CnnError
from cnndsl.files import write_atomic
from cnndsl.lower.builder import DEFAULT_OPSET, lower_graph, lower_nodes
from cnndsl.lower.weights import read_weights

TWO_GB = 2**31 - 1
METADATA_KEY = "cnndsl.metadata"  # a checkpoint's entry with the model's metadata as JSON (cnndsl.train.contract)


def load_weights(path) -> dict:
    """Arrays by name from a .npz, .safetensors or PyTorch .pt/.pth state dict (cnndsl.lower.weights);
    a checkpoint's metadata entry is left out (:func:`load_checkpoint` reads it)."""
    return load_checkpoint(path)[0]


def load_checkpoint(path) -> tuple[dict, dict]:
    """(weights by name, the metadata ``cnndsl train`` recorded: a dict of strings, empty if none)."""
    import json

    arrays = read_weights(path)
    if METADATA_KEY not in arrays:
        return arrays, {}
    entry = arrays.pop(METADATA_KEY)
    try:
        meta = json.loads(str(entry[()])) if entry.dtype.kind == "U" and entry.ndim == 0 else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CnnError(
            f"--weights {path}: the entry {METADATA_KEY} is not a JSON object of strings (cnndsl train writes one)",
            code="E082",
        )
    return arrays, meta


def network_weights(model, opset: int = DEFAULT_OPSET) -> list[tuple[str, tuple]]:
    """The network's weights and buffers as (name, shape), in execution order: the names a
    weights file gives (and the generated PyTorch module's state-dict keys)."""
    b = lower_nodes(model.graph, opset)
    return [(name, tuple(arr.shape)) for name, arr in b.initializers if name in b.params]


def to_onnx(
    model,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    weights: dict | None = None,
    dtype: str = "float32",
    batch: int | None = None,
    check: bool = True,
    fold: bool = False,
    metadata: dict | None = None,
):
    """The ONNX ModelProto of a compiled network (``cnndsl.load``), checked.

    ``metadata``: more ``metadata_props`` (strings), such as a checkpoint's class names and
    preprocessing (docs/deploy.md).

    ``dtype="float16"`` makes inputs, outputs and weights half precision (run it
    on CUDA: onnxruntime's CPU provider lacks float16 kernels for several
    operators); ``fold=True`` folds batch norm into the layer before it."""
    import numpy as np

    if dtype not in ("float32", "float16", "float64"):
        raise CnnError(f"--dtype {dtype}: choose float32, float16 or float64", code="E084")
    g = model.graph
    meta = {
        "cnndsl.defines": ", ".join(f"{k}={v}" for k, v in g.defines.items()),
        "cnndsl.seed": str(seed),
        "cnndsl.dtype": dtype,
        "cnndsl.fold_bn": str(fold).lower(),
        **(metadata or {}),
    }
    proto = lower_graph(g, opset=opset, seed=seed, weights=weights, dtype=np.dtype(dtype), batch=batch, metadata=meta)
    if fold:
        fold_bn(proto)
    if check:
        check_model(proto, model)
    return proto


def check_model(proto, model) -> None:
    """The full ONNX checker, and ONNX shape inference agreeing with ours.

    Runs on :func:`light_copy`: the checks see the whole graph without copying the weights."""
    import onnx

    light = light_copy(proto)
    onnx.checker.check_model(light, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=True)
    ours = {n.name: n.shape for n in model.graph.nodes[1:]}
    ours.update((name, model.graph.nodes[i].shape) for name, i in model.graph.outputs)  # an output owns its name
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name in ours:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim][1:]
            if dims and None not in dims and tuple(dims) != ours[vi.name]:
                raise AssertionError(f"ONNX infers {dims} for {vi.name}, cnndsl {ours[vi.name]}")


LIGHT_ELEMENTS = 4096  # initializers larger than this stay out of the light copy


def light_copy(proto):
    """A copy of the model for ``onnx.checker`` and shape inference, without its large
    initializers: each becomes a graph input of the same type and shape (or, where it is
    a graph input already, as the train-step graph's parameters are, is just left out).
    Small ones (shapes, axes, scalars) stay: inference reads their values."""
    import onnx
    from onnx import helper

    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    light.producer_name = proto.producer_name
    g, src = light.graph, proto.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    inputs = {i.name for i in src.input}
    for t in src.initializer:
        if prod(t.dims) <= LIGHT_ELEMENTS:
            g.initializer.append(t)
        elif t.name not in inputs:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return light


def write_model(proto, out: Path) -> int:
    """Write the model atomically (cnndsl.files): never a partial file.

    Models over 2 GB keep their weights in ``<name>.data`` beside the model."""
    out = Path(out)
    if proto.ByteSize() < TWO_GB:
        write_atomic(out, lambda f: f.write(proto.SerializeToString()))
        return out.stat().st_size
    return _write_external(proto, out)


def _write_external(proto, out: Path) -> int:
    """The weights to ``<name>.data`` (renamed into place first), then the model that names it."""
    import onnx

    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise CnnError(f"cannot write {out}: directory {directory} does not exist", code="E083")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp)
    data_tmp = tmp.with_suffix(".data.tmp")
    try:
        onnx.save_model(
            proto,
            str(tmp),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_tmp.name,
            size_threshold=1024,
        )
        # the model refers to its data by name: rewrite the reference to the final name
        m = onnx.load_model(str(tmp), load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = out.name + ".data"
        os.replace(data_tmp, out.with_name(out.name + ".data"))
        write_atomic(out, lambda f: f.write(m.SerializeToString()))
    except OSError as err:
        raise CnnError(f"cannot write {out}: {err.strerror or err}", code="E083") from None
    finally:
        for p in (tmp, data_tmp):
            if p.exists():
                p.unlink()
    return out.stat().st_size


def fold_bn(proto) -> int:
    """Fold BatchNormalization into the Conv/Gemm before it (inference only).

    W' = W·γ/√(var+ε) per output channel, b' = (b − mean)·γ/√(var+ε) + β. A BN is
    folded only when it is the sole reader of a Conv/Gemm (group-free
    ConvTranspose too) whose weight is an initializer. Returns how many folded."""
    import numpy as np
    from onnx import numpy_helper

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    removed, folded = [], 0
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        src = producer.get(bn.input[0])
        if src is None or src.op_type not in ("Conv", "Gemm", "ConvTranspose"):
            continue
        if readers.get(bn.input[0]) != 1 or bn.input[0] in outputs or src.input[1] not in inits:
            continue
        attrs = {a.name: a for a in src.attribute}
        if src.op_type == "ConvTranspose" and "group" in attrs and attrs["group"].i != 1:
            continue
        if src.op_type == "Gemm" and ("transB" not in attrs or attrs["transB"].i != 1):
            continue
        scale, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        s = scale / np.sqrt(var + eps)
        w_t = inits[src.input[1]]
        w = numpy_helper.to_array(w_t).astype(np.float64)
        axis = 1 if src.op_type == "ConvTranspose" else 0
        shape = [1] * w.ndim
        shape[axis] = -1
        w = w * s.reshape(shape)
        b = numpy_helper.to_array(inits[src.input[2]]).astype(np.float64) if len(src.input) > 2 else np.zeros_like(s)
        b = (b - mean) * s + beta
        dtype = numpy_helper.to_array(w_t).dtype
        w_t.CopyFrom(numpy_helper.from_array(w.astype(dtype), w_t.name))
        bias_name = src.input[2] if len(src.input) > 2 else src.input[1].rsplit(".", 1)[0] + ".bias"
        new_bias = numpy_helper.from_array(b.astype(dtype), bias_name)
        if bias_name in inits:
            inits[bias_name].CopyFrom(new_bias)
        else:
            g.initializer.append(new_bias)
            inits[bias_name] = g.initializer[-1]
            src.input.append(bias_name)
        old = src.output[0]
        src.output[0] = bn.output[0]
        removed.append(bn)
        for vi in list(g.value_info):
            if vi.name == old:
                g.value_info.remove(vi)
        folded += 1
    for bn in removed:
        g.node.remove(bn)
    used = {i for n in g.node for i in n.input}
    for t in list(g.initializer):
        if t.name not in used:
            g.initializer.remove(t)
    return folded
