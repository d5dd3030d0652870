"""Are the user-visible outputs of this tree byte-identical to those of another commit?

    python tests/same_outputs.py [--base REV] [--only NAME ...]

For every network of every file in networks/, runs in both trees, as a whole
process each: ``info``, ``info --json``, ``export`` (the ONNX bytes),
``export --train``, ``fmt -`` (the file on standard input) and ``graph`` (SVG),
and compares standard output, standard error, exit status and the written
file's bytes (by SHA-256). The base tree is a temporary ``git worktree`` of REV
(default HEAD); its results are cached under .cache/same_outputs/<commit>.json
so that a second run only runs this tree. Exits 1 and lists the differences when
anything differs. Not a test (minutes on two cores): run it after a refactor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def networks(tree: Path) -> list[tuple[str, str | None]]:
    """(file, network) pairs; network None where the file has one network."""
    out = []
    for path in sorted((tree / "networks").glob("*.net")):
        names = re.findall(r"^network\s+([A-Za-z_][A-Za-z0-9_]*)", path.read_text(), re.M)
        rel = f"networks/{path.name}"
        out += [(rel, None)] if len(names) == 1 else [(rel, n) for n in names]
    return out


def commands(file: str, net: str | None):
    pick = ["--network", net] if net else []
    key = f"{file}:{net or ''}"
    yield f"{key} info", ["info", file, *pick], None, None
    yield f"{key} info --json", ["info", file, *pick, "--json"], None, None
    yield f"{key} export", ["export", file, *pick, "-o", "{out}/m.onnx"], "m.onnx", None
    yield f"{key} export --train", ["export", file, *pick, "--train", "-o", "{out}/m.train.onnx"], "m.train.onnx", None
    yield f"{key} graph", ["graph", file, *pick, "-o", "{out}/m.svg"], "m.svg", None
    if net is None or net == first_network(file):
        yield f"{file} fmt", ["fmt", "-"], None, file


_FIRST: dict = {}


def first_network(file: str) -> str:
    if file not in _FIRST:
        _FIRST[file] = re.findall(r"^network\s+(\w+)", (ROOT / file).read_text(), re.M)[0]
    return _FIRST[file]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_tree(tree: Path, only: list[str]) -> dict:
    results = {}
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "100", "PYTHONHASHSEED": "0"}
    env.pop("FORCE_COLOR", None)
    for file, net in networks(tree):
        for key, argv, written, stdin in commands(file, net):
            if only and not any(o in key for o in only):
                continue
            with tempfile.TemporaryDirectory() as out:
                args = [a.replace("{out}", out) for a in argv]
                text = (tree / stdin).read_bytes() if stdin else None
                p = subprocess.run(
                    [sys.executable, "-m", "cnndsl", *args], cwd=tree, env=env, input=text, capture_output=True
                )
                stdout, stderr = p.stdout.replace(out.encode(), b"OUT"), p.stderr.replace(out.encode(), b"OUT")
                row = {"rc": p.returncode, "stdout": digest(stdout), "stderr": digest(stderr)}
                if written:
                    f = Path(out) / written
                    row["file"] = digest(f.read_bytes()) if f.exists() else None
                results[key] = row
                print(f"  {key}: rc {p.returncode}", file=sys.stderr, flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD")
    ap.add_argument("--only", nargs="*", default=[])
    opts = ap.parse_args()
    commit = subprocess.check_output(["git", "rev-parse", opts.base], cwd=ROOT, text=True).strip()
    cache = ROOT / ".cache" / "same_outputs" / f"{commit}.json"
    if cache.exists() and not opts.only:
        base = json.loads(cache.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "base"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True, capture_output=True
            )
            try:
                print(f"base {commit[:10]}:", file=sys.stderr)
                base = run_tree(tree, opts.only)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
        if not opts.only:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(base, indent=1, sort_keys=True))
    print("this tree:", file=sys.stderr)
    mine = run_tree(ROOT, opts.only)
    differ = [k for k in sorted(set(base) | set(mine)) if base.get(k) != mine.get(k)]
    for k in differ:
        print(f"DIFFERS {k}: base {base.get(k)} now {mine.get(k)}")
    print(
        f"{len(mine) - len(differ)} of {len(mine)} outputs byte-identical to {commit[:10]}"
        + ("" if differ else " (all)")
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
