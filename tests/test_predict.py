"""`cnndsl predict`, `run --data`, the contract a trained model carries (checkpoint and ONNX
metadata), `train --keep`, and the same through the Python API, as a user sees them."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import NETWORKS, ROOT, run_cli

import cnndsl
from cnndsl.train.data import Data, split

LENET = NETWORKS / "lenet5.net"
# an epoch row: epoch/epochs, loss, acc, held-out loss, held-out acc, ... (trainer.EpochTable)
HELD = re.compile(r"^ *[0-9]+/[0-9]+ +[0-9.]+ +[0-9.]+% +[0-9.]+ +([0-9.]+)%", re.M)


def held_out_indices(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """The indices of the samples `train --held-out 0.2 --seed 0` holds out: split() of the labels
    with the sample indices as x (split only reads y)."""
    data = Data(np.arange(len(labels)), labels.astype(np.int64), int(labels.max()) + 1, (), "raw")
    return split(data, 0.2, seed)[1].x


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """LeNet-5 trained 3 epochs on the digits (default --keep: both files), exported, and the raw
    held-out digits (8x8, values 0..16, as the UCI set stores them) in held.npz."""
    d = tmp_path_factory.mktemp("digits")
    r = run_cli("train", LENET, "--data", "digits", "--epochs", "3", "--out", d / "lenet.npz")
    assert r.returncode == 0, r.stderr
    e = run_cli("export", LENET, "--weights", d / "lenet.npz", "-o", d / "lenet.onnx")
    assert e.returncode == 0, e.stderr
    with np.load(ROOT / "cnndsl" / "train" / "datasets" / "digits.npz") as f:
        images, target = f["images"], f["target"]
    held = held_out_indices(target)
    np.savez(d / "held.npz", x=images[held].astype(np.uint8), y=target[held])
    return d, r


def test_train_keeps_the_last_and_the_best_epoch(digits_model):
    d, r = digits_model
    accs = [float(a) for a in re.findall(HELD, r.stdout)]
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))  # the first epoch with the highest
    assert r.stdout.splitlines()[-1].endswith(
        f"weights in {d / 'lenet.npz'} (last epoch, 3) and {d / 'lenet.best.npz'} "
        f"(best held-out accuracy {accs[best]:.2f}%, epoch {best + 1}) (cnndsl export --weights)"
    )
    assert (d / "lenet.best.npz").exists()


def test_the_checkpoint_and_the_onnx_model_carry_the_contract(digits_model):
    d, _ = digits_model
    # by hand: the digits count 0..16 set pixels; for a 32x32 input they are upscaled by
    # k = 3*32//32 = 3 (24x24) and padded; LeNet-5 ends in rbf (distances); classes are 0..9
    expected = {
        "cnndsl.classes": json.dumps([str(i) for i in range(10)]),
        "cnndsl.output": "distances",
        "cnndsl.input.layout": "NCHW",
        "cnndsl.input.shape": "1x32x32",
        "cnndsl.input.channels": "L",
        "cnndsl.input.scale": "16",
        "cnndsl.input.resize": "fit",
        "cnndsl.input.upscale": "3",
    }
    with np.load(d / "lenet.npz") as f:
        assert json.loads(str(f["cnndsl.metadata"])) == expected
    props = {p.key: p.value for p in onnx.load(d / "lenet.onnx").metadata_props}
    assert {k: props[k] for k in expected} == expected
    # a model exported without a checkpoint says what the network itself says, no preprocessing
    e = run_cli("export", LENET, "-o", d / "plain.onnx")
    assert e.returncode == 0, e.stderr
    props = {p.key: p.value for p in onnx.load(d / "plain.onnx").metadata_props}
    assert props["cnndsl.output"] == "distances" and "cnndsl.input.scale" not in props


@pytest.mark.parametrize("how", ["onnx", "net"])
def test_predict_gives_the_trainers_held_out_accuracy_on_the_digits(digits_model, how):
    d, r = digits_model
    last = float(re.findall(HELD, r.stdout)[-1])
    model = [d / "lenet.onnx"] if how == "onnx" else [LENET, "--weights", d / "lenet.npz"]
    p = run_cli("predict", *model, d / "held.npz")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert (
        lines[1]
        == f"data {d / 'held.npz'}: 359 samples 8x8 uint8, divided by 16, upscaled 3x to 24x24, padded to 1x32x32"
    )
    assert len(lines) == 2 + 359 + 1
    m = re.fullmatch(r"top-1 accuracy ([0-9.]+)% \(([0-9,]+) of 359 labelled samples\)", lines[-1])
    assert m and float(m.group(1)) == last, (lines[-1], last)
    assert p.stderr == ""  # the model records its preprocessing: no warning


def test_predict_writes_the_outputs(digits_model, tmp_path):
    d, _ = digits_model
    p = run_cli("predict", d / "lenet.onnx", d / "held.npz", "--output", tmp_path / "o.npy")
    assert p.returncode == 0, p.stderr
    out = np.load(tmp_path / "o.npy")
    # the same as onnxruntime on the held-out digits as train prepared them (the trainer's loader)
    model = cnndsl.load(LENET)
    from cnndsl.train.data import load_data

    _, held = split(load_data("digits", model.graph.input_shape, 10), 0.2, 0)
    sess = ort.InferenceSession(str(d / "lenet.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(out, sess.run(None, {"input": held.x})[0], rtol=1e-5, atol=1e-4)
    assert "wrote" in p.stdout and "output 359x10" in p.stdout


def _shapes(rng, kind: str, size: tuple[int, int]) -> np.ndarray:
    """An RGB image of a class: horizontal bars, vertical bars, or a filled square, with noise."""
    h, w = size
    img = rng.integers(0, 60, (h, w, 3))
    if kind == "horizontal":
        img[::4] += 180
    elif kind == "vertical":
        img[:, ::4] += 180
    else:
        img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] += 180
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(1)
    classes = ("horizontal", "square", "vertical")
    files, labels = [], []
    for k, name in enumerate(classes):
        (d / "set" / name).mkdir(parents=True)
        for i in range(20):
            size = tuple(int(s) for s in rng.integers(18, 30, 2))
            path = d / "set" / name / f"{i:02}.png"
            Image.fromarray(_shapes(rng, name, size)).save(path)
            files.append(path)
            labels.append(k)
    net = d / "shapes.net"
    net.write_text("network shapes {\n    input 1x16x16\n    conv 8/3 -> relu -> maxpool 2 -> fc 3\n}\n")
    r = run_cli("train", net, "--data", d / "set", "--epochs", "6", "--lr", "0.01", "--out", d / "shapes.npz")
    assert r.returncode == 0, r.stderr
    # the held-out images, in class folders, as a user would have them (sorted as train lists them)
    for i in held_out_indices(np.array(labels)):
        target = d / "held" / classes[labels[i]]
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(files[i], target / files[i].name)
    return d, r, net


def test_predict_gives_the_trainers_held_out_accuracy_on_a_folder_of_images(folder_model):
    d, r, net = folder_model
    last = float(re.findall(HELD, r.stdout)[-1])
    p = run_cli("predict", net, "--weights", d / "shapes.npz", d / "held")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("model shapes.net on CPUExecutionProvider: 3 classes (horizontal, square, vertical); ")
    assert lines[0].endswith("preprocessing: integers / 255, floats as they are, resized to the input")
    assert lines[1] == f"data {d / 'held'}: 12 images, 12 in class folders"  # 20% of 20 per class
    m = re.fullmatch(r"top-1 accuracy ([0-9.]+)% \(([0-9,]+) of 12 labelled samples\)", lines[-1])
    assert m and float(m.group(1)) == last, (lines[-1], last)
    # one image, by content (named .dat): its name, three classes by name with probabilities
    one = next((d / "held" / "square").iterdir())
    shutil.copy(one, d / "one.dat")
    p = run_cli("predict", net, "--weights", d / "shapes.best.npz", d / "one.dat")
    assert p.returncode == 0, p.stderr
    row = p.stdout.splitlines()[-1].split()
    assert row[0] == str(d / "one.dat") and sorted(row[1:6:2]) == ["horizontal", "square", "vertical"]
    assert abs(sum(float(v.rstrip("%")) for v in row[2:7:2]) - 100) < 0.05  # the three probabilities


def test_run_data_is_prepared_as_train_prepares_it(tmp_path, netfile):
    """uint8 pixels are divided by 255, a channels-last array is moved to channels first, an image is
    read by its content; the outputs equal onnxruntime's on the NumPy-prepared input."""
    from PIL import Image

    net = netfile("network t {\n    input 3x8x8\n    conv 4/3 -> relu -> gap -> fc 3\n}\n")
    cnndsl.load(net).export(tmp_path / "t.onnx")  # seed 0, as run's weights
    sess = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)  # channels last
    np.save(tmp_path / "x.npy", pixels)
    Image.fromarray(pixels[0]).save(tmp_path / "img.bin", format="PNG")
    reference = sess.run(None, {"input": pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255})[0]
    for data, rows, line in (
        ("x.npy", 2, "data x.npy: 2 samples 8x8x3 uint8, divided by 255, channels last to first"),
        ("img.bin", 1, "data img.bin: image, 8x8 RGB"),
    ):
        r = run_cli("run", net, "--data", data, "--iterations", "0", "--output", f"{data}.out.npy", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == line
        np.testing.assert_allclose(np.load(tmp_path / f"{data}.out.npy"), reference[:rows], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (
            lambda d: np.save(d / "x.npy", np.zeros((2, 5, 8, 8), np.float32)),
            ["run", "t.net", "--data", "x.npy", "--iterations", "0"],
            "cnndsl: error: --data x.npy: x has shape (2, 5, 8, 8), 5 channels; the network's input 3x8x8 takes 3 "
            "(1 channel is replicated, 3 become luminance for a 1-channel network) [E103]",
        ),
        (
            lambda d: (d / "x.png").write_text("hello"),
            ["run", "t.net", "--data", "x.png", "--iterations", "0"],
            "cnndsl: error: --data x.png: not a .npy, .npz or image file (it begins with b'hello'); expected npy, "
            "npz, png, jpg, jpeg, bmp, gif, pgm, ppm, tif, tiff, webp [E092]",
        ),
        (
            lambda d: None,
            ["predict", "t.net", "x.npy"],
            "cnndsl: error: t.net: predicting needs trained weights; give --weights W.npz (cnndsl train writes "
            "them) or an exported model.onnx [E124]",
        ),
    ],
)
def test_input_errors_name_the_option_and_the_expected_shape(tmp_path, setup, args, message):
    (tmp_path / "t.net").write_text("network t {\n    input 3x8x8\n    conv 4/3 -> relu -> gap -> fc 3\n}\n")
    setup(tmp_path)
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == message, r.stderr


