"""Weight files in (``--weights``): reading them, and matching their names to the network's.

One path for every format: :func:`read_weights` turns a ``.npz``, ``.safetensors``
(the safetensors package, no torch needed) or PyTorch ``.pt``/``.pth`` state dict
(``torch.load(weights_only=True)``: tensors and plain containers only, never an
arbitrary pickled object) into arrays by name, in the file's order; then
:func:`match_weights` pairs them with the network's weights: by exact name, then
through a ``--map`` file of regular-expression renames, then (``--map-by order``)
by execution order and shape. What is left over is named by the lowering
(missing, not in the network, wrong shape: E081).

A ``--map`` file holds one rename per line, ``PATTERN REPLACEMENT`` (Python ``re``
syntax, ``\\1`` for groups), ``#`` starting a comment; every rule applies in turn
to each name that does not match a weight of the network as it is::

    ^features\\.0\\.(weight|bias)$   conv1.\\1
    ^classifier\\.                  fc.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from cnndsl.errors import CnnError
from cnndsl.files import read_bytes

PT_SUFFIXES = (".pt", ".pth")
# The keys under which training scripts commonly save a model's state dict inside a checkpoint.
WRAPPERS = ("state_dict", "model_state_dict", "model")
# torch.nn's batch norm counts its training steps; the count is no weight of the network.
TORCH_COUNTERS = ".num_batches_tracked"


def read_weights(path) -> dict:
    """Arrays by name, in the file's order, from a .npz, .safetensors, .pt or .pth file (E082)."""
    path = Path(path)
    if path.suffix in PT_SUFFIXES:
        return _read_torch(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_npz(path)


def _read_npz(path: Path) -> dict:
    import numpy as np

    raw = read_bytes(path, "E082", f"--weights {path}")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # a corrupt or foreign file
        raise CnnError(f"--weights {path}: cannot read it as .npz: {err}", code="E082") from None


def _read_safetensors(path: Path) -> dict:
    try:
        from safetensors.numpy import load as load_safetensors
    except ImportError:
        raise CnnError(
            "--weights: reading .safetensors needs the safetensors package (pip install safetensors)", code="E082"
        ) from None
    raw = read_bytes(path, "E082", f"--weights {path}")
    try:
        return dict(load_safetensors(raw))
    except Exception as err:  # a corrupt or foreign file
        raise CnnError(f"--weights {path}: cannot read it as .safetensors: {err}", code="E082") from None


def _read_torch(path: Path) -> dict:
    """A state dict saved with ``torch.save``: loaded with ``weights_only=True``, so that the
    file can hold tensors and plain containers only (no code runs while reading it)."""
    try:
        import torch
    except ImportError:
        raise CnnError(
            f"--weights {path}: reading {path.suffix} files needs PyTorch (pip install 'cnndsl[torch]'); "
            "without it, save the state dict as .safetensors",
            code="E082",
        ) from None
    raw = read_bytes(path, "E082", f"--weights {path}")
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file, or one holding objects other than tensors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CnnError(
            f"--weights {path}: cannot read it as a PyTorch state dict (weights only): {first}", code="E082"
        ) from None
    if isinstance(data, dict) and not any(isinstance(v, torch.Tensor) for v in data.values()):
        inner = [k for k in WRAPPERS if isinstance(data.get(k), dict)]
        if inner:
            data = data[inner[0]]
    if not isinstance(data, dict):
        raise CnnError(
            f"--weights {path}: holds a {type(data).__name__}, not a state dict (tensors by name)", code="E082"
        )
    out = {}
    for name, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise CnnError(
                f"--weights {path}: '{name}' is a {type(value).__name__}, not a tensor; save model.state_dict()",
                code="E082",
            )
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # NumPy has no bfloat16
            value = value.float()
        out[str(name)] = value.numpy()
    return out


def read_map(path) -> list[tuple[re.Pattern, str, int]]:
    """The rules of a ``--map`` file: (pattern, replacement, line) each (E089 for a bad line)."""
    path = Path(path)
    text = read_bytes(path, "E089", f"--map {path}").decode("utf-8", "replace")
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise CnnError(
                f"--map {path}:{number}: expected PATTERN REPLACEMENT (two fields); received {line!r}", code="E089"
            )
        try:
            pattern = re.compile(parts[0])
            pattern.sub(parts[1], "")  # a bad group reference shows here
        except re.error as err:
            raise CnnError(f"--map {path}:{number}: {parts[0]!r} is not a valid rename: {err}", code="E089") from None
        rules.append((pattern, parts[1], number))
    return rules


def match_weights(
    given: dict, expected: list[tuple[str, tuple]], rules=(), by_order: bool = False
) -> tuple[dict, list[str]]:
    """The given arrays under the network's names, and what was done, one line each.

    ``expected`` is the network's weights as (name, shape) in execution order. Names
    equal to a weight's are kept; the others go through ``rules`` (:func:`read_map`);
    with ``by_order``, what is still unmatched is paired in order with the weights still
    missing, each pair checked by shape (E081 at the first that differs). torch's
    ``num_batches_tracked`` counters are dropped. Anything left is for the lowering to
    report (missing, not in the network, wrong shape)."""
    import numpy as np

    names = {n for n, _ in expected}
    out: dict = {}
    notes: list[str] = []
    rest: list[tuple[str, object]] = []
    counters = 0
    for name, arr in given.items():
        if name in names:
            out[name] = arr
            continue
        renamed = name
        for pattern, replacement, _ in rules:
            renamed = pattern.sub(replacement, renamed)
        if renamed != name and renamed in names:
            if renamed in out or renamed in given:
                raise CnnError(f"--map: {name} is renamed {renamed}, which the file holds already", code="E081")
            out[renamed] = arr
            notes.append(f"--map: {name} -> {renamed}")
        elif name.endswith(TORCH_COUNTERS) and np.asarray(arr).ndim == 0:
            counters += 1
        else:
            rest.append((name, arr))
    if counters:
        notes.append(
            f"ignored {counters} num_batches_tracked counter{'s' if counters != 1 else ''} (torch's batch norm)"
        )
    if by_order and rest:
        missing = [(n, s) for n, s in expected if n not in out]
        for (name, arr), (target, shape) in zip(rest, missing):
            arr = np.asarray(arr)
            if not _fits(arr.shape, shape):
                raise CnnError(
                    f"--map-by order: {name} {tuple(arr.shape)} cannot be {target} {tuple(shape)}: the shapes differ "
                    "(the file's tensors and the network's weights are paired in order)",
                    code="E081",
                )
            out[target] = arr
            notes.append(f"--map-by order: {name} {tuple(arr.shape)} -> {target}")
        rest = rest[len(missing) :]
    out.update((name, arr) for name, arr in rest)  # left for the lowering to name
    return out, notes


def _fits(got, want) -> bool:
    """Equal shapes, or (C,) for a (C, 1, ...) broadcast parameter (as the lowering accepts)."""
    got, want = tuple(got), tuple(want)
    return got == want or (got == tuple(s for s in want if s != 1) and len(got) == 1 and want[0] == got[0])
