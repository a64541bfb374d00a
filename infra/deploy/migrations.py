"""Apply Prisma migration folders the way `prisma migrate deploy` does, for when Prisma's engine is absent.

Each repo's migrations live in ``<migrations_dir>/<name>/migration.sql`` and are recorded in
``<namespace>._prisma_migrations`` (the namespace is the connection's ``?schema=``), with exactly Prisma's
columns: id (uuid, varchar 36), checksum (sha256 hex of migration.sql, varchar 64), finished_at,
migration_name, logs, rolled_back_at, started_at, applied_steps_count. Like Prisma it takes the advisory
lock 72707369 while it works, applies pending migrations in name order, each as one transaction, and refuses:

- P3005 when the namespace already holds tables but no ``_prisma_migrations`` (baseline it first);
- P3009 when a migration is recorded as failed (finished_at and rolled_back_at both NULL);
- P3018 when a migration fails now (the row stays, with the error in ``logs``, as Prisma leaves it);
- when an applied migration's migration.sql no longer has the recorded checksum (it was edited after it ran).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from infra.deploy.runtime import Runtime
from infra.errors import CheckFailed, UsageError
from infra.workspace.located import LoadedWorkspace

PRISMA_LOCK_KEY = 72707369  # the advisory lock key Prisma's schema engine takes on PostgreSQL
TABLE = "_prisma_migrations"
RESOLVE_LINK = "https://pris.ly/d/migrate-resolve"
BASELINE_LINK = "https://pris.ly/d/migrate-baseline"

PRISMA_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class MigrationFile:
    name: str
    path: Path
    script: str
    checksum: str


@dataclass
class MigrationStatus:
    """Where one repo's migrations stand in the database."""

    repo: str
    namespace: str
    local: list[str]
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    missing_locally: list[str] = field(default_factory=list)
    table_exists: bool = False

    @property
    def ok(self) -> bool:
        return not (self.pending or self.failed or self.modified)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "namespace": self.namespace,
            "local": len(self.local),
            "applied": self.applied,
            "pending": self.pending,
            "failed": self.failed,
            "modified": self.modified,
            "missing_locally": self.missing_locally,
            "ok": self.ok,
        }


def namespace_of(loaded: LoadedWorkspace, repo: str) -> str:
    schema = loaded.model.repos[repo].schema_
    return schema.namespace if schema else "public"


def migration_files(loaded: LoadedWorkspace, repo: str) -> list[MigrationFile]:
    """The repo's migration folders in apply order (by name, as Prisma sorts them)."""
    schema = loaded.model.repos[repo].schema_
    if schema is None:
        return []
    folder = loaded.repo_dir(repo) / schema.migrations_dir
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        script_path = child / "migration.sql"
        if child.is_dir() and script_path.is_file():
            raw = script_path.read_bytes()
            found.append(MigrationFile(child.name, script_path, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()))
    return found


def _table(namespace: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(namespace), sql.Identifier(TABLE))


def _rows(conn: psycopg.Connection[Any], namespace: str) -> list[dict[str, Any]] | None:
    exists = conn.execute("SELECT to_regclass(%s)", [f'"{namespace}"."{TABLE}"']).fetchone()
    if not exists or exists[0] is None:
        return None
    cursor = conn.execute(
        sql.SQL(
            "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count "
            "FROM {} ORDER BY started_at, migration_name"
        ).format(_table(namespace))
    )
    names = [c.name for c in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def status(conn: psycopg.Connection[Any], loaded: LoadedWorkspace, repo: str) -> MigrationStatus:
    namespace = namespace_of(loaded, repo)
    files = migration_files(loaded, repo)
    result = MigrationStatus(repo, namespace, [f.name for f in files])
    rows = _rows(conn, namespace)
    if rows is None:
        result.pending = [f.name for f in files]
        return result
    result.table_exists = True
    by_name = {f.name: f for f in files}
    done: set[str] = set()
    for row in rows:
        name = row["migration_name"]
        if row["rolled_back_at"] is not None:
            continue
        if row["finished_at"] is None:
            result.failed.append(name)
            continue
        done.add(name)
        result.applied.append(name)
        local = by_name.get(name)
        if local is None:
            result.missing_locally.append(name)
        elif local.checksum != row["checksum"]:
            result.modified.append(name)
    result.pending = [f.name for f in files if f.name not in done and f.name not in result.failed]
    return result


@dataclass(frozen=True)
class MigrateResult:
    """What `ws db migrate` did (or, with dry_run, would do) to one repo's migrations."""

    repo: str
    namespace: str
    dry_run: bool
    migrations: list[str]  # applied, or with dry_run pending
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "namespace": self.namespace,
            "dry_run": self.dry_run,
            "migrations": self.migrations,
            "note": self.note,
        }


