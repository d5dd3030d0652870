"""Files and their namespaces: reading sources, imports, blocks, tables, functions, defaults.

Each file is a module with its own namespace: the blocks, tables, functions and
networks it defines, plus the blocks, tables and functions of the files it
imports (not what those import in turn). A block body or function resolves names
in the namespace of its own file, and a block sees the ``default`` statements
that precede it in that file.
"""

from __future__ import annotations

import os

from cnndsl.errors import CnnError, Span, did_you_mean
from cnndsl.files import read_bytes
from cnndsl.lang import tree as ast
from cnndsl.lang.parser import parse_text
from cnndsl.lang.values import BUILTINS, Function, evaluate
from cnndsl.layers import PUBLIC, Table, suggest_kind
from cnndsl.records import factory, record

MAX_FILE_BYTES = 16 * 1024 * 1024


@record(frozen=True)
class Definition:
    """A block or network together with where it was defined."""

    node: ast.BlockDef
    module: Module
    defaults: dict  # kind -> {keyword: (value, span)} in force at the definition


@record(frozen=False, eq=False)
class Module:
    path: str  # as shown in diagnostics
    directory: str  # imports are relative to it
    blocks: dict[str, Definition] = factory(dict)
    tables: dict[str, Table] = factory(dict)
    networks: dict[str, Definition] = factory(dict)
    functions: dict[str, Function] = factory(dict)
    origins: dict[str, Span] = factory(dict)  # name -> where it was defined

    def names(self, name: str):
        """A table or function of this file's namespace, or None."""
        found = self.tables.get(name)
        return found if found is not None else self.functions.get(name)


def read_source(path: str, shown: str, span: Span | None = None) -> str:
    """Read a .net file, turning every way this can fail into a diagnostic."""
    what = f"cannot read {shown}"
    data = read_bytes(path, "E040", what, span, limit=(MAX_FILE_BYTES, "E041"), expected="a .net file")
    if b"\0" in data:
        raise CnnError(f"{what}: it is a binary file, not a .net text file", span, code="E042")
    try:
        # utf-8-sig's codec module is ~0.5 ms of every start; the BOM is three bytes
        return (data[3:] if data[:3] == b"\xef\xbb\xbf" else data).decode("utf-8")
    except UnicodeDecodeError as err:
        raise CnnError(f"{what}: it is not UTF-8 text (byte {err.start})", span, code="E042") from None


class Loader:
    """Loads files once each, following imports and refusing cycles."""

    def __init__(self):
        self.cache: dict[str, Module] = {}  # by real path
        self.stack: list[str] = []

    def load_path(self, path, shown: str | None = None, span: Span | None = None) -> Module:
        path = os.fspath(path)
        shown = shown or path
        try:
            if "\0" in path:
                raise ValueError("embedded null byte")
            real = os.path.realpath(path)
        except (ValueError, OSError) as err:  # a NUL byte, a loop of links ...
            raise CnnError(f"cannot read {shown!r}: not a usable path ({err})", span, code="E040") from None
        if real in self.stack:
            chain = " -> ".join(os.path.basename(p) for p in self.stack[self.stack.index(real) :] + [real])
            raise CnnError(f"import cycle: {chain}", span, code="E043")
        if real in self.cache:
            return self.cache[real]
        text = read_source(path, shown, span)
        return self._load(text, shown, real, os.path.dirname(real))

    def load_text(self, text: str, shown: str = "<string>", directory=None) -> Module:
        return self._load(text, shown, None, os.fspath(directory) if directory is not None else os.getcwd())

    def _load(self, text: str, shown: str, real: str | None, directory: str) -> Module:
        tree = parse_text(text, shown)
        module = Module(shown, directory)
        if real is not None:
            self.stack.append(real)
        try:
            self._fill(module, tree)
        finally:
            if real is not None:
                self.stack.pop()
        if real is not None:
            self.cache[real] = module
        return module

    def _fill(self, module: Module, tree: ast.File) -> None:
        defaults: dict = {}
        imported: dict[str, tuple[object, Span]] = {}
        # Tables and functions first: blocks may use those defined further down the file.
        lookup = _namespace(module)
        for item in tree.items:
            if isinstance(item, ast.TableDef):
                self._define(module, module.tables, item.name, Table(item.name, tuple(item.value)), item.span)
            elif isinstance(item, ast.FnDef):
                if item.name in BUILTINS:
                    message = f"fn '{item.name}' has the name of a built-in function; choose another name"
                    raise CnnError(message, item.span, code="E044")
                self._define(module, module.functions, item.name, Function(item, lookup), item.span)
        for item in tree.items:
            if isinstance(item, ast.Import):
                target = os.path.join(module.directory, item.path)  # an absolute item.path stays itself
                other = self.load_path(target, item.path, item.span)
                for name, d in other.blocks.items():
                    self._import(module, module.blocks, name, d, item.span, imported)
                for name, t in other.tables.items():
                    self._import(module, module.tables, name, t, item.span, imported)
                for name, f in other.functions.items():
                    self._import(module, module.functions, name, f, item.span, imported)
            elif isinstance(item, ast.Default):
                defaults = with_default(defaults, item, lambda e: evaluate(e, lookup, _no_labels, None))
            elif isinstance(item, ast.BlockDef):
                target = module.networks if item.is_network else module.blocks
                self._define(module, target, item.name, Definition(item, module, defaults), item.span)

    def _define(self, module, table, name, value, span):
        if name in table:
            first = module.origins.get(name)
            raise CnnError(
                f"'{name}' is defined twice", span, notes=[("first defined", first)] if first else [], code="E044"
            )
        if name in PUBLIC and table is module.blocks:
            raise CnnError(f"block '{name}' has the name of a layer kind; choose another name", span, code="E044")
        table[name] = value
        module.origins[name] = span

    def _import(self, module, table, name, value, span, imported):
        if name in table and table[name] is not value:
            raise CnnError(
                f"import brings '{name}', which is already defined",
                span,
                notes=[("already defined", module.origins.get(name))],
                code="E044",
            )
        table[name] = value
        module.origins.setdefault(name, span)


class _namespace:  # noqa: N801 - used like a function: the file-level name lookup
    """Names at file level (defaults, function bodies): the file's tables and functions."""

    def __init__(self, module: Module):
        self.module = module

    def __call__(self, name):
        return self.module.names(name)

    @property
    def names(self):
        return tuple(self.module.tables) + tuple(self.module.functions)


def _no_labels(name, span):
    raise CnnError(f"@{name} cannot be used here: there are no labels outside a network or block", span, code="E020")


def with_default(defaults: dict, item: ast.Default, evaluate_expr) -> dict:
    """A new defaults mapping with ``default KIND kw=value ...`` applied."""
    kind = PUBLIC.get(item.kind)
    if kind is None:
        raise CnnError(
            f"unknown layer kind '{item.kind}' in default{suggest_kind(item.kind, PUBLIC)}",
            item.kind_span,
            code="E010",
        )
    allowed = kind.all_args()
    current = dict(defaults.get(item.kind, {}))
    for arg in item.keywords:
        spec = allowed.get(arg.name)
        if spec is None:
            raise CnnError(
                f"{item.kind} has no keyword '{arg.name}'{did_you_mean(arg.name, allowed)}",
                arg.span,
                code="E011",
            )
        value = True if arg.value is None else evaluate_expr(arg.value)
        current[arg.name] = (value, arg.span)
    out = dict(defaults)
    out[item.kind] = current
    return out
