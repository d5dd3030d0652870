"""The layer catalogue: every layer kind, registered explicitly.

Adding a kind = one class in one of these modules + one line here + one row in
the layer test table (tests/test_layers.py), which also checks that every kind
implements every rule it needs.
"""

from __future__ import annotations

from cnndsl.errors import did_you_mean

from . import activation, combine, conv, dense, norm, pool, reshape
from .base import Kind, LayerError, Spec, Symbol, Table, ValueRef, coerce

_KINDS: tuple[type[Kind], ...] = (
    conv.Conv,
    conv.Deconv,
    pool.MaxPool,
    pool.AvgPool,
    pool.Gap,
    pool.Gmp,
    pool.Subsample,
    pool.Unpool,
    pool.Upsample,
    pool.AdaptiveAvgPool,
    pool.AdaptiveMaxPool,
    norm.BatchNorm,
    norm.LRN,
    norm.LCN,
    norm.LayerNorm,
    norm.GroupNorm,
    norm.InstanceNorm,
    norm.Scale,
    dense.FC,
    dense.RBF,
    dense.Flatten,
    dense.Softmax,
    dense.Dropout,
    dense.DropPath,
    activation.Relu,
    activation.Relu6,
    activation.Sigmoid,
    activation.Tanh,
    activation.ScaledTanh,
    activation.Abs,
    activation.LeakyRelu,
    activation.Elu,
    activation.Gelu,
    activation.Silu,
    activation.Hardswish,
    activation.PRelu,
    activation.HardSigmoid,
    activation.Mish,
    activation.Softplus,
    activation.Power,
    reshape.Crop,
    reshape.Pad,
    reshape.Shuffle,
    reshape.ChannelSlice,
    reshape.SpaceToDepth,
    reshape.ShortcutPad,
    combine.Add,
    combine.Mul,
    combine.Concat,
    combine.Residual,
)

CATALOGUE: dict[str, Kind] = {cls.name: cls() for cls in _KINDS}
# Kinds a .net file may name (internal ones are made by the compiler itself).
PUBLIC: dict[str, Kind] = {n: k for n, k in CATALOGUE.items() if not getattr(k, "internal", False)}
# Other frameworks' names of kinds (Kind.look_alikes), lower case -> the kind's name.
LOOK_ALIKES: dict[str, str] = {alias: n for n, k in PUBLIC.items() for alias in k.look_alikes}


def suggest_kind(word: str, choices) -> str:
    """``"; did you mean 'fc'?"`` for an unknown kind: a look-alike (dense, Linear, BatchNorm2d)
    names its kind, else the closest of ``choices``."""
    kind = LOOK_ALIKES.get(word.lower())
    return f"; did you mean '{kind}'?" if kind else did_you_mean(word, choices)


# The order in which the ONNX importer tries the kinds' recognisers (Kind.onnx_import): the first
# that accepts a group of operators reads it. Most patterns exclude each other; where they overlap
# the order decides: ln before instnorm (one channel is both), gn after both; drop_path before
# dropout (cnndsl's own inference-mode Dropout); slice before crop (a Slice of the channels, not of
# space); space_to_depth before shuffle (both Reshape, Transpose, Reshape); an adaptive pool whose
# output size divides its input is an ordinary pool and reads back as avgpool or maxpool.
_ONNX_IMPORT: tuple[type[Kind], ...] = (
    conv.Conv,
    conv.Deconv,
    pool.MaxPool,
    pool.AvgPool,
    pool.Subsample,
    pool.Gap,
    pool.Gmp,
    pool.AdaptiveAvgPool,
    pool.AdaptiveMaxPool,
    activation.Relu,
    activation.Sigmoid,
    activation.Tanh,
    activation.Abs,
    activation.Hardswish,
    activation.PRelu,
    activation.HardSigmoid,
    activation.Softplus,
    activation.Mish,
    norm.Scale,
    dense.Flatten,
    dense.FC,
    norm.BatchNorm,
    norm.LRN,
    activation.Power,
    activation.LeakyRelu,
    activation.Elu,
    activation.Relu6,
    activation.ScaledTanh,
    activation.Gelu,
    activation.Silu,
    dense.Softmax,
    dense.DropPath,
    dense.Dropout,
    combine.Concat,
    combine.Add,
    combine.Mul,
    reshape.ShortcutPad,
    reshape.ChannelSlice,
    reshape.Crop,
    reshape.Pad,
    reshape.SpaceToDepth,
    reshape.Shuffle,
    norm.LayerNorm,
    norm.InstanceNorm,
    norm.GroupNorm,
    dense.RBF,
    pool.Unpool,
    pool.Upsample,
    norm.LCN,
)
ONNX_IMPORT: tuple[Kind, ...] = tuple(CATALOGUE[cls.name] for cls in _ONNX_IMPORT)

__all__ = ["CATALOGUE", "ONNX_IMPORT", "PUBLIC", "Kind", "LayerError", "Spec", "Symbol", "Table", "ValueRef", "coerce"]
