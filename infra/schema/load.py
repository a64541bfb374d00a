"""Load every repo's Prisma schema (single file or multi-file folder) and its prisma.config.ts.

Files come from a :class:`Reader` (path relative to the repo -> text), so the same code reads a local
checkout (:class:`LocalReader`) or a branch/SHA on GitHub (``infra.github.contents.GitHubReader``, which the
CLI passes in as a reader factory: this package does not import infra.github).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from infra.errors import Problem, WorkspaceError, display_path
from infra.schema import prisma_config
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import SchemaSettings as SchemaConfig

if TYPE_CHECKING:
    from infra.schema.psl import Schema, SchemaFile

CONFIG_CANDIDATES = ("prisma.config.ts", ".config/prisma.ts")


class Reader(Protocol):
    """Where a repo's files come from. Paths are POSIX paths relative to the repo root."""

    def read(self, path: str) -> str | None:
        """The file's text, or None when it does not exist."""

    def list_prisma(self, path: str) -> list[str] | None:
        """Every *.prisma file under the folder (recursive, sorted), or None when ``path`` is not a folder."""

    def display(self, path: str) -> str:
        """How messages name the file."""


@dataclass(frozen=True)
class LocalReader:
    root: Path

    def read(self, path: str) -> str | None:
        target = self.root / path
        if not target.is_file():
            return None
        return target.read_text(encoding="utf-8")

    def list_prisma(self, path: str) -> list[str] | None:
        folder = self.root / path
        if not folder.is_dir():
            return None
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*.prisma") if p.is_file())

    def display(self, path: str) -> str:
        return display_path(self.root / path)


ReaderFactory = Callable[[str], Reader]


@dataclass(frozen=True)
class RepoSchema:
    """One repo's parsed schema plus what the alignment needs from workspace.yaml and prisma.config.ts."""

    repo: str
    config: SchemaConfig
    schema: Schema
    reader: Reader
    prisma_config: prisma_config.PrismaConfig | None

    @property
    def files(self) -> list[SchemaFile]:
        return self.schema.files

    def display(self, path: str) -> str:
        return self.reader.display(path)


def local_readers(loaded: LoadedWorkspace) -> ReaderFactory:
    return lambda repo: LocalReader(loaded.repo_dir(repo))


def schema_repos(loaded: LoadedWorkspace) -> list[str]:
    """Repos that declare a schema, primary first (then in workspace.yaml order)."""
    names = [n for n, r in loaded.model.repos.items() if r.schema_ is not None]
    return sorted(names, key=lambda n: loaded.model.repos[n].role != "primary")


def load_repo_schema(loaded: LoadedWorkspace, repo: str, reader: Reader) -> RepoSchema:
    """Parse the repo's schema; a missing file or a syntax error raises WorkspaceError naming file:line:column."""
    config = loaded.model.repos[repo].schema_
    if config is None:
        raise WorkspaceError([loaded.problem(("repos", repo), "declares no schema", "add schema: {prisma: ...}")])
    paths = [config.prisma] if config.prisma.endswith(".prisma") else reader.list_prisma(config.prisma)
    if paths is None:
        paths = [config.prisma]
    if not paths:
        raise WorkspaceError(
            [
                loaded.problem(
                    ("repos", repo, "schema", "prisma"),
                    f"schema folder {reader.display(config.prisma)} holds no .prisma file",
                    "point schema.prisma at the schema file or at a folder of *.prisma files",
                )
            ]
        )
    files: list[SchemaFile] = []
    problems: list[Problem] = []
    for path in paths:
        text = reader.read(path)
        if text is None:
            problems.append(
                loaded.problem(
                    ("repos", repo, "schema", "prisma"),
                    f"schema file {reader.display(path)} does not exist",
                    "fix schema.prisma in workspace.yaml (a path relative to the repo) or add the file",
                )
            )
            continue
        # The parser is imported when there is a file to parse: `ws check` without checkouts never needs it.
        from infra.schema.psl import PslSyntaxError, parse

        try:
            files.append(parse(text, path))
        except PslSyntaxError as exc:
            problems.append(Problem(reader.display(exc.file), exc.line, exc.column, "", exc.message, exc.fix))
    if problems:
        raise WorkspaceError(problems)
    config_file = None
    for candidate in CONFIG_CANDIDATES:
        text = reader.read(candidate)
        if text is not None:
            config_file = prisma_config.parse_config(candidate, text)
            break
    from infra.schema.psl import Schema

    return RepoSchema(repo, config, Schema(files), reader, config_file)


@dataclass
class LoadedSchemas:
    """Every repo's schema that could be read, and why the others were skipped."""

    repos: dict[str, RepoSchema]
    skipped: dict[str, str]
    primary: str
    workspace: LoadedWorkspace | None = None  # where workspace.yaml's keys are, for located messages


def load_schemas(loaded: LoadedWorkspace, readers: ReaderFactory | None = None) -> LoadedSchemas:
    """Load every repo's schema; local repos that are not checked out are skipped with a visible reason."""
    factory = readers or local_readers(loaded)
    repos: dict[str, RepoSchema] = {}
    skipped: dict[str, str] = {}
    problems: list[Problem] = []
    for name in schema_repos(loaded):
        reader = factory(name)
        if isinstance(reader, LocalReader) and not reader.root.is_dir():
            skipped[name] = f"not checked out ({display_path(reader.root)})"
            continue
        try:
            repos[name] = load_repo_schema(loaded, name, reader)
        except WorkspaceError as exc:
            problems.extend(exc.problems)
    if problems:
        raise WorkspaceError(problems)
    return LoadedSchemas(repos, skipped, loaded.model.primary, loaded)
