"""cnndsl import of the files people have: BVLC Caffe deploy, train_val and V1 files, AlexeyAB's and
pjreddie's Darknet cfgs. The files are written here (or in tests/data/) from the public model
definitions; the expected figures are the published ones or computed by hand below."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnndsl import load
from cnndsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def imported(tmp_path, src: Path, *options):
    out = tmp_path / (src.stem.replace("-", "_") + ".net")
    assert main(["import", str(src), "-o", str(out), *options]) == 0
    assert main(["check", str(out)]) == 0
    return load(str(out)), out.read_text()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnndsl", *args], capture_output=True, text=True, cwd=ROOT)


def write(tmp_path, name, text):
    src = tmp_path / name
    src.write_text(text)
    return src


# --------------------------------------------------------------------------- Caffe


def _bn_relu(lines, name, blob):
    lines.append(f'layer {{ name: "{name}/bn" type: "BatchNorm" bottom: "{blob}" top: "{name}/bn" }}')
    lines.append(
        f'layer {{ name: "{name}/scale" type: "Scale" bottom: "{name}/bn" top: "{name}/bn" '
        "scale_param { bias_term: true } }"
    )
    lines.append(f'layer {{ name: "{name}/relu" type: "ReLU" bottom: "{name}/bn" top: "{name}/bn" }}')
    return f"{name}/bn"


def _conv(lines, name, blob, n, k, s=1, p=0):
    lines.append(
        f'layer {{ name: "{name}" type: "Convolution" bottom: "{blob}" top: "{name}" '
        f"convolution_param {{ num_output: {n} kernel_size: {k} stride: {s} pad: {p} bias_term: false }} }}"
    )
    return name


def densenet121(round_mode="FLOOR"):
    """DenseNet-121 as BVLC-style Caffe deploy files write it (shicai/DenseNet-Caffe's layout:
    BatchNorm + Scale + ReLU + Convolution per step, Concat per layer, AVE transitions)."""
    mode = f" round_mode: {round_mode}" if round_mode else ""
    lines = ['name: "DenseNet_121"', 'input: "data"', "input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }"]
    x = _conv(lines, "conv1", "data", 64, 7, 2, 3)
    x = _bn_relu(lines, "conv1", x)
    lines.append(
        f'layer {{ name: "pool1" type: "Pooling" bottom: "{x}" top: "pool1" '
        f"pooling_param {{ pool: MAX kernel_size: 3 stride: 2 pad: 1{mode} }} }}"
    )
    x, channels = "pool1", 64
    for b, count in enumerate((6, 12, 24, 16), 1):
        for i in range(1, count + 1):
            name = f"conv{b + 1}_{i}"
            y = _bn_relu(lines, f"{name}/x1", x)
            y = _conv(lines, f"{name}/x1", y, 128, 1)
            y = _bn_relu(lines, f"{name}/x2", y)
            y = _conv(lines, f"{name}/x2", y, 32, 3, 1, 1)
            lines.append(
                f'layer {{ name: "concat_{b + 1}_{i}" type: "Concat" bottom: "{x}" bottom: "{y}" top: "concat_{b + 1}_{i}" }}'
            )
            x, channels = f"concat_{b + 1}_{i}", channels + 32
        if b < 4:
            y = _bn_relu(lines, f"conv{b + 1}_blk", x)
            channels //= 2
            y = _conv(lines, f"conv{b + 1}_blk", y, channels, 1)
            lines.append(
                f'layer {{ name: "pool{b + 1}" type: "Pooling" bottom: "{y}" top: "pool{b + 1}" '
                f"pooling_param {{ pool: AVE kernel_size: 2 stride: 2{mode} }} }}"
            )
            x = f"pool{b + 1}"
    x = _bn_relu(lines, "conv5_blk", x)
    lines.append(
        f'layer {{ name: "pool5" type: "Pooling" bottom: "{x}" top: "pool5" pooling_param {{ pool: AVE global_pooling: true }} }}'
    )
    lines.append(
        'layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" inner_product_param { num_output: 1000 } }'
    )
    return "\n".join(lines) + "\n"


def test_densenet121_round_mode_floor(tmp_path):
    """torchvision's densenet121: 7,978,856 parameters, 2,834,161,664 MACs (as networks/densenet121.net)."""
    model, text = imported(tmp_path, write(tmp_path, "densenet121.prototxt", densenet121()))
    assert model.totals.trainable_params == 7_978_856 and model.totals.macs == 2_834_161_664
    reference = load(str(ROOT / "networks" / "densenet121.net"))
    assert (reference.totals.trainable_params, reference.totals.macs) == (7_978_856, 2_834_161_664)
    assert "ceil" not in text


