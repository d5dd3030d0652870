"""`cnndsl train` and `cnndsl export --train` as a user runs them."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys

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
ROW = re.compile(r"^ *(\d+)/(\d+) +([0-9.]+) +([0-9.]+)% +([0-9.]+) +([0-9.]+)% +[0-9,]+ +[0-9.]+s$", re.M)


def rows(stdout):
    """The epoch rows: (epoch, loss, train accuracy, held-out loss, held-out accuracy)."""
    return [(int(m[0]), float(m[2]), float(m[3]), float(m[4]), float(m[5])) for m in ROW.findall(stdout)]


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
    assert lines[2] == "optimizer SGD momentum 0.9, lr 0.001 (the default), schedule constant"
    assert lines[3] == "epoch     loss     acc   held-out loss     acc   samples/s     time"
    epochs = rows(r.stdout)
    assert [e[0] for e in epochs] == [1, 2, 3] and len(lines) == 4 + 3 + 1
    assert all(len(line) <= 80 for line in lines[3:-1])  # the epoch table fits a terminal
    assert epochs[-1][1] < epochs[0][1]
    assert epochs[-1][4] > 80.0, r.stdout  # chance is 10%; three epochs give ~90%
    assert f"weights in {out}" in lines[-1]
    assert "\x1b" not in r.stdout + r.stderr  # piped: plain lines, no progress bar


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
    printed = rows(r.stdout)[-1][4]
    assert f"{accuracy:.2f}" == f"{printed:.2f}"


def test_checkpoint_holds_every_inference_weight(trained):
    _, out = trained
    weights = load_weights(out)
    proto = to_onnx(load(LENET), weights=weights)  # raises when a name is missing or extra
    assert {"C1.weight", "C3.weight", "S2.weight", "out.weight"} <= set(weights)
    from cnndsl.lower.builder import training_state

    own = {k for k in weights if not training_state(k, weights)}  # not the optimizer's or the trainer's
    assert {k for k in weights if k.startswith("train:")} == {
        "train:epochs_done", "train:batches_done", "train:steps_done", "train:rng", "train:seed",
    }  # fmt: skip
    assert own <= {t.name for t in proto.graph.initializer}


def test_resume_continues_from_a_checkpoint(trained, tmp_path):
    _, out = trained
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "4", "--resume", out, "--out", tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    assert f"resume {out}: from epoch 4 of 4, step 69; the schedule and the shuffling go on (seed 0)" in r.stdout
    (epoch,) = rows(r.stdout)
    assert epoch[0] == 4 and epoch[4] > 80.0  # a fresh start gives ~50% after one epoch
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "3", "--resume", out, "--out", tmp_path / "w.npz")
    assert r.returncode == 1 and "it has 3 epochs already; --epochs 3 leaves nothing to do" in r.stderr
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "5", "--resume", out, "--seed", "1", "--out", out)
    assert r.returncode == 1 and f"--seed 1: {out} was trained with seed 0" in r.stderr


def test_resume_from_a_checkpoint_without_training_state_says_so(trained, tmp_path):
    """An older checkpoint (weights and momentum buffers, no train: arrays) still loads."""
    _, out = trained
    old = tmp_path / "old.npz"
    np.savez(old, **{k: v for k, v in load_weights(out).items() if not k.startswith("train:")})
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "1", "--resume", old, "--out", tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    assert "it holds no training state (an older checkpoint), so the epochs count from 1" in r.stdout
    assert rows(r.stdout)[0][0] == 1 and rows(r.stdout)[0][4] > 80.0


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
    assert "schedule cosine" in r.stdout
    assert len(rows(r.stdout)) == 2


def test_docstring_examples_hold():
    import doctest

    import cnndsl.train.adjoints
    import cnndsl.train.optim
    import cnndsl.train.step
    import cnndsl.train.trainer

    for module in (cnndsl.train.adjoints, cnndsl.train.optim, cnndsl.train.step, cnndsl.train.trainer):
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


PLAIN_BN = """network plain_bn {
    input 1x8x8
    conv 16/3/1/1 -> bn -> relu
    conv 32/3/1/1 -> bn -> relu
    maxpool 2
    conv 32/3/1/1 -> bn -> relu
    gap
    fc 10
}"""


def test_the_default_learning_rate_trains_a_plain_cnn_with_bn(netfile, tmp_path):
    """SGD's default for a network with bn is 0.1 (He et al. 2016); at LeNet's 0.001 this network
    was at 14% held out after three epochs, at 0.01 at 77% (docs/training.md)."""
    r = run_cli("train", netfile(PLAIN_BN), "--data", "digits", "--epochs", "3", "--out", tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    assert "optimizer SGD momentum 0.9, lr 0.1 (the default), schedule constant" in r.stdout
    assert rows(r.stdout)[-1][4] > 90.0, r.stdout
    r = run_cli(
        "train",
        netfile(PLAIN_BN),
        "--data",
        "digits",
        "--epochs",
        "3",
        "--optimizer",
        "adamw",
        "--out",
        tmp_path / "w.npz",
    )
    assert r.returncode == 0, r.stderr
    assert "optimizer AdamW betas 0.9, 0.999 weight decay 0.01, lr 0.001 (the default), schedule constant" in r.stdout
    assert rows(r.stdout)[-1][4] > 85.0, r.stdout


SMALL_BN = "network small {\n input 1x8x8\n conv 8/3/1/1 -> bn -> relu\n maxpool 2\n fc 10\n}"


def test_ctrl_c_saves_and_the_printed_command_resumes_exactly(netfile, tmp_path):
    """SIGINT after the first epoch row: the step finishes, the checkpoint is written, the exit
    status is 130 and stderr names the checkpoint and the command that resumes; that command
    ends with the weights of an uninterrupted run (same batches, schedule, Adam state)."""
    net = netfile(SMALL_BN)
    args = [
        "train", net, "--data", "digits", "--epochs", "4", "--batch", "4",
        "--optimizer", "adam", "--schedule", "cosine", "--warmup", "0.5",
    ]  # fmt: skip
    full = run_cli(*args, "--out", tmp_path / "full.npz")
    assert full.returncode == 0, full.stderr
    cut = tmp_path / "cut.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnndsl", *map(str, args), "--out", str(cut)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ROW.match(line.rstrip("\n")):
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    where = re.search(
        r"^interrupted (?:after batch (\d+) of 360 of epoch (\d+)|before epoch (\d+)); checkpoint in (.+)$", err, re.M
    )
    assert where and where[4] == str(cut), err
    command = re.search(r"^resume with: (.+)$", err, re.M)[1]
    argv = shlex.split(command)
    assert argv[:2] == ["cnndsl", "train"] and argv[-4:] == ["--resume", str(cut), "--out", str(cut)]
    assert cut.exists()
    again = run_cli(*argv[1:])
    assert again.returncode == 0, again.stderr
    if where[1]:
        batch, epoch = int(where[1]), int(where[2])
        assert f"from batch {batch + 1} of epoch {epoch} of 4" in again.stdout
    else:
        epoch = int(where[3])
        assert f"from epoch {epoch} of 4" in again.stdout
    assert [e[0] for e in rows(again.stdout)] == list(range(epoch, 5))
    assert rows(again.stdout)[-1][3:] == rows(full.stdout)[-1][3:]  # the same held-out loss and accuracy
    a, b = load_weights(tmp_path / "full.npz"), load_weights(cut)
    assert set(a) == set(b) and "train:step" in a and "conv.weight.exp_avg_sq" in a
    for name in a:
        if a[name].dtype.kind == "U":  # the shuffling generator's state
            assert a[name] == b[name]
        else:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_fine_tuning_new_classifier_frozen_features(netfile, tmp_path):
    """--weights from a trained run, --reset fc (a new classifier, initialised from the seed),
    --freeze conv (no update): the checkpoint keeps conv's weights bit for bit, moves bn and fc."""
    net = netfile(SMALL_BN)
    first = tmp_path / "first.npz"
    r = run_cli("train", net, "--data", "digits", "--epochs", "1", "--out", first)
    assert r.returncode == 0, r.stderr
    tuned = tmp_path / "tuned.npz"
    r = run_cli(
        "train", net, "--data", "digits", "--epochs", "1", "--weights", first,
        "--reset", "fc", "--freeze", "conv", "--out", tuned,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"weights {first}: initialised 2 parameters: fc.weight, fc.bias\n" in r.stdout
    assert "frozen 2 parameters: conv.weight, conv.bias\n" in r.stdout
    assert rows(r.stdout)[0][0] == 1  # a new run: epoch 1, fresh optimizer state
    before, after = load_weights(first), load_weights(tuned)
    np.testing.assert_array_equal(after["conv.weight"], before["conv.weight"])
    np.testing.assert_array_equal(after["conv.bias"], before["conv.bias"])
    assert "conv.weight.momentum" not in after  # frozen: no optimizer state either
    for name in ("bn.weight", "bn.running_mean", "fc.weight"):
        assert np.abs(after[name] - before[name]).max() > 1e-4, name
    assert rows(r.stdout)[0][4] > 80.0  # the frozen features still serve the new classifier


def test_fine_tuning_from_a_subset_of_the_weights(netfile, tmp_path):
    net = netfile(SMALL_BN)
    first = tmp_path / "first.npz"
    assert run_cli("train", net, "--data", "digits", "--epochs", "1", "--out", first).returncode == 0
    part = tmp_path / "conv_only.npz"
    np.savez(part, **{k: v for k, v in load_weights(first).items() if k.startswith("conv.")})
    r = run_cli("train", net, "--data", "digits", "--epochs", "1", "--weights", part, "--out", tmp_path / "w.npz")
    assert r.returncode == 0, r.stderr
    listed = "initialised 6 parameters: bn.weight, bn.bias, bn.running_mean, bn.running_var, fc.weight, fc.bias"
    assert f"weights {part}: {listed}\n" in r.stdout


def test_fine_tuning_options_are_checked(netfile, tmp_path):
    net = netfile(SMALL_BN)
    r = run_cli("train", net, "--data", "digits", "--epochs", "1", "--freeze", "nope", "--out", tmp_path / "w.npz")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        "--freeze nope: no trainable parameter of small starts with it; its layers with parameters: bn, conv, fc"
        in r.stderr
    )
    r = run_cli("train", net, "--data", "digits", "--resume", tmp_path / "a.npz", "--weights", tmp_path / "b.npz")
    assert r.returncode == 1 and "--weights and --reset start anew" in r.stderr


def test_frozen_parameters_have_no_gradient_nodes():
    from cnndsl.train.step import train_model

    model = load(SMALL_BN)
    proto = train_model(model, freeze=["conv"], gradients=True, momentum=0.9)
    outputs = {o.name for o in proto.graph.output}
    assert "fc.weight.grad" in outputs and "bn.weight.new" in outputs
    assert not {n for n in outputs if n.startswith("conv.")}
    assert not [n.name for n in proto.graph.node if n.name.startswith("grad:conv")]
    assert "conv.weight" in {t.name for t in proto.graph.initializer} - {i.name for i in proto.graph.input}


def test_a_progress_bar_on_a_terminal_plain_lines_when_piped():
    import io

    from cnndsl.train.trainer import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    update, stop = progress_bar(screen)
    for done in range(1, 4):
        update(done, 3, 0.25, 2)
    stop()
    assert "epoch 2" in screen.getvalue() and "loss 0.2500" in screen.getvalue()
    piped = io.StringIO()
    update, stop = progress_bar(piped)
    assert update is None
    stop()
    assert piped.getvalue() == ""
