"""The SQLite side: discover per-agent files from workspace.yaml, open them read-only, read their schema.

Files are opened with ``mode=ro`` (never written, never created) and honour other processes' locks, so a
file held by a writer is reported as locked instead of being read half-written; ``immutable=1`` is used only
when the caller asks for it (check on a copy, for example).
"""

from __future__ import annotations

import glob
import hashlib
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import UsageError
from infra.migrate.convert import text_factory
from infra.workspace.located import LoadedWorkspace

SHADOW_SUFFIXES = (
    "_content",
    "_segments",
    "_segdir",
    "_docsize",
    "_stat",
    "_data",
    "_idx",
    "_config",
    "_node",
    "_rowid",
    "_parent",
)


@dataclass(frozen=True)
class SourceFile:
    """One agent's SQLite file and where its tables go."""

    repo: str
    agent_id: str
    path: Path
    relative: str  # path relative to the repo checkout, for messages and the ledger
    namespace: str  # target PostgreSQL schema
    tables: dict[str, str]  # declared source -> target table names

    def target_table(self, source_table: str) -> str:
        return self.tables.get(source_table, source_table)


@dataclass(frozen=True)
class SourceColumn:
    name: str
    declared_type: str
    not_null: bool
    primary_key: int  # position in the primary key (1-based), 0 when not part of it
    generated: bool = False  # GENERATED ALWAYS AS (...) STORED or VIRTUAL: SQLite computes its values


@dataclass
class SourceTable:
    name: str
    columns: list[SourceColumn]
    virtual: bool = False
    without_rowid: bool = False
    rowid_alias: str | None = None  # name of the INTEGER PRIMARY KEY column, if any

    @property
    def primary_key(self) -> list[str]:
        """The primary key's columns in key order."""
        return [c.name for c in sorted((c for c in self.columns if c.primary_key), key=lambda c: c.primary_key)]


@dataclass
class SourceSchema:
    tables: list[SourceTable] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # table -> rule that skips it


class SourceError(Exception):
    """A file that cannot be read: corrupt, truncated, not SQLite, locked by a writer, unreadable."""


def discover(loaded: LoadedWorkspace, repos: list[str] | None = None) -> list[SourceFile]:
    """Every SQLite file matched by a repo's ``sqlite_migration.source`` glob, sorted by repo and agent id."""
    found: list[SourceFile] = []
    declared = {name: repo for name, repo in loaded.model.repos.items() if repo.sqlite_migration is not None}
    if repos:
        missing = [r for r in repos if r not in declared]
        if missing:
            raise UsageError(
                f"--repo: {', '.join(missing)} declares no sqlite_migration in {loaded.path.name}; "
                f"repos that do: {', '.join(declared) or 'none'}"
            )
    for name, repo in declared.items():
        if repos and name not in repos:
            continue
        spec = repo.sqlite_migration
        assert spec is not None
        namespace = spec.namespace or (repo.schema_.namespace if repo.schema_ else None)
        if namespace is None:
            raise loaded_error(loaded, name)
        base = loaded.repo_dir(name)
        seen: dict[str, Path] = {}
        for match in sorted(glob.glob(str(base / spec.source), recursive=True)):
            path = Path(match)
            if not path.is_file():
                continue
            agent = path.parent.name if spec.agent_id == "parent" else path.stem
            if agent in seen:
                raise UsageError(
                    f"{loaded.path.name}: repos.{name}.sqlite_migration: files {seen[agent]} and {path} give the "
                    f"same agent id {agent!r}; set agent_id to {'stem' if spec.agent_id == 'parent' else 'parent'} "
                    "or narrow the source glob"
                )
            seen[agent] = path
            found.append(
                SourceFile(
                    repo=name,
                    agent_id=agent,
                    path=path,
                    relative=str(path.relative_to(base)),
                    namespace=namespace,
                    tables=dict(spec.tables),
                )
            )
    return found


def loaded_error(loaded: LoadedWorkspace, repo: str) -> UsageError:
    return UsageError(
        f"{loaded.path.name}: repos.{repo}.sqlite_migration: no target namespace; set sqlite_migration.namespace "
        "or give the repo a schema with a namespace"
    )


def archive_dir(loaded: LoadedWorkspace, repo: str) -> Path:
    spec = loaded.model.repos[repo].sqlite_migration
    assert spec is not None
    return loaded.repo_dir(repo) / spec.archive