@pytest.mark.parametrize("mode, field", [(None, ""), ("CEIL", "round_mode: CEIL")])
def test_densenet121_caffe_default_rounds_up(tmp_path, mode, field):
    """Caffe's default (CEIL) makes pool1 57x57: the figures the importer wrote before for every file."""
    model, text = imported(tmp_path, write(tmp_path, "d.prototxt", densenet121(mode)))
    assert model.totals.macs == 3_063_058_432 and "maxpool 3/2/1 ceil" in text


def test_ceil_mode_false_of_the_forks(tmp_path):
    text = densenet121(None).replace("pad: 1 }", "pad: 1 ceil_mode: false }")
    model, _ = imported(tmp_path, write(tmp_path, "d.prototxt", text))
    assert model.totals.macs == 2_834_161_664


def test_alexnet_train_val_is_the_deploy_network(tmp_path, capsys):
    """BVLC's bvlc_alexnet train_val: 60,965,224 parameters (conv 34,944 + 307,456 + 885,120 +
    663,936 + 442,624; fc 37,752,832 + 16,781,312 + 4,097,000) and 724,406,816 MACs (conv1
    55²·96·363, conv2 27²·256·1200, conv3 13²·384·2304, conv4 13²·384·1728, conv5 13²·256·1728,
    fc 9216·4096 + 4096² + 4096·1000)."""
    model, text = imported(tmp_path, DATA / "alexnet_train_val.prototxt")
    assert model.totals.params == 60_965_224 and model.totals.macs == 724_406_816
    assert model.layers[0].output == (96, 55, 55) and model.outputs[0][1] == (1000,)
    assert "left out (training only)" in text and "input 3x227x227" in text
    err = capsys.readouterr().err
    assert "channels are not in the file; read as 3" in err and "weight_filler" not in err


def lenet_v1():
    """BVLC's examples/mnist/lenet_train_test.prototxt in the V1 format (layers { type: CONVOLUTION })."""
    data = (
        'layers {{ name: "mnist" type: DATA top: "data" top: "label" data_param {{ source: "{}" '
        "backend: LMDB batch_size: 64 }} transform_param {{ scale: 0.00390625 }} include: {{ phase: {} }} }}\n"
    )
    text = 'name: "LeNet"\n' + data.format("train_lmdb", "TRAIN") + data.format("test_lmdb", "TEST")
    text += """layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2
  convolution_param { num_output: 20 kernel_size: 5 stride: 1 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "conv2" type: CONVOLUTION bottom: "pool1" top: "conv2" blobs_lr: 1 blobs_lr: 2
  convolution_param { num_output: 50 kernel_size: 5 stride: 1 weight_filler { type: "xavier" } } }
layers { name: "pool2" type: POOLING bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool2" top: "ip1" blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layers { name: "relu1" type: RELU bottom: "ip1" top: "ip1" }
layers { name: "ip2" type: INNER_PRODUCT bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 } }
layers { name: "accuracy" type: ACCURACY bottom: "ip2" bottom: "label" top: "accuracy" include: { phase: TEST } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "ip2" bottom: "label" top: "loss" }
"""
    return text


