"""ONNX export: every network exports, passes the full checker, and runs on
onnxruntime (CPU) with the shapes `cnndsl info` promised; exports are
deterministic and atomic."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import NETWORKS

import cnndsl
from cnndsl.lower.export import to_onnx


def _cases():
    for path in sorted(NETWORKS.glob("*.net")):
        for name in cnndsl.load_module(path).networks:
            yield pytest.param(path, name, id=f"{path.stem}:{name}")


# Large networks run at a reduced input size so that the suite stays fast; the
# export path is the same.
SMALL_INPUT = {
    "vgg16": "3x64x64",
    "vgg16_bn": "3x64x64",
    "vnet": "1x32x32x16",
    "unet": "1x188x188",
    "segnet": "3x64x64",
    "fcn32s": "3x64x64",
}


@pytest.mark.parametrize("path, name", list(_cases()))
def test_network_exports_and_runs(path, name):
    m = cnndsl.load(path, network=name, input=SMALL_INPUT.get(name))
    proto = to_onnx(m)  # runs onnx.checker (full) and shape inference against our shapes
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, *m.graph.input_shape)).astype(np.float32)
    outs = sess.run(None, {"input": x})
    assert [o.shape for o in outs] == [(2, *shape) for _, shape in m.outputs]
    assert [o.name for o in sess.get_outputs()] == [n for n, _ in m.outputs]
    assert all(np.isfinite(o).all() for o in outs)


def test_names_follow_the_source():
    m = cnndsl.load(NETWORKS / "resnet.net", network="resnet18")
    proto = to_onnx(m)
    inits = {t.name for t in proto.graph.initializer}
    # PyTorch-like state-dict keys
    for key in (
        "stem.conv.weight",
        "stem.bn.weight",
        "stem.bn.bias",
        "stem.bn.running_mean",
        "stem.bn.running_var",
        "fc.weight",
        "fc.bias",
        "layer2.shortcut.weight",
    ):
        assert key in inits, key
    assert "stem.conv.bias" not in inits  # default conv bias=false
    assert proto.graph.input[0].name == "input"
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "N"  # dynamic batch
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["cnndsl.network"] == "resnet18" and props["cnndsl.source"].endswith("resnet.net")
    names = {n.name for n in proto.graph.node}
    assert "layer1.residual" in names and "fc" in names


def test_export_is_deterministic(cli, tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    for out in (a, b):
        r = cli("export", NETWORKS / "lenet5.net", "-o", out, "--seed", "7")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"wrote {out} (")
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.onnx"
    cli("export", NETWORKS / "lenet5.net", "-o", c, "--seed", "8")
    assert c.read_bytes() != a.read_bytes()


def test_failed_export_keeps_the_existing_file(cli, tmp_path, netfile):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"precious")
    bad = netfile("network n {\n    input 3x4x4\n    conv 8/5\n}\n")
    r = cli("export", bad, "-o", out)
    assert r.returncode == 1 and "needs at least 5x5 input" in r.stderr
    assert out.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == sorted(["model.onnx", "t.net"])  # no temporary left behind


def test_export_refuses_to_overwrite_its_input(cli, netfile):
    src = netfile("network n {\n    input 3x4x4\n    relu\n}\n")
    before = src.read_text()
    r = cli("export", src, "-o", src)
    assert r.returncode == 1 and "is an input of this command" in r.stderr
    assert src.read_text() == before


def test_weights_round_trip_and_mismatch(tmp_path, cli):
    m = cnndsl.load(NETWORKS / "lenet5.net")
    proto = to_onnx(m, seed=3)
    weights = {
        t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if "." in t.name and "/" not in t.name
    }
    npz = tmp_path / "w.npz"
    np.savez(npz, **weights)
    out = tmp_path / "m.onnx"
    r = cli("export", NETWORKS / "lenet5.net", "-o", out, "--weights", npz, "--seed", "99")
    assert r.returncode == 0, r.stderr
    # the loaded weights win over the seed
    loaded = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    for k, v in weights.items():
        np.testing.assert_array_equal(loaded[k], v)
    # a missing, an extra and a mis-shaped tensor are all named
    del weights["C1.bias"]
    weights["extra.weight"] = np.zeros(3, np.float32)
    weights["F6.weight"] = np.zeros((2, 2), np.float32)
    np.savez(npz, **weights)
    r = cli("export", NETWORKS / "lenet5.net", "-o", out, "--weights", npz)
    assert r.returncode == 1
    for what in ("missing: C1.bias", "not in the network: extra.weight", "F6.weight: expected (84, 120), got (2, 2)"):
        assert what in r.stderr, r.stderr


def test_fixed_batch_and_opset(tmp_path):
    m = cnndsl.load(NETWORKS / "lenet5.net")
    proto = to_onnx(m, batch=4, opset=18)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert proto.opset_import[0].version == 18
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": np.zeros((4, 1, 32, 32), np.float32)})
    assert y.shape == (4, 10)


def _random_weights(proto, rng):
    """Initializers with non-trivial BN statistics, so that folding changes something."""
    out = {}
    for t in proto.graph.initializer:
        if "/" in t.name:
            continue
        a = onnx.numpy_helper.to_array(t)
        if t.name.endswith("running_var"):
            a = rng.uniform(0.5, 2.0, a.shape)
        elif t.name.endswith(("running_mean", "bias")):
            a = rng.normal(0.0, 0.5, a.shape)
        elif a.ndim == 1:
            a = rng.uniform(0.5, 1.5, a.shape)
        out[t.name] = a.astype(np.float32)
    return out


def test_fold_bn_keeps_outputs():
    m = cnndsl.load(NETWORKS / "resnet.net", network="resnet18", input="3x32x32")
    rng = np.random.default_rng(1)
    weights = _random_weights(to_onnx(m), rng)
    plain, folded = to_onnx(m, weights=weights), to_onnx(m, weights=weights, fold=True)
    assert not any(n.op_type == "BatchNormalization" for n in folded.graph.node)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)

    def run(p):
        return ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[
            0
        ]

    np.testing.assert_allclose(run(folded), run(plain), atol=1e-5, rtol=1e-5)


def test_float16_export_runs():
    m = cnndsl.load(NETWORKS / "lenet5.net")
    proto = to_onnx(m, dtype="float16")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(
        t.data_type == onnx.TensorProto.FLOAT16
        for t in proto.graph.initializer
        if t.data_type != onnx.TensorProto.INT64
    )
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32))
    half = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    full = ort.InferenceSession(to_onnx(m).SerializeToString(), providers=["CPUExecutionProvider"])
    (yh,) = half.run(None, {"input": x.astype(np.float16)})
    (yf,) = full.run(None, {"input": x.astype(np.float32)})
    assert yh.dtype == np.float16
    np.testing.assert_allclose(yh.astype(np.float32), yf, rtol=2e-2, atol=0.5)  # RBF outputs are sums of ~100 squares


def test_run_command(cli, tmp_path):
    out = tmp_path / "y.npy"
    r = cli("run", NETWORKS / "lenet5.net", "--batch", "3", "--iterations", "2", "--provider", "cpu", "--output", out)
    assert r.returncode == 0, r.stderr
    assert "on CPUExecutionProvider, batch 3" in r.stdout and "latency over 2 runs: median" in r.stdout
    assert np.load(out).shape == (3, 10)
    r = cli("run", tmp_path / "missing.onnx")
    assert r.returncode == 1 and "no such file" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["export", "-o", "{tmp}/t.onnx", "--weights", "{tmp}/w.npz"],
            "--weights {tmp}/w.npz: it is a directory [E082]",
        ),
        (["export", "-o", "{tmp}/t.onnx", "--weights", "{tmp}/no.npz"], "--weights {tmp}/no.npz: no such file [E082]"),
        (["run", "--data", "{tmp}/no.npy", "--provider", "cpu"], "--data {tmp}/no.npy: no such file [E092]"),
    ],
    ids=["weights-directory", "weights-missing", "run-data-missing"],
)
def test_user_files_read_through_files_read_bytes(cli, tmp_path, args, message):
    """--weights and run's --data are read by cnndsl.files.read_bytes: its diagnostics, no traceback."""
    (tmp_path / "w.npz").mkdir()
    r = cli(args[0], NETWORKS / "lenet5.net", *(a.format(tmp=tmp_path) for a in args[1:]))
    assert r.returncode == 1 and message.format(tmp=tmp_path) in r.stderr and "Traceback" not in r.stderr


