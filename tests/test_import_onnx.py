"""cnndsl import of ONNX files as torch's two exporters write them (the TorchScript exporter,
``dynamo=False``, and the dynamo one), and of untrusted ONNX files.

The graphs are built here, operator by operator, in the forms torch 2.13 writes (dumped from
its exports of the modules in this file); the same modules are exported with torch itself where
torch is installed. Expected figures are computed by hand in the comments or by PyTorch (its
parameter counts; its Conv2d/Linear modules' MACs counted with hooks), never by the code under
test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cnndsl import load
from cnndsl.cli import main

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path):
    out = path.with_suffix(".net")
    assert main(["import", str(path), "-o", str(out)]) == 0
    assert main(["check", str(out)]) == 0
    assert main(["fmt", "--check", str(out)]) == 0
    return load(str(out)), out.read_text()


def refused(path: Path, code: str) -> str:
    """The one-line diagnostic of an import that must fail with ``code`` (exit 1, no traceback,
    nothing written), as ``cnndsl import`` prints it (run in-process: a subprocess costs seconds)."""
    import contextlib
    import io

    out = path.with_suffix(".net")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["import", str(path), "-o", str(out)])
    assert rc == 1 and "Traceback" not in err.getvalue(), err.getvalue()
    assert not out.exists()
    (line,) = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    assert line.endswith(f"[{code}]"), line
    return line


class G:
    """A graph written operator by operator, as an exporter writes it."""

    def __init__(self, shape, producer="pytorch", opset=17):
        self.shape, self.producer, self.opset = list(shape), producer, opset
        self.nodes, self.inits = [], []
        self.k = 0

    def init(self, value, dtype=np.float32):
        from onnx import numpy_helper

        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def weight(self, *shape):
        return self.init(np.random.default_rng(self.k).standard_normal(shape))

    def ints(self, *values):
        return self.init(list(values), np.int64)

    def op(self, op, *inputs, outputs=1, **attrs):
        from onnx import helper

        self.k += 1
        names = [f"t{self.k}_{j}" for j in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=f"/{op}_{self.k}", **attrs))
        return names[0] if outputs == 1 else names

    def constant(self, values, dtype=np.int64):
        """A Constant node (as the TorchScript exporter writes shapes and scalars)."""
        from onnx import helper, numpy_helper

        self.k += 1
        name = f"k{self.k}"
        tensor = numpy_helper.from_array(np.asarray(values, dtype), name + "_value")
        self.nodes.append(helper.make_node("Constant", [], [name], name=f"/Constant_{self.k}", value=tensor))
        return name

    def conv(self, x, c_in, k, f=1, stride=1, pad=0, groups=1, bias=True):
        w = self.weight(k, c_in // groups, f, f)
        ins = [x, w] + ([self.weight(k)] if bias else [])
        return self.op("Conv", *ins, kernel_shape=[f, f], strides=[stride] * 2, pads=[pad] * 4, group=groups)

    def save(self, path, y, **save):
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes,
            "main_graph",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.shape)],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)],
            self.inits,
        )
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, producer_name=self.producer, opset_imports=opsets)
        onnx.save(model, str(path), **save)
        return path


# --------------------------------------------------------------------------- exporter forms


def test_reduce_mean_is_global_pooling(tmp_path):
    """torch's x.mean([2, 3]) (MNASNet, ShuffleNetV2's head): ReduceMean without keepdims is gap and
    flatten; the dynamo exporter's AdaptiveAvgPool2d(1): ReduceMean with keepdims (axes an input
    from opset 18) is gap; ReduceMax with keepdims is gmp."""
    g = G([1, 3, 8, 8])
    c = g.conv("x", 3, 8, 3, pad=1)
    m = g.op("ReduceMean", c, axes=[2, 3], keepdims=0)
    y = g.op("Gemm", m, g.weight(10, 8), g.weight(10), transB=1)
    model, text = imported(g.save(tmp_path / "mean.onnx", y))
    assert [layer.kind for layer in model.layers] == ["conv", "gap", "flatten", "fc"]
    # by hand: conv 8·3·9 + 8 = 224, fc 8·10 + 10 = 90
    assert model.totals.params == 224 + 90 and model.outputs[0][1] == (10,)

    g = G([1, 3, 8, 8], opset=20)
    c = g.conv("x", 3, 8, 3, pad=1)
    p = g.op("ReduceMean", c, g.ints(-1, -2), keepdims=1)
    q = g.op("ReduceMax", p, g.ints(2, 3), keepdims=1)
    r = g.op("Reshape", q, g.ints(1, 8))
    model, text = imported(g.save(tmp_path / "dyn.onnx", r))
    assert [layer.kind for layer in model.layers] == ["conv", "gap", "gmp", "flatten"]


def test_reduce_over_other_axes_is_refused(tmp_path):
    g = G([1, 8, 4, 4])
    y = g.op("ReduceMean", "x", axes=[1], keepdims=1)
    line = refused(g.save(tmp_path / "c.onnx", y), "E261")
    assert "ReduceMean" in line and "no equivalent" in line


@pytest.mark.parametrize(
    "ops, kind",
    [
        (["HardSwish"], "hardswish"),  # both exporters at opset 14+
        (["HardSigmoid", "Mul"], "hardswish"),  # x·hardsigmoid(x): the form before opset 14
        (["Sigmoid", "Mul"], "silu"),  # torch's nn.SiLU, both exporters
        (["Softplus", "Tanh", "Mul"], "mish"),  # F.mish before opset 18
        (["Gelu"], "gelu"),  # dynamo at opset 20
        (["Div", "Erf", "Add", "Mul", "Mul"], "gelu"),  # the TorchScript exporter's erf form
    ],
)
def test_activation_forms(tmp_path, ops, kind):
    g = G([1, 4, 5, 5], opset=20 if ops == ["Gelu"] else 17)
    x = g.conv("x", 4, 4, 1)
    if ops == ["HardSigmoid", "Mul"]:
        y = g.op("Mul", x, g.op("HardSigmoid", x, alpha=1 / 6, beta=0.5))
    elif ops == ["Sigmoid", "Mul"]:
        y = g.op("Mul", x, g.op("Sigmoid", x))
    elif len(ops) == 3:
        y = g.op("Mul", x, g.op("Tanh", g.op("Softplus", x)))
    elif len(ops) == 5:
        e = g.op("Erf", g.op("Div", x, g.constant(np.sqrt(2), np.float32)))
        y = g.op("Mul", g.op("Mul", x, g.op("Add", e, g.constant(1.0, np.float32))), g.constant(0.5, np.float32))
    else:
        y = g.op(ops[0], x)
    model, text = imported(g.save(tmp_path / "a.onnx", y))
    assert [layer.kind for layer in model.layers] == ["conv", kind], text


def test_sigmoid_gate_of_another_tensor_stays_a_mul(tmp_path):
    """Squeeze-and-excitation: Sigmoid of the gate times the features is sigmoid and mul, not silu."""
    g = G([1, 4, 6, 6])
    x = g.conv("x", 4, 4, 3, pad=1)
    s = g.op("Sigmoid", g.conv(g.op("GlobalAveragePool", x), 4, 4))
    y = g.op("Mul", s, x)
    model, _ = imported(g.save(tmp_path / "se.onnx", y))
    assert [layer.kind for layer in model.layers] == ["conv", "gap", "conv", "sigmoid", "mul"]


def test_gelu_tanh_approximation_refused(tmp_path):
    g = G([1, 4], opset=20)
    line = refused(g.save(tmp_path / "g.onnx", g.op("Gelu", "x", approximate="tanh")), "E261")
    assert "Gelu approximate=tanh: the language's gelu is the exact (erf) form" in line


def _shuffle_unit_ts(g, x, c):
    """torchvision's ShuffleNetV2 stride-1 unit as the TorchScript exporter writes it: chunk as
    Slices whose ends are computed from Shape, channel_shuffle as Reshape, Transpose, Reshape."""
    shape = g.op("Shape", x)
    half = g.op("Div", g.op("Add", g.op("Gather", shape, g.constant([1]), axis=0), g.constant([1])), g.constant([2]))
    axes = g.constant([1])
    a = g.op("Slice", x, g.constant([0]), g.op("Mul", half, g.constant([1])), axes)
    b = g.op("Slice", x, g.op("Mul", half, g.constant([1])), g.op("Mul", half, g.constant([2])), axes)
    b = g.op("Relu", g.conv(b, c // 2, c // 2, 1))
    cat = g.op("Concat", a, b, axis=1)
    t = g.op("Transpose", g.op("Reshape", cat, g.constant([1, 2, c // 2, 4, 4])), perm=[0, 2, 1, 3, 4])
    return g.op("Reshape", t, g.constant([1, -1, 4, 4]))


def _shuffle_unit_dynamo(g, x, c):
    """The same unit as the dynamo exporter writes it: chunk as one Split with two outputs."""
    a, b = g.op("Split", x, axis=1, num_outputs=2, outputs=2)
    b = g.op("Relu", g.conv(b, c // 2, c // 2, 1))
    cat = g.op("Concat", a, b, axis=1)
    t = g.op("Transpose", g.op("Reshape", cat, g.ints(1, 2, c // 2, 4, 4)), perm=[0, 2, 1, 3, 4])
    return g.op("Reshape", t, g.ints(1, -1, 4, 4))


@pytest.mark.parametrize("unit, opset", [(_shuffle_unit_ts, 17), (_shuffle_unit_dynamo, 18)])
def test_shufflenet_unit(tmp_path, unit, opset):
    g = G([1, 16, 4, 4], opset=opset)
    y = unit(g, "x", 16)
    model, text = imported(g.save(tmp_path / "s.onnx", y))
    assert [layer.kind for layer in model.layers] == ["slice", "slice", "conv", "relu", "concat", "shuffle"]
    assert "slice 0/8" in text and "slice 8/16" in text and "shuffle 2" in text, text
    # by hand: the 1x1 conv 8·8 + 8 = 72 parameters, 4·4·8·8 = 1,024 MACs
    assert (model.totals.params, model.totals.macs) == (72, 1_024) and model.outputs[0][1] == (16, 4, 4)


def test_split_of_unequal_parts(tmp_path):
    g = G([1, 12, 3, 3], opset=13)
    a, b, c = g.op("Split", "x", g.ints(2, 4, 6), axis=1, outputs=3)
    y = g.op("Concat", c, a, b, axis=1)
    model, text = imported(g.save(tmp_path / "s.onnx", y))
    assert "slice 0/2" in text and "slice 2/6" in text and "slice 6/12" in text, text
    assert model.outputs[0][1] == (12, 3, 3)


def _convnext_block(g, x, c, eps=1e-6):
    """torchvision's ConvNeXt CNBlock as the TorchScript exporter writes it: dwconv 7x7, permute to
    channels-last, LayerNorm, Linear (MatMul + Add), GELU (erf form), Linear, permute back, the
    layer scale (C, 1, 1) and the residual Add."""
    y = g.conv(x, c, c, 7, pad=3, groups=c)
    y = g.op("Transpose", y, perm=[0, 2, 3, 1])
    y = g.op("LayerNormalization", y, g.weight(c), g.weight(c), axis=-1, epsilon=eps)
    y = g.op("Add", g.op("MatMul", y, g.weight(c, 4 * c)), g.weight(4 * c))
    e = g.op("Erf", g.op("Div", y, g.constant(1.4142135, np.float32)))
    y = g.op("Mul", g.op("Mul", y, g.op("Add", e, g.constant(1.0, np.float32))), g.constant(0.5, np.float32))
    y = g.op("Add", g.op("MatMul", y, g.weight(4 * c, c)), g.weight(c))
    y = g.op("Transpose", y, perm=[0, 3, 1, 2])
    y = g.op("Mul", g.init(np.full((c, 1, 1), 1e-6)), y)
    return g.op("Add", x, y)


def test_convnext_channels_last(tmp_path):
    g = G([1, 3, 16, 16])
    x = g.conv("x", 3, 8, 4, stride=4)
    # LayerNorm2d: permute, layer_norm, permute
    ln = g.op("LayerNormalization", g.op("Transpose", x, perm=[0, 2, 3, 1]), g.weight(8), g.weight(8), epsilon=1e-6)
    x = g.op("Transpose", ln, perm=[0, 3, 1, 2])
    x = _convnext_block(g, x, 8)
    # the classifier: avgpool, LayerNorm2d, flatten (dynamo: as_strided as Reshape(-1) + Gather), Linear
    p = g.op("GlobalAveragePool", x)
    p = g.op("Gather", g.op("Reshape", p, g.ints(-1)), g.init(np.arange(8).reshape(1, 8, 1, 1), np.int64), axis=0)
    ln = g.op("LayerNormalization", g.op("Transpose", p, perm=[0, 2, 3, 1]), g.weight(8), g.weight(8), epsilon=1e-6)
    f = g.op("Flatten", g.op("Transpose", ln, perm=[0, 3, 1, 2]), axis=1)
    y = g.op("Gemm", f, g.weight(10, 8), g.weight(10), transB=1)
    model, text = imported(g.save(tmp_path / "cn.onnx", y))
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["conv", "ln", "conv", "ln", "conv", "gelu", "conv", "scale", "residual"] + [
        "gap",
        "ln",
        "flatten",
        "fc",
    ], text
    assert "conv 32/1 -> gelu" in text and "conv 8/1 -> scale init=1e-06" in text
    # by hand: stem 8·3·16 + 8 = 392; ln 16; dwconv 8·49 + 8 = 400; ln 16; 8·32 + 32 = 288;
    # 32·8 + 8 = 264; scale 8; ln 16; fc 8·10 + 10 = 90
    assert model.totals.params == 392 + 16 + 400 + 16 + 288 + 264 + 8 + 16 + 90
    # MACs by hand: stem 4·4·8·48 = 6,144; dwconv 4·4·8·49 = 6,272; 16·8·32 = 4,096 twice; fc 80
    convs = [layer.macs for layer in model.layers if layer.kind in ("conv", "fc")]
    assert convs == [6_144, 6_272, 4_096, 4_096, 80]


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda g, t: g.op("Softmax", t, axis=1),
            "Softmax of a channels-last tensor (after a Transpose); element-wise operators, LayerNormalization "
            "over the channels, MatMul by a weight and per-channel constants are read there",
        ),
        (
            lambda g, t: g.op("Mul", t, g.init(np.ones((8, 1, 1)))),
            "Mul by a constant of shape (8, 1, 1) on a channels-last tensor",
        ),
        (
            lambda g, t: g.op("LayerNormalization", t, g.weight(8), g.weight(8), axis=1),
            "LayerNormalization over axis 1 of a channels-last tensor: only the last is read",
        ),
    ],
)
def test_channels_last_refusals(tmp_path, make, message):
    g = G([1, 8, 4, 4])
    t = make(g, g.op("Transpose", "x", perm=[0, 2, 3, 1]))
    y = g.op("Transpose", t, perm=[0, 3, 1, 2])
    assert message in refused(g.save(tmp_path / "r.onnx", y), "E261")


def test_layer_norm_of_channels_first_refused(tmp_path):
    g = G([1, 8, 4, 4])
    y = g.op("LayerNormalization", "x", g.weight(4), g.weight(4), axis=-1)
    line = refused(g.save(tmp_path / "l.onnx", y), "E261")
    assert "LayerNormalization of a channels-first tensor" in line


def test_channels_last_output_refused(tmp_path):
    g = G([1, 8, 4, 4])
    y = g.op("Relu", g.op("Transpose", "x", perm=[0, 2, 3, 1]))
    assert "is channels-last (after a Transpose)" in refused(g.save(tmp_path / "o.onnx", y), "E261")


def test_identity_constant_and_shared_weights(tmp_path):
    """Identity of a computed tensor is no layer; Constant nodes are constants; a weight used twice
    through Identity copies (the TorchScript exporter's) is read for each use."""
    g = G([1, 4, 6, 6])
    w = g.weight(4, 4, 3, 3)
    w2 = g.op("Identity", w)
    c1 = g.op("Conv", "x", w, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    r = g.op("Identity", g.op("Relu", c1))
    c2 = g.op("Conv", r, w2, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Reshape", c2, g.constant([1, -1]))
    model, text = imported(g.save(tmp_path / "i.onnx", y))
    assert [layer.kind for layer in model.layers] == ["conv", "relu", "conv", "flatten"]
    assert model.totals.params == 2 * 144 and "dropout" not in text  # by hand: 4·4·9 each, no bias


# --------------------------------------------------------------------------- untrusted files


def _external_model(tmp_path, location="w.bin"):
    """A small model whose every tensor is in an external file (onnx's own external-data API)."""
    g = G([1, 3, 8, 8])
    y = g.op("Relu", g.conv("x", 3, 8, 3, pad=1))
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    g.save(
        folder / "m.onnx",
        y,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return folder / "m.onnx"


def _relocate(path, location, **info):
    """The model with every external tensor's location (and other fields) rewritten."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
            elif e.key in info:
                e.value = str(info[e.key])
    onnx.save(model, str(path))
    return path


def test_external_data_is_read(tmp_path):
    model, _ = imported(_external_model(tmp_path))
    assert model.totals.params == 8 * 27 + 8  # by hand: 224


@pytest.mark.parametrize(
    "location, message",
    [
        ("../w.bin", "external data location ../w.bin leaves the model's folder"),
        ("sub/../../w.bin", "external data location sub/../../w.bin leaves the model's folder"),
        ("/etc/passwd", "external data location /etc/passwd is an absolute path"),
        ("missing.bin", "external data location missing.bin: no such file next to the model"),
        ("w\x00.bin", "external data location w\x00.bin: cannot be resolved (embedded null byte)"),
    ],
)
def test_external_locations_outside_refused(tmp_path, location, message):
    path = _relocate(_external_model(tmp_path), location)
    (tmp_path / "w.bin").write_bytes(bytes(4096))  # a file that is there, outside the folder
    line = refused(path, "E264")
    assert f"{path}: tensor c1: {message}" in line


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_external_symbolic_link_out_of_the_folder_refused(tmp_path):
    path = _external_model(tmp_path)
    outside = tmp_path / "secret.bin"
    outside.write_bytes((path.parent / "w.bin").read_bytes())
    (path.parent / "w.bin").unlink()
    (path.parent / "w.bin").symlink_to(outside)
    line = refused(path, "E264")
    assert f"external data location w.bin resolves to {outside.resolve()}, outside the model's folder" in line
    # a link that stays inside the folder is fine
    (path.parent / "w.bin").unlink()
    (path.parent / "data").mkdir()
    (path.parent / "data" / "w.bin").write_bytes(outside.read_bytes())
    (path.parent / "w.bin").symlink_to(path.parent / "data" / "w.bin")
    assert imported(path)[0].totals.params == 224


def test_external_sizes_checked(tmp_path):
    path = _external_model(tmp_path)
    _relocate(path, "w.bin", length=100)
    line = refused(path, "E263")
    assert "tensor c1 declares 8x3x3x3 float32 values (864 bytes) but its external data has length 100" in line
    path = _external_model(tmp_path / "b")
    (path.parent / "w.bin").write_bytes(bytes(10))  # truncated
    line = refused(path, "E263")
    assert "tensor c1 needs bytes 0 to 864 of w.bin, which has 10" in line


def test_declared_sizes_checked_before_reading(tmp_path):
    """raw_data shorter than the dims say, and dims whose product is absurd (nothing allocated)."""
    import onnx

    g = G([1, 3, 8, 8])
    y = g.op("Relu", g.conv("x", 3, 8, 3, pad=1))
    path = g.save(tmp_path / "m.onnx", y)
    model = onnx.load(str(path))
    model.graph.initializer[1].raw_data = b"\0" * 12  # the bias: 8 floats are 32 bytes
    onnx.save(model, str(path))
    assert "tensor c2 declares 8 float32 values (32 bytes) but holds 12" in refused(path, "E263")
    model.graph.initializer[1].raw_data = b"\0" * 32
    del model.graph.initializer[0].dims[:]
    model.graph.initializer[0].dims.extend([1 << 20, 1 << 20, 3, 3])
    onnx.save(model, str(path))
    line = refused(path, "E263")
    assert (
        "tensor c1 declares 1048576x1048576x3x3 float32 values (39,582,418,599,936 bytes), more than the limit" in line
    )


# --------------------------------------------------------------------------- torch's own exports

TORCH_MODELS = ["mobilenet_v3", "shufflenet_v2", "convnext", "efficientnet", "mnasnet_head"]


def _torch_model(name):
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class SE(nn.Module):  # torchvision.ops.SqueezeExcitation
        def __init__(self, c, s, act=nn.ReLU, gate=nn.Sigmoid):
            super().__init__()
            self.avgpool, self.fc1, self.fc2 = nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, s, 1), nn.Conv2d(s, c, 1)
            self.act, self.gate = act(), gate()

        def forward(self, x):
            return self.gate(self.fc2(self.act(self.fc1(self.avgpool(x))))) * x

    def cbn(c_in, c_out, f, s=1, groups=1, act=None):
        layers = [nn.Conv2d(c_in, c_out, f, s, f // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
        return nn.Sequential(*layers, *([act()] if act else []))

    class MobileNetV3(nn.Module):  # a stem and one inverted residual with SE, the classifier head
        def __init__(self):
            super().__init__()
            self.stem = cbn(3, 16, 3, 2, act=nn.Hardswish)
            self.dw = cbn(16, 16, 3, groups=16, act=nn.ReLU)
            self.se = SE(16, 8, gate=nn.Hardsigmoid)
            self.pw = cbn(16, 16, 1)
            self.head = nn.Sequential(nn.Linear(16, 32), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(32, 10))

        def forward(self, x):
            x = self.stem(x)
            x = x + self.pw(self.se(self.dw(x)))
            return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def channel_shuffle(x, groups):  # torchvision.models.shufflenetv2.channel_shuffle
        b, c, h, w = x.size()
        x = torch.transpose(x.view(b, groups, c // groups, h, w), 1, 2).contiguous()
        return x.view(b, -1, h, w)

    class Unit(nn.Module):  # torchvision's InvertedResidual of ShuffleNetV2
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.stride, half = stride, c_out // 2
            if stride > 1:
                self.branch1 = nn.Sequential(cbn(c_in, c_in, 3, stride, groups=c_in), cbn(c_in, half, 1, act=nn.ReLU))
            c2 = c_in if stride > 1 else half
            self.branch2 = nn.Sequential(
                cbn(c2, half, 1, act=nn.ReLU), cbn(half, half, 3, stride, groups=half), cbn(half, half, 1, act=nn.ReLU)
            )

        def forward(self, x):
            if self.stride == 1:
                a, b = x.chunk(2, dim=1)
                out = torch.cat((a, self.branch2(b)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return channel_shuffle(out, 2)

    class ShuffleNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.pool = cbn(3, 24, 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)
            self.stage = nn.Sequential(Unit(24, 48, 2), Unit(48, 48, 1))
            self.fc = nn.Linear(48, 10)

        def forward(self, x):
            return self.fc(self.stage(self.pool(self.conv1(x))).mean([2, 3]))

    class LayerNorm2d(nn.LayerNorm):  # torchvision.models.convnext.LayerNorm2d
        def forward(self, x):
            x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
            return x.permute(0, 3, 1, 2)

    class CNBlock(nn.Module):  # torchvision's, stochastic depth left out (the identity in eval)
        def __init__(self, c):
            super().__init__()
            self.dw, self.norm = nn.Conv2d(c, c, 7, padding=3, groups=c), nn.LayerNorm(c, eps=1e-6)
            self.l1, self.act, self.l2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
            self.layer_scale = nn.Parameter(torch.full((c, 1, 1), 1e-6))

        def forward(self, x):
            y = self.l2(self.act(self.l1(self.norm(self.dw(x).permute(0, 2, 3, 1)))))
            return x + self.layer_scale * y.permute(0, 3, 1, 2)

    class ConvNeXt(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, 4), LayerNorm2d(16, eps=1e-6))
            self.stages = nn.Sequential(CNBlock(16), LayerNorm2d(16, eps=1e-6), nn.Conv2d(16, 32, 2, 2), CNBlock(32))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(LayerNorm2d(32, eps=1e-6), nn.Flatten(1), nn.Linear(32, 10))

        def forward(self, x):
            return self.classifier(self.avgpool(self.stages(self.stem(x))))

    class EfficientNet(nn.Module):  # MBConv with SiLU and SE
        def __init__(self):
            super().__init__()
            self.stem = cbn(3, 16, 3, 2, act=nn.SiLU)
            self.block = nn.Sequential(cbn(16, 64, 1, act=nn.SiLU), cbn(64, 64, 3, groups=64, act=nn.SiLU))
            self.se, self.project = SE(64, 4, act=nn.SiLU), cbn(64, 16, 1)
            self.avgpool, self.classifier = nn.AdaptiveAvgPool2d(1), nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 10))

        def forward(self, x):
            x = self.stem(x)
            x = x + self.project(self.se(self.block(x)))
            return self.classifier(torch.flatten(self.avgpool(x), 1))

    class MNASNetHead(nn.Module):  # MNASNet's end: conv, bn, relu, x.mean([2, 3]), dropout, linear
        def __init__(self):
            super().__init__()
            self.layers = cbn(3, 32, 3, 2, act=nn.ReLU)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10))

        def forward(self, x):
            return self.classifier(self.layers(x).mean([2, 3]))

    models = {
        "mobilenet_v3": (MobileNetV3, 32),
        "shufflenet_v2": (ShuffleNetV2, 32),
        "convnext": (ConvNeXt, 32),
        "efficientnet": (EfficientNet, 32),
        "mnasnet_head": (MNASNetHead, 16),
    }
    cls, size = models[name]
    torch.manual_seed(0)
    net = cls().eval()
    for m in net.modules():  # trained-looking statistics: the exporters fold them into the convolutions
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    return torch, net, torch.randn(1, 3, size, size)


def _torch_figures(torch, net, x):
    """What the file must hold, by PyTorch: per Conv2d/Linear in order (MACs, weight + bias, where
    a BatchNorm after a bias-free Conv2d is folded into a bias of C), the other parameters (layer
    norms, layer scale), and the output shape."""
    nn = torch.nn
    macs, counts = [], []

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            macs.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
            counts.append(m.weight.numel() + m.out_channels)  # its bias, or the folded BatchNorm's
        else:
            macs.append(out.numel() * m.in_features)  # per position (a Linear on channels-last)
            counts.append(m.weight.numel() + m.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        y = net(x)
    for h in handles:
        h.remove()
    other = sum(
        p.numel() for m in net.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)
    ) + sum(p.numel() for n, p in net.named_parameters() if n.endswith("layer_scale"))
    return macs, sum(counts) + other, tuple(y.shape[1:])


# The layers in order, as the modules above compute them (read off their forward methods).
EXPECTED_KINDS = {
    "mobilenet_v3": "conv hardswish conv relu gap conv relu conv hardsigmoid mul conv residual gap flatten fc "
    "hardswish fc",
    "shufflenet_v2": "conv relu maxpool conv conv relu conv relu conv conv relu concat shuffle slice slice conv relu "
    "conv conv relu concat shuffle gap flatten fc",
    "convnext": "conv ln conv ln conv gelu conv scale residual ln conv conv ln conv gelu conv scale residual gap "
    "ln flatten fc",
    "efficientnet": "conv silu conv silu conv silu gap conv silu conv sigmoid mul conv residual gap flatten fc",
    "mnasnet_head": "conv relu gap flatten fc",
}


def _exports():
    """Every module with the TorchScript exporter; with dynamo (seconds each) ConvNeXt, whose dynamo
    form differs most (ReduceMean, as_strided, Gelu), the others behind ``-m slow`` (the hand-built
    graphs above have dynamo's Split and ReduceMean forms)."""
    for name in TORCH_MODELS:
        yield pytest.param(name, "torchscript", id=f"{name}-torchscript")
        slow = [] if name == "convnext" else [pytest.mark.slow]
        yield pytest.param(name, "dynamo", marks=slow, id=f"{name}-dynamo")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("name, exporter", list(_exports()))
def test_torch_exports(tmp_path, name, exporter):
    """Both torch exporters' files of torchvision-style modules: the layers the modules compute,
    and PyTorch's figures (output shape, MACs of every convolution and linear layer, parameters)."""
    torch, net, x = _torch_model(name)
    path = tmp_path / f"{name}.onnx"
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")  # the dynamo exporter needs it (pip install onnxscript)
        torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False)
    else:
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17)
    model, text = imported(path)
    assert " ".join(layer.kind for layer in model.layers) == EXPECTED_KINDS[name], text
    macs, params, out = _torch_figures(torch, net, x)
    assert model.outputs[0][1] == out
    assert [layer.macs for layer in model.layers if layer.kind in ("conv", "fc")] == macs
    assert model.totals.params == params


# --------------------------------------------------------------------------- attributes: read or refused


@pytest.mark.parametrize(
    "op, attrs, message",
    [
        ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, "attribute dilations=[2, 2] is not read"),
        ("MaxPool", {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}, "attribute auto_pad=SAME_UPPER is not read"),
        ("Softmax", {"axis": 2}, "Softmax over axis 2 of a 4-axis tensor: softmax is over the channels"),
        ("Flatten", {"axis": 2}, "Flatten from axis 2: flatten keeps the batch axis only"),
        ("LpNormalization", {}, "this operator (or pattern) has no equivalent in the language"),
    ],
)
def test_unread_attributes_refused(tmp_path, op, attrs, message):
    g = G([1, 4, 6, 6])
    y = g.op(op, "x", **attrs)
    line = refused(g.save(tmp_path / "a.onnx", y), "E261")
    assert f"ONNX node /{op}_1 ({op}): {message}" in line, line


def test_gemm_alpha_refused(tmp_path):
    g = G([1, 8])
    y = g.op("Gemm", "x", g.weight(4, 8), g.weight(4), transB=1, alpha=2.0)
    assert "(Gemm): attribute alpha=2.0 is not read (no equivalent in the language)" in refused(
        g.save(tmp_path / "g.onnx", y), "E261"
    )


def test_resize_coordinates_warned(tmp_path, capsys):
    """A Resize sampling otherwise than upsample's lowering (nearest: asymmetric coordinates, floor;
    torch's nn.Upsample writes those): the figures are upsample 2's, the sampling is warned (W260)."""
    g = G([1, 4, 3, 3])
    y = g.op("Resize", "x", "", g.init([1, 1, 2, 2]), mode="nearest", coordinate_transformation_mode="half_pixel")
    path = g.save(tmp_path / "r.onnx", y)
    assert main(["import", str(path), "-o", str(tmp_path / "r.net")]) == 0
    stderr = capsys.readouterr().err
    assert (
        f"cnndsl: warning: {path}: ONNX node /Resize_2 (Resize): coordinate_transformation_mode=half_pixel, "
        "nearest_mode=round_prefer_floor, not upsample nearest's asymmetric/floor (the figures are equal; the "
        "values may differ from the layer's) [W260]" in stderr
    )
    assert load(str(tmp_path / "r.net")).outputs[0][1] == (4, 6, 6)
