"""The networks of networks/ against their published figures.

Every expected number is either quoted from its source (named in the comment
next to it) or computed by hand in this file from the architecture as the paper
describes it (the small helpers below are plain arithmetic, independent of
cnndsl). No expected number was copied from cnndsl's output.
"""

import functools
import math
import re

import pytest
from conftest import NETWORKS, run_cli

import cnndsl


@functools.cache
def _load(file, network, defines):
    return cnndsl.load(NETWORKS / file, network=network, defines=dict(defines) or None)


def load(file, network=None, **defines):
    return _load(file, network, tuple(sorted(defines.items())))


def shape(model, name):
    return model.layer(name).output


def scope_sum(model, prefix, field="params", kind=None):
    """Sum a field over the layers whose name starts with `prefix.` (a block instance)."""
    return sum(
        getattr(row, field)
        for row in model.layers
        if row.name.startswith(prefix + ".") and (kind is None or row.kind == kind)
    )


# Hand-computation helpers: parameters of one layer, n spatial axes.
def conv_p(cin, cout, f, n=2, bias=True):
    return f**n * cin * cout + (cout if bias else 0)


def fc_p(nin, nout):
    return nin * nout + nout


# VGG-16, configuration D of Simonyan & Zisserman 2014 table 1: (filters, convolutions) per stage.
VGG16_STAGES = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def vgg16_conv_params():
    """The 13 3x3 convolutions of VGG-16, with bias."""
    total, cin = 0, 3
    for c, n in VGG16_STAGES:
        for _ in range(n):
            total += conv_p(cin, c, 3)
            cin = c
    return total


# --------------------------------------------------------------------------- LeNet-5


def test_lenet5():
    m = load("lenet5.net")
    # LeCun et al. 1998 §II.B, also the comments of LANGUAGE.md §8:
    # name: (output shape, trainable params, connections)
    expected = {
        "C1": ((6, 28, 28), 156, 122_304),
        "S2": ((6, 14, 14), 12, 5_880),
        "C3": ((16, 10, 10), 1_516, 151_600),
        "S4": ((16, 5, 5), 32, 2_000),
        "C5": ((120, 1, 1), 48_120, 48_120),  # paper: "48,120 trainable connections" (1x1 output)
        "F6": ((84,), 10_164, 10_164),  # paper: "10,164 trainable parameters"
        "out": ((10,), 0, 840),  # LANGUAGE.md §8: 840 fixed centres, 840 connections
    }
    for name, (shp, trainable, connections) in expected.items():
        row = m.layer(name)
        assert (row.output, row.trainable_params, row.connections) == (shp, trainable, connections), name
    assert m.layer("out").params == 840  # 84 · 10 fixed (non-trainable) RBF centres, LANGUAGE.md §8
    assert m.totals.trainable_params == 60_000  # LeCun et al. 1998: 60,000 trainable parameters
    assert m.totals.connections == 340_908  # LeCun et al. 1998: 340,908 connections
    assert m.outputs == [("output", (10,))]


# --------------------------------------------------------------------------- AlexNet


def test_alexnet_shapes():
    m = load("alexnet.net", "alexnet")
    # LANGUAGE.md §1 annotations (Krizhevsky et al. 2012, figure 2).
    assert shape(m, "conv1") == (96, 55, 55)
    assert shape(m, "pool1") == (96, 27, 27)
    assert shape(m, "conv2") == (256, 27, 27)
    assert shape(m, "pool2") == (256, 13, 13)
    assert shape(m, "conv5") == (256, 13, 13)
    assert shape(m, "pool5") == (256, 6, 6)
    assert m.outputs == [("output", (1000,))]


def test_alexnet_torchvision():
    m = load("alexnet.net", "alexnet_tv")
    assert m.totals.trainable_params == 61_100_840  # torchvision AlexNet_Weights: 61,100,840 params
    # torchvision: 0.71 GFLOPS. Exact, by hand (positions × K × F·F·C):
    #   conv1 55²·64·11²·3 = 70,276,800      conv2 27²·192·5²·64 = 223,948,800
    #   conv3 13²·384·3²·192 = 112,140,288   conv4 13²·256·3²·384 = 149,520,384
    #   conv5 13²·256·3²·256 = 99,680,256    fc6 9216·4096 = 37,748,736
    #   fc7 4096·4096 = 16,777,216           fc8 4096·1000 = 4,096,000
    #   sum = 714,188,480
    assert m.totals.macs == 714_188_480


# --------------------------------------------------------------------------- ResNet


@pytest.mark.parametrize(
    "network, params",
    [
        # torchvision ResNet*_Weights.IMAGENET1K_V1 "num_params"
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
    ],
)
def test_resnet_params(network, params):
    m = load("resnet.net", network)
    assert m.totals.trainable_params == params
    assert m.outputs == [("output", (1000,))]


