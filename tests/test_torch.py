"""export --format torch and PyTorch weights in, against the ONNX export on onnxruntime.

The generated module (``Model.to_torch()``) gets the ONNX export's weights (every
one randomised, as in test_numerics.py) through ``load_state_dict(strict=True)``:
its keys must be exactly the export's weight names. Then both compute on one
random input: every layer case of test_numerics.py (each kind in 1, 2 and 3
dimensions), and every file of networks/ at a small input, in eval mode and, where
the network is deterministic (no dropout), in train mode, batch norm's running
statistics included. The oracle is onnxruntime running the ONNX export, whose
numerics test_numerics.py checks against NumPy references. Skipped without torch.
"""

from __future__ import annotations

import ast
import io
import re
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnxruntime as ort  # noqa: E402
from conftest import NETWORKS, ROOT  # noqa: E402
from test_numerics import CASES, _smallest_valid_input, net, randomised_weights  # noqa: E402

import cnndsl  # noqa: E402
from cnndsl.cli import main  # noqa: E402
from cnndsl.lower.builder import DEFAULT_OPSET, assemble, lower_nodes  # noqa: E402
from cnndsl.lower.export import to_onnx  # noqa: E402

TABLE = "table t = [[0, 1], [1, 2, 3], [0, 3]]"
RTOL = 1e-5  # relative to the largest output value (float32 both sides)
TRAIN_RTOL = 1e-3  # whole networks in train mode (see test_network_equals_onnx)

torch.set_num_threads(2)


def session(proto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def torch_module(model, weights):
    m = model.to_torch()
    m.load_state_dict({k: torch.tensor(v) for k, v in weights.items()}, strict=True)
    return m


def outputs(m, x):
    y = m(torch.tensor(x))
    return [t.detach().numpy() for t in (y if isinstance(y, tuple) else (y,))]


def assert_close(got, want, rtol=RTOL):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        scale = max(float(np.abs(w).max()), 1e-3)
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * scale)


def compare_eval(model, batch=2, scale=1.0, seed=0):
    weights = randomised_weights(model, seed)
    proto = to_onnx(model, seed=seed, weights=weights, check=False)
    x = (np.random.default_rng(seed + 1).standard_normal((batch, *model.graph.input_shape)) * scale).astype(np.float32)
    m = torch_module(model, weights).eval()
    assert sorted(m.state_dict()) == sorted(weights)  # exactly the export's weights, no more
    with torch.no_grad():
        got = outputs(m, x)
    assert_close(got, session(proto).run(None, {"input": x}))


def training_forward(model, weights):
    """The ONNX training form of the forward pass (batch statistics; what cnndsl train runs),
    with the next values of the batch-norm buffers as extra outputs."""
    from onnx import helper

    g = model.graph
    b = lower_nodes(g, DEFAULT_OPSET, 0, weights, np.float32, training=True)
    vi = [helper.make_tensor_value_info("input", b.elem, ["N", *g.input_shape])]
    outs = [helper.make_tensor_value_info(b.tensor(i), b.elem, None) for _, i in g.outputs]
    news = []
    for buf, value in b.updates:
        b.layer = buf
        b.op("Identity", [value], out=buf + ".new")
        news.append(buf)
        outs.append(helper.make_tensor_value_info(buf + ".new", b.elem, None))
    return assemble(b, vi, outs), news


def compare_train(model, batch=4, seed=0, rtol=RTOL):
    weights = randomised_weights(model, seed)
    proto, news = training_forward(model, weights)
    x = np.random.default_rng(seed + 1).standard_normal((batch, *model.graph.input_shape)).astype(np.float32)
    want = session(proto).run(None, {"input": x})
    m = torch_module(model, weights).train()
    got = outputs(m, x)
    state = m.state_dict()
    got += [state[name].numpy() for name in news]
    assert_close(got, want, rtol)


# ---------------------------------------------------------------------------
# every layer case of test_numerics.py


@pytest.mark.parametrize("input_shape, body, scale, tables", CASES)
def test_layer_cases_equal_onnx(input_shape, body, scale, tables):
    compare_eval(cnndsl.load(net(input_shape, body, tables)), scale=scale)


# What the generator writes differently from test_numerics' cases: unequal padding of average
# pooling (an even window, same), with and without count_pad; a maxpool's indices returned
# past blocks to its unpool, and inside a block; names that need containers or a variable renamed.
EXTRA_CASES = [
    ("3x7x8", "avgpool 2/1/same"),
    ("3x7x8", "avgpool 4/2/same count_pad"),
    ("2x9", "avgpool 2/1/same"),
    ("3x8x8", "p: maxpool 2/2/same -> conv 4/1"),
    ("3x8x8", "pool: maxpool 2 ceil\n down() -> up() -> conv 3/1\n unpool of=@pool"),
    ("3x6x6", "x: conv 3/1 -> bn -> relu"),
    ("3x6x6", "drop_path 0.1 -> lcn 3 -> conv 2/1"),
]
BLOCKS = (
    "block down() {\n    conv 3/3/1/1\n    p: maxpool 2\n    relu\n    unpool of=@p\n}\nblock up() {\n    conv 3/1\n}\n"
)