def test_lenet_v1_train_test_needs_input_then_imports(tmp_path):
    src = write(tmp_path, "lenet_train_test.prototxt", lenet_v1())
    r = run_cli("import", str(src), "-o", str(tmp_path / "l.net"))
    assert r.returncode == 1 and "--input CxHxW" in r.stderr and "[E247]" in r.stderr
    # Caffe's LeNet: 431,080 parameters (520 + 25,050 + 400,500 + 5,010); MACs 24²·20·25 + 8²·50·500 + 800·500 + 500·10
    model, _ = imported(tmp_path, src, "--input", "1x28x28")
    assert model.totals.params == 431_080 and model.totals.macs == 2_293_000


def cifar10_full():
    """BVLC's examples/cifar10/cifar10_full.prototxt (deploy): LRN within the channel, AVE pools."""
    text = 'name: "CIFAR10_full_deploy"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
    blob = "data"
    for i, (n, pool) in enumerate(((32, "MAX"), (32, "AVE"), (64, "AVE")), 1):
        text += (
            f'layer {{ name: "conv{i}" type: "Convolution" bottom: "{blob}" top: "conv{i}" '
            f"convolution_param {{ num_output: {n} pad: 2 kernel_size: 5 stride: 1 }} }}\n"
        )
        conv_then = [("pool", "relu"), ("relu", "pool"), ("relu", "pool")][i - 1]
        cur = f"conv{i}"
        for step in conv_then:
            if step == "relu":
                text += f'layer {{ name: "relu{i}" type: "ReLU" bottom: "{cur}" top: "{cur}" }}\n'
            else:
                text += (
                    f'layer {{ name: "pool{i}" type: "Pooling" bottom: "{cur}" top: "pool{i}" '
                    f"pooling_param {{ pool: {pool} kernel_size: 3 stride: 2 }} }}\n"
                )
                cur = f"pool{i}"
        if i < 3:
            text += (
                f'layer {{ name: "norm{i}" type: "LRN" bottom: "{cur}" top: "norm{i}" lrn_param {{ local_size: 3 '
                "alpha: 5e-05 beta: 0.75 norm_region: WITHIN_CHANNEL } }\n"
            )
            cur = f"norm{i}"
        blob = cur
    text += f'layer {{ name: "ip1" type: "InnerProduct" bottom: "{blob}" top: "ip1" inner_product_param {{ num_output: 10 }} }}\n'
    return text + 'layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }\n'


def test_cifar10_full_within_channel_lrn(tmp_path):
    """Parameters 2,432 + 25,632 + 51,264 + 10,250; MACs 32²·32·75 + 16²·32·800 + 8²·64·800 + 1024·10
    (the pools round up: 32 -> 16 -> 8 -> 4)."""
    model, text = imported(tmp_path, write(tmp_path, "cifar10_full.prototxt", cifar10_full()))
    assert model.totals.params == 89_578 and model.totals.macs == 12_298_240
    assert text.count("region=within") == 2


def test_se_block_scale_with_two_bottoms_and_axpy(tmp_path):
    head = 'input: "data"\ninput_shape { dim: 1 dim: 64 dim: 8 dim: 8 }\n'
    se = (
        'layer { name: "gap" type: "Pooling" bottom: "data" top: "gap" pooling_param { pool: AVE global_pooling: true } }\n'
        'layer { name: "down" type: "Convolution" bottom: "gap" top: "down" convolution_param { num_output: 4 kernel_size: 1 } }\n'
        'layer { name: "down/relu" type: "ReLU" bottom: "down" top: "down" }\n'
        'layer { name: "up" type: "Convolution" bottom: "down" top: "up" convolution_param { num_output: 64 kernel_size: 1 } }\n'
        'layer { name: "prob" type: "Sigmoid" bottom: "up" top: "up" }\n'
    )
    scale = 'layer { name: "scale" type: "Scale" bottom: "data" bottom: "up" top: "scale" scale_param { axis: 0 } }\n'
    model, text = imported(
        tmp_path, write(tmp_path, "se.prototxt", head + se + scale.replace(" scale_param { axis: 0 }", ""))
    )
    # 64·4 + 4 + 4·64 + 64
    assert model.totals.params == 580 and model.outputs[0][1] == (64, 8, 8) and "mul {" in text
    axpy = 'layer { name: "axpy" type: "Axpy" bottom: "up" bottom: "data" bottom: "data" top: "axpy" }\n'
    model, text = imported(tmp_path, write(tmp_path, "axpy.prototxt", head + se + axpy))
    assert model.totals.params == 580 and ("add {" in text or "residual {" in text) and "mul {" in text