def open_readonly(path: Path, *, busy_timeout: float = 2.0, immutable: bool = False) -> sqlite3.Connection:
    """Open a SQLite file read-only (mode=ro), decoding text ourselves so invalid UTF-8 never raises."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    immutable = immutable or wal_at_rest(path)
    query = "mode=ro" + ("&immutable=1" if immutable else "")
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?{query}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, check_same_thread=False)
    except sqlite3.Error as exc:
        raise SourceError(describe(path, exc)) from None
    conn.text_factory = text_factory
    return conn


def wal_at_rest(path: Path) -> bool:
    """A WAL-mode file with no write-ahead log or shared-memory file beside it: no writer is attached and every
    committed row is in the file. Opened plainly, even read-only, SQLite would create ``-wal`` and ``-shm`` next
    to it (and leave them); opened immutable it reads the file alone and touches nothing. (With a ``-wal``
    present, a writer may be attached: the file is opened normally so its locks are honoured.)"""
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    in_wal_mode = header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"
    companions = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    return in_wal_mode and not any(c.exists() for c in companions)


def describe(path: Path, exc: BaseException) -> str:
    """One clear sentence about why a SQLite file cannot be read, and what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"{path}: database is locked by another process (a running agent writing to it?); "
            "stop the writer or wait for it to finish, then run `ws migrate run` again"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text or "disk I/O" in text:
        return (
            f"{path}: not a readable SQLite database ({text}); the file is corrupt or truncated - restore it from "
            "a backup or recover it with `sqlite3 FILE .recover`, then run again"
        )
    return f"{path}: cannot read the SQLite file ({text})"


def integrity(conn: sqlite3.Connection, path: Path, *, quick: bool = False) -> list[str]:
    """Problems PRAGMA integrity_check (or quick_check) reports; empty when the file is sound."""
    try:
        rows = conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchall()
    except sqlite3.Error as exc:
        raise SourceError(describe(path, exc)) from None
    messages = [str(r[0]) for r in rows]
    return [] if messages == ["ok"] else messages


def read_schema(conn: sqlite3.Connection, path: Path) -> SourceSchema:
    try:
        rows = conn.execute(
            "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
    except sqlite3.Error as exc:
        raise SourceError(describe(path, exc)) from None
    schema = SourceSchema()
    virtual = {str(name) for name, ddl in rows if str(ddl).upper().lstrip().startswith("CREATE VIRTUAL TABLE")}
    for name_value, ddl_value in rows:
        name, ddl = str(name_value), str(ddl_value)
        if name.startswith("sqlite_"):
            schema.skipped[name] = "sqlite-internal-skipped"
            continue
        if any(name == v + suffix for v in virtual for suffix in SHADOW_SUFFIXES):
            schema.skipped[name] = "virtual-shadow-skipped"
            continue
        try:
            # table_xinfo lists generated columns too (hidden 2: VIRTUAL, 3: STORED); hidden 1 are a virtual
            # table's own hidden columns, which are not data
            info = conn.execute(
                'SELECT name, type, "notnull", pk, hidden FROM pragma_table_xinfo(?) WHERE hidden <> 1', (name,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise SourceError(describe(path, exc)) from None
        columns = [
            SourceColumn(str(n), str(t or ""), bool(nn), int(pk), int(hidden) in (2, 3))
            for n, t, nn, pk, hidden in info
        ]
        table = SourceTable(name, columns, virtual=name in virtual, without_rowid="WITHOUT ROWID" in ddl.upper())
        pks = [c for c in columns if c.primary_key]
        if len(pks) == 1 and pks[0].declared_type.upper() == "INTEGER" and not table.without_rowid:
            table.rowid_alias = pks[0].name
        schema.tables.append(table)
    return schema


def quote_sqlite(name: str) -> str:
    """A SQLite identifier in double quotes (SQLite has no psycopg.sql; this is its documented quoting)."""
    return '"' + name.replace('"', '""') + '"'


LOWEST_ROWID = -(2**63)


def after_bound(after: int | None) -> int:
    """The rowid reading goes on after (``rowid > bound``): ``after``, or the lowest rowid when reading from the
    start (a row stored at exactly that rowid is refused by the plan: :func:`holds_lowest_rowid`)."""
    return LOWEST_ROWID if after is None else after


def holds_lowest_rowid(conn: sqlite3.Connection, table: SourceTable, path: Path) -> bool:
    """Whether a row of the table has rowid -2^63, the lowest SQLite allows: reading starts after that value, so
    such a row would be passed over (one lookup by rowid; WITHOUT ROWID and virtual tables have none)."""
    if table.without_rowid or table.virtual:
        return False
    try:
        query = f"SELECT 1 FROM {quote_sqlite(table.name)} WHERE rowid = {LOWEST_ROWID}"  # noqa: S608
        return conn.execute(query).fetchone() is not None
    except sqlite3.Error as exc:
        raise SourceError(describe(path, exc)) from None


def count_rows(conn: sqlite3.Connection, table: SourceTable, path: Path) -> int:
    try:
        return int(conn.execute(f"SELECT count(*) FROM {quote_sqlite(table.name)}").fetchone()[0])  # noqa: S608
    except sqlite3.Error as exc:
        raise SourceError(describe(path, exc)) from None


def file_digest(path: Path) -> str:
    """sha256 of the database file and, when present, its write-ahead log (the WAL holds committed rows too)."""
    digest = hashlib.sha256()
    for part in (path, path.with_name(path.name + "-wal")):
        if part.is_file():
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()
