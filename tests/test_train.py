"""`cnndsl train` and `cnndsl export --train` as a user runs them."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import NETWORKS, run_cli

from cnndsl import load
from cnndsl.errors import CnnError
from cnndsl.lower.export import load_weights, to_onnx
from cnndsl.train.data import load_data, split

LENET = NETWORKS / "lenet5.net"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "lenet.npz"
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "3", "--out", out)
    return r, out


def test_lenet5_learns_the_digits(trained):
    r, out = trained
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "network lenet5: 60,000 trainable parameters, loss map"  # LeNet-5's criterion for rbf
    assert lines[1].startswith("data digits: 1,797 images") and lines[1].endswith("1,438 training, 359 held out")
    epochs = [line for line in lines if line.startswith("epoch")]
    assert len(epochs) == 3
    held = [float(m) for m in re.findall(r"held-out loss [0-9.]+ acc +([0-9.]+)%", r.stdout)]
    losses = [float(m) for m in re.findall(r"^epoch .*?  loss ([0-9.]+)", r.stdout, re.M)]
    assert losses[-1] < losses[0]
    assert held[-1] > 80.0, r.stdout  # chance is 10%; three epochs give ~90%
    assert f"weights in {out}" in lines[-1]


def test_trained_weights_export_to_the_same_predictions(trained, tmp_path):
    """The checkpoint exports (--weights) to an inference model whose held-out accuracy is
    the one the trainer printed: same weights, same predictions."""
    r, out = trained
    onnx_path = tmp_path / "lenet.onnx"
    e = run_cli("export", LENET, "--weights", out, "-o", onnx_path)
    assert e.returncode == 0, e.stderr
    model = load(LENET)
    _, held = split(load_data("digits", model.graph.input_shape, 10), 0.2, 0)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    distances = sess.run(None, {"input": held.x})[0]
    accuracy = (distances.argmin(1) == held.y).mean() * 100
    printed = float(re.findall(r"held-out loss [0-9.]+ acc +([0-9.]+)%", r.stdout)[-1])
    assert f"{accuracy:.2f}" == f"{printed:.2f}"


def test_checkpoint_holds_every_inference_weight(trained):
    _, out = trained
    weights = load_weights(out)
    proto = to_onnx(load(LENET), weights=weights)  # raises when a name is missing or extra
    assert {"C1.weight", "C3.weight", "S2.weight", "out.weight"} <= set(weights)
    assert len(proto.graph.initializer) >= len(weights)


def test_resume_continues_from_a_checkpoint(trained, tmp_path):
    _, out = trained
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "1", "--resume", out, "--out", tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    acc = float(re.findall(r"held-out loss [0-9.]+ acc +([0-9.]+)%", r.stdout)[0])
    assert acc > 80.0  # a fresh start gives ~50% after one epoch


def test_train_errors_are_user_errors(tmp_path, netfile):
    keep = tmp_path / "keep.npz"
    keep.write_bytes(b"precious")
    r = run_cli("train", LENET, "--data", tmp_path / "missing.npz", "--out", keep)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "missing.npz" in r.stderr
    assert keep.read_bytes() == b"precious"  # a failed command leaves the old checkpoint alone
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "0")
    assert r.returncode == 1 and "--epochs must be at least 1" in r.stderr
    r = run_cli("train", LENET)
    assert r.returncode == 2 and "--data" in r.stderr
    # eleven classes of digits do not fit a 5-way output
    small = netfile("network n { input 1x8x8\n fc 5 }")
    r = run_cli("train", small, "--data", "digits", "--epochs", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "5 outputs" in r.stderr, r.stderr


def test_export_train_graph(tmp_path):
    out = tmp_path / "lenet.train.onnx"
    r = run_cli("export", LENET, "--train", "-o", out, "--momentum", "0.9", "--weight-decay", "5e-4")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out} (")
    assert "training step of network lenet5" in r.stdout and "loss map" in r.stdout
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert {o.domain for o in m.opset_import} == {""}  # default domain only
    inputs = [i.name for i in m.graph.input]
    assert inputs[:3] == ["x", "y", "lr"]
    inference = {t.name for t in to_onnx(load(LENET)).graph.initializer if "." in t.name and "/" not in t.name}
    trainable = {n for n in inputs[3:] if not n.endswith(".momentum")}
    assert trainable <= inference and "C1.weight" in trainable and "out.weight" not in trainable  # fixed centres
    outputs = [o.name for o in m.graph.output]
    assert outputs[:2] == ["loss", "logits"]
    assert {n + ".new" for n in inputs[3:]} == set(outputs[2:])
    # one step on onnxruntime with the defaults of every state input
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    loss, logits, *_ = sess.run(None, {"x": x, "y": np.array([1, 2, 3, 4])})
    assert loss.shape == () and np.isfinite(loss) and logits.shape == (4, 10)


def test_export_train_rejects_bad_options(tmp_path):
    r = run_cli("export", LENET, "--train", "-o", tmp_path / "a.onnx", "--dtype", "float16")
    assert r.returncode == 1 and "training graphs are float32 or float64" in r.stderr
    r = run_cli("export", LENET, "--train", "-o", tmp_path / "a.onnx", "--lr", "-1")
    assert r.returncode == 1 and "must not be negative" in r.stderr
    r = run_cli("export", NETWORKS / "cifar_resnet.net", "--train", "-o", tmp_path / "a.onnx", "--loss", "map")
    assert r.returncode == 1 and "--loss map is LeNet-5's criterion for an rbf output" in r.stderr
    assert not (tmp_path / "a.onnx").exists()


def test_train_with_a_schedule_and_cross_entropy(tmp_path):
    r = run_cli(
        "train",
        LENET,
        "--data",
        "digits",
        "--epochs",
        "2",
        "--schedule",
        "cosine",
        "--loss",
        "cross_entropy",
        "--out",
        tmp_path / "w.npz",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("network lenet5: 60,000 trainable parameters, loss cross_entropy")
    assert len(re.findall(r"^epoch ", r.stdout, re.M)) == 2


def test_docstring_examples_hold():
    import doctest

    import cnndsl.train.adjoints
    import cnndsl.train.step
    import cnndsl.train.trainer

    for module in (cnndsl.train.adjoints, cnndsl.train.step, cnndsl.train.trainer):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__


def test_checkpoint_carries_the_momentum_buffers(trained):
    """--resume continues with the saved momentum: the train graph built from the checkpoint
    holds the saved buffers as its momentum inputs' values (not zeros)."""
    from onnx import numpy_helper

    from cnndsl.train.step import train_model

    _, out = trained
    saved = load_weights(out)
    assert {"C1.weight.momentum", "F6.bias.momentum"} <= set(saved)
    assert np.abs(saved["C1.weight.momentum"]).max() > 0  # three epochs of gradients
    proto = train_model(load(LENET), momentum=0.9, weights=saved)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    np.testing.assert_array_equal(inits["C1.weight.momentum"], saved["C1.weight.momentum"])
    np.testing.assert_array_equal(inits["C1.weight"], saved["C1.weight"])
    # a buffer of the wrong shape is named
    bad = dict(saved, **{"C1.weight.momentum": np.zeros(3, np.float32)})
    with pytest.raises(CnnError, match="C1.weight.momentum"):
        train_model(load(LENET), momentum=0.9, weights=bad)
