"""The Trainer's convolutions on onnxruntime's blocked (NCHWc) kernels (cnndsl/train/nchwc.py):
the same step as the standard graph, only where onnxruntime has those kernels, never in an
exported step graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import run_cli

from cnndsl import load
from cnndsl.train import nchwc
from cnndsl.train.trainer import Trainer

BLOCK = nchwc.block_size()
needs_nchwc = pytest.mark.skipif(not BLOCK, reason="onnxruntime has no NCHWc kernels on this CPU")

# every channel count a multiple of 16 (the widest block): the stride-1 convs and their input
# gradients are eligible; the stride-2 conv's input gradient is a ConvTranspose, the first
# conv's input gradient is not computed, and the weight gradients' one-hot convs are grouped.
NET = """network n { input 16x9x9
 conv 16/3/1/1 -> relu -> conv 32/3/2/1 -> bn -> relu
 conv 32/3/1/2 dilation=2 -> relu -> conv 16/1 -> gap -> fc 4 }"""
# by hand: 4 forward convs + the input gradients of the dilated and the 1x1 conv
REWRITTEN = 6


def trainer(monkeypatch, on: bool):
    monkeypatch.setenv("CNNDSL_NCHWC", "1" if on else "0")
    monkeypatch.setattr(nchwc, "_probed", {})
    return Trainer(load(NET), loss="cross_entropy", lr=0.05, momentum=0.9, weight_decay=1e-3, provider="cpu")


@needs_nchwc
def test_the_blocked_step_is_the_standard_step(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 16, 9, 9)).astype(np.float32), rng.integers(0, 4, 8)
    plain, blocked = trainer(monkeypatch, False), trainer(monkeypatch, True)
    assert (plain.nchwc, blocked.nchwc) == (0, REWRITTEN)
    for _ in range(2):
        (a, la), (b, lb) = plain.step(x, y), blocked.step(x, y)
        np.testing.assert_allclose(b, a, rtol=1e-5)
        np.testing.assert_allclose(lb, la, rtol=1e-5, atol=1e-6)
    wa, wb = plain.checkpoint(), blocked.checkpoint()
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-4, atol=1e-6, err_msg=name)


@needs_nchwc
def test_the_filter_order_is_onnxruntimes():
    """The probe found the block size at which reorder_filter gives the bytes onnxruntime's own
    transformer wrote; a filter whose channels are not a multiple of it is not rewritten."""
    assert BLOCK in nchwc.BLOCKS
    w = np.arange(2 * BLOCK * BLOCK * 4, dtype=np.float32).reshape(2 * BLOCK, BLOCK, 2, 2)
    r = nchwc.reorder_filter(w, BLOCK)
    # the first block of output channels, input channel 1, offset (0, 1): at [0][0][0][1][1][:]
    assert list(r.ravel()[(1 * BLOCK + 1) * BLOCK : (1 * BLOCK + 2) * BLOCK]) == list(w[:BLOCK, 1, 0, 1])
    odd = load("network m { input 6x6x6\n conv 6/3/1/1 -> relu -> gap -> fc 2 }")  # 6: no block divides it
    from cnndsl.train.step import train_graph

    proto, _ = train_graph(odd, loss="cross_entropy")
    assert nchwc.rewrite(proto, BLOCK)[1] == 0


def test_switched_off_and_float64_are_left_standard(monkeypatch):
    assert trainer(monkeypatch, False).nchwc == 0
    from cnndsl.train.step import train_graph

    proto, _ = train_graph(load(NET), loss="cross_entropy", dtype="float64")
    assert nchwc.rewrite(proto, 8)[1] == 0


def test_an_exported_step_graph_has_standard_operators_only(tmp_path):
    out = tmp_path / "n.train.onnx"
    (tmp_path / "n.net").write_text(NET + "\n")
    r = run_cli("export", tmp_path / "n.net", "--train", "-o", out)
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(out))
    assert {o.domain for o in m.opset_import} == {""}
    assert {n.domain for n in m.graph.node} == {""}