def test_caffe_power_crop_slice_reshape(tmp_path):
    head = 'input: "data"\ninput_shape { dim: 1 dim: 8 dim: 10 dim: 10 }\n'
    body = (
        'layer { name: "p" type: "Power" bottom: "data" top: "p" power_param { power: 2 scale: 0.5 shift: 1 } }\n'
        'layer { name: "small" type: "Pooling" bottom: "p" top: "small" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
        'layer { name: "c" type: "Crop" bottom: "p" bottom: "small" top: "c" crop_param { axis: 2 offset: 3 } }\n'
        'layer { name: "s" type: "Slice" bottom: "c" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 3 } }\n'
        'layer { name: "f" type: "Reshape" bottom: "s2" top: "f" reshape_param { shape { dim: 0 dim: -1 } } }\n'
    )
    model, text = imported(tmp_path, write(tmp_path, "misc.prototxt", head + body))
    assert "power 2.0 scale=0.5 shift=1.0" in text and "crop to=@small offset=3" in text and "slice 3/8" in text
    assert model.outputs[0][1] == (5 * 5 * 5,)


def _hswish_caffe(name, bottom, relu6="ReLU6", out=None):
    """MobileNetV3-Caffe's h-swish: Power(shift 3), ReLU6 (the forks' type, or BVLC's Clip 0..6),
    Power(scale 1/6), Eltwise PROD with the input."""
    six = (
        f'layer {{ name: "{name}/relu6" type: "ReLU6" bottom: "{name}/shift" top: "{name}/shift" }}\n'
        if relu6 == "ReLU6"
        else f'layer {{ name: "{name}/relu6" type: "Clip" bottom: "{name}/shift" top: "{name}/shift" '
        "clip_param { min: 0 max: 6 } }\n"
    )
    return (
        f'layer {{ name: "{name}/shift" type: "Power" bottom: "{bottom}" top: "{name}/shift" '
        "power_param { power: 1 scale: 1 shift: 3 } }\n" + six + f'layer {{ name: "{name}/div" type: "Power" '
        f'bottom: "{name}/shift" top: "{name}/div" power_param {{ scale: 0.1666667 }} }}\n'
        f'layer {{ name: "{out or name}" type: "Eltwise" bottom: "{bottom}" bottom: "{name}/div" top: "{out or name}" '
        "eltwise_param { operation: PROD } }\n"
    )


