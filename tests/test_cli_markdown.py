"""The one Markdown-table helper every job summary uses (infra.markdown)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.markdown import markdown_cell, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def test_table_has_header_delimiter_and_one_line_per_row() -> None:
    assert markdown_table(["check", "status"], [("graph", "ok"), ("env", 3)]) == (
        "| check | status |\n| --- | --- |\n| graph | ok |\n| env | 3 |"
    )


def test_a_pipe_or_line_break_in_a_cell_stays_inside_the_cell() -> None:
    table = markdown_table(["a", "b"], [("x | y", "one\ntwo\r\nthree")])
    row = table.splitlines()[2]
    assert row == "| x \\| y | one two three |"
    assert len(re.findall(r"(?<!\\)\|", row)) == 3  # the row's own separators only


def test_a_backslash_before_a_pipe_cannot_unescape_it() -> None:
    assert markdown_cell("a\\|b") == "a\\\\\\|b"


def test_an_empty_cell_keeps_its_column() -> None:
    assert markdown_table(["a", "b"], [("", "x")]).splitlines()[2] == "|   | x |"


def test_a_row_with_the_wrong_number_of_cells_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [("1", "2")])


def test_no_module_builds_a_markdown_table_by_hand() -> None:
    """Tables in job summaries come from infra.markdown.markdown_table, not from '| --- |' strings."""
    builders = []
    for path in sorted((ROOT / "infra").rglob("*.py")):
        if path.name == "markdown.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            in_string = '"' in line or "'" in line  # a table in a docstring is documentation, not a builder
            if in_string and re.search(r"\|\s*-{3,}\s*\||\" --- \|\"|'---' for", line):
                builders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not builders, "\n".join(builders)
