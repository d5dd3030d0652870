"""The layout of the package: one package per compiler stage, imports in one direction.

    errors, files, version, records  ->  layers  ->  lang  ->  ir  ->  lower  ->  train  ->  tools  ->  importers  ->  cli, cnndsl

A module may import modules of its own stage or of a stage to its left, never to
its right (imports inside functions count: a lazy import is still a dependency),
and no two modules may import each other, directly or through others. The check
reads the import statements of the source with Python's ``ast`` (nothing is
imported). docs/architecture.md describes the stages.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "cnndsl"

# Stage of each module, by the first component after ``cnndsl``; higher may import lower.
STAGES = {
    "errors": 0,
    "files": 0,
    "version": 0,
    "records": 0,
    "layers": 1,
    "lang": 2,
    "ir": 3,
    "lower": 4,
    "train": 5,
    "tools": 6,
    "importers": 7,
    "cli": 8,
    "cmdline": 8,  # argparse as the command line imports it
    "api": 8,  # the Python API (cnndsl/__init__.py re-exports it)
    "__main__": 8,
    "": 8,  # cnndsl/__init__.py: the public API re-exports the stages
}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: Path) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def stage(module: str) -> int:
    parts = module.split(".")
    return STAGES[parts[1] if len(parts) > 1 else ""]


def imports(path: Path, name: str, known: dict) -> set[str]:
    """The cnndsl modules that a module imports anywhere in its code (not in docstrings)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the submodule; `from pkg import name` the package
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        else:
            continue
        for t in targets:
            if t == "cnndsl" or t.startswith("cnndsl."):
                while t not in known:  # `import cnndsl.lower.export` as written, or a name in a package
                    t = t.rpartition(".")[0]
                if t != name:
                    out.add(t)
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imports(path, name, known) for name, path in known.items()}


def reverse_imports(graph) -> list[str]:
    return sorted(
        f"{m} (stage {stage(m)}) imports {t} (stage {stage(t)})"
        for m, targets in graph.items()
        for t in targets
        if stage(t) > stage(m)
    )


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_stage():
    for name in modules(PACKAGE):
        assert stage(name) >= 0, name


def test_imports_go_one_way():
    assert reverse_imports(import_graph(PACKAGE)) == []


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


@pytest.mark.parametrize(
    "where, line, expected",
    [
        # a catalogue module reaching up into the IR, lazily
        (
            "layers/conv.py",
            "def _later():\n    from cnndsl.ir.graph import Node\n",
            ["cnndsl.layers.conv (stage 1) imports cnndsl.ir.graph (stage 3)"],
        ),
        # the lowering importing the package root (the API) instead of a stage
        (
            "lower/builder.py",
            "from cnndsl import load\n",
            ["cnndsl.lower.builder (stage 4) imports cnndsl (stage 8)"],
        ),
        # relative imports count too
        (
            "lang/values.py",
            "from ..ir import model\n",
            ["cnndsl.lang.values (stage 2) imports cnndsl.ir.model (stage 3)"],
        ),
    ],
)
def test_a_reverse_import_is_caught(tmp_path, where, line, expected):
    copy = tmp_path / "cnndsl"
    for path in modules(PACKAGE).values():
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (copy / where).write_text((copy / where).read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    assert reverse_imports(import_graph(copy)) == expected


def test_a_cycle_is_caught(tmp_path):
    graph = {"cnndsl.ir.a": {"cnndsl.ir.b"}, "cnndsl.ir.b": {"cnndsl.ir.c"}, "cnndsl.ir.c": {"cnndsl.ir.a"}}
    assert cycles(graph) == [["cnndsl.ir.a", "cnndsl.ir.b", "cnndsl.ir.c"]]


def test_no_module_shadows_the_standard_library_or_a_dependency():
    dependencies = {"lark", "onnx", "onnxruntime", "numpy", "rich", "PIL", "pytest", "hypothesis", "torch"}
    dependencies |= {"safetensors", "interegular"}
    clash = [
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*.py")
        if p.stem in sys.stdlib_module_names or p.stem in dependencies or p.parent.name in dependencies
    ]
    assert clash == []


# Where a layer kind's name may appear as a string outside cnndsl/layers/: the readers of
# foreign formats map those formats' own names to kinds (Caffe's Convolution is conv,
# Darknet's [maxpool] is maxpool); three strings only look like kind names.
FOREIGN_MAPPINGS = {"cnndsl.importers.from_caffe", "cnndsl.importers.from_darknet"}
LOOKALIKES = {
    ("cnndsl.ir.arguments", "pad"),  # the argument type of Spec("pad"), not the pad layer
    ("cnndsl.train.adjoints", "add"),  # ScatterElements(reduction="add"), an ONNX attribute
    ("cnndsl.lang.values", "abs"),  # the built-in function abs(x) of expressions
    ("cnndsl.train.data", "crop"),  # train --augment crop (random crops of training images), not the crop layer
}


# the parse tables generated from grammars/net.lark name the grammar's rules (add, mul ...)
GENERATED_PARSER = {"cnndsl.lang.standalone", "cnndsl.lang.tables"}


def test_layer_kinds_are_named_only_in_the_catalogue():
    from cnndsl.layers import CATALOGUE

    found = []
    for name, path in modules(PACKAGE).items():
        if name.startswith("cnndsl.layers") or name in FOREIGN_MAPPINGS or name in GENERATED_PARSER:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in CATALOGUE
                and id(node) not in docstrings
                and (name, node.value) not in LOOKALIKES
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: '{node.value}'")
    assert found == []
