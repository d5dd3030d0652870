"""The layer table: every layer kind against figures computed by hand.

Each row is a small network (``input`` plus a few lines) and what it must give:
output shape, trainable and non-trainable parameters, MACs and connections, as
totals over the whole snippet. Every expected number is written as the
arithmetic of LANGUAGE.md §6-7, never copied from the program:

- conv: output ``floor((W - F_eff + 2P)/S) + 1`` (``same``: ``ceil(W/S)``), with
  ``F_eff = d·(F-1)+1``; parameters ``(F^n·C/groups + bias)·K``; MACs = output
  positions × K × F^n·C/groups; connections = output positions × K ×
  (F^n·C/groups + bias) (the kernel's fan-in plus the bias, per output unit);
- deconv: output ``(W-1)·S - 2P + d·(F-1) + outpad + 1``; parameters
  ``C·(K/groups)·F^n + K``; MACs over input positions;
- pooling: floor, or with ``ceil`` rounded up, minus a last window that would
  start in the end padding;
- MACs only for conv, deconv, fc and rbf.

Connections are summed over every layer except those whose count the spec
leaves open (bn, ln, gn, instnorm and prelu have weights but no fan-in in
LeNet's sense), see ``AMBIGUOUS_CONNECTIONS``.

Adding a layer kind needs a row here: ``test_every_kind_has_a_row`` fails otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache

import pytest
from conftest import INCEPTION_BLOCK

import cnndsl
from cnndsl.layers import CATALOGUE, PUBLIC
from cnndsl.layers.base import Kind

AMBIGUOUS_CONNECTIONS = {"bn", "ln", "gn", "instnorm", "prelu"}


@dataclass(frozen=True, eq=False)
class Case:
    """One row: ``input`` and ``body`` make ``network t { input ...  body }``."""

    kind: str  # the kind under test: the kind of the snippet's last layer
    input: str
    body: str
    shape: tuple
    trainable: int = 0
    fixed: int = 0
    macs: int = 0
    connections: int | None = 0  # None: not checked (see the row)
    prelude: str = ""  # tables, blocks and defaults before the network
    layers: dict = field(default_factory=dict)  # other layers to check: name -> (kind, shape)

    def text(self) -> str:
        return f"{self.prelude}\nnetwork t {{\n    input {self.input}\n{self.body}\n}}\n"


def row(id, kind, input, body, shape, xfail=None, **figures):
    marks = [pytest.mark.xfail(reason=xfail, strict=True)] if xfail else []
    return pytest.param(Case(kind, input, body, shape, **figures), id=id, marks=marks)


INCEPTION = INCEPTION_BLOCK

# fmt: off
# (kept as a table, one row a few lines, rather than ruff's one argument a line)
CASES = [
    # ------------------------------------------------------------------ conv
    row("conv-pad1", "conv", "16x8x8", "conv 32/3/1/1",
        (32, 8, 8),
        trainable=(3 * 3 * 16 + 1) * 32,
        macs=8 * 8 * 32 * (3 * 3 * 16),
        connections=8 * 8 * 32 * (3 * 3 * 16 + 1)),
    row("conv-parenthesised", "conv", "16x8x8", "conv(32, 3, 1, 1)",
        (32, 8, 8),
        trainable=(3 * 3 * 16 + 1) * 32,
        macs=8 * 8 * 32 * (3 * 3 * 16),
        connections=8 * 8 * 32 * (3 * 3 * 16 + 1)),
    row("conv-keywords", "conv", "16x8x8", "conv filters=32 size=3 stride=1 pad=1",
        (32, 8, 8),
        trainable=(3 * 3 * 16 + 1) * 32,
        macs=8 * 8 * 32 * (3 * 3 * 16),
        connections=8 * 8 * 32 * (3 * 3 * 16 + 1)),
    row("conv-groups", "conv", "16x8x8", "conv 32/3/1/1 groups=4",
        (32, 8, 8),
        trainable=(3 * 3 * (16 // 4) + 1) * 32,
        macs=8 * 8 * 32 * (3 * 3 * (16 // 4)),
        connections=8 * 8 * 32 * (3 * 3 * (16 // 4) + 1)),
    row("conv-depthwise", "conv", "16x8x8", "conv 16/3/1/1 groups=16",
        (16, 8, 8),
        trainable=(3 * 3 * 1 + 1) * 16,
        macs=8 * 8 * 16 * (3 * 3 * 1),
        connections=8 * 8 * 16 * (3 * 3 + 1)),
    # dilation 2 widens 3 to 2·(3-1)+1 = 5: 10 - 5 + 1 = 6
    row("conv-dilation", "conv", "4x10x10", "conv 8/3 dilation=2",
        (8, 6, 6),
        trainable=(3 * 3 * 4 + 1) * 8,
        macs=6 * 6 * 8 * (3 * 3 * 4),
        connections=6 * 6 * 8 * (3 * 3 * 4 + 1)),
    # same: ceil(7 / 2) = 4
    row("conv-same-stride2", "conv", "3x7x7", "conv 8/3/2/same",
        (8, 4, 4),
        trainable=(3 * 3 * 3 + 1) * 8,
        macs=4 * 4 * 8 * (3 * 3 * 3),
        connections=4 * 4 * 8 * (3 * 3 * 3 + 1)),
    # same with an even kernel: ceil(10 / 3) = 4
    row("conv-same-even-kernel", "conv", "3x10x10", "conv 8/4/3/same",
        (8, 4, 4),
        trainable=(4 * 4 * 3 + 1) * 8,
        macs=4 * 4 * 8 * (4 * 4 * 3),
        connections=4 * 4 * 8 * (4 * 4 * 3 + 1)),
    # valid: floor((8 - 3) / 2) + 1 = 3 (one column dropped)
    row("conv-valid-stride2", "conv", "3x8x8", "conv 8/3/2/valid",
        (8, (8 - 3) // 2 + 1, (8 - 3) // 2 + 1),
        trainable=(3 * 3 * 3 + 1) * 8,
        macs=3 * 3 * 8 * (3 * 3 * 3),
        connections=3 * 3 * 8 * (3 * 3 * 3 + 1)),
    # stride that needs rounding: floor((10 - 5 + 2·1) / 3) + 1 = 3
    row("conv-stride-rounds-down", "conv", "3x10x10", "conv 8/5/3/1",
        (8, (10 - 5 + 2) // 3 + 1, (10 - 5 + 2) // 3 + 1),
        trainable=(5 * 5 * 3 + 1) * 8,
        macs=3 * 3 * 8 * (5 * 5 * 3),
        connections=3 * 3 * 8 * (5 * 5 * 3 + 1)),
    # 1-D: floor((100 - 5 + 2·2) / 2) + 1 = 50
    row("conv-1d", "conv", "4x100", "conv 8/5/2/2",
        (8, (100 - 5 + 4) // 2 + 1),
        trainable=(5 * 4 + 1) * 8,
        macs=50 * 8 * (5 * 4),
        connections=50 * 8 * (5 * 4 + 1)),
    row("conv-3d", "conv", "2x4x6x6", "conv 8/3/1/1",
        (8, 4, 6, 6),
        trainable=(3 * 3 * 3 * 2 + 1) * 8,
        macs=4 * 6 * 6 * 8 * (3 * 3 * 3 * 2),
        connections=4 * 6 * 6 * 8 * (3 * 3 * 3 * 2 + 1)),
    # per-axis fields: D (4-1)/1+1 = 4, H and W floor((9-3+2)/2)+1 = 5
    row("conv-3d-per-axis", "conv", "2x4x9x9", "conv 4/1x3x3/1x2x2/0x1x1",
        (4, 4, 5, 5),
        trainable=(1 * 3 * 3 * 2 + 1) * 4,
        macs=4 * 5 * 5 * 4 * (1 * 3 * 3 * 2),
        connections=4 * 5 * 5 * 4 * (1 * 3 * 3 * 2 + 1)),
    row("conv-1x7", "conv", "4x10x10", "conv 8/1x7/1/0x3",
        (8, 10, 10),
        trainable=(1 * 7 * 4 + 1) * 8,
        macs=10 * 10 * 8 * (1 * 7 * 4),
        connections=10 * 10 * 8 * (1 * 7 * 4 + 1)),
    # table: filter 0 reads map 0, filter 1 maps 0 and 1, filter 2 maps 1 and 2
    row("conv-table", "conv", "3x5x5", "conv 3/3 table=t",
        (3, 3, 3),
        prelude="table t = [[0], [0, 1], [1, 2]]",
        trainable=(1 + 2 + 2) * 3 * 3 + 3,
        macs=3 * 3 * (1 + 2 + 2) * 3 * 3,
        connections=3 * 3 * ((1 + 2 + 2) * 3 * 3 + 3)),
    row("conv-no-bias", "conv", "2x4x4", "conv 8/3 bias=false",
        (8, 2, 2),
        trainable=3 * 3 * 2 * 8,
        macs=2 * 2 * 8 * (3 * 3 * 2),
        connections=2 * 2 * 8 * (3 * 3 * 2)),
    row("conv-default-no-bias", "conv", "2x4x4", "conv 8/3",
        (8, 2, 2),
        prelude="default conv bias=false",
        trainable=3 * 3 * 2 * 8,
        macs=2 * 2 * 8 * (3 * 3 * 2),
        connections=2 * 2 * 8 * (3 * 3 * 2)),
    # the course example of LANGUAGE.md §8
    row("conv-course-5x5", "conv", "192x28x28", "conv 32/5/1/2",
        (32, 28, 28),
        trainable=(5 * 5 * 192 + 1) * 32,
        macs=28 * 28 * 32 * (5 * 5 * 192),
        connections=28 * 28 * 32 * (5 * 5 * 192 + 1)),
    # ---------------------------------------------------------------- deconv
    # (4-1)·2 - 0 + (2-1) + 0 + 1 = 8; with P = 0 every product reaches an output unit
    row("deconv-2x2-stride2", "deconv", "16x4x4", "deconv 8/2/2",
        (8, 8, 8),
        trainable=16 * 8 * 2 * 2 + 8,
        macs=4 * 4 * 16 * 8 * 2 * 2,
        connections=4 * 4 * 16 * 8 * 2 * 2 + 8 * 8 * 8),
    # (5-1)·2 + (3-1) + 1 + 1 = 12; the outpad row and column get the bias only
    row("deconv-outpad", "deconv", "8x5x5", "deconv 4/3/2 outpad=1",
        (4, 12, 12),
        trainable=8 * 4 * 3 * 3 + 4,
        macs=5 * 5 * 8 * 4 * 3 * 3,
        connections=5 * 5 * 8 * 4 * 3 * 3 + 4 * 12 * 12),
    # (5-1)·1 + (3-1) + 1 = 7; each input map feeds K/groups = 4 filters
    row("deconv-groups", "deconv", "4x5x5", "deconv 8/3/1 groups=2",
        (8, 7, 7),
        trainable=4 * (8 // 2) * 3 * 3 + 8,
        macs=5 * 5 * 4 * (8 // 2) * 3 * 3,
        connections=5 * 5 * 4 * (8 // 2) * 3 * 3 + 8 * 7 * 7),
    row("deconv-1d", "deconv", "3x6", "deconv 2/4/2",
        (2, (6 - 1) * 2 + (4 - 1) + 1),
        trainable=3 * 2 * 4 + 2,
        macs=6 * 3 * 2 * 4,
        connections=6 * 3 * 2 * 4 + 2 * 14),
    # (4-1)·1 + 2·(3-1) + 1 = 8
    row("deconv-dilation", "deconv", "1x4x4", "deconv 2/3/1 dilation=2",
        (2, 8, 8),
        trainable=1 * 2 * 3 * 3 + 2,
        macs=4 * 4 * 1 * 2 * 3 * 3,
        connections=4 * 4 * 1 * 2 * 3 * 3 + 2 * 8 * 8),
    # trainable=false: the weights and the bias are fixed (FCN's bilinear upsampling);
    # (7-1)·2 + (4-1) + 1 = 16
    row("deconv-fixed", "deconv", "3x7x7", "deconv 4/4/2 trainable=false",
        (4, 16, 16),
        fixed=3 * 4 * 4 * 4 + 4,
        macs=7 * 7 * 3 * 4 * 4 * 4,
        connections=7 * 7 * 3 * 4 * 4 * 4 + 4 * 16 * 16),
    row("deconv-fixed-no-bias", "deconv", "3x7x7", "deconv 4/4/2 bias=false trainable=false",
        (4, 16, 16),
        fixed=3 * 4 * 4 * 4,
        macs=7 * 7 * 3 * 4 * 4 * 4,
        connections=7 * 7 * 3 * 4 * 4 * 4),
    # (5-1)·2 - 2·1 + (4-1) + 1 = 10 (FCN / DCGAN upsampling)
    row("deconv-pad", "deconv", "16x5x5", "deconv 8/4/2/1",
        (8, 10, 10),
        trainable=16 * 8 * 4 * 4 + 8,
        macs=5 * 5 * 16 * 8 * 4 * 4,
        connections=None),  # see deconv-pad-connections
    # (5-1)·2 - 2·1 + (3-1) + 1 + 1 = 10
    row("deconv-pad-outpad", "deconv", "8x5x5", "deconv 4/3/2/1 outpad=1",
        (4, 10, 10),
        trainable=8 * 4 * 3 * 3 + 4,
        macs=5 * 5 * 8 * 4 * 3 * 3,
        connections=None),  # see deconv-pad-outpad-connections
    # Per axis, the full output has positions o = 2i + k (i = 0..4, k = 0..3), 0..11; padding 1
    # crops o = 0 and o = 11, which one product each reaches: 5·4 - 2 = 18 products per axis
    # land on kept output units.
    row("deconv-pad-connections", "deconv", "16x5x5", "deconv 8/4/2/1",
        (8, 10, 10),
        trainable=16 * 8 * 4 * 4 + 8,
        macs=5 * 5 * 16 * 8 * 4 * 4,
        connections=(5 * 4 - 2) * (5 * 4 - 2) * 16 * 8 + 8 * 10 * 10),
    # o = 2i + k (i = 0..4, k = 0..2), 0..10; the output keeps 1..10 (P at the start, P - outpad
    # at the end): only the product at o = 0 is lost, 5·3 - 1 = 14 per axis.
    row("deconv-pad-outpad-connections", "deconv", "8x5x5", "deconv 4/3/2/1 outpad=1",
        (4, 10, 10),
        trainable=8 * 4 * 3 * 3 + 4,
        macs=5 * 5 * 8 * 4 * 3 * 3,
        connections=(5 * 3 - 1) * (5 * 3 - 1) * 8 * 4 + 4 * 10 * 10),
    # --------------------------------------------------------------- pooling
    row("maxpool-2", "maxpool", "8x9x9", "maxpool 2",
        (8, (9 - 2) // 2 + 1, (9 - 2) // 2 + 1)),
    row("maxpool-3-2", "maxpool", "8x8x8", "maxpool 3/2",
        (8, (8 - 3) // 2 + 1, (8 - 3) // 2 + 1)),
    # ceil((8-3)/2) + 1 = 4; the last window starts at 3·2 = 6 < 8: kept
    row("maxpool-ceil", "maxpool", "8x8x8", "maxpool 3/2 ceil",
        (8, 4, 4)),
    row("maxpool-ceil-keyword", "maxpool", "8x8x8", "maxpool 3/2 ceil=true",
        (8, 4, 4)),
    # ceil((5+2-3)/3) + 1 = 3, but the third window would start at 2·3 = 6 >= 5 + 1,
    # inside the right padding: dropped, 2 (= floor's 4//3 + 1)
    row("maxpool-ceil-drops-window", "maxpool", "2x5x5", "maxpool 3/3/1 ceil",
        (2, 2, 2)),
    row("maxpool-alexnet", "maxpool", "96x55x55", "maxpool 3/2",
        (96, (55 - 3) // 2 + 1, (55 - 3) // 2 + 1)),
    # same: ceil(7 / 2) = 4
    row("maxpool-same", "maxpool", "2x7x7", "maxpool 3/2/same",
        (2, 4, 4)),
    row("maxpool-padded", "maxpool", "64x112x112", "maxpool 3/2/1",
        (64, (112 - 3 + 2) // 2 + 1, (112 - 3 + 2) // 2 + 1)),
    row("maxpool-1d", "maxpool", "2x9", "maxpool 3/2",
        (2, (9 - 3) // 2 + 1)),
    row("maxpool-3d", "maxpool", "4x4x6x6", "maxpool 2",
        (4, 2, 3, 3)),
    row("avgpool-2", "avgpool", "3x6x6", "avgpool 2",
        (3, 3, 3)),
    # floor: (6+2-3)//2 + 1 = 3; ceil: ceil(5/2) + 1 = 4, last start 6 < 6 + 1: kept
    row("avgpool-ceil-count-pad", "avgpool", "3x6x6", "avgpool 3/2/1 ceil count_pad",
        (3, 4, 4)),
    row("avgpool-floor-padded", "avgpool", "3x6x6", "avgpool 3/2/1",
        (3, (6 + 2 - 3) // 2 + 1, (6 + 2 - 3) // 2 + 1)),
    # ceil((8+2-3)/3) + 1 = 4; the fourth window would start at 9 >= 8 + 1: dropped
    row("avgpool-ceil-drops-window", "avgpool", "2x8x8", "avgpool 3/3/1 ceil",
        (2, 3, 3)),
    row("avgpool-1d-ceil", "avgpool", "2x10", "avgpool 3/2 ceil",
        (2, -(-(10 - 3) // 2) + 1)),
    row("gap", "gap", "8x5x7", "gap", (8, 1, 1)),
    row("gap-3d", "gap", "2x3x4x5", "gap", (2, 1, 1, 1)),
    row("gmp", "gmp", "8x5x7", "gmp", (8, 1, 1)),
    row("gmp-1d", "gmp", "4x10", "gmp", (4, 1)),
    # LeNet S2: 2 per map, connections 6·14·14·(2·2 + 1) = 5,880
    row("subsample", "subsample", "6x28x28", "subsample 2",
        (6, 14, 14),
        trainable=2 * 6,
        connections=6 * 14 * 14 * (2 * 2 + 1)),
    row("subsample-1d", "subsample", "2x9", "subsample 3",
        (2, 3),
        trainable=2 * 2,
        connections=2 * 3 * (3 + 1)),
    # unpool restores the shape of the labelled maxpool's input
    row("unpool", "unpool", "3x8x8", "p: maxpool 2/2\nconv 3/3/1/1\nunpool of=@p",
        (3, 8, 8),
        trainable=(3 * 3 * 3 + 1) * 3,
        macs=4 * 4 * 3 * (3 * 3 * 3),
        connections=4 * 4 * 3 * (3 * 3 * 3 + 1),
        layers={"p": ("maxpool", (3, 4, 4))}),
    row("unpool-odd", "unpool", "3x9x9", "p: maxpool 2\nunpool of=@p",
        (3, 9, 9),
        layers={"p": ("maxpool", (3, 4, 4))}),
    row("unpool-explicit", "unpool", "2x7x7", "p: maxpool 3/2/1\nunpool 3/2 of=@p",
        (2, 7, 7),
        layers={"p": ("maxpool", (2, (7 + 2 - 3) // 2 + 1, (7 + 2 - 3) // 2 + 1))}),
    row("upsample", "upsample", "4x5x5", "upsample 2", (4, 10, 10)),
    row("upsample-default", "upsample", "4x5x5", "upsample", (4, 10, 10)),
    row("upsample-per-axis-linear", "upsample", "4x5x5", "upsample 2x3 mode=linear", (4, 10, 15)),
    row("upsample-1d", "upsample", "2x7", "upsample 3", (2, 21)),
    # adaptive pooling: the output size is the argument, whatever the input
    row("adaptive_avgpool", "adaptive_avgpool", "8x14x14", "adaptive_avgpool 4", (8, 4, 4)),
    row("adaptive_avgpool-divides", "adaptive_avgpool", "8x8x8", "adaptive_avgpool 4", (8, 4, 4)),
    row("adaptive_avgpool-per-axis", "adaptive_avgpool", "3x7x9", "adaptive_avgpool 3x2", (3, 3, 2)),
    row("adaptive_avgpool-3d", "adaptive_avgpool", "2x5x6x7", "adaptive_avgpool 2", (2, 2, 2, 2)),
    row("adaptive_maxpool", "adaptive_maxpool", "8x7x7", "adaptive_maxpool 3", (8, 3, 3)),
    row("adaptive_maxpool-1d", "adaptive_maxpool", "4x10", "adaptive_maxpool 4", (4, 4)),
    # --------------------------------------------------------- normalisation
    row("bn", "bn", "16x4x4", "bn", (16, 4, 4), trainable=2 * 16, fixed=2 * 16),
    row("bn-keywords", "bn", "16x4x4", "bn eps=1e-3 momentum=0.01", (16, 4, 4), trainable=2 * 16, fixed=2 * 16),
    row("bn-vector", "bn", "10", "bn", (10,), trainable=2 * 10, fixed=2 * 10),
    row("bn-1d", "bn", "8x10", "bn", (8, 10), trainable=2 * 8, fixed=2 * 8),
    row("lrn", "lrn", "96x27x27", "lrn 5 alpha=1e-4 beta=0.75 k=2", (96, 27, 27)),
    # Caffe's cifar10_full norm1: within each channel, no weights
    row("lrn-within", "lrn", "32x16x16", "lrn 3 alpha=5e-5 beta=0.75 region=within", (32, 16, 16)),
    row("lcn", "lcn", "3x16x16", "lcn 9 sigma=2", (3, 16, 16)),
    row("ln", "ln", "8x4x4", "ln", (8, 4, 4), trainable=2 * 8),
    row("ln-over-all", "ln", "8x4x4", "ln over=all", (8, 4, 4), trainable=2 * 8),
    # ConvNeXt's LayerNorm2d: γ and β per channel, shared by the positions
    row("ln-over-channels", "ln", "8x4x4", "ln over=channels", (8, 4, 4), trainable=2 * 8),
    row("ln-over-channels-1d", "ln", "6x10", "ln over=channels eps=1e-6", (6, 10), trainable=2 * 6),
    row("gn", "gn", "8x4x4", "gn 4", (8, 4, 4), trainable=2 * 8),
    row("gn-1d", "gn", "6x10", "gn 3 eps=1e-3", (6, 10), trainable=2 * 6),
    row("instnorm", "instnorm", "8x4x4", "instnorm", (8, 4, 4), trainable=2 * 8),
    # ----------------------------------------------------------------- dense
    row("fc-flattens", "fc", "16x5x5", "fc 10",
        (10,),
        trainable=(16 * 5 * 5 + 1) * 10,
        macs=16 * 5 * 5 * 10,
        connections=(16 * 5 * 5 + 1) * 10),
    row("fc-3d-input", "fc", "2x2x3x3", "fc 5",
        (5,),
        trainable=(2 * 2 * 3 * 3 + 1) * 5,
        macs=2 * 2 * 3 * 3 * 5,
        connections=(2 * 2 * 3 * 3 + 1) * 5),
    row("fc-no-bias", "fc", "120", "fc 84 bias=false",
        (84,),
        trainable=120 * 84,
        macs=120 * 84,
        connections=120 * 84),
    # LeNet-5 output: 84·10 fixed centres, 840 connections
    row("rbf", "rbf", "84", "rbf 10",
        (10,),
        fixed=84 * 10,
        macs=84 * 10,
        connections=84 * 10),
    row("rbf-trainable", "rbf", "84", "rbf 10 trainable=true",
        (10,),
        trainable=84 * 10,
        macs=84 * 10,
        connections=84 * 10),
    row("rbf-trainable-flag", "rbf", "4x2x2", "rbf 3 trainable",
        (3,),
        trainable=4 * 2 * 2 * 3,
        macs=4 * 2 * 2 * 3,
        connections=4 * 2 * 2 * 3),
    row("flatten", "flatten", "16x5x5", "flatten", (16 * 5 * 5,)),
    row("flatten-1d", "flatten", "3x7", "flatten", (3 * 7,)),
    row("softmax", "softmax", "10", "softmax", (10,)),
    row("softmax-maps", "softmax", "10x4x4", "softmax", (10, 4, 4)),
    row("dropout", "dropout", "8x4x4", "dropout 0.3", (8, 4, 4)),
    row("dropout-default", "dropout", "8x4x4", "dropout", (8, 4, 4)),
    # ----------------------------------------------------------- activations
    *[row(name, name, "16x4x4", name, (16, 4, 4))
      for name in ("relu", "relu6", "sigmoid", "tanh", "scaled_tanh", "abs", "elu", "gelu", "silu", "hardswish")],
    row("leaky_relu", "leaky_relu", "16x4x4", "leaky_relu 0.2", (16, 4, 4)),
    row("leaky_relu-default", "leaky_relu", "16x4x4", "leaky_relu", (16, 4, 4)),
    row("elu-alpha", "elu", "16x4x4", "elu alpha=0.5", (16, 4, 4)),
    row("prelu", "prelu", "16x4x4", "prelu", (16, 4, 4), trainable=16),
    row("prelu-1d", "prelu", "6x10", "prelu", (6, 10), trainable=6),
    row("prelu-vector", "prelu", "10", "prelu", (10,), trainable=10),
    row("hardsigmoid", "hardsigmoid", "16x4x4", "hardsigmoid", (16, 4, 4)),
    row("hardsigmoid-keywords", "hardsigmoid", "16x4x4", "hardsigmoid alpha=0.2 beta=0.5", (16, 4, 4)),
    row("mish", "mish", "16x4x4", "mish", (16, 4, 4)),
    row("power", "power", "16x4x4", "power 2 scale=0.5 shift=1", (16, 4, 4)),
    row("softplus", "softplus", "16x4x4", "softplus", (16, 4, 4)),
    row("softplus-beta", "softplus", "6x10", "softplus beta=2", (6, 10)),
    # ---------------------------------------------------- stochastic depth, layer scale
    row("drop_path", "drop_path", "8x4x4", "drop_path 0.2", (8, 4, 4)),
    # one multiplier per channel; connections: fan-in 1 per output unit (LeNet, as subsample)
    row("scale", "scale", "16x4x4", "scale init=1e-6",
        (16, 4, 4),
        trainable=16,
        connections=16 * 4 * 4 * 1),
    row("scale-bias", "scale", "6x10", "scale bias=true",
        (6, 10),
        trainable=2 * 6,
        connections=6 * 10 * (1 + 1)),
    row("scale-vector", "scale", "10", "scale", (10,), trainable=10, connections=10),
    # ------------------------------------------------------------- reshaping
    row("crop", "crop", "3x7x7", "crop 4x4", (3, 4, 4)),
    row("crop-center", "crop", "3x7x7", "crop 4x4 center", (3, 4, 4)),
    row("crop-offset", "crop", "3x7x7", "crop 4x4 offset=1x3", (3, 4, 4)),
    row("crop-1d", "crop", "2x9", "crop 5", (2, 5)),
    row("crop-fields", "crop", "3x7x7", "crop 4/5", (3, 4, 5)),
    row("crop-scalar", "crop", "3x7x7", "crop 4", (3, 4, 4)),
    row("crop-3d-fields-center", "crop", "2x5x5x5", "crop 2/3/4 center", (2, 2, 3, 4)),
    row("crop-to-label", "crop", "3x10x10", "big: conv 5/1\nsmall: maxpool 2\n@big\ncrop to=@small center",
        (5, 5, 5),
        trainable=(3 + 1) * 5,
        macs=10 * 10 * 5 * 3,
        connections=10 * 10 * 5 * (3 + 1),
        layers={"small": ("maxpool", (5, 5, 5))}),
    row("pad", "pad", "3x5x5", "pad 2", (3, 5 + 2 * 2, 5 + 2 * 2)),
    row("pad-per-axis-reflect", "pad", "3x5x5", "pad 1x2 mode=reflect", (3, 5 + 2 * 1, 5 + 2 * 2)),
    row("pad-1d-replicate", "pad", "2x5", "pad 3 mode=replicate", (2, 5 + 2 * 3)),
    row("shuffle", "shuffle", "8x4x4", "shuffle 4", (8, 4, 4)),
    # ShuffleNetV2's split of 32 channels into 0..15 and 16..31
    row("slice", "slice", "32x8x8", "slice 0/16", (16 - 0, 8, 8)),
    row("slice-end", "slice", "32x8x8", "slice 16/32", (32 - 16, 8, 8)),
    row("slice-vector", "slice", "10", "slice 3/4", (4 - 3,)),
    # C·S^n channels, W/S per axis
    row("space_to_depth", "space_to_depth", "3x8x6", "space_to_depth 2", (3 * 2 * 2, 8 // 2, 6 // 2)),
    # YOLOv2's reorg: 64x38x38 -> 256x19x19
    row("space_to_depth-darknet", "space_to_depth", "64x38x38", "space_to_depth 2 order=darknet",
        (64 * 2 * 2, 38 // 2, 38 // 2)),
    row("space_to_depth-1d", "space_to_depth", "4x9", "space_to_depth 3", (4 * 3, 9 // 3)),
    row("space_to_depth-3d", "space_to_depth", "2x4x2x6", "space_to_depth 2", (2 * 2 * 2 * 2, 2, 1, 3)),
    # ----------------------------------------------------------- combinators
    # Darknet's shortcut from 64 to 256 channels (pjreddie's resnet50.cfg): no weights
    row("add-fit-first", "add", "64x8x8", "add(fit=first) { conv 256/1 bias=false ; _ }", (256, 8, 8),
        trainable=64 * 256, macs=8 * 8 * 256 * 64, connections=8 * 8 * 256 * 64),
    row("add", "add", "16x8x8", "add { _ ; conv 16/3/1/1 }",
        (16, 8, 8),
        trainable=(3 * 3 * 16 + 1) * 16,
        macs=8 * 8 * 16 * (3 * 3 * 16),
        connections=8 * 8 * 16 * (3 * 3 * 16 + 1)),
    row("add-three-branches", "add", "16x8x8",
        "add {\n    _\n    conv 16/1\n    { conv 16/1 -> relu\n      conv 16/3/1/1 }\n}",
        (16, 8, 8),
        trainable=2 * (16 + 1) * 16 + (3 * 3 * 16 + 1) * 16,
        macs=2 * 8 * 8 * 16 * 16 + 8 * 8 * 16 * (3 * 3 * 16),
        connections=2 * 8 * 8 * 16 * (16 + 1) + 8 * 8 * 16 * (3 * 3 * 16 + 1)),
    # squeeze-excitation: 16x1x1 gates times 16x8x8
    row("mul-broadcast", "mul", "16x8x8", "mul { _ ; gap -> conv 4/1 -> relu -> conv 16/1 -> sigmoid }",
        (16, 8, 8),
        trainable=(16 + 1) * 4 + (4 + 1) * 16,
        macs=1 * 1 * 4 * 16 + 1 * 1 * 16 * 4,
        connections=(16 + 1) * 4 + (4 + 1) * 16),
    # in.c is the combinator's input (32): conv 2/1 then conv 32/1
    row("mul-in-c", "mul", "32x8x8", "mul { _ ; gap -> conv (in.c // 16)/1 -> relu -> conv in.c/1 -> sigmoid }",
        (32, 8, 8),
        trainable=(32 + 1) * 2 + (2 + 1) * 32,
        macs=32 * 2 + 2 * 32,
        connections=(32 + 1) * 2 + (2 + 1) * 32),
    row("mul-broadcast-first", "mul", "16x8x8", "mul { gap ; _ }", (16, 8, 8)),
    row("concat", "concat", "16x8x8", "concat { conv 8/1 ; conv 4/3/1/1 ; _ }",
        (8 + 4 + 16, 8, 8),
        trainable=(16 + 1) * 8 + (3 * 3 * 16 + 1) * 4,
        macs=8 * 8 * 8 * 16 + 8 * 8 * 4 * (3 * 3 * 16),
        connections=8 * 8 * 8 * (16 + 1) + 8 * 8 * 4 * (3 * 3 * 16 + 1)),
    # U-Net: the 4x12x12 skip is cropped (centre) to the 8x8 of the other branch
    row("concat-crop-center", "concat", "4x12x12", "enc: conv 4/1\nconv 8/5\nconcat(crop=center) { _ ; @enc }",
        (8 + 4, 8, 8),
        trainable=(4 + 1) * 4 + (5 * 5 * 4 + 1) * 8,
        macs=12 * 12 * 4 * 4 + 8 * 8 * 8 * (5 * 5 * 4),
        connections=12 * 12 * 4 * (4 + 1) + 8 * 8 * 8 * (5 * 5 * 4 + 1),
        layers={"crop": ("crop", (4, 8, 8))}),
    # GoogLeNet 3a (LANGUAGE.md §8): 64 + 128 + 32 + 32 = 256 maps
    row("concat-inception-3a", "concat", "192x28x28", "inception(64, 96, 128, 16, 32, 32)",
        (64 + 128 + 32 + 32, 28, 28),
        prelude=INCEPTION,
        trainable=(192 + 1) * 64 + (192 + 1) * 96 + (3 * 3 * 96 + 1) * 128 + (192 + 1) * 16
        + (5 * 5 * 16 + 1) * 32 + (192 + 1) * 32,
        macs=28 * 28 * (64 * 192 + 96 * 192 + 128 * 3 * 3 * 96 + 16 * 192 + 32 * 5 * 5 * 16 + 32 * 192),
        connections=28 * 28 * ((192 + 1) * 64 + (192 + 1) * 96 + (3 * 3 * 96 + 1) * 128 + (192 + 1) * 16
                               + (5 * 5 * 16 + 1) * 32 + (192 + 1) * 32)),
    # residual, shortcut auto, shape kept: the identity
    row("residual-auto-identity", "residual", "16x8x8", "residual { conv 16/3/1/1 -> bn -> relu ; conv 16/3/1/1 -> bn }",
        (16, 8, 8),
        trainable=2 * (3 * 3 * 16 + 1) * 16 + 2 * (2 * 16),
        fixed=2 * (2 * 16),
        macs=2 * 8 * 8 * 16 * (3 * 3 * 16),
        connections=2 * 8 * 8 * 16 * (3 * 3 * 16 + 1)),
    # shortcut auto, shape changes: conv 32/1/2 + bn; body floor((8+2-3)/2)+1 = 4
    row("residual-auto-projection", "residual", "16x8x8", "residual { conv 32/3/2/1 -> bn }",
        (32, 4, 4),
        trainable=(3 * 3 * 16 + 1) * 32 + 2 * 32 + (16 + 1) * 32 + 2 * 32,
        fixed=2 * 32 + 2 * 32,
        macs=4 * 4 * 32 * (3 * 3 * 16) + 4 * 4 * 32 * 16,
        connections=4 * 4 * 32 * (3 * 3 * 16 + 1) + 4 * 4 * 32 * (16 + 1),
        layers={"shortcut": ("conv", (32, 4, 4)), "shortcut_bn": ("bn", (32, 4, 4))}),
    row("residual-auto-projection-no-bias", "residual", "16x8x8", "residual { conv 32/3/2/1 -> bn }",
        (32, 4, 4),
        prelude="default conv bias=false",
        trainable=3 * 3 * 16 * 32 + 2 * 32 + 16 * 32 + 2 * 32,
        fixed=2 * 32 + 2 * 32,
        macs=4 * 4 * 32 * (3 * 3 * 16) + 4 * 4 * 32 * 16,
        connections=4 * 4 * 32 * (3 * 3 * 16) + 4 * 4 * 32 * 16),
    row("residual-identity", "residual", "16x8x8", "residual(shortcut=identity) { conv 16/3/1/1 }",
        (16, 8, 8),
        trainable=(3 * 3 * 16 + 1) * 16,
        macs=8 * 8 * 16 * (3 * 3 * 16),
        connections=8 * 8 * 16 * (3 * 3 * 16 + 1)),
    # option A: 9x9 subsampled by 2 gives ceil(9/2) = 5 = floor((9+2-3)/2)+1, 16 zero maps appended
    row("residual-pad", "residual", "16x9x9", "residual(shortcut=pad) { conv 32/3/2/1 }",
        (32, 5, 5),
        trainable=(3 * 3 * 16 + 1) * 32,
        macs=5 * 5 * 32 * (3 * 3 * 16),
        connections=5 * 5 * 32 * (3 * 3 * 16 + 1),
        layers={"shortcut": ("shortcut_pad", (32, 5, 5))}),
    row("residual-conv", "residual", "16x8x8", "residual(shortcut=conv) { conv 32/3/2/1 }",
        (32, 4, 4),
        trainable=(3 * 3 * 16 + 1) * 32 + (16 + 1) * 32,
        macs=4 * 4 * 32 * (3 * 3 * 16) + 4 * 4 * 32 * 16,
        connections=4 * 4 * 32 * (3 * 3 * 16 + 1) + 4 * 4 * 32 * (16 + 1),
        layers={"shortcut": ("conv", (32, 4, 4))}),
]
# fmt: on


@cache
def _compile(text: str) -> cnndsl.Model:
    return cnndsl.load(text)


def compile_case(case: Case) -> cnndsl.Model:
    return _compile(case.text())


def _cases():
    return [p.values[0] for p in CASES]


@pytest.mark.parametrize("case", CASES)
def test_layer_table(case: Case):
    m = compile_case(case)
    assert m.layers[-1].kind == case.kind, "the snippet's last layer is not the kind under test"
    assert m.outputs[0][1] == case.shape
    assert m.layers[-1].output == case.shape
    t = m.totals
    assert (t.trainable_params, t.non_trainable_params) == (case.trainable, case.fixed)
    assert t.params == case.trainable + case.fixed
    assert sum(r.params for r in m.layers) == case.trainable + case.fixed
    assert t.macs == case.macs
    assert t.flops == 2 * case.macs
    if case.connections is not None:
        got = sum(r.connections for r in m.layers if r.kind not in AMBIGUOUS_CONNECTIONS)
        assert got == case.connections
    for name, (kind, shape) in case.layers.items():
        layer = m.layer(name)
        assert (layer.kind, layer.output) == (kind, shape), name


def test_every_kind_has_a_row():
    """Adding a layer kind forces a row: every kind of the catalogue (internal ones
    included) is compiled by at least one row, and every public kind is the kind
    under test of one."""
    compiled = set()
    for case in _cases():
        compiled |= {r.kind for r in compile_case(case).layers}
    assert set(CATALOGUE) - compiled == set()
    assert set(PUBLIC) - {case.kind for case in _cases()} == set()


def _is_int(v) -> bool:
    return type(v) is int


def _sample_nodes():
    """For each kind, one node of the table that has it: (kind name, graph, node)."""
    seen = {}
    for case in _cases():
        graph = compile_case(case).graph
        for node in graph.nodes[1:]:
            seen.setdefault(node.kind, (graph, node))
    return seen


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_rules_return_the_right_types(name):
    """Every rule of every kind, called directly on a sample input from the table."""
    kind = CATALOGUE[name]
    assert isinstance(kind, Kind) and kind.name == name
    assert type(kind).lower is not Kind.lower, f"{name} has no ONNX lowering"
    graph, node = _sample_nodes()[name]
    a = dict(node.attrs)
    shapes = [graph.nodes[i].shape for i in node.inputs]
    x = shapes[0]
    if kind.combinator:
        y = kind.combine(a, shapes, [f"branch {i}" for i in range(len(shapes))])
        assert type(y) is tuple and all(_is_int(v) and v >= 1 for v in y)
        assert y == node.shape
        return
    assert kind.check(a, x) is None
    y = kind.shape(a, x)
    assert type(y) is tuple and all(_is_int(v) and v >= 1 for v in y)
    assert y == node.shape
    params = kind.params(a, x, y)
    assert type(params) is tuple and len(params) == 2 and all(_is_int(v) and v >= 0 for v in params)
    for rule in (kind.macs, kind.connections):
        v = rule(a, x, y)
        assert _is_int(v) and v >= 0, rule.__name__
    window = kind.window(a, x, y)
    if window is not None:
        steps, strides = window
        rank = len(x) - 1
        assert type(steps) is tuple and len(steps) == rank and all(_is_int(v) and v >= 1 for v in steps)
        assert type(strides) is tuple and len(strides) == rank
        assert all((_is_int(v) or type(v) is Fraction) and v > 0 for v in strides)
    warnings = kind.warnings(a, x, y)
    assert type(warnings) is list
    for message, arg in warnings:
        assert type(message) is str and (arg is None or type(arg) is str)


# ------------------------------------------------------------- receptive field
# rf_out = rf_in + (F - 1)·jump_in and jump_out = jump_in·S, from rf 1, jump 1 at the input.
RF_CASES = [
    pytest.param(
        "conv 4/3/1\nconv 4/3/1\nconv 4/3/1", [(3, 1), (3 + 2 * 1, 1), (3 + 2 * 1 + 2 * 1, 1)], id="conv3s1-x3"
    ),
    pytest.param("conv 4/3/1 * 3", [(3, 1), (5, 1), (7, 1)], id="conv3s1-repeat"),
    pytest.param("conv 4/3/2\nconv 4/3/1", [(3, 2), (3 + (3 - 1) * 2, 2)], id="conv3s2-conv3s1"),
    pytest.param("maxpool 2\nconv 4/3/1/1\nconv 4/3/2", [(2, 2), (2 + 2 * 2, 2), (6 + 2 * 2, 4)], id="pool-conv-conv"),
    # a dilated 3x3 (d = 2) spans 5 inputs
    pytest.param("conv 4/3 dilation=2\nconv 4/3", [(5, 1), (7, 1)], id="dilation"),
    # upsampling divides the jump: 2·(1/2) = 1, then a 3-wide conv adds (3-1)·1
    pytest.param("conv 4/3/2\nupsample 2\nconv 4/3", [(3, 2), (3, 1), (3 + 2 * 1, 1)], id="upsample"),
    pytest.param(
        "upsample 2\nconv 4/3", [(1, Fraction(1, 2)), (1 + 2 * Fraction(1, 2), Fraction(1, 2))], id="upsample-fraction"
    ),
    # a deconv 2/2 output sees ceil(2/2) = 1 input position; the jump is divided by 2
    pytest.param("conv 4/3/2\ndeconv 4/2/2", [(3, 2), (3, 1)], id="deconv"),
    # pointwise layers keep the field
    pytest.param("conv 4/3/2\nbn\nrelu", [(3, 2), (3, 2), (3, 2)], id="pointwise"),
    # space_to_depth S is a window of S with stride S
    pytest.param("space_to_depth 2\nconv 4/3", [(2, 2), (2 + 2 * 2, 2)], id="space_to_depth"),
    # adaptive 32 -> 4: window = stride = 32/4 = 8, as an ordinary pool
    pytest.param("adaptive_avgpool 4", [(8, 8)], id="adaptive-divides"),
    # 32 -> 5: the widest cell, ceil(32/5) + 1 = 8 (cell 1 reads 6 … ceil(64/5) − 1 = 12: 7; cell 2
    # reads 12 … 19: 8), and the mean step 32/5 between cells (a fraction: a float in the report)
    pytest.param("adaptive_maxpool 5", [(8, 32 / 5)], id="adaptive-does-not-divide"),
    pytest.param("adaptive_maxpool 5\nconv 4/3", [(8, 32 / 5), (8 + 2 * 32 / 5, 32 / 5)], id="adaptive-then-conv"),
]


@pytest.mark.parametrize("body, expected", RF_CASES)
def test_receptive_field(body, expected):
    m = cnndsl.load(f"network t {{\n    input 1x32x32\n{body}\n}}\n")
    got = [(r.receptive_field, r.jump) for r in m.layers]
    assert got == [((rf, rf), (j, j)) for rf, j in expected]


def test_receptive_field_1d_and_3d():
    m = cnndsl.load("network t {\n    input 2x40\nconv 4/3/2\nconv 4/3/1\n}\n")
    assert (m.layers[-1].receptive_field, m.layers[-1].jump) == ((7,), (2,))
    m = cnndsl.load("network t {\n    input 2x9x9x9\nconv 4/3/2\nconv 4/3/1\n}\n")
    assert (m.layers[-1].receptive_field, m.layers[-1].jump) == ((7, 7, 7), (2, 2, 2))


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_rules_are_pure(name):
    """Canonical arguments are made once and never changed: the IR keeps no private keys, every
    rule runs on a read-only mapping, and canonicalising canonical arguments changes nothing."""
    from types import MappingProxyType

    kind = CATALOGUE[name]
    graph, node = _sample_nodes()[name]
    assert isinstance(node.attrs, MappingProxyType)
    assert [k for k in node.attrs if k.startswith("_")] == []
    assert set(kind.all_args()) <= set(node.attrs)
    a = MappingProxyType(dict(node.attrs))
    shapes = [graph.nodes[i].shape for i in node.inputs]
    x = shapes[0]
    if kind.combinator:
        assert kind.combine(a, shapes, ["b"] * len(shapes)) == node.shape
        return
    assert dict(kind.canonical(a, x)) == dict(a)
    kind.check(a, x)
    y = kind.shape(a, x)
    for rule in (kind.params, kind.macs, kind.connections, kind.window, kind.warnings):
        rule(a, x, y)
    assert dict(a) == dict(node.attrs)


def test_receptive_field_of_a_squeeze_excitation_follows_the_full_size_branch():
    # conv 3x3 -> RF 3, jump 1; the mul's main path is its full-size branch (RF 3), not the
    # broadcast gate after gap (which sees all 30x30 positions); the next 3x3 conv: 3 + 2 = 5
    m = cnndsl.load(
        "network n {\n    input 3x32x32\n    conv 8/3 -> mul { _ ; gap -> conv 8/1 -> sigmoid } -> conv 8/3\n}\n"
    )
    assert [(r.kind, r.receptive_field) for r in m.layers] == [
        ("conv", (3, 3)),
        ("gap", (32, 32)),
        ("conv", (32, 32)),
        ("sigmoid", (32, 32)),
        ("mul", (3, 3)),
        ("conv", (5, 5)),
    ]