def test_predict_warns_when_the_model_records_no_preprocessing(digits_model, tmp_path):
    d, _ = digits_model
    cnndsl.load(LENET).export(tmp_path / "plain.onnx")
    x = np.zeros((1, 1, 32, 32), np.float32)
    np.save(tmp_path / "x.npy", x)
    p = run_cli("predict", tmp_path / "plain.onnx", tmp_path / "x.npy")
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == (
        f"cnndsl: warning: {tmp_path / 'plain.onnx'} records no preprocessing (it was not exported from a "
        "cnndsl train checkpoint); assuming integers / 255, floats as they are, fitted (padded centred or "
        "scaled down) [W120]"
    )
    assert p.stdout.splitlines()[0].startswith("model plain.onnx on CPUExecutionProvider: unnamed classes;")


def test_predict_refuses_a_class_folder_the_model_does_not_know(folder_model, tmp_path):
    d, _, net = folder_model
    (tmp_path / "q" / "circle").mkdir(parents=True)
    shutil.copy(next((d / "held" / "square").iterdir()), tmp_path / "q" / "circle" / "a.png")
    p = run_cli("predict", net, "--weights", d / "shapes.npz", "q", cwd=tmp_path)
    assert p.returncode == 1
    assert p.stderr.strip() == (
        "cnndsl: error: q: class folder circle/ is not one of the model's classes (horizontal, square, vertical) [E122]"
    )