def resnet50_macs_by_hand():
    """He et al. 2015 table 1, torchvision layout (stride on the 3x3, projection on the first block)."""
    macs = 112 * 112 * 64 * 7 * 7 * 3  # conv1 7x7/2 at 112x112
    c_in, s = 64, 56  # after the 3x3/2 max pool
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            st = stride if i == 0 else 1
            s_out = s // st
            macs += s * s * width * c_in  # 1x1 reduce, at the input size
            macs += s_out * s_out * width * 9 * width  # 3x3, strided
            macs += s_out * s_out * 4 * width * width  # 1x1 expand
            if i == 0:
                macs += s_out * s_out * 4 * width * c_in  # 1x1 projection shortcut
            c_in, s = 4 * width, s_out
    return macs + 2048 * 1000  # fc


def test_resnet50_macs():
    # torchvision: 4.09 GFLOPS; exact by hand (resnet50_macs_by_hand) 4,089,184,256.
    assert resnet50_macs_by_hand() == 4_089_184_256
    assert load("resnet.net", "resnet50").totals.macs == 4_089_184_256


# --------------------------------------------------------------------------- VGG-16


def test_vgg16():
    m = load("vgg16.net", "vgg16")
    assert m.totals.trainable_params == 138_357_544  # torchvision VGG16_Weights: 138,357,544 params
    assert m.totals.non_trainable_params == 0
    # By hand: 13 convs 14,714,688 + fc6 (25088+1)·4096 + fc7 (4096+1)·4096 + fc8 (4096+1)·1000.
    assert vgg16_conv_params() + fc_p(25088, 4096) + fc_p(4096, 4096) + fc_p(4096, 1000) == 138_357_544
    # torchvision: 15.47 GFLOPS. By hand (positions × K × 9·C):
    #   conv1_1 224²·64·27 = 86,704,128; conv1_2, conv2_2, conv3_2, conv3_3, conv4_2, conv4_3
    #   each 1,849,688,064 (224²·64·576 = 112²·128·1152 = ...), six: 11,098,128,384;
    #   conv2_1, conv3_1, conv4_1 each 924,844,032, three: 2,774,532,096;
    #   conv5_x 14²·512·4608 = 462,422,016, three: 1,387,266,048;
    #   fc 25088·4096 + 4096·4096 + 4096·1000 = 123,633,664
    #   total 15,470,264,320
    assert m.totals.macs == 15_470_264_320
    assert shape(m, "stage5.maxpool") == (512, 7, 7)
    # Receptive field by hand, rf += (F-1)·jump: 3,5 | pool 6 (jump 2) | 10,14 | 16 (4) |
    # 24,32,40 | 44 (8) | 60,76,92 | 100 (16) | 132,164,196 | pool5 212.
    assert m.layer("stage5.maxpool").receptive_field == (212, 212)
    assert m.outputs == [("output", (1000,))]


def test_vgg16_bn():
    m = load("vgg16.net", "vgg16_bn")
    assert m.totals.trainable_params == 138_365_992  # torchvision VGG16_BN_Weights: 138,365,992 params
    # By hand: 2·(2·64 + 2·128 + 3·256 + 6·512) = 8,448 BN running statistics.
    assert m.totals.non_trainable_params == 8_448
    assert m.totals.macs == 15_470_264_320  # BN adds no MACs (same hand sum as vgg16)


# --------------------------------------------------------------------------- GoogLeNet


def test_googlenet_table1_shapes():
    m = load("googlenet.net")
    # Szegedy et al. 2014, table 1 (output size column, as CxHxW).
    assert shape(m, "conv1") == (64, 112, 112)
    assert shape(m, "pool1") == (64, 56, 56)
    assert shape(m, "conv2") == (192, 56, 56)
    assert shape(m, "pool2") == (192, 28, 28)
    table1 = {
        "i3a": (256, 28, 28),
        "i3b": (480, 28, 28),
        "i4a": (512, 14, 14),
        "i4b": (512, 14, 14),
        "i4c": (512, 14, 14),
        "i4d": (528, 14, 14),
        "i4e": (832, 14, 14),
        "i5a": (832, 7, 7),
        "i5b": (1024, 7, 7),
    }
    for name, shp in table1.items():
        assert shape(m, f"{name}.concat") == shp, name
    assert shape(m, "pool3") == (480, 14, 14)
    assert shape(m, "pool4") == (832, 7, 7)
    assert shape(m, "pool5") == (1024, 1, 1)
    # Figure 3: LocalRespNorm after the first max pool and after the 3x3 convolution.
    assert m.layer("norm1").kind == "lrn" and m.layer("norm2").kind == "lrn"
    assert m.warnings == ()