def migrate_repo(
    runtime: Runtime,
    loaded: LoadedWorkspace,
    repo: str,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> MigrateResult:
    """Apply the repo's pending migrations in the runtime's database (provisioned first); with ``dry_run`` list
    them, touching nothing: when the database does not run yet, every migration is pending."""
    namespace = namespace_of(loaded, repo)
    infra = runtime.locate() if dry_run else runtime.provision()
    if infra is None:
        names = [m.name for m in migration_files(loaded, repo)]
        return MigrateResult(repo, namespace, dry_run, names, "database not running: every migration is pending")
    applied = apply(infra.database_url, loaded, repo, dry_run=dry_run, progress=progress)
    return MigrateResult(repo, namespace, dry_run, applied)


def failed_message(rows: list[dict[str, Any]]) -> str:
    lines = [
        "P3009: migrate found failed migrations in the target database, new migrations will not be applied. "
        f"Read more about how to resolve migration issues in a production database: {RESOLVE_LINK}",
        "The following migration(s) failed:",
    ]
    for row in rows:
        lines.append(f"The `{row['migration_name']}` migration started at {row['started_at']} failed")
    return "\n".join(lines)


def apply(
    database_url: str,
    loaded: LoadedWorkspace,
    repo: str,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """Apply the repo's pending migrations; the names applied (or, with dry_run, that would be)."""
    namespace = namespace_of(loaded, repo)
    files = migration_files(loaded, repo)
    if loaded.model.repos[repo].schema_ is None:
        raise UsageError(f"{repo} declares no schema in workspace.yaml; the built-in applier needs repos.{repo}.schema")
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [PRISMA_LOCK_KEY])
        try:
            return _apply_locked(conn, loaded, repo, namespace, files, dry_run, progress)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [PRISMA_LOCK_KEY])


def _apply_locked(
    conn: psycopg.Connection[Any],
    loaded: LoadedWorkspace,
    repo: str,
    namespace: str,
    files: list[MigrationFile],
    dry_run: bool,
    progress: Callable[[str], None],
) -> list[str]:
    rows = _rows(conn, namespace)
    if rows is None:
        tables = conn.execute("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = %s", [namespace]).fetchone()
        if tables and tables[0]:
            raise CheckFailed(
                f"{repo}: P3005: The database schema is not empty. Read more about how to baseline an existing "
                f"production database: {BASELINE_LINK} (schema `{namespace}` has {tables[0]} table(s) but no "
                f"{TABLE}; mark the migrations already present as applied with `prisma migrate resolve --applied`)"
            )
        if dry_run:
            return [f.name for f in files]
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(namespace)))
        conn.execute(sql.SQL(PRISMA_DDL).format(table=_table(namespace)))
        rows = []
    failed = [r for r in rows if r["finished_at"] is None and r["rolled_back_at"] is None]
    if failed:
        raise CheckFailed(f"{repo}: " + failed_message(failed))
    by_name = {f.name: f for f in files}
    applied = {r["migration_name"] for r in rows if r["finished_at"] is not None and r["rolled_back_at"] is None}
    for row in rows:
        local = by_name.get(row["migration_name"])
        if row["migration_name"] in applied and local is not None and local.checksum != row["checksum"]:
            raise CheckFailed(
                f"{repo}: The migration `{local.name}` was modified after it was applied "
                f"(recorded checksum {row['checksum'][:12]}…, {local.path} now {local.checksum[:12]}…). "
                "Restore the applied migration.sql and put the change in a new migration"
            )
    pending = [f for f in files if f.name not in applied]
    if dry_run:
        return [f.name for f in pending]
    done = []
    for migration in pending:
        progress(f"{repo}: applying migration `{migration.name}`")
        migration_id = str(uuid.uuid4())
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, checksum, migration_name, started_at, applied_steps_count) "
                "VALUES (%s, %s, %s, now(), 0)"
            ).format(_table(namespace)),
            [migration_id, migration.checksum, migration.name],
        )
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(namespace)))
                conn.execute(migration.script.encode())  # bytes: a script of many statements, run as given
        except psycopg.Error as exc:
            code = exc.sqlstate or "unknown"
            message = str(exc).strip()
            logs = f"Database error code: {code}\n\nDatabase error:\n{message}"
            conn.execute(
                sql.SQL("UPDATE {} SET logs = %s WHERE id = %s").format(_table(namespace)), [logs, migration_id]
            )
            raise CheckFailed(
                f"{repo}: P3018: A migration failed to apply. New migrations cannot be applied before the error is "
                f"recovered from. Read more about how to resolve migration issues in a production database: "
                f"{RESOLVE_LINK}\n\nMigration name: {migration.name}\n\n{logs}"
            ) from exc
        conn.execute(
            sql.SQL("UPDATE {} SET finished_at = now(), applied_steps_count = 1 WHERE id = %s").format(
                _table(namespace)
            ),
            [migration_id],
        )
        done.append(migration.name)
    return done