def test_keep_best_without_held_out_data_is_refused(tmp_path):
    r = run_cli("train", LENET, "--data", "digits", "--held-out", "0", "--keep", "best", cwd=tmp_path)
    assert r.returncode == 1
    assert "--keep best needs held-out data" in r.stderr and "[E084]" in r.stderr


# ------------------------------------------------------------------------------------------ the API


def test_model_repr_and_table():
    m = cnndsl.load(LENET)
    # by hand (tests/test_cli.py): 60,000 trainable + 840 RBF centres; MACs C1 28·28·6·25 = 117,600,
    # C3 150,000, C5 120·400 = 48,000, F6 84·120 = 10,080, out 10·84 = 840: 326,520
    assert repr(m) == (
        f"<Model lenet5 ({LENET}): input 1x32x32, 13 layers, 60,840 parameters, 326,520 MACs, output output 10>"
    )
    assert str(m.table()) == run_cli("info", LENET).stdout.rstrip("\n")
    html = m._repr_html_()
    assert "<td>C3</td><td>conv</td><td>16x10x10</td>" in html and "<th>layer</th>" in html
    svg = m._repr_svg_()
    assert svg.startswith("<svg") or svg.startswith("<?xml")


def test_table_depth_collapses_block_instances():
    m = cnndsl.load(NETWORKS / "resnet.net", network="resnet18")
    rows = m.table(depth=0).rows()
    assert [r[0] for r in rows] == [
        "stem", "layer1", "layer1_1", "layer2", "layer2.basic", "layer3", "layer3.basic", "layer4", "layer4.basic",
        "gap", "fc",
    ]  # fmt: skip
    # the collapsed rows add up to the network's parameters (torchvision: 11,689,512 trainable)
    assert sum(int(r[3].replace(",", "")) for r in rows) == m.totals.params
    assert m.table(depth=0).rows()[-1] == m.table().rows()[-1]  # fc is not in a block


