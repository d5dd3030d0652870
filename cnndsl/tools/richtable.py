"""The layer table with rich, for terminals (piped output stays plain text)."""

from __future__ import annotations

from cnndsl.ir.model import Model
from cnndsl.tools.table import HEADERS, header_lines, table_rows, totals_lines


def print_rich(model: Model) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    head = header_lines(model)
    console.print(f"[bold]{head[0]}[/bold]")
    for line in head[1:]:
        console.print(line, style="dim")
    table = Table(box=None, header_style="bold cyan", pad_edge=False)
    for i, h in enumerate(HEADERS):
        table.add_column(
            h, justify="right" if i >= 3 else "left", no_wrap=True, overflow="ellipsis" if i == 0 else None
        )
    for row in table_rows(model):
        table.add_row(*row)
    console.print(table)
    lines = totals_lines(model)
    width = max(len(v) for k, v, _ in lines if k != "outputs")
    for k, v, note in lines:
        value = v if k == "outputs" else v.rjust(width)
        console.print(f"[bold]{k:<18}[/bold] {value}" + (f"  [dim]({note})[/dim]" if note else ""), highlight=False)
