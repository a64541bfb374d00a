"""A validated workspace together with where it came from: paths relative to it and positions of its keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import Problem, display_path
from infra.workspace.model import Workspace
from infra.workspace.yamlread import PositionedList, PositionedMap

Loc = Sequence[str | int]


@dataclass(frozen=True)
class LoadedWorkspace:
    """The validated model plus where it came from (for paths relative to it and for error positions)."""

    model: Workspace
    path: Path
    document: Any  # the values as read (yamlread.PositionedMap), for positions of keys

    @property
    def root(self) -> Path:
        return self.path.parent

    def repo_dir(self, repo: str) -> Path:
        declared = self.model.repos[repo].path
        return (self.root / (declared if declared is not None else f"../{repo}")).resolve()

    def problem(self, loc: Loc, message: str, fix: str = "") -> Problem:
        line, column = position(self.document, loc)
        return Problem(display_path(self.path), line, column, format_loc(loc), message, fix)


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = str(part) if len(str(part)) <= 60 else f"{str(part)[:40]}...({len(str(part)):,} characters)"
            text += f".{name}" if text else name
    return text


def position(document: Any, loc: Loc) -> tuple[int, int]:
    """1-based line and column of the deepest existing node on ``loc`` (the key itself where it exists)."""
    # Imported here: only documents from the round-trip parser (loader.parse_yaml) hold ruamel's types.
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node = document
    best = (1, 1)
    for part in loc:
        if isinstance(node, PositionedMap | PositionedList):
            try:
                best = node.positions[part]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                break
            node = node[part]  # type: ignore[index]
        elif isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.key(part)
            best = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, col = node.lc.item(part)
            best = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return best