def test_googlenet_outputs_and_aux():
    m = load("googlenet.net")
    # Table 1: linear 1000; section 5: two auxiliary classifiers, each a 1000-way linear layer.
    assert m.outputs == [("main", (1000,)), ("aux1", (1000,)), ("aux2", (1000,))]
    # Section 5: "an 4×4×512 output for the (4a), and 4×4×528 for the (4d) stage".
    assert shape(m, "aux1.avgpool") == (512, 4, 4)
    assert shape(m, "aux2.avgpool") == (528, 4, 4)
    # By hand: conv 1x1 128 + fc 1024 + fc 1000, with biases.
    aux1 = conv_p(512, 128, 1) + fc_p(128 * 4 * 4, 1024) + fc_p(1024, 1000)  # 3,188,840
    aux2 = conv_p(528, 128, 1) + fc_p(128 * 4 * 4, 1024) + fc_p(1024, 1000)  # 3,190,888
    assert scope_sum(m, "aux1") == aux1
    assert scope_sum(m, "aux2") == aux2


def test_googlenet_inception_3a_cost():
    m = load("googlenet.net")
    # By hand, weights of 3a on 192 channels: 192·64 + 192·96 + 9·96·128 + 192·16 + 25·16·32 + 192·32
    # = 163,328 (table 1: "159K" = 163,328 / 1024 = 159.5) and × 28·28 = 128,049,152 MACs (table 1: "128M").
    weights = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    assert weights == 163_328
    assert scope_sum(m, "i3a", "macs") == weights * 28 * 28 == 128_049_152
    assert round(scope_sum(m, "i3a", "macs") / 1e6) == 128  # table 1, ops column
    assert int(weights / 1024) == 159  # table 1, params column
    biases = 64 + 96 + 128 + 16 + 32 + 32
    assert scope_sum(m, "i3a") == weights + biases


# --------------------------------------------------------------------------- DenseNet-121


