"""Shared integer arithmetic of sliding windows, used by conv, deconv and pooling.

All sizes are per spatial axis; every function is pure and exact.
"""

from __future__ import annotations


def effective_kernel(f: int, dilation: int = 1) -> int:
    """A dilated kernel of extent f covers d·(f−1)+1 input positions."""
    return dilation * (f - 1) + 1


def same_pads(size: int, f_eff: int, stride: int) -> tuple[int, int]:
    """Padding that gives ceil(size / stride) outputs; the odd one goes at the end
    (TensorFlow's and ONNX's SAME_UPPER)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + f_eff - size, 0)
    return total // 2, total - total // 2


def window_out(size: int, f_eff: int, stride: int, pad_begin: int, pad_end: int, ceil: bool = False) -> int:
    """Number of window positions: floor((W − F + 2P)/S) + 1, or with ``ceil``
    rounded up, dropping a last window that would start inside the end padding
    (the PyTorch and onnxruntime rule). Returns 0 or less when the window does
    not fit at all."""
    span = size + pad_begin + pad_end - f_eff
    if span < 0:
        return 0
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def dropped_input(size: int, f_eff: int, stride: int, pad_begin: int, pad_end: int) -> int:
    """Real (non-padding) input positions at the end that no window covers, with
    floor rounding: the columns a stride that does not tile its input drops.

    A window narrower than its stride skips S − F positions between windows by
    design (a 1x1 stride-2 projection); only a tail beyond that gap counts."""
    rem = (size + pad_begin + pad_end - f_eff) % stride
    return max(rem - pad_end - max(stride - f_eff, 0), 0)


def transpose_out(size: int, f: int, stride: int, pad: int, dilation: int, outpad: int) -> int:
    """Transpose convolution: (W−1)·S − 2P + d·(F−1) + outpad + 1."""
    return (size - 1) * stride - 2 * pad + dilation * (f - 1) + outpad + 1


def prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape)