@pytest.mark.parametrize("relu6", ["ReLU6", "Clip"])
def test_caffe_hard_swish_and_hard_sigmoid_fold(tmp_path, relu6):
    head = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 16 dim: 16 }\n'
    body = (
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
        "convolution_param { num_output: 16 kernel_size: 3 stride: 2 pad: 1 } }\n"
        + _hswish_caffe("conv1/hswish", "conv1", relu6)
        # squeeze-and-excitation with a hard-sigmoid gate: Power, ReLU6, Power, then Scale with two bottoms
        + 'layer { name: "se/gap" type: "Pooling" bottom: "conv1/hswish" top: "se/gap" '
        "pooling_param { pool: AVE global_pooling: true } }\n"
        'layer { name: "se/fc" type: "Convolution" bottom: "se/gap" top: "se/fc" '
        "convolution_param { num_output: 16 kernel_size: 1 } }\n"
        'layer { name: "se/shift" type: "Power" bottom: "se/fc" top: "se/shift" power_param { shift: 3 } }\n'
        'layer { name: "se/relu6" type: "ReLU6" bottom: "se/shift" top: "se/shift" }\n'
        'layer { name: "se/gate" type: "Power" bottom: "se/shift" top: "se/gate" power_param { scale: 0.1666667 } }\n'
        'layer { name: "se" type: "Scale" bottom: "conv1/hswish" bottom: "se/gate" top: "se" }\n'
        # a Power pattern whose shift is read elsewhere too stays as written
        'layer { name: "p/shift" type: "Power" bottom: "se" top: "p/shift" power_param { shift: 3 } }\n'
        'layer { name: "p/relu6" type: "ReLU6" bottom: "p/shift" top: "p/relu6" }\n'
        'layer { name: "p/div" type: "Power" bottom: "p/relu6" top: "p/div" power_param { scale: 0.1666667 } }\n'
        'layer { name: "p" type: "Eltwise" bottom: "p/shift" bottom: "p/div" top: "p" eltwise_param { operation: PROD } }\n'
    )
    model, text = imported(tmp_path, write(tmp_path, "hs.prototxt", head + body))
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["conv", "hardswish", "gap", "conv", "hardsigmoid", "mul", "power", "relu6", "power", "mul"], text
    assert "# 2 Power/ReLU6/Power patterns read as hardsigmoid or hardswish" in text
    # by hand: conv1 16·3·9 + 16 = 448, the SE conv 16·16 + 16 = 272
    assert model.totals.params == 448 + 272 and model.outputs[0][1] == (16, 8, 8)


def test_caffe_clip_other_than_relu6_refused(tmp_path):
    head = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 4 dim: 4 }\n'
    src = write(tmp_path, "c.prototxt", head + 'layer { name: "c" type: "Clip" bottom: "data" top: "c" '
                "clip_param { min: -1 max: 1 } }\n")  # fmt: skip
    r = run_cli("import", str(src), "-o", str(tmp_path / "c.net"))
    assert r.returncode == 1 and "c.prototxt:3:" in r.stderr and "clip_param min: -1.0 max: 1.0" in r.stderr


def test_unread_fields_are_warnings_and_figure_changes_errors(tmp_path):
    head = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
    src = write(
        tmp_path,
        "w.prototxt",
        head
        + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" relu_param { negative_slope: 0 frobnicate: 2 } }\n',
    )
    r = run_cli("import", str(src), "-o", str(tmp_path / "w.net"))
    assert r.returncode == 0
    assert "w.prototxt:3:" in r.stderr and "field relu_param.frobnicate is not read [W240]" in r.stderr
    src = write(
        tmp_path,
        "e.prototxt",
        head
        + 'layer { name: "i" type: "InnerProduct" bottom: "data" top: "i" inner_product_param { num_output: 3 axis: 2 } }\n',
    )
    r = run_cli("import", str(src), "-o", str(tmp_path / "e.net"))
    assert r.returncode == 1 and "an inner product from an axis other than 1 has no equivalent" in r.stderr


def test_prototxt_limits(tmp_path, monkeypatch):
    import cnndsl.importers.prototxt as pt

    deep = "a { " * 70 + "} " * 70
    r = run_cli("import", str(write(tmp_path, "deep.prototxt", deep)), "-o", str(tmp_path / "d.net"))
    assert r.returncode == 1 and "messages nested more than 64 deep (the limit) [E243]" in r.stderr
    r = run_cli("import", str(write(tmp_path, "big.prototxt", "# x\n" * (4_300_000))), "-o", str(tmp_path / "b.net"))
    assert r.returncode == 1 and "more than the limit of 16,777,216 [E240]" in r.stderr
    src = write(tmp_path, "n.prototxt", 'input: "d"\ninput_dim: 1\ninput_dim: 99999999999\n')
    r = run_cli("import", str(src), "-o", str(tmp_path / "n.net"))
    assert r.returncode == 1 and "out of the range of a Caffe integer field" in r.stderr
    monkeypatch.setattr(pt, "MAX_FIELDS", 3)
    with pytest.raises(Exception, match="more than 3 fields"):
        pt.parse_prototxt("a: 1 b: 2 c: 3 d: 4", "x")


