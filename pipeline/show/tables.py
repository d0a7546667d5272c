"""Tables for people: one line per row, within the terminal's width, and whole in a pipe."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .. import log


def table(*columns: str, whole: int = 1, title: str | None = None) -> Table:
    """A table of one line per row; on a terminal too narrow for it, its first ``whole``
    columns (what names the row, and what is read first) stay whole and the columns after them
    that do not fit are left out (``print_table``)."""
    made = Table(title=title, box=None, pad_edge=False, padding=(0, 1, 0, 0))
    for index, column in enumerate(columns):
        made.add_column(column, no_wrap=True, overflow="fold" if index < whole else "ellipsis")
    return made


def _cell_len(cell: Any) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text.from_markup(str(cell)).cell_len


def _fitted(table: Table, width: int) -> tuple[Table, list[str]]:
    """``table`` with the columns that fit ``width``: every whole one, then the others in
    order while they fit (the first that does not is cut when 8 characters are left for it);
    and the headers of those left out."""
    columns = table.columns
    sizes = [max(map(_cell_len, [c.header, *c.cells])) for c in columns]
    kept, used, cut = 0, -1, False
    for column, size in zip(columns, sizes, strict=True):
        if column.overflow != "fold" and used + 1 + size > width:
            kept += (cut := used + 1 + 8 <= width)
            break
        kept, used = kept + 1, used + 1 + size
    fitted = Table(title=table.title, box=None, pad_edge=False, padding=(0, 1, 0, 0))
    for index, (column, size) in enumerate(zip(columns[:kept], sizes, strict=False)):
        size = width - used - 1 if cut and index == kept - 1 else size
        fitted.add_column(column.header, no_wrap=True, width=size, overflow="ellipsis")
    for row in zip(*(list(c.cells) for c in columns[:kept]), strict=True):
        fitted.add_row(*row)
    return fitted, [str(c.header) for c in columns[kept:]]


def print_table(table: Table, *, stderr: bool = False) -> None:
    """On a terminal, within its width (see ``table``); to a pipe or a file, as wide as the
    table is, so that every field arrives whole (rich would otherwise assume 80 columns), and
    with no trailing blanks."""
    console = log.console if stderr else Console(highlight=False, emoji=False)
    if console.is_terminal:
        table, left_out = _fitted(table, console.width)
        if left_out:
            log.detail(
                f"({', '.join(left_out)} left out at {console.width} columns; --json has all)"
            )
        console.print(table)
        return
    # A pipe or a file: the table as wide as it is, each line without the padding that fills
    # its last column out to the column's width.
    wide = console.options.update(max_width=100_000)
    width = Measurement.get(console, wide, table).maximum
    rendered = io.StringIO()
    Console(file=rendered, width=width, highlight=False, emoji=False).print(table)
    for line in rendered.getvalue().splitlines():
        console.file.write(line.rstrip() + "\n")
