"""The PostgreSQL side: which database, target tables and their columns (the ledger is :mod:`infra.migrate.ledger`)."""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from infra.errors import CheckFailed, UsageError
from infra.migrate.convert import SUPPORTED_TYPES, TargetColumn
from infra.migrate.source import SourceColumn, SourceTable
from infra.workspace import env as envmod
from infra.workspace.located import LoadedWorkspace

KEY_COLUMNS = ("agent_id", "source_rowid")
NAMEDATALEN = 64  # PostgreSQL keeps the first NAMEDATALEN - 1 bytes of an identifier


def pg_identifier(name: str) -> str:
    """The name PostgreSQL stores for ``name``: its first 63 bytes in UTF-8, cut at a character boundary (as
    truncate_identifier does with pg_mbcliplen), so multi-byte names are shortened by bytes, not characters."""
    data = name.encode("utf-8", "surrogatepass")
    if len(data) < NAMEDATALEN:
        return name
    return data[: NAMEDATALEN - 1].decode("utf-8", "ignore")


def libpq_url(url: str) -> str:
    """A libpq URL from a Prisma-style one: drops ``?schema=`` (libpq rejects it), keeps everything else."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def database_url(loaded: LoadedWorkspace | None, environment: str | None, explicit: str | None, repo: str) -> str:
    """--database-url wins; else the repo's database URL in --env (secrets taken from this process's env)."""
    if explicit:
        return libpq_url(explicit)
    if loaded is None or environment is None:
        raise UsageError("give --database-url URL or --env ENV to say which database to migrate into")
    if environment not in loaded.model.environments:
        raise UsageError(
            f"--env: unknown environment {environment!r}; {loaded.path.name} declares "
            f"{', '.join(loaded.model.environments)}"
        )
    value = envmod.endpoints(loaded.model, environment, repo).database
    missing = sorted({p.secret for p in value if not isinstance(p, str) and envmod.environ_secrets(p.secret) is None})
    if missing:
        raise UsageError(
            f"--env {environment}: the database URL of {repo} needs secret(s) {', '.join(missing)}; export them "
            "in this shell or pass --database-url"
        )
    return libpq_url(envmod.render(value, envmod.environ_secrets))


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise UsageError(f"cannot connect to the database: {str(exc).strip().splitlines()[0]}") from None


F = TypeVar("F", bound=Callable[..., Any])


def database_errors(func: F) -> F:
    """Turn PostgreSQL failures outside a unit's own handling into one clear message instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except psycopg.OperationalError as exc:
            raise UsageError(f"cannot use the database: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise CheckFailed(
                f"PostgreSQL refused a ws migrate statement: {_first_line(exc)}; check the target tables and the "
                "ws_migrate schema of this database"
            ) from None

    return wrapper  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class TargetTable:
    namespace: str
    name: str
    columns: dict[str, TargetColumn]  # every column, keyed by name, in table order

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.namespace, self.name)


def introspect(conn: psycopg.Connection[Any], namespace: str, table: str) -> TargetTable | None:
    """The target table's columns with base type, NOT NULL, default and declared length, precision and scale
    (of the column, or of its domain); None when absent."""
    rows = conn.execute(
        """
        SELECT a.attname, coalesce(bt.typname, t.typname), a.attnotnull, a.atthasdef,
               CASE WHEN a.atttypmod >= 0 THEN a.atttypmod WHEN t.typtype = 'd' THEN t.typtypmod ELSE -1 END,
               a.attgenerated <> ''
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
        WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
        ORDER BY a.attnum
        """,
        (namespace, table),
    ).fetchall()
    if not rows:
        return None
    columns = {
        str(r[0]): target_column(str(r[0]), str(r[1]), bool(r[2]), bool(r[3]), int(r[4]), generated=bool(r[5]))
        for r in rows
    }
    return TargetTable(namespace, table, columns)


def target_column(
    name: str, type_name: str, not_null: bool, has_default: bool, typmod: int, *, generated: bool = False
) -> TargetColumn:
    """A column from its catalog entry; the type modifier (-1: none) is decoded as PostgreSQL's format_type does."""
    length = precision = scale = None
    if type_name in ("varchar", "bpchar") and typmod > 4:
        length = typmod - 4
    elif type_name in ("timestamp", "timestamptz") and 0 <= typmod < 6:
        scale = typmod  # fractional-second digits (6, and no modifier, keep microseconds)
    elif type_name == "numeric" and typmod >= 4:
        precision = ((typmod - 4) >> 16) & 0xFFFF
        scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024  # 11-bit signed: numeric(p, -s) exists since PostgreSQL 15
    return TargetColumn(name, type_name, not_null, has_default, length, precision, scale, generated)


def target_type_for(column: SourceColumn) -> str:
    """PostgreSQL type for a source column when --create-tables creates the target (SQLite affinity rules)."""
    declared = column.declared_type.upper()
    name = column.name.lower()
    if "JSON" in declared:
        return "jsonb"
    if any(word in declared for word in ("DATE", "TIME")) or name.endswith("_at"):
        return "timestamptz"
    if "INT" in declared:
        return "bigint"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "double precision"
    if "BOOL" in declared:
        return "boolean"
    if "BLOB" in declared:
        return "bytea"
    if declared == "":
        return "text"  # no declared type (FTS columns, loose tables): text, other storage classes by rules
    return "numeric"


def create_table_sql(namespace: str, table: str, source: SourceTable) -> list[sql.Composed]:
    """DDL that creates a target table for ``source``: agent_id, source_rowid, then every data column."""
    columns: list[sql.Composable] = [
        sql.SQL("agent_id text NOT NULL"),
        sql.SQL("source_rowid bigint NOT NULL"),
    ]
    for column in source.columns:
        if column.name == source.rowid_alias or column.name in KEY_COLUMNS:
            continue
        columns.append(
            sql.SQL("{} {}").format(sql.Identifier(pg_identifier(column.name)), sql.SQL(target_type_for(column)))
        )
    columns.append(sql.SQL("PRIMARY KEY (agent_id, source_rowid)"))
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(namespace)),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(namespace, table), sql.SQL(", ").join(columns)
        ),
    ]


def unsupported(columns: dict[str, TargetColumn]) -> list[str]:
    return [c.name for c in columns.values() if c.type_name not in SUPPORTED_TYPES and c.name not in KEY_COLUMNS]
