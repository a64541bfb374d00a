"""The errors and results every layer shares (a leaf module: it imports nothing of infra).

Problems a person can act on say where (file:line:column and key), what, and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based; 0 when unknown
    column: int  # 1-based; 0 when unknown
    key: str  # dotted path of the key, e.g. repos.app-agents.depends_on[0]
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return f"{text}. Fix: {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class WorkspaceError(Exception):
    """Raised when workspace.yaml cannot be used; carries every problem found, each with its location."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class UsageError(Exception):
    """A bad command-line request (exit code 2), e.g. an unknown environment name."""


class CheckFailed(Exception):
    """A check found problems (exit code 1); the message is the one-line summary."""


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


CheckStatus = Literal["ok", "fail", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """One row of `ws check`/`ws health`: a named check, its status and a one-line detail."""

    name: str
    status: CheckStatus
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}
