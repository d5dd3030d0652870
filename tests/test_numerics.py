"""Numerics: what onnxruntime computes from an exported model agrees with the NumPy
references of ``numpy_ref.py`` (written from the language definition, in float64).

Every layer kind has cases in 1, 2 and 3 spatial dimensions where it supports
them; whole networks (LeNet-5, ResNet-18, U-Net) run through ``run_graph``. Every
weight, bias and running statistic is randomised first (the seeded export fills
biases with zeros and batch-norm statistics with 0 and 1, which would hide
mistakes), then loaded with ``to_onnx(weights=...)``.
"""

import numpy as np
import numpy_ref as ref
import onnxruntime as ort
import pytest
from conftest import NETWORKS
from numpy_ref import onnx_weights, run_graph

import cnndsl
from cnndsl.layers import CATALOGUE
from cnndsl.lower.export import to_onnx

RTOL, ATOL = 1e-4, 1e-5  # float32 against float64


def randomised_weights(model, seed=0) -> dict:
    """Every parameter and buffer of the model, randomised by name: random
    initialisations (conv, fc, rbf) are kept, constant fills (biases, scales,
    slopes, running statistics) become random values around them."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    out = {}
    for t in to_onnx(model, seed=seed, check=False).graph.initializer:
        if "/" in t.name:  # a constant of the lowering, not a weight
            continue
        a = numpy_helper.to_array(t)
        suffix = t.name.rsplit(".", 1)[1]
        if suffix == "running_var":
            v = rng.uniform(0.5, 2.0, a.shape)
        elif suffix in ("running_mean", "bias"):
            v = rng.normal(0.0, 0.3, a.shape)
        elif a.size > 1 and a.std() > 0:
            v = a
        elif np.any(a):
            v = a * rng.uniform(0.5, 1.5, a.shape)
        else:
            v = rng.normal(0.0, 0.3, a.shape)
        out[t.name] = np.asarray(v, np.float32)
    return out


def run_both(model, batch=2, scale=1.0, seed=0, check=True):
    """(onnxruntime outputs, reference outputs, exported model) on one random input."""
    proto = to_onnx(model, seed=seed, weights=randomised_weights(model, seed), check=check)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sess = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed + 1)
    x = (rng.standard_normal((batch, *model.graph.input_shape)) * scale).astype(np.float32)
    got = sess.run(None, {"input": x})
    want = run_graph(model, onnx_weights(proto), x.astype(np.float64))
    assert [o.name for o in sess.get_outputs()] == list(want)
    return got, list(want.values()), proto


def net(input_shape: str, body: str, tables: str = "") -> str:
    return f"{tables}\nnetwork n {{\n    input {input_shape}\n    {body}\n}}\n"


# ---------------------------------------------------------------------------
# one table of cases: (input shape, body, input scale)

TABLE_T = "table t = [[0, 2], [1], [0, 1, 2, 3]]"


def case(id, input_shape, body, scale=1.0, tables="", marks=()):
    return pytest.param(input_shape, body, scale, tables, id=id, marks=marks)


CASES = [
    # conv
    case("conv-1d", "3x11", "conv 4/3/2/1"),
    case("conv-2d", "3x9x9", "conv 5/3"),
    case("conv-2d-per-axis", "3x9x8", "conv 4/3x2/2x1/1x0"),
    case("conv-2d-1x7", "3x6x9", "conv 4/1x7/1/0x3"),
    case("conv-2d-same-odd", "3x8x8", "conv 4/3/2/same"),
    case("conv-2d-same-stride1-even-kernel", "3x7x8", "conv 4/4/1/same"),
    case("conv-2d-valid", "3x6x6", "conv 4/3/2/valid"),
    case("conv-2d-dilation", "3x9x10", "conv 4/3/1/2 dilation=2"),
    case("conv-2d-dilation-stride", "3x11x11", "conv 4/3/2/1 dilation=2x3"),
    case("conv-2d-groups", "4x7x7", "conv 6/3/1/1 groups=2"),
    case("conv-2d-depthwise", "4x7x7", "conv 8/3/2/1 groups=4"),
    case("conv-2d-no-bias", "3x6x6", "conv 4/3 bias=false"),
    case("conv-2d-table", "4x7x7", "conv 3/3 table=t", tables=TABLE_T),
    case("conv-1d-table", "4x9", "conv 3/3/2/1 table=t", tables=TABLE_T),
    case("conv-2d-reflect", "3x7x7", "conv 4/3/1/1 pad_mode=reflect"),
    case("conv-2d-reflect-same-odd", "3x7x8", "conv 4/4/1/same pad_mode=reflect"),
    case("conv-2d-replicate", "3x7x6", "conv 4/5/2/2 pad_mode=replicate"),
    case("conv-1d-reflect", "2x9", "conv 3/3/1/2 pad_mode=reflect"),
    case("conv-1d-replicate-same", "2x9", "conv 3/4/2/same pad_mode=replicate"),
    case("conv-3d", "2x5x6x7", "conv 3/3/2/1"),
    case("conv-3d-groups-dilation", "4x6x6x6", "conv 4/3/1/2 groups=2 dilation=2"),
    case("conv-3d-replicate", "2x4x5x4", "conv 3/3/1/1 pad_mode=replicate"),
    case("conv-3d-reflect-same", "2x4x5x6", "conv 3/2/1/same pad_mode=reflect"),
    # deconv
    case("deconv-1d", "3x5", "deconv 4/3/2/1"),
    case("deconv-2d", "3x4x5", "deconv 4/3"),
    case("deconv-2d-stride-outpad-groups", "4x4x5", "deconv 6/3/2/1 outpad=1 groups=2"),
    case("deconv-2d-dilation", "3x4x4", "deconv 3/3/1/0 dilation=2"),
    case("deconv-2d-dilation-stride-outpad", "2x3x4", "deconv 3/3/2/1 dilation=2 outpad=1x0"),
    case("deconv-2d-per-axis-no-bias", "2x4x3", "deconv 3/2x3/2x1/0x1 bias=false"),
    case("deconv-2d-k2s2", "4x3x3", "deconv 2/2/2"),
    case("deconv-3d", "2x3x4x3", "deconv 3/2/2"),
    case("deconv-3d-pad-groups", "4x3x3x3", "deconv 4/3/2/1 groups=4 outpad=1"),
    # pooling
    case("maxpool-1d", "3x9", "maxpool 3/2/1"),
    case("maxpool-2d", "3x8x8", "maxpool 2"),
    case("maxpool-2d-overlap-pad", "3x7x7", "maxpool 3/2/1"),
    case("maxpool-2d-ceil", "3x8x8", "maxpool 3/2 ceil"),
    case("maxpool-2d-ceil-drops-last", "3x4x4", "maxpool 2/3/1 ceil"),
    case("maxpool-2d-same", "3x7x8", "maxpool 3/2/same"),
    case("maxpool-3d-ceil", "2x5x5x5", "maxpool 2/2/0 ceil"),
    case("avgpool-1d", "3x9", "avgpool 3/2/1"),
    case("avgpool-1d-count-pad", "3x9", "avgpool 3/2/1 count_pad"),
    case("avgpool-2d", "3x8x8", "avgpool 2"),
    case("avgpool-2d-pad", "3x7x7", "avgpool 3/2/1"),
    case("avgpool-2d-count-pad", "3x7x7", "avgpool 3/2/1 count_pad"),
    case("avgpool-2d-ceil", "3x8x8", "avgpool 3/2 ceil"),
    case("avgpool-2d-ceil-pad", "3x8x8", "avgpool 3/2/1 ceil"),
    case("avgpool-2d-ceil-count-pad", "3x8x8", "avgpool 3/2/1 ceil count_pad"),
    case("avgpool-2d-ceil-drops-last", "3x4x4", "avgpool 2/3/1 ceil count_pad"),
    case("avgpool-3d", "2x4x6x4", "avgpool 2/2/1 ceil"),
    case("avgpool-3d-ceil-drops-last", "2x5x6x5", "avgpool 2/2/1 ceil"),
    case("gap-1d", "3x7", "gap"),
    case("gap-2d", "3x5x6", "gap"),
    case("gap-3d", "3x3x4x5", "gap"),
    case("gmp-1d", "3x7", "gmp"),
    case("gmp-2d", "3x5x6", "gmp"),
    case("gmp-3d", "3x3x4x5", "gmp"),
    case("adaptive_avgpool-14-to-4", "3x14x14", "adaptive_avgpool 4"),
    case("adaptive_avgpool-7-to-3", "3x7x7", "adaptive_avgpool 3"),
    case("adaptive_avgpool-divides", "3x8x8", "adaptive_avgpool 4"),
    case("adaptive_avgpool-per-axis", "3x7x8", "adaptive_avgpool 3x2"),
    case("adaptive_avgpool-to-1", "3x7x5", "adaptive_avgpool 1x3"),
    case("adaptive_avgpool-1d", "3x10", "adaptive_avgpool 4"),
    case("adaptive_avgpool-3d", "2x5x7x6", "adaptive_avgpool 3x4x2"),
    case("adaptive_maxpool-14-to-4", "3x14x14", "adaptive_maxpool 4"),
    case("adaptive_maxpool-7-to-3", "3x7x7", "adaptive_maxpool 3"),
    case("adaptive_maxpool-divides", "3x8x6", "adaptive_maxpool 4x3"),
    case("adaptive_maxpool-1d", "3x9", "adaptive_maxpool 4"),
    case("adaptive_maxpool-3d", "2x5x7x6", "adaptive_maxpool 2x3x4"),
    case("subsample-1d", "3x9", "subsample 2"),
    case("subsample-2d", "3x8x8", "subsample 2"),
    case("subsample-2d-drops", "3x7x9", "subsample 3"),
    case("subsample-2d-per-axis", "3x8x9", "subsample 2x3"),
    case("subsample-3d", "2x4x4x6", "subsample 2"),
    case("unpool-1d", "3x8", "p: maxpool 2\n unpool of=@p"),
    case("unpool-2d", "3x8x8", "p: maxpool 2\n relu\n unpool of=@p"),
    case("unpool-2d-odd", "3x9x7", "p: maxpool 2\n unpool of=@p"),
    case("unpool-2d-odd-ceil", "3x9x7", "p: maxpool 2/2 ceil\n unpool of=@p"),
    case("unpool-2d-overlap", "3x7x7", "p: maxpool 3/2\n unpool of=@p"),
    case("unpool-2d-padded", "3x7x7", "p: maxpool 3/2/1\n unpool of=@p"),
    case("unpool-1d-padded", "3x8", "p: maxpool 2/2/1\n unpool of=@p"),
    case("unpool-3d", "2x4x5x4", "p: maxpool 2\n unpool of=@p"),
    case("upsample-1d", "3x5", "upsample 3"),
    case("upsample-2d", "3x4x5", "upsample"),
    case("upsample-2d-per-axis", "3x4x5", "upsample 2x3"),
    case("upsample-3d", "2x3x2x4", "upsample 2"),
    case("upsample-linear-1d", "3x6", "upsample 2 mode=linear"),
    case("upsample-linear-2d", "3x4x5", "upsample 2 mode=linear"),
    case("upsample-linear-2d-factor3", "3x4x3", "upsample 3x2 mode=linear"),
    case("upsample-linear-3d", "2x3x4x3", "upsample 2 mode=linear"),
    # normalisation
    case("bn-vector", "6", "bn"),
    case("bn-1d", "4x7", "bn eps=1e-3"),
    case("bn-2d", "4x5x6", "bn"),
    case("bn-3d", "3x3x4x5", "bn"),
    case("lrn-2d", "7x4x5", "lrn 5 alpha=0.5 beta=0.75 k=2", scale=2.0),
    case("lrn-2d-size3", "4x4x5", "lrn 3 alpha=1e-2 beta=0.5 k=1", scale=3.0),
    case("lrn-2d-even-size", "6x4x5", "lrn 4 alpha=0.5 beta=0.75 k=2", scale=2.0),
    case("lrn-1d", "6x9", "lrn 3 alpha=0.5 beta=0.75 k=2", scale=2.0),
    case("lrn-3d", "6x3x4x5", "lrn 5 alpha=0.5 beta=0.75 k=2", scale=2.0),
    case("lrn-within-2d", "3x6x5", "lrn 3 alpha=0.5 beta=0.75 region=within", scale=2.0),
    case("lrn-within-1d", "2x7", "lrn 5 alpha=0.5 beta=0.75 k=2 region=within", scale=2.0),
    case("lcn-1d", "3x12", "lcn 5 sigma=1.5"),
    case("lcn-2d", "3x8x9", "lcn 3"),
    case("lcn-2d-wide", "2x9x9", "lcn 7 sigma=2"),
    case("lcn-3d", "2x4x5x6", "lcn 3 sigma=0.8"),
    case("ln-vector", "6", "ln"),
    case("ln-1d", "4x7", "ln"),
    case("ln-2d", "4x5x6", "ln eps=1e-3"),
    case("ln-3d", "3x3x4x5", "ln"),
    case("ln-over-channels-vector", "6", "ln over=channels"),
    case("ln-over-channels-1d", "4x7", "ln over=channels"),
    case("ln-over-channels-2d", "4x5x6", "ln over=channels eps=1e-3"),
    case("ln-over-channels-3d", "3x3x4x5", "ln over=channels"),
    case("gn-1d", "6x7", "gn 3"),
    case("gn-2d", "8x5x6", "gn 4"),
    case("gn-2d-one-group", "4x5x6", "gn 1"),
    case("gn-3d", "4x3x4x5", "gn 2"),
    case("instnorm-1d", "4x7", "instnorm"),
    case("instnorm-2d", "4x5x6", "instnorm"),
    case("instnorm-3d", "3x3x4x5", "instnorm"),
    # dense
    case("fc-vector", "7", "fc 5"),
    case("fc-2d", "3x4x5", "fc 6"),
    case("fc-3d-no-bias", "2x3x2x4", "fc 4 bias=false"),
    case("rbf", "12", "rbf 5"),
    case("rbf-2d-trainable", "2x3x3", "rbf 4 trainable=true"),
    case("flatten-2d", "3x4x5", "flatten"),
    case("flatten-3d", "2x2x3x4", "flatten"),
    case("softmax-vector", "7", "softmax", scale=3.0),
    case("softmax-2d", "5x3x4", "softmax", scale=3.0),
    case("softmax-1d", "5x6", "softmax", scale=3.0),
    case("dropout", "3x4x5", "dropout 0.3"),
    # activations (scaled so that every piece of every function is exercised)
    case("relu", "3x4x5", "relu"),
    case("relu6", "3x4x5", "relu6", scale=5.0),
    case("sigmoid", "3x4x5", "sigmoid", scale=3.0),
    case("tanh", "3x4x5", "tanh", scale=2.0),
    case("scaled_tanh", "3x4x5", "scaled_tanh", scale=2.0),
    case("abs", "3x4x5", "abs"),
    case("leaky_relu", "3x4x5", "leaky_relu"),
    case("leaky_relu-a", "3x4x5", "leaky_relu 0.2"),
    case("elu", "3x4x5", "elu", scale=2.0),
    case("elu-alpha", "3x4x5", "elu alpha=0.5", scale=2.0),
    case("gelu", "3x4x5", "gelu", scale=2.0),
    case("silu", "3x4x5", "silu", scale=2.0),
    case("hardswish", "3x4x5", "hardswish", scale=4.0),
    case("hardsigmoid", "3x4x5", "hardsigmoid", scale=5.0),
    case("hardsigmoid-keywords", "3x4x5", "hardsigmoid alpha=0.2 beta=0.4", scale=5.0),
    case("softplus", "3x4x5", "softplus", scale=5.0),
    case("softplus-beta", "3x4x5", "softplus beta=2", scale=5.0),
    case("softplus-beta-1d", "3x9", "softplus beta=0.5", scale=5.0),
    case("mish", "3x4x5", "mish", scale=4.0),
    case("power-square", "3x4x5", "power 2 scale=0.5 shift=1", scale=2.0),
    case("power-affine", "2x6", "power scale=-2 shift=0.25"),
    case("power-sqrt", "3x4x4", "power 0.5 shift=10"),
    case("mish-3d", "2x3x4x3", "mish", scale=4.0),
    case("drop_path", "3x4x5", "drop_path 0.3"),
    case("scale", "4x5x6", "scale init=0.5"),
    case("scale-bias-1d", "4x7", "scale bias=true"),
    case("scale-vector", "6", "scale bias=true"),
    case("prelu-vector", "6", "prelu"),
    case("prelu-1d", "4x7", "prelu"),
    case("prelu-2d", "4x5x6", "prelu"),
    case("prelu-3d", "3x3x4x5", "prelu"),
    # rearrangement
    case("crop-1d", "3x9", "crop 5"),
    case("crop-2d", "3x7x8", "crop 4x5"),
    case("crop-2d-offset", "3x7x8", "crop 4x5 offset=2x1"),
    case("crop-1d-offset", "2x9", "crop 5 offset=3"),
    case("crop-2d-center", "3x7x8", "crop 4x5 center"),
    case("crop-2d-center-odd", "3x8x9", "crop 5x4 center"),
    case("crop-3d-center", "2x5x6x7", "crop 2x3x4 center"),
    case("crop-to-label", "3x9x9", "small: conv 4/5\n @small -> relu\n crop to=@small center"),
    case("pad-1d", "3x6", "pad 2"),
    case("pad-2d", "3x4x5", "pad 1x2"),
    case("pad-2d-reflect", "3x4x5", "pad 2 mode=reflect"),
    case("pad-2d-replicate", "3x4x5", "pad 1x3 mode=replicate"),
    case("pad-1d-reflect", "3x6", "pad 3 mode=reflect"),
    case("pad-3d-replicate", "2x3x4x3", "pad 2 mode=replicate"),
    case("pad-3d-reflect", "2x3x4x3", "pad 1 mode=reflect"),
    case("slice-2d", "8x3x4", "slice 2/7"),
    case("slice-vector", "6", "slice 0/3"),
    case("slice-3d", "4x2x3x2", "slice 3/4"),
    case("space_to_depth-2d", "3x4x6", "space_to_depth 2"),
    case("space_to_depth-1d", "3x9", "space_to_depth 3"),
    case("space_to_depth-3d", "2x4x2x6", "space_to_depth 2"),
    # Darknet's [shortcut] across channel counts and strides (pjreddie's resnet50.cfg)
    case("add-fit-more-channels", "3x6x6", "add(fit=first) { conv 5/1 ; _ }"),
    case("add-fit-fewer-channels", "3x6x6", "add(fit=first) { conv 2/1 ; _ }"),
    case("add-fit-stride", "3x6x6", "add(fit=first) { conv 5/3/2/1 ; _ }"),
    case("add-fit-stride-odd", "3x7x7", "add(fit=first) { conv 2/1/2 ; _ }"),
    case("space_to_depth-darknet", "8x4x6", "space_to_depth 2 order=darknet"),
    case("space_to_depth-darknet-3", "9x6x3", "space_to_depth 3 order=darknet"),
    case("shuffle-vector", "12", "shuffle 3"),
    case("shuffle-1d", "6x5", "shuffle 2"),
    case("shuffle-2d", "12x3x4", "shuffle 3"),
    case("shuffle-3d", "8x2x3x2", "shuffle 4"),
    # combinators
    case("add", "4x6x6", "add { _ ; conv 4/3/1/1 ; relu }"),
    case("mul-se", "8x5x5", "mul { _ ; gap -> conv 2/1 -> relu -> conv 8/1 -> sigmoid }"),
    case("mul-1d", "4x9", "mul { _ ; tanh }"),
    case("concat", "3x6x6", "concat { conv 2/1 ; _ ; maxpool 3/1/1 }"),
    case("concat-crop-center", "3x9x9", "concat(crop=center) { _ ; conv 4/3 ; conv 2/5 }"),
    case("residual-identity", "4x6x6", "residual { conv 4/3/1/1 -> bn -> relu ; conv 4/3/1/1 -> bn }"),
    case("residual-auto-projection", "4x7x7", "residual { conv 8/3/2/1 -> bn -> relu ; conv 8/3/1/1 -> bn }"),
    case("residual-conv", "4x6x6", "residual(shortcut=conv) { conv 4/3/1/1 }"),
    case("residual-pad-2d", "4x7x7", "residual(shortcut=pad) { conv 8/3/2/1 -> bn }"),
    case("residual-pad-1d", "3x9", "residual(shortcut=pad) { conv 5/3/2/1 }"),
    case("residual-pad-3d", "2x5x4x5", "residual(shortcut=pad) { conv 4/3/2/1 }"),
    case("residual-pad-stride1", "3x5x5", "residual(shortcut=pad) { conv 6/3/1/1 }"),
]


@pytest.mark.parametrize("input_shape, body, scale, tables", CASES)
def test_layer_numerics(input_shape, body, scale, tables):
    model = cnndsl.load(net(input_shape, body, tables))
    got, want, _ = run_both(model, scale=scale)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("body", ["maxpool 2/3/1 ceil", "avgpool 2/3/1 ceil", "avgpool 2/3/1 ceil count_pad"])
def test_ceil_pooling_dropping_the_last_window_computes_right_unchecked(body):
    """Also without the export's checks: onnxruntime computes the values cnndsl
    promises: 4 wide, F=2, S=3, P=1 gives 2."""
    model = cnndsl.load(net("3x4x4", body))
    assert model.outputs == [("output", (3, 2, 2))]
    got, want, _ = run_both(model, check=False)
    assert got[0].shape == want[0].shape
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL, atol=ATOL)


def test_every_kind_has_a_numerics_case():
    covered = set()
    for param in CASES:
        input_shape, body, _, tables = param.values
        if not param.marks:
            covered |= {node.kind for node in cnndsl.load(net(input_shape, body, tables)).graph.nodes}
    missing = sorted(set(CATALOGUE) - covered)
    assert not missing, f"layer kinds without a passing numerics case: {missing}"


# ---------------------------------------------------------------------------
# the references themselves, against hand-computed values


def test_reference_space_to_depth_against_onnx_reference():
    """The NumPy transcription agrees with onnx.reference's SpaceToDepth (2-D, the only rank
    the operator has), on 2 channels so that the channel order shows."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2)
    graph = helper.make_graph(
        [node],
        "s2d",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, None)],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
    )
    x = np.random.default_rng(5).standard_normal((2, 2, 4, 6))
    (want,) = ReferenceEvaluator(helper.make_model(graph)).run(None, {"x": x})
    np.testing.assert_array_equal(ref.space_to_depth(x, 2), want)
    assert ref.space_to_depth(x, 2)[0, 1, 0, 0] == x[0, 1, 0, 0]  # offset (0, 0), channel 1
    assert ref.space_to_depth(x, 2)[0, 2, 0, 0] == x[0, 0, 0, 1]  # offset (0, 1), channel 0


