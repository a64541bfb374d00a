"""`ws migrate check`: read-only plan and profile of every discovered SQLite file.

For each file: integrity check, tables, columns, row counts, the target of every table, and a profile of every
column found by running each value through the very converters `run` uses (nothing is written): storage
classes per column (typeof), NUL bytes, invalid UTF-8, integers out of range, epoch numbers vs ISO text in
date columns, JSON PostgreSQL rejects, huge blobs, virtual/FTS shadow tables. Each finding carries the rule that
converts it, or the reject reason when no rule can. Anything that would not arrive in its target table
(rejects, unmapped columns, missing targets, unreadable files) is a problem: exit 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from infra.migrate.convert import REJECT_REASONS, RULES, TIME_TYPES, storage_class
from infra.migrate.load import FilePlan, plan_file
from infra.migrate.plan import iterate_rows, row_converter
from infra.migrate.source import SourceError, SourceFile, file_digest, open_readonly
from infra.migrate.target import connect, database_errors

HUGE_BLOB = 16 * 1024 * 1024
SAMPLE_LIMIT = 20


@dataclass
class ColumnProfile:
    name: str
    target_type: str
    storage_classes: dict[str, int] = field(default_factory=dict)
    huge_blobs: int = 0
    largest_blob: int = 0
    epoch_values: int = 0
    iso_values: int = 0


@dataclass
class TableCheck:
    source_table: str
    target_table: str
    action: str  # load, create+load, none
    rows: int = 0
    columns: list[ColumnProfile] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    reject_samples: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class FileCheck:
    repo: str
    agent_id: str
    path: str
    size_bytes: int
    sha256: str = ""
    tables: list[TableCheck] = field(default_factory=list)
    skipped_tables: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def problems(self) -> list[str]:
        found = [self.error] if self.error else []
        for table in self.tables:
            found += [f"{table.source_table}: {p}" for p in table.problems]
            found += [
                f"{table.source_table}: {count} row(s) would be rejected ({reason}: {REJECT_REASONS[reason]})"
                for reason, count in table.rejects.items()
            ]
        return found

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def rules(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for table in self.tables:
            for rule, count in table.rules.items():
                total[rule] = total.get(rule, 0) + count
        for rule in self.skipped_tables.values():
            total[rule] = total.get(rule, 0) + 1
        return dict(sorted(total.items()))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = self.rows
        data["problems"] = self.problems
        data["rules"] = self.rules()
        return data


@dataclass
class CheckReport:
    files: list[FileCheck]

    @property
    def problems(self) -> list[str]:
        return [f"{f.agent_id}: {p}" for f in self.files for p in f.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def rules(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for item in self.files:
            for rule, count in item.rules().items():
                total[rule] = total.get(rule, 0) + count
        return dict(sorted(total.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": len(self.files),
            "rows": sum(f.rows for f in self.files),
            "rules": {name: {"count": n, "meaning": RULES[name]} for name, n in self.rules().items()},
            "problems": self.problems,
            "agents": [f.as_dict() for f in self.files],
        }


def profile_table(plan: FilePlan, sqlite_conn: Any, index: int) -> TableCheck:
    mapping = plan.mappings[index]
    source = plan.source
    result = TableCheck(
        mapping.source.name,
        mapping.target_label,
        "none" if mapping.problems else ("create+load" if mapping.create else "load"),
        rows=plan.counts.get(mapping.source.name, 0),
        problems=list(mapping.problems),
        rules=dict(mapping.rules),
    )
    if mapping.problems:
        return result
    result.columns = [ColumnProfile(c.name, c.type_name) for c in mapping.target_columns]
    time_columns = [i for i, c in enumerate(mapping.target_columns) if c.type_name in TIME_TYPES]
    convert = row_converter(source.agent_id, mapping)
    profiles = result.columns
    for row in iterate_rows(sqlite_conn, mapping, source.path, None):
        for i, value in enumerate(row[1:]):
            kind = storage_class(value)
            classes = profiles[i].storage_classes
            classes[kind] = classes.get(kind, 0) + 1
            if kind == "blob" and len(value) > profiles[i].largest_blob:
                profiles[i].largest_blob = len(value)
                if len(value) > HUGE_BLOB:
                    profiles[i].huge_blobs += 1
        for i in time_columns:
            value = row[i + 1]
            if isinstance(value, int | float) or (
                isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
            ):
                profiles[i].epoch_values += 1
            elif isinstance(value, str):
                profiles[i].iso_values += 1
        _, rejected, applied = convert(row)
        for rule, _column, _raw in applied:
            result.rules[rule] = result.rules.get(rule, 0) + 1
        if rejected is not None:
            result.rejects[rejected.reason] = result.rejects.get(rejected.reason, 0) + 1
            if len(result.reject_samples) < SAMPLE_LIMIT:
                result.reject_samples.append(
                    {"rowid": rejected.rowid, "column": rejected.column, "reason": rejected.reason}
                )
    result.rules = dict(sorted(result.rules.items()))
    return result


def check_file(
    conn: psycopg.Connection[Any], source: SourceFile, *, create_tables: bool, busy_timeout: float
) -> FileCheck:
    size = source.path.stat().st_size if source.path.exists() else 0
    result = FileCheck(source.repo, source.agent_id, str(source.path), size)
    try:
        result.sha256 = file_digest(source.path)
        sqlite_conn = open_readonly(source.path, busy_timeout=busy_timeout)
        try:
            sqlite_conn.execute("BEGIN")
            plan = plan_file(conn, source, sqlite_conn, create_tables=create_tables, integrity_check=True, quick=False)
            assert plan.schema is not None
            result.skipped_tables = dict(plan.schema.skipped)
            for index in range(len(plan.mappings)):
                result.tables.append(profile_table(plan, sqlite_conn, index))
        finally:
            sqlite_conn.close()
    except SourceError as exc:
        result.error = str(exc)
    return result


@database_errors
def check(
    url: str, sources: list[SourceFile], *, create_tables: bool = False, busy_timeout: float = 2.0
) -> CheckReport:
    with connect(url, autocommit=True) as conn:
        return CheckReport(
            [check_file(conn, s, create_tables=create_tables, busy_timeout=busy_timeout) for s in sources]
        )
