"""The layer table in colour, for terminals: the lines of :mod:`cnndsl.tools.table`, styled
(piped output stays plain text). Layout is decided there, at the terminal's width, so that
rich never wraps or crops a line: every figure keeps every digit."""

from __future__ import annotations

from cnndsl.ir.model import Model
from cnndsl.tools.table import table_lines

STYLES = {"title": "bold", "dim": "dim", "note": "yellow", "head": "bold cyan", "key": "bold", "": ""}


def print_rich(
    model: Model,
    width: int,
    depth: int | None = None,
    batch: int | None = None,
    columns: tuple[str, ...] | None = None,
) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(width=width, highlight=False)
    for line in table_lines(model, width, depth, batch, columns):
        text = Text()
        for part, style in line:
            text.append(part, style=STYLES[style])
        console.print(text, soft_wrap=True)  # soft_wrap: no wrapping, no cropping by rich
