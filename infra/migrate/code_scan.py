"""`ws migrate check --code`: every place in a repo's code that still opens SQLite (phases 1 and 3 of the move).

Before the move it lists what to warn about; after `ws migrate cleanup` the same scan proves that nothing is
left. It reports:

* imports of SQLite drivers: ``better-sqlite3``, ``sqlite3``, ``sqlite``, ``node:sqlite``, ``bun:sqlite``,
  ``@libsql/client`` in JavaScript/TypeScript; ``sqlite3``, ``aiosqlite``, ``apsw``, ``sqlite_utils`` in Python;
* SQLite file paths in string literals (``"...memory.db"``, ``.sqlite``, ``.sqlite3``, ``.db3``);
* SQLite drivers among package.json dependencies (every dependency section) and Python requirement files.

A line that must stay (for example a one-off export script) is kept out with a ``ws: sqlite-ok`` comment on it.
Files are read as text, one at a time, each up to :data:`MAX_FILE_BYTES`; dependency folders and build output
are skipped. Nothing is changed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from infra.workspace.located import LoadedWorkspace

Kind = Literal["import", "path", "dependency"]

JS_DRIVERS = ("better-sqlite3", "sqlite3", "sqlite", "node:sqlite", "bun:sqlite", "@libsql/client", "sql.js")
PY_DRIVERS = ("sqlite3", "aiosqlite", "apsw", "sqlite_utils", "pysqlite3")
CODE_SUFFIXES = {".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs", ".py"}
SKIP_DIRS = {"node_modules", ".git", "dist", "build", ".next", ".venv", "venv", "__pycache__", ".ws", "coverage"}
MAX_FILE_BYTES = 2 * 1024 * 1024
ALLOW_MARK = "ws: sqlite-ok"

_js_names = "|".join(re.escape(name) for name in JS_DRIVERS)
JS_IMPORT = re.compile(
    rf"""(?:\bfrom\s*|\brequire\s*\(\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(?P<module>{_js_names})\1"""
)
_py_names = "|".join(re.escape(name) for name in PY_DRIVERS)
PY_IMPORT = re.compile(rf"^\s*(?:import\s+(?P<plain>{_py_names})\b|from\s+(?P<frm>{_py_names})(?:\.\w+)*\s+import\b)")
DB_PATH = re.compile(r"""(['"`])(?P<path>[^'"`\n]*\.(?:db|sqlite|sqlite3|db3))\1""")
REQUIREMENT = re.compile(rf"^\s*(?P<name>{_py_names})\b", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the repo
    line: int
    column: int
    kind: Kind
    text: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.kind}: {self.detail}"


def _code_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix in CODE_SUFFIXES or name == "package.json" or _is_requirements(name):
                yield path


def _is_requirements(name: str) -> bool:
    return name.startswith("requirements") and name.endswith((".txt", ".in"))


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES or path.is_symlink():
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def scan_code(root: Path) -> list[Finding]:
    """Every SQLite import, file path and dependency under ``root`` (sorted by file and line)."""
    findings: list[Finding] = []
    for path in _code_files(root):
        text = _read(path)
        if text is None:
            continue
        relative = path.relative_to(root).as_posix()
        if path.name == "package.json":
            findings.extend(_package_json(relative, text))
        elif _is_requirements(path.name):
            findings.extend(_requirements(relative, text))
        else:
            findings.extend(_code(relative, text, python=path.suffix == ".py"))
    return findings


def _code(relative: str, text: str, *, python: bool) -> Iterator[Finding]:
    for number, line in enumerate(text.splitlines(), start=1):
        if ALLOW_MARK in line:
            continue
        if python:
            match = PY_IMPORT.match(line)
            if match:
                module = match.group("plain") or match.group("frm")
                yield Finding(relative, number, match.start() + 1, "import", line.strip(), f"imports {module}")
        else:
            for found in JS_IMPORT.finditer(line):
                module = found.group("module")
                yield Finding(relative, number, found.start() + 1, "import", line.strip(), f"imports {module}")
        for found in DB_PATH.finditer(line):
            yield Finding(
                relative, number, found.start() + 1, "path", line.strip(), f"SQLite file path {found.group('path')!r}"
            )


def _package_json(relative: str, text: str) -> Iterator[Finding]:
    try:
        data = json.loads(text)
    except ValueError:
        yield Finding(
            relative, 1, 1, "dependency", "", "package.json is not valid JSON; its dependencies were not read"
        )
        return
    if not isinstance(data, dict):
        return
    lines = text.splitlines()
    for section in ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies"):
        deps = data.get(section)
        if not isinstance(deps, dict):
            continue
        for name in deps:
            if name in JS_DRIVERS or name == "@types/better-sqlite3" or name == "@types/sql.js":
                number = next((i for i, line in enumerate(lines, 1) if f'"{name}"' in line), 1)
                yield Finding(relative, number, 1, "dependency", f'"{name}": {deps[name]!r}', f"{section} has {name}")


def _requirements(relative: str, text: str) -> Iterator[Finding]:
    for number, line in enumerate(text.splitlines(), start=1):
        match = REQUIREMENT.match(line)
        if match and ALLOW_MARK not in line:
            yield Finding(relative, number, 1, "dependency", line.strip(), f"requires {match.group('name')}")


@dataclass
class CodeScan:
    repos: dict[str, list[Finding]]
    skipped: dict[str, str]

    @property
    def total(self) -> int:
        return sum(len(found) for found in self.repos.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "repos": {repo: [asdict(f) for f in found] for repo, found in self.repos.items()},
            "skipped": self.skipped,
        }


def scan_workspace(loaded: LoadedWorkspace, repos: list[str] | None = None) -> CodeScan:
    """The scan of every repo that declares ``sqlite_migration`` (or of ``repos``); a repo whose checkout is
    missing is reported as skipped, never as clean."""
    names = repos or [name for name, repo in loaded.model.repos.items() if repo.sqlite_migration is not None]
    result = CodeScan({}, {})
    for name in names:
        folder = loaded.repo_dir(name)
        if not folder.is_dir():
            result.skipped[name] = f"checkout {folder} is not present"
            continue
        result.repos[name] = scan_code(folder)
    return result