# --------------------------------------------------------------------------- Darknet


def darknet_bflops(model):
    """Darknet's printed total: 2·MACs of the convolutions (and connected layers) plus, in AlexeyAB's
    darknet, F²·C per output position of each maxpool (maxpool_layer.c's bflops; 2x2 here)."""
    flops = 2 * model.totals.macs
    for layer in model.layers:
        if layer.kind == "maxpool":
            c, h, w = layer.output
            flops += 2 * 2 * c * h * w
    return flops / 1e9


def test_yolov4_tiny_figures(tmp_path):
    """AlexeyAB's yolov4-tiny.cfg at 416x416: darknet prints 6.910 BFLOPs (its README: 6.9 BFlops);
    by hand: convolutions 3,453,938,176 MACs, maxpools 2²·(128·52² + 256·26² + 512·13²)."""
    model, text = imported(tmp_path, DATA / "yolov4-tiny.cfg")
    assert model.totals.macs == 3_453_938_176
    assert f"{darknet_bflops(model):.3f}" == "6.910"
    # route groups=2 group_id=1 of 64 channels: the channels [32, 64) (the writer may fold it into a block)
    first = next(r for r in model.layers if r.kind == "slice")
    assert first.output[0] == 32 and ("slice 32/64" in text or "concat_unit(32, 64," in text)
    assert [s for _, s in model.outputs] == [(255, 13, 13), (255, 26, 26)]