def test_large_models_use_external_data(tmp_path, monkeypatch):
    """Past 2 GB the weights go to OUT.onnx.data; the limit is lowered here to test the path."""
    import cnndsl.lower.export as ex

    monkeypatch.setattr(ex, "TWO_GB", 10_000)
    m = cnndsl.load(NETWORKS / "lenet5.net")
    out = tmp_path / "big.onnx"
    ex.write_model(to_onnx(m), out)
    assert (tmp_path / "big.onnx.data").stat().st_size > 200_000
    assert out.stat().st_size < 50_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": np.zeros((1, 1, 32, 32), np.float32)})
    assert y.shape == (1, 10)


NEW_KINDS = {
    "hardsigmoid",
    "mish",
    "softplus",
    "drop_path",
    "scale",
    "ln",
    "slice",
    "adaptive_avgpool",
    "adaptive_maxpool",
    "space_to_depth",
}


def _table_rows():
    from test_layers import CASES

    for param in CASES:
        case = param.values[0]
        if not param.marks:
            yield pytest.param(case, id=param.id)


@pytest.mark.parametrize("case", list(_table_rows()))
def test_every_layer_table_row_exports_checked(case):
    """Every row of tests/test_layers.py passes the full checker, with ONNX shape inference equal
    to cnndsl's shapes; the kinds of LANGUAGE.md §10.5 at every opset (mish changes at 18)."""
    m = cnndsl.load(case.text())
    for opset in (17, 18, 21) if case.kind in NEW_KINDS else (17,):
        to_onnx(m, opset=opset)