def test_api_export_predict_and_train(digits_model, tmp_path):
    d, r = digits_model
    m = cnndsl.load(LENET)
    path = m.export(tmp_path / "m.onnx", weights=d / "lenet.npz")
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert props["cnndsl.input.scale"] == "16"
    with np.load(d / "held.npz") as f:
        x, y = f["x"], f["y"]
    last = float(re.findall(HELD, r.stdout)[-1])
    for preds in (cnndsl.predict(path, d / "held.npz"), cnndsl.predict(m, [d / "held.npz"], weights=d / "lenet.npz")):
        assert round(preds.accuracy * 100, 2) == last
    arrays = cnndsl.predict(path, x[:5], top=2)
    assert [len(p.top) for p in arrays] == [2] * 5 and arrays.outputs["output"].shape == (5, 10)
    assert [p.top[0][0] for p in arrays] == [p.top[0][0] for p in cnndsl.predict(path, d / "held.npz")][:5]
    assert m.graph(tmp_path / "m.dot").read_text().startswith("digraph")
    assert m.draw(tmp_path / "m.svg").read_text() == m._repr_svg_()
    assert m.graph.nodes[1].name == "C1" and m.graph.input_shape == (1, 32, 32)  # still the IR
    t = cnndsl.train(m, "digits", epochs=1, out=tmp_path / "w.npz")
    assert t.last == tmp_path / "w.npz" and t.best == tmp_path / "w.best.npz" and t.best.exists()
    assert len(t.epochs) == 1 and 0 < t.held_out_accuracy <= 1
    del y


def test_notebook_display_through_ipython():
    """What a notebook shows: IPython's display formatter picks the HTML table and the SVG diagram."""
    formatters = pytest.importorskip("IPython.core.formatters")
    data, _ = formatters.DisplayFormatter().format(cnndsl.load(LENET))
    assert "<td>C3</td>" in data["text/html"] and "<svg" in data["image/svg+xml"]
    assert data["text/plain"].startswith("<Model lenet5 (")


def test_notebook_in_a_real_kernel(tmp_path):
    """The same in a Jupyter kernel (needs nbclient and ipykernel: the notebook extra)."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import cnndsl\ncnndsl.load({str(LENET)!r})")]
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    out = nb.cells[0].outputs[0]
    assert out["output_type"] == "execute_result"
    assert "<td>C3</td>" in out["data"]["text/html"] and "<svg" in out["data"]["image/svg+xml"]


@pytest.mark.parametrize("doc", ["deploy.md", "api.md"])
def test_the_docs_examples_hold(digits_model, doc, monkeypatch):
    """docs/deploy.md's onnxruntime snippet and docs/api.md, run as doctests beside a trained model."""
    import doctest

    d, _ = digits_model
    shutil.copy(d / "lenet.onnx", d / "lenet5.onnx")
    shutil.copy(d / "lenet.npz", d / "lenet5.npz")
    monkeypatch.chdir(d)
    result = doctest.testfile(str(ROOT / "docs" / doc), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed
