"""Every example of LANGUAGE.md (copied verbatim) parses and infers as annotated."""

import pytest
from conftest import INCEPTION_BLOCK

import cnndsl
from cnndsl import CnnError

# LANGUAGE.md §1, verbatim.
ALEXNET = """
# networks/alexnet.net — Krizhevsky et al. 2012, single tower, 227x227 input
network alexnet(classes = 1000) {
    input 3x227x227
    conv1: conv 96/11/4/0 -> relu        # 96x55x55
    pool1: maxpool 3/2                   # 96x27x27
    norm1: lrn 5 alpha=1e-4 beta=0.75 k=2
    conv2: conv 256/5/1/2 -> relu        # 256x27x27
    pool2: maxpool 3/2                   # 256x13x13
    norm2: lrn 5 alpha=1e-4 beta=0.75 k=2
    conv3: conv 384/3/1/1 -> relu
    conv4: conv 384/3/1/1 -> relu
    conv5: conv 256/3/1/1 -> relu        # 256x13x13
    pool5: maxpool 3/2                   # 256x6x6
    fc6: fc 4096 -> relu -> dropout 0.5
    fc7: fc 4096 -> relu -> dropout 0.5
    fc8: fc classes                      # 1000
}
"""


def test_alexnet_example_shapes():
    m = cnndsl.load(ALEXNET)
    shape = {r.name: r.output for r in m.layers}
    # Annotations of LANGUAGE.md §1.
    assert shape["conv1"] == (96, 55, 55)
    assert shape["pool1"] == (96, 27, 27)
    assert shape["conv2"] == (256, 27, 27)
    assert shape["pool2"] == (256, 13, 13)
    assert shape["conv5"] == (256, 13, 13)
    assert shape["pool5"] == (256, 6, 6)
    assert m.outputs == [("output", (1000,))]
    # conv1 by hand: (11·11·3 + 1)·96 parameters, 55·55 positions × 96 × 363 MACs.
    assert m.layer("conv1").params == (11 * 11 * 3 + 1) * 96
    assert m.layer("conv1").macs == 55 * 55 * 96 * 11 * 11 * 3
    assert m.warnings == ()


# LANGUAGE.md §8, verbatim.
LENET5 = """
# networks/lenet5.net — LeCun et al. 1998: 60,000 trainable parameters, 340,908 connections
table c3 = [[0,1,2],[1,2,3],[2,3,4],[3,4,5],[0,4,5],[0,1,5],
            [0,1,2,3],[1,2,3,4],[2,3,4,5],[0,3,4,5],[0,1,4,5],[0,1,2,5],
            [0,1,3,4],[1,2,4,5],[0,2,3,5],[0,1,2,3,4,5]]
network lenet5(classes = 10) {
    input 1x32x32
    C1: conv 6/5 -> scaled_tanh          # 6x28x28   156 params   122,304 connections
    S2: subsample 2 -> scaled_tanh       # 6x14x14    12 params     5,880 connections
    C3: conv 16/5 table=c3 -> scaled_tanh  # 16x10x10 1,516 params 151,600 connections
    S4: subsample 2 -> scaled_tanh       # 16x5x5     32 params     2,000 connections
    C5: conv 120/5 -> scaled_tanh        # 120x1x1 48,120 params
    F6: fc 84 -> scaled_tanh             # 84      10,164 params
    out: rbf classes                     # 10  840 fixed (non-trainable) centres, 840 connections
}
"""


def test_lenet5_example():
    m = cnndsl.load(LENET5)
    expected = {  # name: (shape, trainable params, connections) — LANGUAGE.md §8 comments, LeCun et al. 1998
        "C1": ((6, 28, 28), 156, 122_304),
        "S2": ((6, 14, 14), 12, 5_880),
        "C3": ((16, 10, 10), 1_516, 151_600),
        "S4": ((16, 5, 5), 32, 2_000),
        "C5": ((120, 1, 1), 48_120, 48_120),
        "F6": ((84,), 10_164, 10_164),
        "out": ((10,), 0, 840),
    }
    for name, (shape, params, connections) in expected.items():
        row = m.layer(name)
        assert (row.output, row.trainable_params, row.connections) == (shape, params, connections), name
    assert m.layer("out").params == 840  # fixed centres
    assert m.totals.trainable_params == 60_000
    assert m.totals.connections == 340_908


RESNET50 = """
default conv bias=false
block bottleneck(c, stride = 1) {
    residual {
        conv c/1 -> bn -> relu
        conv c/3/stride/1 -> bn -> relu
        conv (4*c)/1 -> bn
    }
    relu
}
network resnet50(classes = 1000) {          # 25,557,032 parameters (torchvision)
    input 3x224x224
    conv 64/7/2/3 -> bn -> relu
    maxpool 3/2/1
    bottleneck(64) * 3
    bottleneck(128, stride=2) -> bottleneck(128) * 3
    bottleneck(256, stride=2) -> bottleneck(256) * 5
    bottleneck(512, stride=2) -> bottleneck(512) * 2
    gap -> fc classes
}
"""


def test_resnet50_example():
    m = cnndsl.load(RESNET50)
    assert m.totals.trainable_params == 25_557_032  # torchvision resnet50
    assert m.outputs == [("output", (1000,))]
    # -D and --input work on it too: 10 classes, 2048·10 + 10 fc parameters.
    m10 = cnndsl.load(RESNET50, defines={"classes": "10"})
    assert m.totals.trainable_params - m10.totals.trainable_params == (2048 + 1) * (1000 - 10)
    big = cnndsl.load(RESNET50, input="3x512x512")
    assert big.layers[-2].output == (2048, 1, 1)


INCEPTION = (
    INCEPTION_BLOCK
    + """# inception(64, 96, 128, 16, 32, 32) on 192x28x28 gives 256x28x28 (GoogLeNet 3a)
network g { input 192x28x28
    inception(64, 96, 128, 16, 32, 32)
}
"""
)


def test_inception_example():
    m = cnndsl.load(INCEPTION)
    assert m.outputs == [("output", (256, 28, 28))]
    # By hand: 1x1 192·64, 192·96 + 9·96·128, 192·16 + 25·16·32, 192·32, plus biases.
    weights = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    biases = 64 + 96 + 128 + 16 + 32 + 32
    assert m.totals.params == weights + biases


def test_one_by_one_example():
    direct = cnndsl.load("network a { input 192x28x28\n conv 32/5/1/2 }")
    assert direct.totals.macs == 120_422_400  # LANGUAGE.md §8
    reduced = cnndsl.load("network b { input 192x28x28\n conv 16/1 -> conv 32/5/1/2 }")
    assert [r.macs for r in reduced.layers] == [2_408_448, 10_035_200]


def _net(body, shape="64x16x16"):
    return f"network t {{\n    input {shape}\n{body}\n}}\n"


@pytest.mark.parametrize(
    "body, shape, out",
    [
        ("add { _ ; conv 64/3/1/1 }", "64x16x16", (64, 16, 16)),
        ("concat {\n conv 64/1 -> relu\n { conv 96/1 -> relu\n conv 128/3/1/1 -> relu }\n}", "32x16x16", (192, 16, 16)),
        ("mul { _ ; gap -> conv (in.c // 16)/1 -> relu -> conv in.c/1 -> sigmoid }", "64x16x16", (64, 16, 16)),
        (
            "enc4: conv 8/3/1/1\nmaxpool 2 -> upsample 2 -> conv 8/3\nconcat(crop=center) { _ ; @enc4 }",
            "8x16x16",
            (16, 14, 14),
        ),
        ("residual { conv 64/3/1/1 -> bn -> relu ; conv 64/3/1/1 -> bn }", "64x16x16", (64, 16, 16)),
    ],
)
def test_combinator_examples(body, shape, out):
    assert cnndsl.load(_net(body, shape)).outputs[0][1] == out


def test_se_block_parameters():
    m = cnndsl.load(_net("mul { _ ; gap -> conv (in.c // 16)/1 -> relu -> conv in.c/1 -> sigmoid }"))
    # in.c is the mul's input (64) in both convs, even after gap: (64+1)·4 + (4+1)·64.
    assert m.totals.params == (64 + 1) * 4 + (4 + 1) * 64


@pytest.mark.parametrize(
    "call",
    [
        "conv 64/3/2/1",
        "conv(64, 3, 2, 1)",
        "conv (4*k)/3/2/1",
        "conv filters=64 size=3 stride=2 pad=1",
        "conv 64/3x3/2x2/1x1",
    ],
)
def test_argument_forms_are_equivalent(call):
    m = cnndsl.load(f"network t(k = 16) {{\n input 3x32x32\n {call}\n}}")
    row = m.layers[0]
    assert (row.output, row.params) == ((64, 16, 16), (3 * 3 * 3 + 1) * 64)


def test_spatial_ranks_1d_2d_3d():
    one = cnndsl.load("network a { input 2x100\n conv 4/5/2 -> maxpool 2 }")
    assert one.outputs[0][1] == (4, 24)  # floor((100-5)/2)+1 = 48, /2 = 24
    three = cnndsl.load("network b { input 1x16x32x32\n conv 8/3x5x5/1/1x2x2 -> maxpool 2 }")
    assert three.outputs[0][1] == (8, 8, 16, 16)
    assert three.layers[0].params == (3 * 5 * 5 * 1 + 1) * 8


def test_repetition_forms():
    base = "network t(n = 3) {{\n input 8x8x8\n {} \n}}"
    for body in ("conv 8/3/1/1 * 3", "repeat 3 { conv 8/3/1/1 }", "repeat n { conv 8/3/1/1 }", "conv 8/3/1/1 * (n)"):
        m = cnndsl.load(base.format(body))
        assert [r.kind for r in m.layers] == ["conv"] * 3, body
    assert cnndsl.load(base.format("conv 8/3 * 0")).outputs[0][1] == (8, 8, 8)  # N = 0 is the identity


def test_chain_continues_after_arrow_and_semicolons():
    m = cnndsl.load("network t {\n input 3x8x8\n conv 8/3 ->\n    relu ->\n    bn\n}")
    assert [r.kind for r in m.layers] == ["conv", "relu", "bn"]


def test_output_names_several_labels():
    m = cnndsl.load(
        "network t {\n input 3x8x8\n a: conv 4/3\n b: @a -> gap -> fc 10\n c: @a -> conv 2/1\n output b, c\n}"
    )
    assert m.outputs == [("b", (10,)), ("c", (2, 6, 6))]


def test_import_table_and_default(tmp_path):
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "lib.net").write_text(
        "table pairs = [[0, 1], [1, 2]]\nblock cbr(k) {\n conv k/3/1/1 -> bn -> relu\n}\n"
    )
    main = tmp_path / "main.net"
    main.write_text(
        'import "blocks/lib.net"\ndefault conv bias=false\nnetwork n {\n input 3x8x8\n cbr(16)\n conv 2/1 table=pairs\n}\n'
    )
    m = cnndsl.load(main)
    # cbr comes from lib.net, where no default applies: conv keeps its bias.
    assert m.layers[0].params == (3 * 9 + 1) * 16
    # main.net's default applies to its own conv: 2 maps per filter, no bias.
    assert m.layers[3].params == 2 * 2 * 1


def test_defaults_are_scoped_to_the_rest_of_the_body():
    m = cnndsl.load("network t {\n input 3x8x8\n conv 4/1\n default conv bias=false\n conv 4/1\n}")
    assert [r.params for r in m.layers] == [3 * 4 + 4, 4 * 4]


def test_several_networks_need_a_choice():
    text = "network a { input 3x8x8\n relu }\nnetwork b { input 3x8x8\n relu }\n"
    with pytest.raises(CnnError, match="choose one with --network"):
        cnndsl.load(text)
    assert cnndsl.load(text, network="b").name == "b"


def test_spec_diagnostic_example(netfile):
    path = netfile("network n {\n    input 256x3x3\n    conv 256/5\n}\n", "bad.net")
    with pytest.raises(CnnError) as err:
        cnndsl.load(path)
    text = err.value.diagnostic.format()
    assert text == (
        f"{path}:3:5: error: conv 256/5 needs at least 5x5 input, got 256x3x3 (padding 0)\n"
        "        conv 256/5\n"
        "        ^~~~~~~~~~"
    )


def test_stride_that_drops_input_is_a_warning():
    m = cnndsl.load("network t {\n input 1x7x7\n conv 1/3/3\n}")
    assert m.layers[0].output == (1, 2, 2)
    assert len(m.warnings) == 1 and "dropped" in m.warnings[0].message


def test_names_are_unique_across_block_scopes():
    # a labelled chain starting with a block call: the block's conv is x.conv, the chain's must differ
    m = cnndsl.load("block b() {\n conv 8/1\n}\nnetwork n {\n input 3x8x8\n x: b() -> conv 8/1\n}")
    names = [r.name for r in m.layers]
    assert names == ["x.conv", "x.conv_1"]


@pytest.mark.parametrize("call", ["crop 4x5", "crop 4/5", "crop(4, 5)"])
def test_crop_size_forms(call):
    m = cnndsl.load(f"network n {{\n input 3x8x8\n {call}\n}}")
    assert m.outputs[0][1] == (3, 4, 5)
