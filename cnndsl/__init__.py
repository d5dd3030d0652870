"""cnndsl: a compiler for the .net language of convolutional networks.

>>> import cnndsl
>>> m = cnndsl.load("network tiny { input 1x28x28\\n conv 8/3 -> relu -> fc 10 }")
>>> m.totals.params, m.outputs
(54170, [('output', (10,))])
"""

from __future__ import annotations

import gc

# Importing the package makes tens of thousands of objects (modules, classes, functions, the
# parse tables) and no garbage: the garbage collector's passes meanwhile would find nothing to
# free (a tenth of `cnndsl info`'s start-up). After it, freeze + unfreeze puts every object in
# the oldest generation, as if it had survived the passes, so the young generation's first pass
# does not walk them all either; nothing stays frozen (and a process that froze objects of its
# own before importing cnndsl keeps them frozen: then this step is left out).
_collecting = gc.isenabled()
_frozen = gc.get_freeze_count()
gc.disable()
try:
    from cnndsl.api import Model, Table, load, predict
    from cnndsl.errors import CnnError, Diagnostic
    from cnndsl.ir.compile import compile_network, load_module, run_deep
    from cnndsl.version import __version__
finally:
    if not _frozen:
        gc.freeze()
        gc.unfreeze()
    if _collecting:
        gc.enable()

# cnndsl.train, the training stage's package, is callable: cnndsl.train(model, data, ...) is cnndsl.api.train

__all__ = [
    "load",
    "load_module",
    "compile_network",
    "run_deep",
    "Model",
    "Table",
    "train",
    "predict",
    "CnnError",
    "Diagnostic",
    "__version__",
]