def test_reference_ln_over_channels_by_the_formula():
    x = np.random.default_rng(6).standard_normal((2, 3, 2, 2))
    g, b = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -1.0])
    y = ref.layer_norm_channels(x, g, b, eps=0.0)
    for n, i, j in np.ndindex(2, 2, 2):
        v = x[n, :, i, j]
        np.testing.assert_allclose(y[n, :, i, j], (v - v.mean()) / v.std() * g + b)


def test_reference_conv_against_a_direct_sum():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)
    y = ref.conv(x, w, b, stride=(2, 1), pad=(1, 0), dilation=(1, 2), groups=2)
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (0, 0)])
    want = np.zeros((2, 6, 4, 4))
    for n in range(2):
        for k in range(6):
            g = k // 3
            for i in range(4):
                for j in range(4):
                    patch = xp[n, 2 * g : 2 * g + 2, 2 * i : 2 * i + 3, j : j + 3 : 2]
                    want[n, k, i, j] = (patch * w[k]).sum() + b[k]
    np.testing.assert_allclose(y, want)


def test_reference_same_padding_puts_the_odd_pixel_at_the_end():
    assert ref.pads_for("same", (8,), (3,), (2,)) == ((0, 1),)
    assert ref.pads_for("same", (7,), (4,), (1,)) == ((1, 2),)
    x = np.arange(5.0).reshape(1, 1, 5)
    # F=2, S=1: one pixel of padding, at the end
    assert ref.conv(x, np.ones((1, 1, 2)), pad="same")[0, 0].tolist() == [1, 3, 5, 7, 4]


