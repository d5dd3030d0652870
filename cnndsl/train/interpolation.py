"""Linear interpolation with half-pixel centres, as one matrix per axis.

Shared by the data sources (scaling images to the network's input) and the
adjoint of ONNX ``Resize`` (``dx = Aᵀ·dy`` along each axis).

    >>> linear_weights(2, 4)
    array([[1.  , 0.  ],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.  , 1.  ]])
"""

from __future__ import annotations

import numpy as np


def linear_weights(n_in: int, n_out: int, scale: int | None = None) -> np.ndarray:
    """(n_out, n_in) float64 matrix of linear interpolation with half-pixel centres.

    Output i samples input position ``(i + 0.5) * (n_in / n_out) - 0.5`` (PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)`` per axis), or with ONNX Resize's
    whole ``scale`` (``n_out = scale * n_in``) ``(i + 0.5) / scale - 0.5``, as ONNX's
    ``half_pixel`` rule writes it; the position is clamped to the edges. The two forms
    differ in the last bit for some sizes, and each caller keeps its own reference's.
    """
    centres = np.arange(n_out) + 0.5
    src = np.maximum((centres / scale if scale else centres * (n_in / n_out)) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(w, (rows, lo), 1 - frac)
    np.add.at(w, (rows, hi), frac)
    return w