@pytest.mark.parametrize("input_shape, body", EXTRA_CASES)
def test_extra_cases_equal_onnx(input_shape, body):
    compare_eval(cnndsl.load(BLOCKS + net(input_shape, body)))


TRAIN_CASES = [
    ("3x6x6", "conv 4/3 -> bn -> relu"),
    ("3x5", "bn momentum=0.3"),
    ("2x4x4x4", "bn eps=0.001"),
    ("6", "bn"),
    ("3x8x8", "conv 4/3 -> gn 2 -> ln over=channels -> instnorm -> prelu -> scale bias=true"),
]


@pytest.mark.parametrize("input_shape, body", TRAIN_CASES)
def test_layer_cases_in_train_mode_equal_onnx_training_form(input_shape, body):
    compare_train(cnndsl.load(net(input_shape, body)))


def test_dropout_is_random_in_train_mode_and_the_identity_in_eval():
    m = cnndsl.load(net("100", "dropout 0.5 -> drop_path 0.2")).to_torch()
    x = torch.ones(8, 100)
    assert torch.equal(m.eval()(x), x)
    y = m.train()(x)
    kept = y[y != 0]
    assert 0 < kept.numel() < y.numel()
    np.testing.assert_allclose(kept.numpy(), 1 / (0.5 * 0.8), rtol=1e-6)


# ---------------------------------------------------------------------------
# every file of networks/ at a small input

# A representative fast subset (plain, residual, depthwise with squeeze-excitation, channel
# shuffle and slices, a connection table and rbf), and the rest behind -m slow.
# (file, network, also in train mode in the fast run)
FAST = [
    ("lenet5.net", None, True),
    ("resnet.net", "resnet18", False),
    ("cifar_resnet.net", None, True),
    ("mobilenet_v3.net", "mobilenet_v3_small", True),
    ("shufflenet_v2.net", "shufflenet_v2_x0_5", False),
    ("efficientnet.net", None, False),
    ("onebyone.net", "direct", True),
]
SLOW = ["alexnet.net", "convnext.net", "densenet121.net", "fcn32s.net", "googlenet.net", "googlenet_tv.net"]
SLOW += ["mnasnet.net", "segnet.net", "unet.net", "vgg16.net", "vnet.net"]


def test_fast_and_slow_cover_every_network_file():
    assert sorted({f for f, _, _ in FAST} | set(SLOW)) == sorted(p.name for p in NETWORKS.glob("*.net"))


def _first(path) -> str:
    return re.findall(r"^network\s+(\w+)", path.read_text(), re.M)[0]


def compare_network(model, batch=2, train=True):
    compare_eval(model, batch=batch)
    if train and not any(n.kind in ("dropout", "drop_path") for n in model.graph.nodes):
        # Batch statistics over few values deep in a network (a batch of 1x1 maps) amplify float32's
        # rounding, ordered differently on the two sides: 1e-3 there (1e-5 per layer, above).
        compare_train(model, batch=16, rtol=TRAIN_RTOL)


@pytest.mark.parametrize("file, network, train", FAST)
def test_network_equals_onnx(file, network, train):
    path = NETWORKS / file
    compare_network(_smallest_valid_input(path, network or _first(path)), train=train)