@pytest.mark.parametrize("stride, pad, outpad, dilation, groups", [(1, 0, 0, 1, 1), (2, 1, 1, 1, 2), (3, 2, 2, 2, 1)])
def test_reference_deconv_is_the_adjoint_of_conv(stride, pad, outpad, dilation, groups):
    """<conv(x), y> = <x, deconv(y)> with the same weights: a transpose convolution
    is the transpose of the convolution's linear map."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 6 // groups, 3, 2))  # deconv layout (C, K/groups, F...)
    y = rng.standard_normal((2, 4, 4, 5))
    out = ref.deconv(y, w, stride=stride, pad=pad, outpad=outpad, dilation=dilation, groups=groups)
    x = rng.standard_normal(out.shape)
    # the same weights in conv layout: (C_out=4, C_in/groups=6/groups, F...) per group
    cg, kg = 4 // groups, 6 // groups
    wc = np.concatenate([w[g * cg : (g + 1) * cg] for g in range(groups)], axis=0)  # (4, kg, ...)
    assert wc.shape == (4, kg, 3, 2)
    fwd = ref.conv(x, wc, stride=stride, pad=pad, dilation=dilation, groups=groups)
    assert fwd.shape == y.shape
    np.testing.assert_allclose((fwd * y).sum(), (x * out).sum())


def test_reference_small_values():
    x = np.array([[[1.0, 5.0, 2.0, 0.0, 3.0]]])
    y, idx = ref.maxpool(x, 2, ceil=True, indices=True)
    assert y.tolist() == [[[5.0, 2.0, 3.0]]] and idx.tolist() == [[[1, 2, 4]]]
    assert ref.unpool(y, idx, (5,)).tolist() == [[[0.0, 5.0, 2.0, 0.0, 3.0]]]
    assert ref.avgpool(x, 2, pad=1).tolist() == [[[1.0, 3.5, 1.5]]]
    assert ref.avgpool(x, 2, pad=1, count_pad=True).tolist() == [[[0.5, 3.5, 1.5]]]
    np.testing.assert_allclose(ref.upsample(np.array([[[0.0, 1.0]]]), 2, "linear"), [[[0, 0.25, 0.75, 1]]])
    assert ref.upsample(np.array([[[0.0, 1.0]]]), 2).tolist() == [[[0, 0, 1, 1]]]
    assert ref.shuffle(np.arange(6.0).reshape(1, 6), 2).tolist() == [[0, 3, 1, 4, 2, 5]]
    assert ref.pad(x, 2, "reflect").tolist() == [[[2.0, 5.0, 1.0, 5.0, 2.0, 0.0, 3.0, 0.0, 2.0]]]
    assert ref.pad(x, 1, "replicate").tolist() == [[[1.0, 1.0, 5.0, 2.0, 0.0, 3.0, 3.0]]]
    assert ref.crop(x, 3, center=True).tolist() == [[[5.0, 2.0, 0.0]]]
    assert ref.subsample(x, 2, np.array([2.0]), np.array([1.0])).tolist() == [[[13.0, 5.0]]]
    assert ref.rbf(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0], [1.0, 1.0]])).tolist() == [[5.0, 1.0]]
    # lrn size 2 sums channels c and c + 1: (k + alpha/2 · (x_c² + x_{c+1}²))^beta
    c = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(ref.lrn(c, 2, alpha=2.0, beta=1.0, k=1.0), [[1 / 6, 2 / 14, 3 / 10]])
    np.testing.assert_allclose(ref.gelu(np.array([1.0])), [0.8413447460685429])
    # adaptive windows, 5 -> 3: cells [0, 2), [1, 4), [3, 5)
    v = np.array([[[1.0, 5.0, 2.0, 0.0, 3.0]]])
    np.testing.assert_allclose(ref.adaptive_pool(v, 3), [[[3.0, 7 / 3, 1.5]]])
    assert ref.adaptive_pool(v, 3, "max").tolist() == [[[5.0, 5.0, 3.0]]]
    # space_to_depth 2 of one 2x2 map: channel (o_h·2 + o_w)·C + c
    assert ref.space_to_depth(np.arange(4.0).reshape(1, 1, 2, 2), 2).reshape(-1).tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(ref.softplus(np.array([0.0, 800.0])), [np.log(2), 800.0])
    np.testing.assert_allclose(ref.hardsigmoid(np.array([-4.0, 0.0, 1.5, 4.0])), [0, 0.5, 0.75, 1])
    sc = ref.shortcut_pad(np.ones((1, 2, 5, 5)), (2, 2), 3)
    assert sc.shape == (1, 3, 3, 3) and sc[0, :2].all() and not sc[0, 2].any()


# ---------------------------------------------------------------------------
# whole networks


def assert_network_close(got, want):
    for g, w in zip(got, want):
        assert g.shape == w.shape
        scale = max(np.abs(w).max(), 1.0)
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * scale)


def test_lenet5():
    model = cnndsl.load(NETWORKS / "lenet5.net")
    got, want, _ = run_both(model)
    assert got[0].shape == (2, 10)
    assert_network_close(got, want)


def test_resnet18_small_input():
    model = cnndsl.load(NETWORKS / "resnet.net", network="resnet18", input="3x64x64")
    got, want, proto = run_both(model, batch=1)
    assert got[0].shape == (1, 1000)
    assert "layer2.shortcut.weight" in onnx_weights(proto)  # the projection shortcut is exercised
    assert_network_close(got, want)


# A small U-Net (Ronneberger et al. 2015) with valid convolutions: the decoder
# concatenates the centre crop of the encoder maps.
MINI_UNET = """
block double(c) {
    conv c/3 -> relu
    conv c/3 -> relu
}
network mini_unet(classes = 3) {
    input 1x44x44
    enc1: double(4)
    maxpool 2
    enc2: double(8)
    maxpool 2
    double(16)
    deconv 8/2/2
    concat(crop=center) { @enc2 ; _ }
    double(8)
    deconv 4/2/2
    concat(crop=center) { @enc1 ; _ }
    double(4)
    conv classes/1
}
"""


def test_mini_unet():
    model = cnndsl.load(MINI_UNET)
    assert model.outputs == [("output", (3, 4, 4))]
    assert any(node.kind == "crop" for node in model.graph.nodes)
    got, want, _ = run_both(model)
    assert_network_close(got, want)


def _smallest_valid_input(path, network=None):
    """The smallest square (cubic) input size at which every crop and window of the
    network fits, keeping the channels and rank of its declared input."""
    declared = cnndsl.load(path, network=network).graph.input_shape
    c, rank = declared[0], len(declared) - 1
    for size in range(8, max(declared[1:]) + 1):
        try:
            return cnndsl.load(path, network=network, input="x".join(map(str, (c,) + (size,) * rank)))
        except cnndsl.CnnError:
            continue
    return cnndsl.load(path, network=network)


@pytest.mark.skipif(not (NETWORKS / "unet.net").exists(), reason="networks/unet.net not written yet")
def test_unet_from_networks():
    path = NETWORKS / "unet.net"
    for name in cnndsl.load_module(path).networks:
        model = _smallest_valid_input(path, name)
        got, want, _ = run_both(model, batch=1)
        assert_network_close(got, want)


def test_mish_at_opset_18_is_the_mish_operator():
    """Opset 17 composes x·tanh(softplus(x)); from 18 the Mish operator computes the same."""
    model = cnndsl.load(net("3x4x5", "mish"))
    proto = to_onnx(model, opset=18)
    assert [n.op_type for n in proto.graph.node] == ["Mish", "Identity"]  # (the Identity names the output)
    assert {n.op_type for n in to_onnx(model).graph.node} == {"Softplus", "Tanh", "Mul", "Identity"}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(2).standard_normal((2, 3, 4, 5)) * 4).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], ref.mish(x.astype(np.float64)), rtol=RTOL, atol=ATOL)


def test_darknet_reorg_is_not_onnx_order():
    """YOLOv2's [reorg]: the same shape as SpaceToDepth, other values (so a keyword of its own).
    On a 4x2x2 input, Darknet's output channel 1 is input channel 1's first row read on:
    out (16x1x1) = in' (1x4x4) blocks, in' the buffer 0..15 read as one 4x4 map."""
    x = np.arange(16.0).reshape(1, 4, 2, 2)
    dark = ref.reorg_darknet(x, 2).reshape(-1).tolist()
    assert dark == [0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15]
    assert dark != ref.space_to_depth(x, 2).reshape(-1).tolist()
