"""``cnndsl train --engine torch``: the loop of the onnxruntime engine on the generated module,
data-parallel with DDP (docs/distributed.md). The reference for each torch step is the
onnxruntime engine's step on the same weights and batch (an independent implementation: the
ONNX train-step graph with its hand-written adjoints), and for the 2-process run the one
process on the whole batch."""

import numpy as np
import pytest
from conftest import run_cli

torch = pytest.importorskip("torch")

from cnndsl import load  # noqa: E402
from cnndsl.train.data import Data  # noqa: E402
from cnndsl.train.optim import Optimizer  # noqa: E402
from cnndsl.train.trainer import train  # noqa: E402

NET = "network tiny { input 1x8x8\n conv 3/3 -> relu -> maxpool 2 -> fc 4 }"
CASES = [
    ("sgd momentum, weight decay", Optimizer("sgd", momentum=0.9, weight_decay=0.01), "constant"),
    ("sgd nesterov", Optimizer("sgd", momentum=0.9, nesterov=True), "cosine"),
    ("adam", Optimizer("adam", weight_decay=0.01), "constant"),
    ("adamw", Optimizer("adamw", weight_decay=0.01), "step"),
]


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, n)
    return Data(x, y, 4, ("0", "1", "2", "3"), "random")


@pytest.mark.parametrize("case,opt,schedule", CASES, ids=[c[0] for c in CASES])
def test_a_torch_step_equals_an_onnxruntime_step(case, opt, schedule):
    model = load(NET)
    data = batch()
    # two epochs of two steps: the buffers of the first steps feed the later ones
    runs = {
        engine: train(model, data, None, epochs=2, batch=8, lr=0.05, optimizer=opt, schedule=schedule, engine=engine)
        for engine in ("onnxruntime", "torch")
    }
    a, b = runs["onnxruntime"], runs["torch"]
    assert a.weights.keys() >= {"conv.weight", "fc.bias"}
    for name in ("conv.weight", "conv.bias", "fc.weight", "fc.bias"):
        np.testing.assert_allclose(b.weights[name], a.weights[name], atol=2e-5, err_msg=name)
    for ea, eb in zip(a.epochs, b.epochs):
        assert eb.loss == pytest.approx(ea.loss, abs=1e-5)
        assert eb.train_accuracy == ea.train_accuracy


def test_a_checkpoint_resumes_across_engines(tmp_path):
    """Weights and optimizer buffers carry over: 1 epoch on onnxruntime then 1 on torch equals
    2 on onnxruntime (and the torch checkpoint holds the same arrays)."""
    model = load(NET)
    data, opt = batch(), Optimizer("adam")
    both = train(model, data, None, epochs=2, batch=8, lr=0.01, optimizer=opt, out=tmp_path / "a.npz")
    train(model, data, None, epochs=1, batch=8, lr=0.01, optimizer=opt, out=tmp_path / "b.npz")
    resume = dict(np.load(tmp_path / "b.npz"))
    train(
        model,
        data,
        None,
        epochs=2,
        batch=8,
        lr=0.01,
        optimizer=opt,
        resume=resume,
        out=tmp_path / "c.npz",
        engine="torch",
    )
    a, c = np.load(tmp_path / "a.npz"), np.load(tmp_path / "c.npz")
    assert sorted(a.files) == sorted(c.files)
    for name in a.files:
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(c[name], a[name], atol=2e-5, err_msg=name)
        else:
            assert a[name] == c[name], name
    assert both.weights.keys() <= set(c.files)


def _cli_under(launcher, *args):
    """``cnndsl ARGS`` run by ``launcher`` (argv before the cnndsl arguments), as run_cli does."""
    import os
    import subprocess

    env = dict(os.environ, NO_COLOR="1", OMP_NUM_THREADS="1")
    return subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def _two_processes_equal_one(tmp_path, two):
    """One process on each whole batch of 8, and ``two(args)`` (a 2-rank run of the same
    arguments): the same checkpoint (each rank half of each batch, DDP averaging)."""
    net = tmp_path / "tiny.net"
    net.write_text(NET + "\n")
    data = batch(16, 1)
    np.savez(tmp_path / "d.npz", x=data.x, y=data.y)
    common = ["train", net, "--data", tmp_path / "d.npz", "--epochs", "1", "--batch", "8", "--held-out", "0"]
    common += ["--engine", "torch", "--lr", "0.05"]
    one = run_cli(*common, "--out", tmp_path / "one.npz")
    assert one.returncode == 0, one.stderr
    r = two([*common, "--out", tmp_path / "two.npz"])
    assert r.returncode == 0, r.stderr
    assert "trained on torch cpu, 2 processes" in r.stdout
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(b[name], a[name], atol=2e-6, err_msg=name)


