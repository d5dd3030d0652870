"""Gradient checks of the training graph: every layer kind and whole networks.

The train graph (``--dtype float64``) gives each parameter's and the input's
gradient; they must agree with central finite differences of the same graph's
forward loss to a relative error of 1e-6 (tests/gradcheck.py). One SGD step is
compared with a hand computation.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import INCEPTION_BLOCK
from gradcheck import Check
from onnx.reference import ReferenceEvaluator

from cnndsl import load
from cnndsl.errors import CnnError
from cnndsl.layers import CATALOGUE
from cnndsl.train.step import train_model

TOLERANCE = 1e-6

# (id, body): each body is followed by ``fc 3`` so that every output feeds the loss.
KINDS = [
    ("conv", "input 2x6x6\n conv 3/3/1/1"),
    ("conv-stride-dilation", "input 2x9x9\n conv 3/3/2/1 dilation=2"),
    ("conv-groups", "input 4x6x6\n conv 4/3/2/1 groups=2"),
    ("conv-same-even", "input 2x6x6\n conv 3/4/2/same"),
    ("conv-1d", "input 2x11\n conv 3/3/2/1"),
    ("conv-3d", "input 2x5x5x5\n conv 2/3/2/1"),
    ("conv-table", "table t = [[0],[0,1],[1]]\nnetwork n {\n input 2x6x6\n conv 3/3 table=t"),
    ("conv-reflect", "input 2x6x6\n conv 3/3/1/1 pad_mode=reflect"),
    ("conv-replicate", "input 2x6x6\n conv 3/3/1/2 pad_mode=replicate"),
    ("conv-no-bias", "input 2x6x6\n conv 3/3 bias=false"),
    ("deconv", "input 4x4x4\n deconv 2/3/2/1 outpad=1 groups=2"),
    ("deconv-dilation", "input 2x4x4\n deconv 2/3/1/1 dilation=2"),
    ("deconv-fixed", "input 2x4x4\n deconv 2/4/2/1 trainable=false"),
    ("maxpool", "input 2x7x7\n maxpool 3/2"),
    ("maxpool-ceil-pad", "input 2x8x8\n maxpool 3/2/1 ceil=true"),
    ("maxpool-1d", "input 2x9\n maxpool 3/2"),
    ("avgpool", "input 2x7x7\n avgpool 3/2/1"),
    ("avgpool-count-pad", "input 2x7x7\n avgpool 3/2/1 count_pad=true"),
    ("avgpool-ceil", "input 2x8x8\n avgpool 3/2/1 ceil=true"),
    ("gap", "input 2x5x5\n gap"),
    ("gmp", "input 2x5x5\n gmp"),
    ("subsample", "input 2x6x6\n subsample 2"),
    ("unpool", "input 2x6x6\n p: maxpool 2\n conv 2/1\n unpool of=@p"),
    ("upsample", "input 2x3x3\n upsample 2"),
    ("upsample-linear", "input 2x3x3\n upsample 2 mode=linear"),
    ("upsample-linear-1d", "input 2x5\n upsample 3 mode=linear"),
    ("upsample-3d", "input 2x2x2x2\n upsample 2"),
    ("bn", "input 3x4x4\n bn"),
    ("bn-1d", "input 3x5\n bn"),
    ("bn-after-conv", "input 2x6x6\n conv 3/3 -> bn"),
    ("lrn", "input 5x3x3\n lrn 3"),
    ("lrn-even", "input 5x3x3\n lrn 4"),
    ("lrn-within", "input 2x4x4\n lrn 3 alpha=0.5 region=within"),
    ("power", "input 3x4x4\n power 2 scale=0.5 shift=3"),
    ("lcn", "input 2x5x5\n lcn 3"),
    ("ln", "input 3x4x4\n ln"),
    ("ln-over-channels", "input 3x4x4\n ln over=channels"),
    ("ln-over-channels-1d", "input 4x3\n ln over=channels"),
    ("ln-over-channels-vector", "input 5\n ln over=channels"),
    ("gn", "input 4x3x3\n gn 2"),
    ("instnorm", "input 3x4x4\n instnorm"),
    ("fc", "input 6\n fc 4"),
    ("fc-no-bias", "input 2x3x3\n fc 4 bias=false"),
    ("rbf", "input 6\n rbf 4 trainable=true"),
    ("rbf-fixed", "input 6\n rbf 4"),
    ("flatten", "input 2x3x3\n flatten"),
    ("softmax", "input 4x2x2\n softmax"),
    ("dropout", "input 3x4x4\n dropout 0.3"),
    ("relu", "input 3x4x4\n relu"),
    ("relu6", "input 3x4x4\n relu6"),
    ("sigmoid", "input 3x4x4\n sigmoid"),
    ("tanh", "input 3x4x4\n tanh"),
    ("scaled_tanh", "input 3x4x4\n scaled_tanh"),
    ("abs", "input 3x4x4\n abs"),
    ("leaky_relu", "input 3x4x4\n leaky_relu 0.1"),
    ("elu", "input 3x4x4\n elu"),
    ("gelu", "input 3x4x4\n gelu"),
    ("silu", "input 3x4x4\n silu"),
    ("hardswish", "input 3x4x4\n hardswish"),
    ("prelu", "input 3x4x4\n prelu"),
    ("hardsigmoid", "input 3x4x4\n hardsigmoid alpha=0.3 beta=0.4"),
    ("softplus", "input 3x4x4\n softplus"),
    ("softplus-beta", "input 3x4x4\n softplus beta=2"),
    ("mish", "input 3x4x4\n mish"),
    ("drop_path", "input 3x4x4\n drop_path 0.3"),
    ("drop_path-zero", "input 3x4x4\n drop_path 0"),
    ("scale", "input 3x4x4\n scale init=0.5"),
    ("scale-bias", "input 3x5\n scale bias=true"),
    ("slice", "input 6x3x3\n slice 1/4"),
    ("space_to_depth", "input 2x4x4\n space_to_depth 2"),
    ("space_to_depth-1d", "input 2x6\n space_to_depth 3"),
    ("add-fit-first", "input 3x4x4\n add(fit=first) { conv 5/3/2/1 ; _ }"),
    ("space_to_depth-darknet", "input 4x4x2\n space_to_depth 2 order=darknet"),
    ("space_to_depth-3d", "input 1x2x2x4\n space_to_depth 2"),
    ("adaptive_avgpool", "input 2x7x7\n adaptive_avgpool 3"),
    ("adaptive_avgpool-divides", "input 2x6x6\n adaptive_avgpool 3"),
    ("adaptive_avgpool-1d", "input 2x5\n adaptive_avgpool 3"),
    ("adaptive_maxpool", "input 2x7x5\n adaptive_maxpool 3x2"),
    ("adaptive_maxpool-3d", "input 1x3x4x5\n adaptive_maxpool 2x3x2"),
    ("crop", "input 2x6x6\n crop 3x4 center=true"),
    ("pad", "input 2x4x4\n pad 1"),
    ("pad-reflect", "input 2x4x4\n pad 2 mode=reflect"),
    ("pad-replicate", "input 2x4x4\n pad 2 mode=replicate"),
    ("shuffle", "input 4x3x3\n shuffle 2"),
    ("shortcut_pad", "input 2x6x6\n residual(shortcut=pad) { conv 4/3/2/1 }"),
    ("shortcut_pad-odd", "input 2x7x7\n residual(shortcut=pad) { conv 4/3/2/1 }"),
    ("residual", "input 2x6x6\n residual { conv 2/3/1/1 -> bn -> relu }"),
    ("residual-conv", "input 2x6x6\n residual(shortcut=conv) { conv 4/3/2/1 }"),
    ("add", "input 2x4x4\n add { conv 2/1 ; conv 2/3/1/1 }"),
    ("mul", "input 4x4x4\n mul { _ ; gap -> conv 2/1 -> relu -> conv 4/1 -> sigmoid }"),
    ("concat", "input 2x4x4\n concat { conv 2/1 ; conv 3/3/1/1 }"),
    ("concat-crop", "input 2x6x6\n concat(crop=center) { conv 2/1 ; conv 3/3 }"),
]


def _source(body: str) -> str:
    head = "" if body.startswith("table") else "network n {\n "
    return head + body + "\n fc 3\n}"


def _kind(case_id: str) -> str:
    return next(k for k in sorted(CATALOGUE, key=len, reverse=True) if case_id.startswith(k))


def test_every_kind_has_a_gradient_check():
    covered = {_kind(i) for i, _ in KINDS}
    assert covered == set(CATALOGUE), f"kinds without a gradient check: {sorted(set(CATALOGUE) - covered)}"


@pytest.mark.parametrize("body", [b for _, b in KINDS], ids=[i for i, _ in KINDS])
def test_layer_gradients_match_finite_differences(body):
    errors = Check(_source(body)).errors()
    assert "input" in errors
    bad = {k: v for k, v in errors.items() if v > TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


def test_mse_loss_gradients():
    errors = Check(_source("input 2x4x4\n conv 2/3 -> relu"), loss="mse").errors()
    assert max(errors.values()) <= TOLERANCE, errors


def test_map_criterion_gradients():
    # LeNet-5's MAP criterion on rbf distances, with trainable centres so they are checked too
    errors = Check("network n { input 6\n fc 5 -> scaled_tanh\n out: rbf 3 trainable=true }", loss="map").errors()
    assert "out.weight" in errors
    assert max(errors.values()) <= TOLERANCE, errors


def test_map_criterion_value_by_hand():
    """E = y_D + log(e^−j + Σ_i e^−y_i) (LeCun et al. 1998, eq. 9), y_i = Σ_k (x_k − w_ik)², here in NumPy."""
    from cnndsl.train.step import MAP_J

    proto = train_model(load("network n { input 4\n out: rbf 3 }"), dtype="float64")  # default loss: map
    assert {p.key: p.value for p in proto.metadata_props}["cnndsl.loss"] == "map"
    rng = np.random.default_rng(5)
    x, y, w = rng.standard_normal((4, 4)) * 0.3, np.array([2, 0, 1, 2]), rng.standard_normal((3, 4)) * 0.3
    loss = ReferenceEvaluator(proto).run(["loss"], {"x": x, "y": y, "out.weight": w})[0]
    d = ((x[:, None, :] - w[None]) ** 2).sum(-1)
    expected = (d[np.arange(4), y] + np.log(np.exp(-MAP_J) + np.exp(-d).sum(1))).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


def test_map_criterion_needs_an_rbf_output():
    with pytest.raises(CnnError, match="rbf") as err:
        train_model(load("network n { input 4\n fc 3 }"), loss="map")
    assert err.value.diagnostic.code == "E085"


def test_segmentation_cross_entropy_per_pixel():
    # labels per output position (N, H, W): the loss averages over batch and positions
    c = Check("network n { input 2x6x6\n conv 3/3/1/1 -> relu -> conv 4/1 }")
    assert c.y.shape == (2, 6, 6)
    assert max(c.errors().values()) <= TOLERANCE


def test_softmax_output_takes_the_loss_on_its_scores():
    # A network ending in softmax: cross-entropy takes the scores before it (logits).
    c = Check("network n { input 6\n fc 4 -> softmax }")
    assert max(c.errors().values()) <= TOLERANCE
    logits = c.full.run(["logits"], c.feeds())[0]
    w, b = c.params["fc.weight"], c.params["fc.bias"]
    np.testing.assert_allclose(logits, c.x @ w.T + b, rtol=1e-12)


# ---------------------------------------------------------------- whole networks
NETWORKS = {
    "lenet5": ("networks/lenet5.net", None, {}),  # its default loss: the MAP criterion (checked below too)
    # ResNet-8 (He et al. §4.2 with n = 1) on 8x8 input: every rule of ResNet-20, a quarter of the work
    "cifar_resnet8": ("networks/cifar_resnet.net", None, {"depth": 8}),
    "small_unet": (
        None,
        """