@pytest.mark.slow
@pytest.mark.parametrize("file, network", [(f, n) for f, n, train in FAST if not train])
def test_network_in_train_mode_equals_onnx_slow(file, network):
    path = NETWORKS / file
    compare_train(_smallest_valid_input(path, network or _first(path)), batch=16, rtol=TRAIN_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("file", SLOW)
def test_network_equals_onnx_slow(file):
    path = NETWORKS / file
    compare_network(_smallest_valid_input(path, _first(path)), batch=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "file, network",
    [("resnet.net", n) for n in ("resnet34", "resnet50")] + [("mobilenet_v3.net", "mobilenet_v3_large")],
)
def test_more_networks_equal_onnx_slow(file, network):
    compare_network(_smallest_valid_input(NETWORKS / file, network), batch=1)


# ---------------------------------------------------------------------------
# the module as PyTorch code


def test_the_module_compiles_under_torch_compile_in_one_graph():
    """torch.compile(fullgraph=True) fails on any graph break; aot_eager also traces the backward."""
    model = cnndsl.load(net("4x8x8", "t: conv 3/3 table=t -> bn -> relu -> maxpool 2 -> fc 5 -> rbf 2", TABLE))
    m = model.to_torch()
    x = torch.randn(2, 4, 8, 8)
    want = m(x)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    got = compiled(x)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    assert m.t.weight.grad is not None


def test_segnet_unpool_uses_the_indices_of_its_maxpool():
    model = _smallest_valid_input(NETWORKS / "segnet.net", None)
    from cnndsl.lower.pytorch import torch_source

    text = torch_source(model)
    assert "return_indices=True" in text and "F.max_unpool2d(" in text


def test_module_attribute_names_are_torch_s():
    from cnndsl.lower.pytorch import MODULE_ATTRIBUTES

    public = {n for n in dir(torch.nn.Module) if not n.startswith("_")} | {"training"}
    assert public == MODULE_ATTRIBUTES


def test_batch_norm_loads_a_plain_dict_and_a_torchvision_style_one():
    m = cnndsl.load(net("3x4x4", "c: conv 2/1 -> bn")).to_torch()
    plain = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict(plain)  # no _metadata: torch's batch norm would add num_batches_tracked
    m.load_state_dict({**plain, "c.bn.num_batches_tracked": torch.tensor(7)})
    assert "c.bn.num_batches_tracked" not in m.state_dict()


# ---------------------------------------------------------------------------
# PyTorch weights in: export --weights FILE.pt


def run_onnx(path, x):
    import onnx

    return session(onnx.load(str(path))).run(None, {"input": x})


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_a_trained_state_dict_goes_through_export_weights(tmp_path, suffix, capsys):
    """Train the generated module a step, save its state dict, export with it: same outputs."""
    model = cnndsl.load(NETWORKS / "resnet.net", network="resnet18", input="3x8x8")
    m = model.to_torch()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(4, 3, 8, 8)
    m(x).square().mean().backward()
    opt.step()
    m.eval()
    torch.save(m.state_dict(), tmp_path / f"w{suffix}")
    rc = main(
        ["export", str(NETWORKS / "resnet.net"), "--network", "resnet18", "--input", "3x8x8"]
        + ["--weights", str(tmp_path / f"w{suffix}"), "-o", str(tmp_path / "m.onnx")]
    )
    assert rc == 0, capsys.readouterr().err
    with torch.no_grad():
        want = m(x).numpy()
    assert_close(run_onnx(tmp_path / "m.onnx", x.numpy()), [want])


def test_a_checkpoint_with_the_state_dict_inside_is_read(tmp_path, capsys):
    model = cnndsl.load(net("3x4x4", "c: conv 2/1"))
    m = model.to_torch()
    torch.save({"state_dict": m.state_dict(), "epoch": 3}, tmp_path / "ck.pt")
    (tmp_path / "t.net").write_text(net("3x4x4", "c: conv 2/1"))
    rc = main(["export", str(tmp_path / "t.net"), "--weights", str(tmp_path / "ck.pt"), "-o", str(tmp_path / "m.onnx")])
    assert rc == 0, capsys.readouterr().err


class Payload:
    """Anything pickle could rebuild; weights_only=True refuses it."""

    def __reduce__(self):
        return (print, ("this code ran while loading the weights",))


def test_a_pickle_with_an_object_is_refused_without_running_it(tmp_path, capsys):
    torch.save({"c.weight": torch.zeros(2, 3, 1, 1), "evil": Payload()}, tmp_path / "w.pt")
    (tmp_path / "t.net").write_text(net("3x4x4", "c: conv 2/1 bias=false"))
    rc = main(["export", str(tmp_path / "t.net"), "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "m.onnx")])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "this code ran" not in out + err
    assert (
        f"cnndsl: error: --weights {tmp_path / 'w.pt'}: cannot read it as a PyTorch state dict (weights only):" in err
    )
    assert err.rstrip().endswith("[E082]")
    assert not (tmp_path / "m.onnx").exists()


def test_without_torch_a_pt_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    torch.save({"c.weight": torch.zeros(2, 3, 1, 1)}, tmp_path / "w.pt")
    (tmp_path / "t.net").write_text(net("3x4x4", "c: conv 2/1 bias=false"))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    rc = main(["export", str(tmp_path / "t.net"), "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "m.onnx")])
    assert rc == 1
    assert capsys.readouterr().err == (
        f"cnndsl: error: --weights {tmp_path / 'w.pt'}: reading .pt files needs PyTorch "
        "(pip install 'cnndsl[torch]'); without it, save the state dict as .safetensors [E082]\n"
    )


def test_torch_load_is_only_called_with_weights_only_true():
    """Every call of a function named load on a name bound to torch, or of torch.load, in cnndsl/."""
    calls = []
    for path in sorted((ROOT / "cnndsl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr == "load" and getattr(func.value, "id", "") == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                calls.append((path.name, node.lineno, ok))
            if isinstance(node, ast.ImportFrom) and node.module == "torch":
                assert "load" not in {a.name for a in node.names}, f"{path}: from torch import load"
    assert calls, "no torch.load call found: the check would test nothing"
    assert [c for c in calls if not c[2]] == []


def test_a_torch_module_state_dict_in_memory_matches_network_weights():
    """The names and shapes export --weights expects, in execution order, are the module's state dict."""
    from cnndsl.lower.export import network_weights

    model = cnndsl.load(NETWORKS / "lenet5.net")
    state = model.to_torch().state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == network_weights(model)


def test_to_torch_source_is_deterministic():
    from cnndsl.lower.pytorch import torch_source

    model = cnndsl.load(NETWORKS / "resnet.net", network="resnet18")
    assert torch_source(model) == torch_source(cnndsl.load(NETWORKS / "resnet.net", network="resnet18"))
    buf = io.StringIO(torch_source(model))
    assert buf.getvalue().startswith('"""PyTorch module of network resnet18 (Resnet18).')