@pytest.mark.slow  # the batch-norm case below checks the same averaging, and the sharding, in the fast suite
def test_two_gloo_processes_equal_one_on_the_whole_batch(tmp_path):
    """--nproc 2 equals one process."""
    _two_processes_equal_one(tmp_path, lambda args: run_cli(*args, "--nproc", "2"))


def test_torchs_own_launcher_runs_the_ranks(tmp_path):
    """The several-machines path of docs/distributed.md, on one: torch.distributed.run starts
    the ranks (c10d rendezvous, --standalone) and cnndsl reads RANK/WORLD_SIZE from it; the
    two ranks' step equals one process on the whole batch, and the run ends (no agent left
    waiting for ranks that do not exit)."""
    import sys

    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "cnndsl"]
    _two_processes_equal_one(tmp_path, lambda args: _cli_under(launcher, *args))


def test_engine_options_are_checked(tmp_path):
    r = run_cli("train", "networks/lenet5.net", "--data", "digits", "--nproc", "2")
    assert r.returncode == 1
    assert "error: --nproc and --device are the torch engine's (add --engine torch)" in r.stderr
    r = run_cli("train", "networks/lenet5.net", "--data", "digits", "--engine", "torch", "--nproc", "2", "--batch", "3")
    assert r.returncode == 1
    assert "error: --nproc must be at least 1 and --batch at least 2 per process" in r.stderr


BN_NET = "network tinybn { input 1x8x8\n conv 3/3 -> bn -> relu -> gap -> fc 4 }"


def test_two_gloo_processes_each_train_on_their_own_half(tmp_path):
    """With batch norm the sharding shows: each rank normalises with its own half's statistics
    (docs/distributed.md), so the 2-process step is the average of the gradients of the two
    halves, ``batch[0::2]`` and ``batch[1::2]``, and not the whole batch's gradient. The reference
    is computed here with plain torch autograd on the generated module, one SGD step by hand; the
    shuffled order is the trainer's documented one (numpy's default_rng(seed).permutation)."""
    net = tmp_path / "tinybn.net"
    net.write_text(BN_NET + "\n")
    data = batch(8, 2)
    np.savez(tmp_path / "d.npz", x=data.x, y=data.y)
    model = load(BN_NET)
    module = model.to_torch()
    start = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    start["conv.bias"] = np.full_like(start["conv.bias"], 0.3)  # a bias that matters through bn's statistics
    np.savez(tmp_path / "w.npz", **start)
    lr = 0.5
    common = ["train", net, "--data", tmp_path / "d.npz", "--epochs", "1", "--batch", "8", "--held-out", "0"]
    common += ["--engine", "torch", "--lr", lr, "--momentum", "0", "--weights", tmp_path / "w.npz"]
    two = run_cli(*common, "--nproc", "2", "--out", tmp_path / "two.npz")
    assert two.returncode == 0, two.stderr
    one = run_cli(*common, "--out", tmp_path / "one.npz")
    assert one.returncode == 0, one.stderr

    order = np.random.default_rng(0).permutation(8)
    x, y = torch.from_numpy(data.x[order]), torch.from_numpy(data.y[order].astype(np.int64))

    def step(halves):
        module.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
        module.train()
        module.zero_grad()
        loss = sum(torch.nn.functional.cross_entropy(module(x[h]), y[h]) for h in halves) / len(halves)
        loss.backward()
        with torch.no_grad():
            for p in module.parameters():
                p -= lr * p.grad
        return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}

    sharded, whole = step([slice(0, None, 2), slice(1, None, 2)]), step([slice(None)])
    # running statistics: rank 0's half, broadcast by DDP; the weights: the averaged gradient
    sharded_stats = step([slice(0, None, 2)])
    a, b = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    for name in ("conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"):
        np.testing.assert_allclose(a[name], sharded[name], atol=2e-6, err_msg=name)
        np.testing.assert_allclose(b[name], whole[name], atol=2e-6, err_msg=name)
    for name in ("bn.running_mean", "bn.running_var"):
        np.testing.assert_allclose(a[name], sharded_stats[name], atol=2e-6, err_msg=name)
        np.testing.assert_allclose(b[name], whole[name], atol=2e-6, err_msg=name)
    # the test is sharp: the halves' step is measurably not the whole batch's
    assert np.abs(sharded["conv.weight"] - whole["conv.weight"]).max() > 1e-3
    assert np.abs(sharded["bn.running_mean"] - whole["bn.running_mean"]).max() > 1e-3


