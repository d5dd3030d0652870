"""cnndsl: a compiler for the .net language of convolutional networks.

>>> import cnndsl
>>> m = cnndsl.load("network tiny { input 1x28x28\\n conv 8/3 -> relu -> fc 10 }")
>>> m.totals.params, m.outputs
(54170, [('output', (10,))])
"""

from __future__ import annotations

from cnndsl.errors import CnnError, Diagnostic
from cnndsl.ir.compile import compile_network, load, load_module, run_deep
from cnndsl.ir.model import Model
from cnndsl.lower.pytorch import to_torch
from cnndsl.version import __version__

# ``model.to_torch()``: the generated PyTorch module (cnndsl/lower/pytorch.py; torch imported then).
# Attached here, in the API layer, because the IR's Model may not import the lowering stage.
Model.to_torch = to_torch

__all__ = ["load", "load_module", "compile_network", "run_deep", "Model", "CnnError", "Diagnostic", "__version__"]
