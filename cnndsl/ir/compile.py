"""The compile driver: a .net source (a path or the text) to a :class:`~cnndsl.ir.model.Model`,
through the parser and the module loader (:mod:`cnndsl.lang`) and the elaboration pass."""

from __future__ import annotations

import _thread  # threading's base, imported with the interpreter (threading costs ~1.5 ms of every start)
import gc
import os
import sys

from cnndsl.errors import CnnError, Span, did_you_mean
from cnndsl.ir.elaborate import MAX_LAYERS, Elaborator
from cnndsl.ir.model import Model
from cnndsl.lang.modules import Loader
from cnndsl.lang.values import INT_LIMIT, parse_literal

# Deeply nested files recurse as deep as they nest; run the compiler on a thread
# with a large stack so that the nesting limit (elaborate.MAX_DEPTH), not
# Python's recursion limit, is what a user meets.
_STACK_BYTES = 512 * 1024 * 1024
_RECURSION = 200_000


def run_deep(fn):
    """Run ``fn()`` on a thread with a large stack; re-raise what it raises."""
    result: dict = {}

    def target():
        # The compiler makes many small objects and few cycles: collecting during a
        # load costs more than it frees (a 10,000-layer file ran twice as long).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            result["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            result["error"] = err
        finally:
            if gc_was_enabled:
                gc.enable()

    done = _thread.allocate_lock()
    done.acquire()

    def run():
        try:
            target()
        finally:
            done.release()

    old_limit = sys.getrecursionlimit()
    old_stack = _thread.stack_size()
    try:
        _thread.stack_size(_STACK_BYTES)
        sys.setrecursionlimit(max(old_limit, _RECURSION))
        _thread.start_new_thread(run, ())
        done.acquire()  # the thread's end (Ctrl-C interrupts the wait, as a join)
    finally:
        _thread.stack_size(old_stack)
        sys.setrecursionlimit(old_limit)
    if "error" in result:
        raise result["error"]
    return result["value"]


def _is_path(source) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return isinstance(source, str) and "\n" not in source and "{" not in source and len(source) < 4096


def load_module(source, loader=None):
    """Parse a file (a path) or text and resolve its imports; returns a Module."""
    loader = loader or Loader()
    if _is_path(source):
        return loader.load_path(os.fspath(source), str(source))
    return loader.load_text(source)


def load(
    source, network: str | None = None, defines: dict | None = None, input=None, max_layers: int | None = None
) -> Model:
    """Compile one network of a .net file or text: shapes, parameters, MACs, connections.

    ``source``: a path (``str`` or ``Path``) or the text itself. ``defines`` sets
    network parameters (values may be strings as on the command line);
    ``input`` overrides the input shape (``(3, 512, 512)`` or ``"3x512x512"``).

        >>> load("network n(k = 4) { input 3x8x8\\n conv k/3 }", defines={"k": 6}).layers[0].output
        (6, 6, 6)
    """
    return run_deep(lambda: _load(source, network, defines or {}, input, max_layers))


def _load(source, network, defines, input_shape, max_layers):
    return compile_network(load_module(source), network, defines, input_shape, max_layers)


def compile_network(module, network, defines, input_shape=None, max_layers=None) -> Model:
    """Elaborate one network of an already loaded module (see :func:`load`)."""
    definition = pick_network(module, network)
    values = {}
    for name, value in defines.items():
        shown = value if isinstance(value, str) else "x".join(map(str, value)) if isinstance(value, tuple) else value
        if isinstance(value, str):
            parsed = parse_literal(value)
            if parsed is None:
                raise CnnError(f"-D {name}={value}: expected a number, true/false, dimensions or a word", code="E052")
            value = parsed
        if any(isinstance(v, int) and abs(v) > INT_LIMIT for v in (value if isinstance(value, tuple) else (value,))):
            raise CnnError(f"-D {name}={shown}: integer too large: the value does not fit in 64 bits", code="E052")
        values[name] = value
    if isinstance(input_shape, str):
        parsed = parse_literal(input_shape)
        if isinstance(parsed, int):
            parsed = (parsed,)
        if not isinstance(parsed, tuple):
            raise CnnError(f"--input {input_shape}: expected a shape like 3x224x224", code="E051")
        input_shape = parsed
    graph = Elaborator(max_layers or MAX_LAYERS).network(definition, values, input_shape)
    return Model(graph)


def pick_network(module, name: str | None):
    nets = module.networks
    if name is not None:
        if name not in nets:
            have = ", ".join(nets) or "none"
            raise CnnError(
                f"{module.path} has no network '{name}'{did_you_mean(name, nets)} (networks: {have})", code="E057"
            )
        return nets[name]
    if len(nets) == 1:
        return next(iter(nets.values()))
    if not nets:
        raise CnnError(
            f"{module.path} defines no network (only blocks and tables)", Span(module.path, 1, 1), code="E057"
        )
    raise CnnError(
        f"{module.path} defines {len(nets)} networks ({', '.join(nets)}); choose one with --network NAME", code="E057"
    )


def net_sources(path) -> list[str]:
    """The files a .net file imports, directly or not (none when it cannot be loaded: the
    command then stops on that error before writing anything)."""
    loader = Loader()
    try:
        run_deep(lambda: load_module(str(path), loader))
    except CnnError:
        return []
    return list(loader.cache)