block double(c) { conv c/3/1/1 -> relu -> conv c/3/1/1 -> relu }
network small_unet {
    input 1x12x12
    d1: double(4)
    p1: maxpool 2
    d2: double(8)
    u1: deconv 4/2/2
    concat(crop=center) { @d1 ; _ }
    double(4)
    conv 2/1
}""",
        {},
    ),
    "inception": (
        None,
        INCEPTION_BLOCK
        + """
network inception_block { input 4x6x6\n inception(2, 2, 3, 1, 2, 2)\n gap -> fc 3 }""",
        {},
    ),
    "se_block": (
        None,
        """
network se {
    input 8x5x5
    conv 8/3/1/1 -> bn -> relu
    mul { _ ; gap -> conv 2/1 -> relu -> conv 8/1 -> sigmoid }
    gap -> fc 3
}""",
        {},
    ),
}


def _network(key):
    from pathlib import Path

    path, text, defines = NETWORKS[key]
    if path:
        small = "3x8x8" if key == "cifar_resnet8" else None
        return load(Path(__file__).resolve().parent.parent / path, defines=defines, input=small)
    return load(text)


# LeNet-5 whole (27 s): its default loss, MAP, is checked in the default run below; cross-entropy
# on its distances with -m slow (cross-entropy's gradient is checked on the other networks here)
@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if k == "lenet5" else k for k in NETWORKS])
def test_network_gradients_match_finite_differences(key):
    errors = Check(_network(key)).errors(samples=4)  # cross-entropy (on −distances for LeNet-5)
    bad = {k: v for k, v in errors.items() if v > TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


@pytest.mark.slow  # the MAP criterion's gradient is checked on a small rbf network above (fast)
def test_lenet5_map_criterion_gradients():
    errors = Check(_network("lenet5"), loss="map").errors(samples=4)
    bad = {k: v for k, v in errors.items() if v > TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


# ---------------------------------------------------------------- one SGD step by hand
def test_one_sgd_step_equals_the_hand_computed_update():
    """fc 3 on a 4-vector, cross-entropy: ∂L/∂W = (softmax(Wx + b) − onehot(y))ᵀ·x / N,
    then v = μ·v + g + λ·W and W' = W − lr·v (PyTorch's SGD), computed here in NumPy."""
    lr, mu, wd = 0.1, 0.9, 0.01
    proto = train_model(load("network n { input 4\n fc 3 }"), dtype="float64", lr=lr, momentum=mu, weight_decay=wd)
    ev = ReferenceEvaluator(proto)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 4)), np.array([0, 2, 1, 2, 0])
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    vw, vb = rng.standard_normal((3, 4)), rng.standard_normal(3)
    out = dict(
        zip(
            [o.name for o in proto.graph.output],
            ev.run(
                None, {"x": x, "y": y, "fc.weight": w, "fc.bias": b, "fc.weight.momentum": vw, "fc.bias.momentum": vb}
            ),
        )
    )

    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[y]
    loss = -np.log(p[np.arange(5), y]).mean()
    gz = (p - onehot) / 5
    gw, gb = gz.T @ x, gz.sum(0)
    vw2, vb2 = mu * vw + gw + wd * w, mu * vb + gb + wd * b
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-12)
    np.testing.assert_allclose(out["fc.weight.momentum.new"], vw2, rtol=1e-12)
    np.testing.assert_allclose(out["fc.bias.momentum.new"], vb2, rtol=1e-12)
    np.testing.assert_allclose(out["fc.weight.new"], w - lr * vw2, rtol=1e-12)
    np.testing.assert_allclose(out["fc.bias.new"], b - lr * vb2, rtol=1e-12)


def test_bn_running_statistics_update():
    """Running mean/var move by momentum towards the batch mean and unbiased variance."""
    proto = train_model(load("network n { input 2x3x3\n bn momentum=0.25\n fc 2 }"), dtype="float64")
    ev = ReferenceEvaluator(proto)
    x = np.random.default_rng(4).standard_normal((4, 2, 3, 3))
    out = dict(zip([o.name for o in proto.graph.output], ev.run(None, {"x": x, "y": np.array([0, 1, 1, 0])})))
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(out["bn.running_mean.new"], 0.75 * 0 + 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(out["bn.running_var.new"], 0.75 * 1 + 0.25 * var, rtol=1e-12)


def _draws_masks(case_id):
    return case_id in ("dropout", "drop_path")


@pytest.mark.parametrize(
    "body", [b for i, b in KINDS if not _draws_masks(i)], ids=[i for i, _ in KINDS if not _draws_masks(i)]
)
def test_onnxruntime_computes_the_same_gradients_in_float32(body):
    """The float32 train graph runs on onnxruntime (default-domain operators only) and its
    gradients agree with the float64 ones of onnx.reference. (Dropout and drop_path draw other masks.)"""
    import onnxruntime as ort

    check = Check(_source(body))
    proto = train_model(load(_source(body)), gradients=True, wrt_input=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in check.feeds().items()}
    names = [o.name for o in sess.get_outputs() if o.name.endswith(".grad")]
    ours = dict(zip(names, sess.run(names, feeds)))
    for name, ref in check.gradients().items():
        scale = max(np.abs(ref).max(), 1e-3)
        assert np.abs(ours[name] - ref).max() / scale < 1e-3, name


def test_drop_path_draws_a_fresh_mask_of_whole_samples_every_step():
    """In training, drop_path zeroes whole samples (here: the gradient of each sample's input is
    all zero or nowhere zero) with probability p, scales the others by 1/(1 − p), and one session
    draws another mask at every step (onnxruntime, the same inputs twice)."""
    import onnxruntime as ort

    model = load("network n {\n input 3x4x4\n drop_path 0.5\n fc 3\n}")
    proto = train_model(model, gradients=True, wrt_input=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((64, 3, 4, 4)).astype(np.float32), "y": rng.integers(0, 3, 64)}
    masks = []
    for _ in range(2):
        (g,) = sess.run(["input.grad"], feeds)
        zero = (g == 0).reshape(64, -1)
        assert (zero.all(axis=1) | ~zero.any(axis=1)).all()  # whole samples
        masks.append(zero.all(axis=1))
    assert 10 < masks[0].sum() < 54 and 10 < masks[1].sum() < 54  # about half of 64 (binomial, p = 0.5)
    assert (masks[0] != masks[1]).any()
    # the kept samples are scaled by 1/(1 − p) = 2, the dropped ones are zeros: logits W·2x + b or b
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    w, b = inits["fc.weight"], inits["fc.bias"]
    g, logits = sess.run(["input.grad", "logits"], feeds)
    kept = ~(g == 0).reshape(64, -1).all(axis=1)
    want = np.where(kept[:, None], 2 * feeds["x"].reshape(64, -1) @ w.T + b, b)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
