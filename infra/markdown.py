"""Markdown for GitHub job summaries (a leaf module like infra.errors: it imports nothing of infra)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_cell(value: object) -> str:
    """``value`` as one table cell: a '|' is escaped so it cannot end the cell, line breaks become spaces."""
    text = " ".join(str(value).splitlines())
    return text.replace("\\", "\\\\").replace("|", "\\|").strip() or " "


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (header, delimiter row, one line per row), without a trailing newline.

    Every row must have one cell per column; a cell holding '|' or a line break stays in its own cell.
    """
    lines = [_row(columns), "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a Markdown table row has {len(row)} cells for {len(columns)} columns: {row!r}")
        lines.append(_row(row))
    return "\n".join(lines)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(markdown_cell(cell) for cell in cells) + " |"
