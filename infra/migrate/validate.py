"""`ws migrate validate`: prove, per agent and table, that PostgreSQL holds exactly what the SQLite file holds.

Both sides are computed afresh: the SQLite file is re-read and every row converted by the same rules, and
PostgreSQL computes the count and the checksum of the agent's target rows itself (a sum of 64-bit md5 prefixes
over each row's binary COPY tuple, see :mod:`infra.migrate.encode`, so row order does not matter). Rejected rows
must be exactly the ones in ws_migrate.rejects. On a mismatch the rows are compared one by one and the differing rowids are listed.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from infra.migrate import ledger
from infra.migrate.encode import RowEncoder
from infra.migrate.ledger import UnitKey
from infra.migrate.plan import FilePlan, TableMapping, iterate_rows, plan_file, row_converter
from infra.migrate.source import SourceError, SourceFile, file_digest, open_readonly
from infra.migrate.target import connect, database_errors

LIST_LIMIT = 50


@dataclass
class TableValidation:
    source_table: str
    target_table: str
    ok: bool
    source_rows: int = 0
    target_rows: int = 0
    rejected_source: int = 0
    rejected_ledger: int = 0
    source_checksum: str = ""
    target_checksum: str = ""
    missing_in_target: list[int] = field(default_factory=list)
    extra_in_target: list[int] = field(default_factory=list)
    different: list[int] = field(default_factory=list)
    reason: str = ""


@dataclass
class FileValidation:
    repo: str
    agent_id: str
    path: str
    ok: bool
    sha256: str = ""
    tables: list[TableValidation] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidateReport:
    files: list[FileValidation]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def mismatched(self) -> list[FileValidation]:
        return [f for f in self.files if not f.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": len(self.files),
            "mismatched": len(self.mismatched),
            "agents": [f.as_dict() for f in self.files],
        }


def _source_side(
    sqlite_conn: sqlite3.Connection, source: SourceFile, mapping: TableMapping, keep_rows: bool
) -> tuple[int, int, set[int], dict[int, int]]:
    convert = row_converter(source.agent_id, mapping)
    row_hash = RowEncoder(mapping.target_columns, binary=True).row_hash
    count = total = 0
    rejected: set[int] = set()
    hashes: dict[int, int] = {}
    for row in iterate_rows(sqlite_conn, mapping, source.path, None):
        converted, rejection, _ = convert(row)
        if converted is not None:
            count += 1
            checksum = row_hash(converted.values)
            total += checksum
            if keep_rows:
                hashes[converted.rowid] = checksum
        elif rejection is not None:
            rejected.add(rejection.rowid)
    return count, total, rejected, hashes


def validate_table(
    conn: psycopg.Connection[Any], sqlite_conn: sqlite3.Connection, source: SourceFile, sha: str, mapping: TableMapping
) -> TableValidation:
    result = TableValidation(mapping.source.name, mapping.target_label, False)
    key = UnitKey(source.namespace, source.agent_id, mapping.source.name)
    if mapping.problems:
        result.reason = "; ".join(mapping.problems)
        return result
    unit = ledger.unit_status_and_sha(conn, key)
    count, total, rejected, _ = _source_side(sqlite_conn, source, mapping, keep_rows=False)
    result.source_rows, result.rejected_source, result.source_checksum = count, len(rejected), str(total)
    if mapping.target is None or mapping.create:
        result.reason = f"target table {mapping.target_label} does not exist: run `ws migrate run` first"
        return result
    result.target_rows, target_sum = mapping.target_checksum(conn, source.agent_id, count)
    result.target_checksum = str(target_sum)
    ledger_rejects = ledger.rejected_rowids(conn, key)
    result.rejected_ledger = len(ledger_rejects)
    reasons = []
    if unit is None:
        reasons.append("never migrated (no ledger row): run `ws migrate run`")
    elif unit[0] in ("loading", "failed"):
        reasons.append(f"migration not finished (ledger status {unit[0]}): run `ws migrate run` to resume")
    elif unit[1] != sha:
        reasons.append("the SQLite file changed since it was migrated: run `ws migrate run` to reload it")
    if count != result.target_rows or total != target_sum:
        reasons.append(
            f"content differs: source {count} rows / checksum {total}, target {result.target_rows} rows / checksum "
            f"{target_sum}"
        )
    if rejected != ledger_rejects:
        reasons.append(
            f"rejects differ: {len(rejected)} source rows are rejected by the rules, the reject table holds "
            f"{len(ledger_rejects)}"
        )
    if reasons and (count or result.target_rows):
        _, _, _, source_hashes = _source_side(sqlite_conn, source, mapping, keep_rows=True)
        target_hashes = {int(r[0]): int(r[1]) for r in conn.execute(mapping.row_hashes_sql(), (source.agent_id,))}
        missing = sorted(set(source_hashes) - set(target_hashes))
        extra = sorted(set(target_hashes) - set(source_hashes))
        different = sorted(r for r in set(source_hashes) & set(target_hashes) if source_hashes[r] != target_hashes[r])
        result.missing_in_target = missing[:LIST_LIMIT]
        result.extra_in_target = extra[:LIST_LIMIT]
        result.different = different[:LIST_LIMIT]
        if missing or extra or different:
            reasons.append(
                f"{len(missing)} rowid(s) missing in the target, {len(extra)} extra, {len(different)} with different "
                "content; `ws migrate run --reload --repos ...` reloads it"
            )
    result.ok = not reasons
    result.reason = "; ".join(reasons)
    detail = {
        "method": "rescan",
        "source_rows": count,
        "target_rows": result.target_rows,
        "source_checksum": str(total),
        "target_checksum": str(target_sum),
        "rejected": len(rejected),
        "missing_in_target": result.missing_in_target,
        "extra_in_target": result.extra_in_target,
        "different": result.different,
        "reason": result.reason,
    }
    if unit is not None:
        ledger.record_rescan_validation(conn, key, result.ok, detail)
    return result


def validate_file(pool: ConnectionPool[Any], source: SourceFile, busy_timeout: float) -> FileValidation:
    result = FileValidation(source.repo, source.agent_id, str(source.path), False)
    with pool.connection() as conn:
        try:
            sha = file_digest(source.path)
            result.sha256 = sha
            sqlite_conn = open_readonly(source.path, busy_timeout=busy_timeout)
            try:
                sqlite_conn.execute("BEGIN")
                plan: FilePlan = plan_file(conn, source, sqlite_conn, create_tables=False, integrity_check=False)
                for mapping in plan.mappings:
                    result.tables.append(validate_table(conn, sqlite_conn, source, sha, mapping))
            finally:
                sqlite_conn.close()
        except SourceError as exc:
            result.error = str(exc)
        result.ok = not result.error and all(t.ok for t in result.tables)
        file_status = ledger.file_status(conn, source.namespace, source.agent_id)
        if file_status is not None:
            status = "validated" if result.ok else ("failed" if result.error else "mismatch")
            # every table validated repairs whatever status a run left behind (a run stopped by kill -9 leaves
            # "running"; a run that lost a race to another once left "failed")
            if file_status in ledger.FINISHED or result.error or result.ok:
                ledger.set_file_status(conn, source.namespace, source.agent_id, status, result.error)
    return result


@database_errors
def validate(url: str, sources: list[SourceFile], *, jobs: int = 4, busy_timeout: float = 2.0) -> ValidateReport:
    with connect(url, autocommit=True) as conn:
        ledger.ensure_ledger(conn)
    pool: ConnectionPool[Any] = ConnectionPool(
        url, min_size=1, max_size=max(1, jobs), kwargs={"autocommit": True}, open=True, name="ws-validate"
    )
    with pool, ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="validate") as executor:
        futures = [executor.submit(validate_file, pool, s, busy_timeout) for s in sources]
        return ValidateReport([f.result() for f in futures])