def test_a_rank_that_never_finishes_is_an_error_not_a_hang():
    """The end-of-run barrier of a gloo run is bounded; its timeout is a diagnostic that names
    the waiting rank (torch's own message after it), not a run that never ends."""
    from types import SimpleNamespace

    from cnndsl.errors import CnnError
    from cnndsl.train.torch_engine import CLOSE_TIMEOUT_S, TorchTrainer

    waited = []

    def monitored_barrier(timeout):
        waited.append(timeout.total_seconds())
        raise RuntimeError("Rank 1 failed to pass monitoredBarrier in 120000 ms\nmore")

    trainer = object.__new__(TorchTrainer)
    trainer.world, trainer.rank, trainer.device = 2, 0, torch.device("cpu")
    trainer.dist = SimpleNamespace(is_initialized=lambda: True, monitored_barrier=monitored_barrier)
    with pytest.raises(CnnError) as err:
        trainer.close()
    assert waited == [CLOSE_TIMEOUT_S]
    assert str(err.value.diagnostic.message) == (
        "rank 0: the other ranks did not finish within 120 s (Rank 1 failed to pass monitoredBarrier in 120000 ms)"
    )


def _exits(code, after_s):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", f"import sys, time; time.sleep({after_s}); sys.exit({code})"])


# (exit code, seconds) of each rank -> what the launcher reports: (exit code, rank whose messages show)
RANK_ENDINGS = [
    ("all succeed", [(0, 0.3), (0, 0.1)], (0, None)),
    ("a user error fails every rank: rank 0's", [(1, 0.4), (1, 0.1)], (1, 0)),
    ("rank 1 alone fails; rank 0 is ended", [(0, 60), (3, 0.1)], (3, 1)),
    ("a rank killed by a signal, as a shell says it", [(0, 60), (-9, 0.1)], (137, 1)),
]


@pytest.mark.parametrize("case,endings,expected", RANK_ENDINGS, ids=[c[0] for c in RANK_ENDINGS])
def test_the_launcher_reports_one_failure_and_leaves_no_rank_behind(case, endings, expected):
    import time

    from cnndsl.cli import _wait_ranks

    procs = [
        _exits(c, s) if c >= 0 else _exits(f"__import__('os').kill(__import__('os').getpid(), {-c})", s)
        for c, s in endings
    ]
    start = time.monotonic()
    assert _wait_ranks(procs, settle_s=0.5) == expected
    assert all(p.poll() is not None for p in procs)
    assert time.monotonic() - start < 15  # the rank that would sleep for a minute was ended


def test_a_user_error_under_nproc_is_said_once(tmp_path):
    r = run_cli("train", "networks/lenet5.net", "--data", tmp_path / "none.npz", "--engine", "torch", "--nproc", "2")
    assert r.returncode == 1
    assert r.stderr == f"cnndsl: error: --data {tmp_path / 'none.npz'}: no such file [E100]\n"


def test_ctrl_c_under_nproc_stops_every_rank_and_rank_0_saves(tmp_path):
    """SIGINT to the launcher reaches each rank once; they stop at the same step, rank 0 writes
    the checkpoint and prints the command that resumes, with --nproc; the run exits 130."""
    import os
    import re
    import signal
    import subprocess
    import sys

    cut = tmp_path / "cut.npz"
    args = ["train", "networks/lenet5.net", "--data", "digits", "--epochs", "5", "--batch", "8"]
    args += ["--engine", "torch", "--nproc", "2", "--out", str(cut)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnndsl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
    )
    for line in proc.stdout:
        if re.match(r"\s+1/5 ", line):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert re.fullmatch(
        rf"interrupted (after batch \d+ of 180 of epoch \d|before epoch \d); checkpoint in {cut}", lines[0]
    )
    assert lines[1] == (
        "resume with: cnndsl train networks/lenet5.net --data digits --epochs 5 --batch 8 --engine torch "
        f"--nproc 2 --resume {cut} --out {cut}"
    )
    assert cut.exists()
