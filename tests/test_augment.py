"""`cnndsl train --augment flip,crop`: random horizontal flips and padded random crops of the
training batches, drawn from the seeded shuffling generator."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from cnndsl import load
from cnndsl.errors import CnnError
from cnndsl.lower.export import load_weights
from cnndsl.train import trainer as trainer_module
from cnndsl.train.data import Augment, augment, load_data, parse_augment, split

NET = "network n { input 1x8x8\n conv 4/3\n relu\n fc 10 }"


def hand_augmented(x, j, n, seed, pad, flip):
    """An independent transcription, pixel by pixel: torchvision's RandomCrop(size, padding=pad)
    (zeros outside the image, a crop offset 0..2·pad per axis), then RandomHorizontalFlip(p=0.5),
    with the draws the docstring of ``augment`` specifies for the n samples of an epoch."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2)) if pad else np.full((n, 2), 0)
    flipped = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    b, c, h, w = x.shape
    out = np.zeros_like(x)
    for s in range(b):
        top, left = offsets[j[s]]
        for ch in range(c):
            for r in range(h):
                for col in range(w):
                    src_col = w - 1 - col if flipped[j[s]] else col  # the flip acts on the crop
                    rr, cc = r + top - pad, src_col + left - pad  # the crop's pixel in the unpadded image
                    if 0 <= rr < h and 0 <= cc < w:
                        out[s, ch, r, col] = x[s, ch, rr, cc]
    return out, offsets, flipped


@pytest.mark.parametrize(
    "aug",
    [Augment(flip=True), Augment(crop=1), Augment(crop=2), Augment(flip=True, crop=1), Augment(flip=True, crop=4)],
)
def test_every_pixel_matches_a_hand_transcription(aug):
    n, seed = 6, 3
    x = np.arange(4 * 2 * 6 * 7, dtype=np.float32).reshape(4, 2, 6, 7) + 1  # no zero pixel: padding shows
    j = np.array([5, 0, 2, 3])  # the batch's positions in the epoch
    apply = augment(aug, n, np.random.default_rng(seed))
    before = x.copy()
    got = apply(x, j)
    want, offsets, flipped = hand_augmented(x, j, n, seed, aug.crop, aug.flip)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(x, before)  # the training data itself is left alone
    if aug.flip:  # the seed exercises both branches
        assert 0 < flipped[j].sum() < len(j)
    if aug.crop:
        assert len({tuple(o) for o in offsets[j]}) > 1


@pytest.mark.parametrize(
    "text, want",
    [
        ("flip", Augment(flip=True)),
        ("crop", Augment(crop=4)),
        ("crop=2", Augment(crop=2)),
        ("flip,crop", Augment(True, 4)),
        ("crop=4, flip", Augment(True, 4)),
    ],
)
def test_parse(text, want):
    assert parse_augment(text, (3, 32, 32)) == want


@pytest.mark.parametrize(
    "text, shape, message",
    [
        ("flop", (1, 8, 8), "--augment: unknown augmentation 'flop'; did you mean 'flip'?"),
        ("rotate", (1, 8, 8), "--augment: unknown augmentation 'rotate'; expected flip or crop"),
        ("", (1, 8, 8), "--augment: unknown augmentation ''; expected flip or crop"),
        ("crop=0", (1, 8, 8), "--augment crop=0: crop=P takes a padding of at least 1 pixel"),
        ("crop=x", (1, 8, 8), "--augment crop=x: crop=P takes a padding of at least 1 pixel"),
        ("flip=1", (1, 8, 8), "--augment flip=1: flip takes no value"),
        ("flip,flip", (1, 8, 8), "--augment flip,flip: flip is given twice"),
        ("crop", (64,), "--augment flips and crops images; the network's input is 64"),
    ],
)
def test_parse_errors(text, shape, message):
    with pytest.raises(CnnError) as err:
        parse_augment(text, shape)
    assert err.value.diagnostic.code == "E084" and err.value.diagnostic.message == message


def test_unknown_augmentation_through_the_cli(netfile, tmp_path):
    net = netfile(NET)
    r = run_cli("train", net, "--data", "digits", "--augment", "flip,crp", "--out", tmp_path / "w.npz")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cnndsl: error: --augment: unknown augmentation 'crp'; did you mean 'crop'? [E084]" in r.stderr
    assert not (tmp_path / "w.npz").exists()
    r = run_cli("train", net, "--data", "digits", "--augment", "", "--out", tmp_path / "w.npz")
    assert r.returncode == 1 and "--augment: unknown augmentation ''; expected flip or crop [E084]" in r.stderr


@pytest.fixture(scope="module")
def digits():
    model = load(NET)
    train_part, held = split(load_data("digits", (1, 8, 8), 10), 0.2, 0)
    return model, train_part, held


def run(digits, monkeypatch, **kw):
    """train() on the digits, recording every batch the steps get and every evaluated array."""
    model, train_part, held = digits
    seen = {"step": [], "evaluate": []}
    step, evaluate = trainer_module.Trainer.step, trainer_module.Trainer.evaluate

    def recording_step(self, x, y):
        seen["step"].append(x.copy())
        return step(self, x, y)

    def recording_evaluate(self, x, y, batch):
        seen["evaluate"].append(x.copy())
        return evaluate(self, x, y, batch)

    monkeypatch.setattr(trainer_module.Trainer, "step", recording_step)
    monkeypatch.setattr(trainer_module.Trainer, "evaluate", recording_evaluate)
    kw = {"epochs": 2, "batch": 256, "lr": 0.01, "provider": "cpu", "seed": 7, **kw}
    result = trainer_module.train(model, train_part, held, **kw)
    return result, seen