def densenet121_by_hand():
    """(trainable params, MACs) of torchvision's DenseNet-121, layer by layer."""
    params = conv_p(3, 64, 7, bias=False) + 2 * 64  # conv0 + norm0
    macs = 112 * 112 * 64 * 7 * 7 * 3
    c, s = 64, 56
    for i, n in enumerate([6, 12, 24, 16]):
        for _ in range(n):  # bn, conv 1x1 128, bn, conv 3x3 32
            params += 2 * c + c * 128 + 2 * 128 + 9 * 128 * 32
            macs += s * s * (c * 128 + 9 * 128 * 32)
            c += 32
        if i < 3:  # transition: bn, conv 1x1 c/2 (at size s), avgpool 2/2
            params += 2 * c + c * (c // 2)
            macs += s * s * c * (c // 2)
            c, s = c // 2, s // 2
    params += 2 * c + fc_p(c, 1000)  # norm5 + classifier
    macs += c * 1000
    return params, macs


def test_densenet121():
    m = load("densenet121.net")
    assert densenet121_by_hand() == (7_978_856, 2_834_161_664)
    assert m.totals.trainable_params == 7_978_856  # torchvision DenseNet121_Weights: 7,978,856 params
    assert m.totals.macs == 2_834_161_664  # torchvision: 2.83 GFLOPS; exact by densenet121_by_hand
    # Huang et al. 2017 table 1: output sizes 56, 28, 14, 7; channels by hand:
    # 64 + 6·32 = 256 -> 128; 128 + 12·32 = 512 -> 256; 256 + 24·32 = 1024 -> 512; 512 + 16·32 = 1024.
    assert shape(m, "pool0") == (64, 56, 56)
    assert shape(m, "block1.dense_layer_5.concat") == (256, 56, 56)
    assert shape(m, "trans1.avgpool") == (128, 28, 28)
    assert shape(m, "block2.dense_layer_11.concat") == (512, 28, 28)
    assert shape(m, "trans2.avgpool") == (256, 14, 14)
    assert shape(m, "block3.dense_layer_23.concat") == (1024, 14, 14)
    assert shape(m, "trans3.avgpool") == (512, 7, 7)
    assert shape(m, "block4.dense_layer_15.concat") == (1024, 7, 7)
    assert m.outputs == [("output", (1000,))]


# --------------------------------------------------------------------------- CIFAR ResNet


def cifar_resnet_by_hand(depth):
    """He et al. 2015 §4.2, convs without bias + bn (2C trainable), option A shortcuts (0 params)."""
    n = (depth - 2) // 6
    total = conv_p(3, 16, 3, bias=False) + 2 * 16  # first conv + bn
    cin = 16
    for c in (16, 32, 64):
        for _ in range(2 * n):
            total += conv_p(cin, c, 3, bias=False) + 2 * c
            cin = c
    return total + fc_p(64, 10)


def test_cifar_resnet20():
    m = load("cifar_resnet.net")
    # By hand: 432 + 32 (conv1, bn) + 6·(2304 + 32) (stage 1) + (4608 + 5·9216 + 6·64) (stage 2)
    #        + (18432 + 5·36864 + 6·128) (stage 3) + 650 (fc)
    #        = 464 + 14,016 + 51,072 + 203,520 + 650 = 269,722  (table 6: ResNet-20 "0.27M")
    assert cifar_resnet_by_hand(20) == 269_722
    assert m.totals.trainable_params == 269_722
    assert round(m.totals.trainable_params / 1e6, 2) == 0.27  # He et al. 2015 table 6
    assert shape(m, "conv1") == (16, 32, 32)
    assert shape(m, "stage1.basic_2.relu_1") == (16, 32, 32)  # §4.2: maps of 32, 16, 8
    assert shape(m, "stage2.basic_2.relu_1") == (32, 16, 16)
    assert shape(m, "stage3.basic_2.relu_1") == (64, 8, 8)
    # Option A: two shape-changing shortcuts, both parameter-free.
    pads = [row for row in m.layers if row.name.endswith("shortcut")]
    assert [row.output for row in pads] == [(32, 16, 16), (64, 8, 8)]
    assert all(row.params == 0 for row in pads)
    assert m.outputs == [("output", (10,))]


@pytest.mark.parametrize(
    "depth, exact, published",
    [
        # exact: cifar_resnet_by_hand; for 56 written out: 464 + 18·2,336 (42,048)
        #   + (4,608 + 17·9,216 + 18·64 = 162,432) + (18,432 + 17·36,864 + 18·128 = 647,424) + 650
        #   = 853,018.  published: He et al. 2015 table 6 (in millions).
        (32, 464_154, 0.46),
        (44, 658_586, 0.66),
        (56, 853_018, 0.85),
        (110, 1_727_962, 1.7),
    ],
)
def test_cifar_resnet_depths(depth, exact, published):
    assert cifar_resnet_by_hand(depth) == exact
    m = load("cifar_resnet.net", depth=str(depth))
    assert m.totals.trainable_params == exact
    digits = len(str(published).split(".")[1])
    assert round(exact / 1e6, digits) == published


# --------------------------------------------------------------------------- FCN-32s


def test_fcn32s():
    m = load("fcn32s.net")
    # By hand: VGG-16 convs 14,714,688 + fc6 as conv 7x7 (7·7·512·4096 + 4096 = 102,764,544)
    # + fc7 as conv 1x1 (4096·4096 + 4096 = 16,781,312) + score 1x1 (4096·21 + 21 = 86,037)
    # = 134,346,581 (Long et al. 2015 table 1: FCN-VGG16 "134M" parameters);
    # upscore deconv 64x64, no bias: 21·21·64·64 = 1,806,336 (fixed bilinear weights in the reference model).
    net = vgg16_conv_params() + conv_p(512, 4096, 7) + conv_p(4096, 4096, 1) + conv_p(4096, 21, 1)
    assert vgg16_conv_params() == 14_714_688
    assert net == 134_346_581
    assert round(net / 1e6) == 134
    upscore = 21 * 21 * 64 * 64
    assert upscore == 1_806_336
    assert m.layer("upscore").params == upscore
    assert m.layer("upscore").trainable_params == 0  # trainable=false: fixed upsampling
    assert m.totals.trainable_params == net
    assert m.totals.params == net + upscore
    # Shapes by hand for 500x500: conv1_1 pad 100 -> 698; Caffe-rounded pools 349, 175, 88, 44, 22;
    # fc6 7x7 -> 16; deconv (16-1)·32 + 64 = 544; crop -> 500.
    assert shape(m, "conv1_1") == (64, 698, 698)
    assert shape(m, "stage5.maxpool") == (512, 22, 22)
    assert shape(m, "fc6") == (4096, 16, 16)
    assert shape(m, "score_fr") == (21, 16, 16)
    assert shape(m, "upscore") == (21, 544, 544)
    assert m.outputs == [("output", (21, 500, 500))]


# --------------------------------------------------------------------------- SegNet


def test_segnet():
    m = load("segnet.net")
    # Encoder: the 13 VGG-16 convolutions, by hand 14,714,688
    # (Badrinarayanan et al. §3: "from 134M to 14.7M" trainable parameters).
    encoder_convs = sum(row.params for row in m.layers if row.kind == "conv" and re.match(r"enc\d\.", row.name))
    assert vgg16_conv_params() == 14_714_688
    assert encoder_convs == 14_714_688
    assert round(encoder_convs / 1e6, 1) == 14.7
    # Decoder by hand: 3·conv(512,512) | 2·conv(512,512) + conv(512,256) | 2·conv(256,256) + conv(256,128)
    # | conv(128,128) + conv(128,64) | conv(64,64) | classifier conv(64,11); bn (2C trainable) after every
    # conv but the classifier: encoder 2·4224, decoder 2·3712.
    decoder = (
        5 * conv_p(512, 512, 3)
        + conv_p(512, 256, 3)
        + 2 * conv_p(256, 256, 3)
        + conv_p(256, 128, 3)
        + conv_p(128, 128, 3)
        + conv_p(128, 64, 3)
        + conv_p(64, 64, 3)
        + conv_p(64, 11, 3)
    )
    assert m.totals.trainable_params == 14_714_688 + 2 * 4224 + decoder + 2 * 3712 == 29_449_355
    # Shapes by hand (2x2/2 pools rounding up as Caffe does; unpool restores the pool's input shape).
    pools = {
        "pool1": (64, 180, 240),
        "pool2": (128, 90, 120),
        "pool3": (256, 45, 60),
        "pool4": (512, 23, 30),
        "pool5": (512, 12, 15),
    }
    unpools = {
        "unpool5": (512, 23, 30),
        "unpool4": (512, 45, 60),
        "unpool3": (256, 90, 120),
        "unpool2": (128, 180, 240),
        "unpool1": (64, 360, 480),
    }
    for name, shp in {**pools, **unpools}.items():
        assert shape(m, name) == shp, name
    assert m.outputs == [("output", (11, 360, 480))]  # classes x 360 x 480 (CamVid, paper §4)
    assert m.warnings == ()


# --------------------------------------------------------------------------- U-Net


def test_unet():
    m = load("unet.net")
    # Ronneberger et al. 2015 figure 1: the sizes of every map.
    expected = {
        "enc1.conv": (64, 570, 570),
        "enc1.conv_1": (64, 568, 568),
        "maxpool": (64, 284, 284),
        "enc2.conv_1": (128, 280, 280),
        "maxpool_1": (128, 140, 140),
        "enc3.conv_1": (256, 136, 136),
        "maxpool_2": (256, 68, 68),
        "enc4.conv_1": (512, 64, 64),
        "maxpool_3": (512, 32, 32),
        "bottom.conv": (1024, 30, 30),
        "bottom.conv_1": (1024, 28, 28),
        "up4": (512, 56, 56),
        "concat": (1024, 56, 56),
        "dec4.conv_1": (512, 52, 52),
        "up3": (256, 104, 104),
        "concat_1": (512, 104, 104),
        "dec3.conv_1": (256, 100, 100),
        "up2": (128, 200, 200),
        "concat_2": (256, 200, 200),
        "dec2.conv_1": (128, 196, 196),
        "up1": (64, 392, 392),
        "concat_3": (128, 392, 392),
        "dec1.conv_1": (64, 388, 388),
    }
    for name, shp in expected.items():
        assert shape(m, name) == shp, name
    assert m.outputs == [("output", (2, 388, 388))]  # figure 1: output segmentation map 388x388x2
    # Parameters by hand: contracting path, expansive path (up-conv 2x2: 2c·c·4 + c), 1x1 output.
    contracting, cin = 0, 1
    for c in (64, 128, 256, 512, 1024):
        contracting += conv_p(cin, c, 3) + conv_p(c, c, 3)
        cin = c
    expansive = sum(conv_p(2 * c, c, 2) + conv_p(2 * c, c, 3) + conv_p(c, c, 3) for c in (512, 256, 128, 64))
    assert contracting + expansive + conv_p(64, 2, 1) == 31_030_658
    assert m.totals.trainable_params == 31_030_658


# --------------------------------------------------------------------------- V-Net


def test_vnet():
    m = load("vnet.net")
    # Milletari et al. 2016 figure 2: 16 channels at 128x128x64, 32 at 64x64x32, 64 at 32x32x16,
    # 128 at 16x16x8, 256 at 8x8x4; the decompression path mirrors it; 2 output channels.
    assert shape(m, "enc1.prelu") == (16, 128, 128, 64)
    assert shape(m, "enc2.residual") == (32, 64, 64, 32)
    assert shape(m, "enc3.residual") == (64, 32, 32, 16)
    assert shape(m, "enc4.residual") == (128, 16, 16, 8)
    assert shape(m, "bottom.residual") == (256, 8, 8, 4)
    assert shape(m, "dec4.residual") == (256, 16, 16, 8)
    assert shape(m, "dec3.residual") == (128, 32, 32, 16)
    assert shape(m, "dec2.residual") == (64, 64, 64, 32)
    assert shape(m, "dec1.residual") == (32, 128, 128, 64)
    assert m.outputs == [("output", (2, 128, 128, 64))]

    # Parameters by hand: 5x5x5 convs with bias, 2x2x2 down convs and up deconvs with bias,
    # one PReLU slope per channel after every conv / deconv.
    def conv5(cin, c):
        return conv_p(cin, c, 5, n=3) + c

    def stage(c, n):
        return n * conv5(c, c)

    def two(cin, c):  # 2x2x2 down convolution or up deconvolution (same count) + PReLU
        return conv_p(cin, c, 2, n=3) + c

    total = (
        conv5(1, 16)
        + two(16, 32)
        + stage(32, 2)
        + two(32, 64)
        + stage(64, 3)
        + two(64, 128)
        + stage(128, 3)
        + two(128, 256)
        + stage(256, 3)
        + two(256, 128)
        + stage(256, 3)
        + two(256, 64)
        + stage(128, 3)
        + two(128, 32)
        + stage(64, 2)
        + two(64, 16)
        + stage(32, 1)
        + conv_p(32, 2, 1, n=3)
    )
    assert total == 65_175_314
    assert m.totals.trainable_params == total
    assert m.warnings == ()


# --------------------------------------------------------------------------- 1x1 convolutions


def test_onebyone():
    # LANGUAGE.md §8; by hand 28·28·32·5·5·192 = 120,422,400.
    direct = load("onebyone.net", "direct")
    assert direct.totals.macs == 120_422_400
    assert direct.outputs == [("output", (32, 28, 28))]
    # 28·28·16·192 = 2,408,448 and 28·28·32·5·5·16 = 10,035,200.
    m = load("onebyone.net", "bottleneck")
    assert m.layer("reduce").macs == 2_408_448
    assert m.layer("conv5x5").macs == 10_035_200
    assert m.totals.macs == 2_408_448 + 10_035_200
    assert m.outputs == [("output", (32, 28, 28))]


# --------------------------------------------------------------------------- torchvision's mobile and modern networks
#
# Parameters: torchvision's weights metadata "num_params" (torchvision/models/*.py, the
# *_Weights enums) where a configuration has weights; otherwise, and for every exact MACs value,
# counted from torchvision 0.29.1 itself (torch 2.14.1) by tests/torchvision_figures.py:
# sum(p.numel() for p in model.parameters()), and forward hooks on Conv2d and Linear at the
# model's default input size (the weights' crop_size), batch 1. Each MACs value rounds to the
# metadata's "_ops" GFLOPS (the same convention: weight multiply-accumulates only), checked below.
# tests/test_torchvision.py runs the files against torchvision with the same weights.


def kind_attrs(model, kind, key):
    """The canonical argument `key` of every layer of `kind`, in order."""
    return [node.attrs[key] for node in model.graph.nodes if node.kind == kind]


def check_torchvision(m, params, macs, ops, classes=1000):
    assert m.totals.trainable_params == params
    assert m.totals.macs == macs
    if ops is not None:
        assert round(macs / 1e9, 3) == ops  # the metadata's _ops, GFLOPS
    assert m.outputs == [("output", (classes,))]


# The text of LANGUAGE.md §10.1, which mobilenet_v3.net and efficientnet.net must use as it is.
MAKE_DIVISIBLE = """fn make_divisible(v, d = 8) {            # torchvision's _make_divisible, exactly
    let n = max(d, int(v + d / 2) // d * d)
    n + d if n < 0.9 * v else n
}"""


@pytest.mark.parametrize(
    "network, width, params, macs, ops",
    [
        # MobileNet_V3_Large_Weights: num_params 5,483,032, _ops 0.217
        ("mobilenet_v3_large", 1.0, 5_483_032, 216_589_760, 0.217),
        # mobilenet_v3_large(width_mult=0.75): no weights; both counted from torchvision
        ("mobilenet_v3_large", 0.75, 3_377_576, 140_033_816, None),
        # MobileNet_V3_Small_Weights: num_params 2,542,856, _ops 0.057
        ("mobilenet_v3_small", 1.0, 2_542_856, 56_510_400, 0.057),
        # mobilenet_v3_small(width_mult=0.75): counted from torchvision
        ("mobilenet_v3_small", 0.75, 1_653_920, 39_115_576, None),
    ],
)
def test_mobilenet_v3(network, width, params, macs, ops):
    check_torchvision(load("mobilenet_v3.net", network, width=width), params, macs, ops)


def test_mobilenet_v3_structure():
    assert MAKE_DIVISIBLE in (NETWORKS / "mobilenet_v3.net").read_text()
    for network, se_blocks in [("mobilenet_v3_large", 8), ("mobilenet_v3_small", 9)]:
        m = load("mobilenet_v3.net", network)
        kinds = [row.kind for row in m.layers]
        # Howard et al. 2019 tables 1 and 2: the rows with SE (large 8 of 15, small 9 of 11), each gated
        # by a hard sigmoid.
        assert kinds.count("hardsigmoid") == se_blocks
        # Convolutions by hand: stem + last 1x1, per block a depthwise and a projection, two in each SE,
        # and the 1x1 expansions: every block but large's first (16 -> 16) and small's first (16 -> 16).
        blocks = {"mobilenet_v3_large": 15, "mobilenet_v3_small": 11}[network]
        assert kinds.count("conv") == 2 + 2 * blocks + 2 * se_blocks + (blocks - 1)
        assert m.layer("conv").output == (16, 112, 112)
    # -D classes
    assert load("mobilenet_v3.net", "mobilenet_v3_small", classes=10).outputs == [("output", (10,))]


# EfficientNet_B*_Weights (IMAGENET1K_V1): num_params and _ops at the weights' crop size;
# exact MACs counted from torchvision at that size. width, depth, dropout: _efficientnet_conf and
# the efficientnet_b* builders.
EFFICIENTNETS = [
    ("b0", 1.0, 1.0, 0.2, 224, 5_288_548, 385_814_752, 0.386),
    ("b1", 1.0, 1.1, 0.2, 240, 7_794_184, 686_802_832, 0.687),
    ("b2", 1.1, 1.2, 0.3, 288, 9_109_994, 1_087_529_456, 1.088),
    ("b3", 1.2, 1.4, 0.3, 300, 12_233_232, 1_827_141_392, 1.827),
    ("b4", 1.4, 1.8, 0.4, 380, 19_341_616, 4_393_771_024, 4.394),
    ("b5", 1.6, 2.2, 0.4, 456, 30_389_784, 10_266_384_752, 10.266),
    ("b6", 1.8, 2.6, 0.5, 528, 43_040_704, 19_067_593_536, 19.068),
    ("b7", 2.0, 3.1, 0.5, 600, 66_347_960, 37_745_884_192, 37.746),
]


@pytest.mark.parametrize(
    "name, width, depth, dropout, size, params, macs, ops", EFFICIENTNETS, ids=[e[0] for e in EFFICIENTNETS]
)
def test_efficientnet(name, width, depth, dropout, size, params, macs, ops):
    m = cnndsl.load(
        NETWORKS / "efficientnet.net",
        defines={"width": width, "depth": depth, "dropout": dropout},
        input=(3, size, size),
    )
    check_torchvision(m, params, macs, ops)
    assert kind_attrs(m, "dropout", "p") == [dropout]
    # Stage repeats ceil(n · depth) for n = 1, 2, 2, 3, 3, 4, 1 (Tan & Le 2019 table 1), by hand.
    repeats = [math.ceil(n * depth) for n in (1, 2, 2, 3, 3, 4, 1)]
    blocks = {tuple(row.name.split(".")[:2]) for row in m.layers if row.name.startswith("stage")}
    assert [sum(1 for b in blocks if b[0] == f"stage{i + 1}") for i in range(7)] == repeats


def test_efficientnet_b0_stochastic_depth():
    m = load("efficientnet.net")
    # torchvision: block i of 16 gets 0.2 · i / 16; only the blocks with an identity skip
    # (stride 1, width kept) apply it: blocks 2, 4, 6, 7, 9, 10, 12, 13, 14 of B0.
    rates = kind_attrs(m, "drop_path", "p")
    assert rates == [0.2 * i / 16 for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    assert MAKE_DIVISIBLE in (NETWORKS / "efficientnet.net").read_text()


@pytest.mark.parametrize(
    "alpha, params, macs, ops",
    [
        # MNASNet0_5/0_75/1_0/1_3_Weights: num_params, _ops; MACs counted from torchvision
        (0.5, 2_218_512, 104_455_968, 0.104),
        (0.75, 3_170_208, 215_493_104, 0.215),
        (1.0, 4_383_312, 314_415_872, 0.314),
        (1.3, 6_282_256, 526_362_432, 0.526),
    ],
)
def test_mnasnet(alpha, params, macs, ops):
    check_torchvision(load("mnasnet.net", alpha=alpha), params, macs, ops)


@pytest.mark.parametrize(
    "network, params, macs, ops",
    [
        # ShuffleNet_V2_X*_Weights: num_params, _ops; MACs counted from torchvision
        ("shufflenet_v2_x0_5", 1_366_792, 40_476_448, 0.04),
        ("shufflenet_v2_x1_0", 2_278_604, 144_907_992, 0.145),
        ("shufflenet_v2_x1_5", 3_503_624, 295_759_392, 0.296),
        ("shufflenet_v2_x2_0", 7_393_996, 583_253_464, 0.583),
    ],
)
def test_shufflenet_v2(network, params, macs, ops):
    m = load("shufflenet_v2.net", network)
    check_torchvision(m, params, macs, ops)
    # Ma et al. 2018 table 5: 4, 8, 4 units in stages 2, 3, 4, each ending in a channel shuffle.
    assert [row.kind for row in m.layers].count("shuffle") == 16


def test_shufflenet_v2_unit_split():
    m = load("shufflenet_v2.net", "shufflenet_v2_x1_0")
    # A stride-1 unit of stage 2 (116 channels): the halves [0, 58) and [58, 116).
    assert m.layer("stage2.unit_1.slice").output == (58, 28, 28)
    assert m.layer("stage2.unit_1.slice_1").output == (58, 28, 28)
    assert m.layer("stage2.unit_1.shuffle").output == (116, 28, 28)
    assert m.layer("stage4.unit_3.shuffle").output == (464, 7, 7)


@pytest.mark.parametrize(
    "network, params, macs, ops, blocks, rate",
    [
        # ConvNeXt_Tiny/Small/Base_Weights: num_params, _ops; MACs counted from torchvision;
        # stochastic depth: the convnext_* builders' stochastic_depth_prob
        ("convnext_tiny", 28_589_128, 4_455_531_264, 4.456, 18, 0.1),
        ("convnext_small", 50_223_688, 8_683_712_256, 8.684, 36, 0.4),
        ("convnext_base", 88_591_464, 15_354_729_472, 15.355, 36, 0.5),
    ],
)
def test_convnext(network, params, macs, ops, blocks, rate):
    m = load("convnext.net", network)
    check_torchvision(m, params, macs, ops)
    assert m.totals.non_trainable_params == 0  # LayerNorm keeps no running statistics
    # torchvision: block i of n gets rate · i / (n − 1), from 0 to the rate.
    rates = kind_attrs(m, "drop_path", "p")
    assert rates == [rate * i / (blocks - 1) for i in range(blocks)]
    assert kind_attrs(m, "scale", "init") == [1e-6] * blocks
    # Liu et al. 2022: the 4x4/4 stem to 56x56, stages at 56, 28, 14, 7.
    assert m.layer("stem").output[1:] == (56, 56)
    assert m.layer("downsample_2.conv").output[1:] == (7, 7)


def test_googlenet_torchvision():
    m = load("googlenet_tv.net")
    # torchvision googlenet(aux_logits=True): 13,004,888 parameters, 1,506,748,416 MACs (counted from
    # torchvision, a training-mode forward so that the auxiliary heads run). Without the heads,
    # GoogLeNet_Weights: num_params 6,624,904, _ops 1.498 (exact count 1,498,376,192).
    assert m.totals.trainable_params == 13_004_888
    assert m.totals.macs == 1_506_748_416
    heads = scope_sum(m, "aux1") + scope_sum(m, "aux2")
    heads_trainable = sum(row.trainable_params for row in m.layers if row.name.startswith(("aux1.", "aux2.")))
    assert m.totals.trainable_params - heads_trainable == 6_624_904
    assert m.totals.macs - scope_sum(m, "aux1", "macs") - scope_sum(m, "aux2", "macs") == 1_498_376_192
    assert round(1_498_376_192 / 1e9, 3) == 1.498
    # By hand, one head on C channels: conv 1x1 128 without bias + bn (2·128) + fc 2048 -> 1024 + fc 1024 -> 1000.
    assert heads_trainable == sum(c * 128 + 256 + fc_p(2048, 1024) + fc_p(1024, 1000) for c in (512, 528))
    assert heads > heads_trainable  # the bn running statistics
    assert shape(m, "aux1.adaptive_avgpool") == (512, 4, 4)
    assert shape(m, "aux2.adaptive_avgpool") == (528, 4, 4)
    assert m.outputs == [("main", (1000,)), ("aux1", (1000,)), ("aux2", (1000,))]


# --------------------------------------------------------------------------- all files


def test_check_all_networks_clean():
    files = sorted(NETWORKS.glob("*.net"))
    assert len(files) >= 12
    r = run_cli("check", *files)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out
    # No diagnostic of the form "file:line:col: warning: ... [W001]"; the summary line reads "0 warnings".
    assert not re.search(r"warning:", out), out
    assert re.search(rf"checked {len(files)} files: 0 errors, 0 warnings", out), out