def yolov2(size=608):
    """pjreddie's cfg/yolov2.cfg (Darknet-19 + passthrough with [reorg])."""
    out = [f"[net]\nwidth={size}\nheight={size}\nchannels=3\n"]

    def conv(f, k, act="leaky", bn=1):
        out.append(
            f"[convolutional]\n{'batch_normalize=1' if bn else ''}\nfilters={f}\nsize={k}\nstride=1\npad=1\nactivation={act}\n"
        )

    def mp():
        out.append("[maxpool]\nsize=2\nstride=2\n")

    conv(32, 3), mp(), conv(64, 3), mp()
    for f in (128, 256):
        conv(f, 3), conv(f // 2, 1), conv(f, 3), mp()
    conv(512, 3), conv(256, 1), conv(512, 3), conv(256, 1), conv(512, 3), mp()
    conv(1024, 3), conv(512, 1), conv(1024, 3), conv(512, 1), conv(1024, 3)
    conv(1024, 3), conv(1024, 3)
    out.append("[route]\nlayers=-9\n")
    conv(64, 1)
    out.append("[reorg]\nstride=2\n")
    out.append("[route]\nlayers=-1,-4\n")
    conv(1024, 3), conv(425, 1, "linear", 0)
    out.append("[region]\nanchors = 0.57273, 0.677385\nbias_match=1\nclasses=80\ncoords=4\nnum=5\nsoftmax=1\n")
    return "\n".join(out)


def test_yolov2_reorg_figures(tmp_path):
    """pjreddie's YOLOv2 608x608: 62.94 BFLOPs (pjreddie.com/darknet/yolo, its table); pjreddie's
    darknet counts convolutions only: 31,469,126,656 MACs by hand."""
    model, text = imported(tmp_path, write(tmp_path, "yolov2.cfg", yolov2()))
    assert model.totals.macs == 31_469_126_656 and f"{2 * model.totals.macs / 1e9:.2f}" == "62.94"
    assert "space_to_depth 2 order=darknet" in text
    assert [x.output for x in model.layers if x.kind == "space_to_depth"] == [(256, 19, 19)]


def test_resnet50_style_shortcut_across_channels(tmp_path):
    """pjreddie's resnet50.cfg adds a block's input to its output with [shortcut] from=-4 also where
    the channels (64 -> 256) and the size (56 -> 28) change: no projection, Darknet's padded add."""
    cfg = "[net]\nwidth=56\nheight=56\nchannels=3\n\n"
    cfg += "[convolutional]\nbatch_normalize=1\nfilters=64\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
    for f, st in ((64, 1), (128, 2)):
        cfg += f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=1\nstride=1\npad=1\nactivation=leaky\n\n"
        cfg += f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride={st}\npad=1\nactivation=leaky\n\n"
        cfg += f"[convolutional]\nbatch_normalize=1\nfilters={4 * f}\nsize=1\nstride=1\npad=1\nactivation=linear\n\n"
        cfg += "[shortcut]\nfrom=-4\nactivation=leaky\n\n"
    model, text = imported(tmp_path, write(tmp_path, "resnet.cfg", cfg))
    assert "add(fit=first) {" in text and model.outputs[0][1] == (512, 28, 28)
    assert [x.output for x in model.layers if x.kind == "add"] == [(256, 56, 56), (512, 28, 28)]
    # the convolutions and their bn only: (64·64 + 64·9·64 + 64·256) + (256·128 + 128·9·128 + 128·512), γ β
    convs = 3 * 9 * 64 + 64 * 64 + 64 * 9 * 64 + 64 * 256 + 256 * 128 + 128 * 9 * 128 + 128 * 512
    bns = 2 * (64 + 64 + 64 + 256 + 128 + 128 + 512)
    assert model.totals.trainable_params == convs + bns


def test_darknet_mish_sam_scale_channels_crop(tmp_path):
    cfg = (
        "[net]\nwidth=8\nheight=8\nchannels=3\n\n[crop]\ncrop_width=6\ncrop_height=6\n\n"
        "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\n\n[avgpool]\n\n"
        "[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n\n[scale_channels]\nfrom=-3\n\n"
        "[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n\n[sam]\nfrom=-2\n"
    )
    model, text = imported(tmp_path, write(tmp_path, "m.cfg", cfg))
    assert "mish" in text and "crop 6 center" in text and "power scale=2.0 shift=-1.0" in text
    assert text.count("mul {") == 2 and model.outputs[0][1] == (4, 6, 6)


def test_darknet_unknown_option_warns_and_limits(tmp_path, monkeypatch):
    cfg = "[net]\nwidth=8\nheight=8\nchannels=3\nbatch=64\n\n[convolutional]\nfilters=4\nsize=3\nfancy=1\n"
    r = run_cli("import", str(write(tmp_path, "w.cfg", cfg)), "-o", str(tmp_path / "w.net"))
    assert r.returncode == 0 and "w.cfg:10:" in r.stderr and "[convolutional] fancy=1 is not read [W240]" in r.stderr
    assert "batch" not in r.stderr
    r = run_cli(
        "import", str(write(tmp_path, "s.cfg", cfg.replace("fancy=1", "stride_x=2"))), "-o", str(tmp_path / "s.net")
    )
    assert r.returncode == 1 and "stride_x has no equivalent" in r.stderr
    r = run_cli(
        "import",
        str(write(tmp_path, "i.cfg", cfg.replace("fancy=1", "filters=99999999999"))),
        "-o",
        str(tmp_path / "i.net"),
    )
    assert r.returncode == 1 and "out of the range of an integer" in r.stderr
    import cnndsl.importers.from_darknet as dn

    monkeypatch.setattr(dn, "MAX_SECTIONS", 1)
    with pytest.raises(Exception, match="more than 1 sections"):
        dn.parse_cfg(cfg, "x")
    monkeypatch.setattr(dn, "MAX_OPTIONS", 2)
    with pytest.raises(Exception, match="more than 2 options"):
        dn.parse_cfg("[net]\na=1\nb=2\nc=3\n", "x")