def test_the_steps_get_augmented_batches_and_the_held_out_data_is_untouched(digits, monkeypatch):
    _, train_part, held = digits
    aug = Augment(flip=True, crop=2)
    result, seen = run(digits, monkeypatch, augment=aug)
    # the same draws by hand: per epoch the permutation, then the crop offsets and the flips
    rng = np.random.default_rng(7)
    n, batches = len(train_part.x), []
    for _ in range(2):
        order = rng.permutation(n)
        offsets = rng.integers(0, 5, size=(n, 2))
        flips = rng.random(n) < 0.5
        for i in range(0, n, 256):
            at = np.arange(i, min(i + 256, n))
            out = np.zeros_like(train_part.x[order[at]])
            src = np.pad(train_part.x[order[at]], ((0, 0), (0, 0), (2, 2), (2, 2)))
            for b, p in enumerate(at):
                crop = src[b, :, offsets[p, 0] : offsets[p, 0] + 8, offsets[p, 1] : offsets[p, 1] + 8]
                out[b] = crop[:, :, ::-1] if flips[p] else crop
            batches.append(out)
    assert len(seen["step"]) == len(batches) == 2 * 6
    for got, want in zip(seen["step"], batches):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(seen["step"][0], train_part.x[np.random.default_rng(7).permutation(n)[:256]])
    assert len(seen["evaluate"]) == 2
    for x in seen["evaluate"]:
        np.testing.assert_array_equal(x, held.x)  # held-out data: never augmented


def test_same_seed_same_weights_and_augmentation_changes_them(digits, monkeypatch):
    a, _ = run(digits, monkeypatch, augment=Augment(True, 4))
    b, _ = run(digits, monkeypatch, augment=Augment(True, 4))
    plain, _ = run(digits, monkeypatch)
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name], err_msg=name)
    assert any(not np.array_equal(a.weights[k], plain.weights[k]) for k in a.weights)


def test_resume_mid_epoch_equals_an_uninterrupted_run(digits, monkeypatch, tmp_path):
    aug = Augment(True, 2)
    full, _ = run(digits, monkeypatch, augment=aug, epochs=3, batch=64, out=tmp_path / "full.npz")
    calls = {"n": 0}

    def stop_after_30():  # asked after each of 23 steps and once after the epoch: epoch 2, its 6th batch
        calls["n"] += 1
        return calls["n"] == 30

    cut = tmp_path / "cut.npz"
    part, _ = run(digits, monkeypatch, augment=aug, epochs=3, batch=64, out=cut, should_stop=stop_after_30)
    assert part.interrupted == (2, 6, 23)
    resumed, _ = run(digits, monkeypatch, augment=aug, epochs=3, batch=64, out=cut, resume=load_weights(cut))
    assert resumed.first_epoch == 2
    a, b = load_weights(tmp_path / "full.npz"), load_weights(cut)
    assert set(a) == set(b)
    for name in a:
        if a[name].dtype.kind == "U":  # the shuffling generator's state
            assert a[name] == b[name]
        else:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_cli_resume_with_augmentation_equals_an_uninterrupted_run(netfile, tmp_path):
    net = netfile(NET)
    args = ["train", net, "--data", "digits", "--batch", "32", "--augment", "flip,crop=2", "--keep", "last"]
    full = run_cli(*args, "--epochs", "3", "--out", tmp_path / "full.npz")
    assert full.returncode == 0, full.stderr
    assert "augment training batches: random crop (zero padding 2), then horizontal flip (p = 1/2)" in full.stdout
    first = run_cli(*args, "--epochs", "2", "--out", tmp_path / "cut.npz")
    assert first.returncode == 0, first.stderr
    again = run_cli(*args, "--epochs", "3", "--resume", tmp_path / "cut.npz", "--out", tmp_path / "cut.npz")
    assert again.returncode == 0, again.stderr
    assert "from epoch 3 of 3" in again.stdout
    assert full.stdout.splitlines()[-2].split()[:5] == again.stdout.splitlines()[-2].split()[:5]  # epoch 3's row
    a, b = load_weights(tmp_path / "full.npz"), load_weights(tmp_path / "cut.npz")
    for name in a:
        if a[name].dtype.kind != "U":
            np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert str(b["train:augment"]) == "flip,crop=2"  # recorded, so that a resume cannot change it
    plain = [a for a in args if a not in ("--augment", "flip,crop=2")]
    r = run_cli(*plain, "--epochs", "4", "--resume", tmp_path / "cut.npz", "--out", tmp_path / "cut.npz")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        "cnndsl: error: --resume: the checkpoint was trained with --augment flip,crop=2; "
        "resume with the same (given: none) [E084]"
    ) in r.stderr
    r = run_cli(
        *args[:-4], "--augment", "crop", "--epochs", "4", "--resume", tmp_path / "cut.npz", "--out", tmp_path / "x.npz"
    )
    assert r.returncode == 1 and "(given: --augment crop=4)" in r.stderr
    r = run_cli(*plain, "--epochs", "1", "--out", tmp_path / "plain.npz")
    assert r.returncode == 0 and "train:augment" not in load_weights(tmp_path / "plain.npz")
    r = run_cli(*args, "--epochs", "2", "--resume", tmp_path / "plain.npz", "--out", tmp_path / "plain.npz")
    assert r.returncode == 1 and "trained with no --augment; resume with the same" in r.stderr
