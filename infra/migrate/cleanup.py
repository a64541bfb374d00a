"""`ws migrate cleanup`: retire SQLite files whose every table validated against this database.

A file is eligible only when the ledger of the database being cleaned up says the agent validated, every table
now in the file has a validated unit, and the file's sha256 today is the one that was migrated and validated.
Eligible files move to the repo's archive folder (sqlite_migration.archive) with a manifest, or are deleted with
``delete=True`` (the manifest is still written). Everything else is refused with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.migrate import ledger
from infra.migrate.source import SourceError, SourceFile, file_digest, open_readonly, read_schema
from infra.migrate.target import connect, database_errors

COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass
class CleanupItem:
    repo: str
    agent_id: str
    path: str
    action: str  # archive, delete, refused
    reason: str = ""
    sha256: str = ""
    destination: str = ""
    tables: dict[str, int] = field(default_factory=dict)
    validated_at: str = ""


@dataclass
class CleanupReport:
    items: list[CleanupItem]
    dry_run: bool
    manifests: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[CleanupItem]:
        return [i for i in self.items if i.action == "refused"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "retired": len(self.items) - len(self.refused),
            "refused": len(self.refused),
            "manifests": self.manifests,
            "files": [asdict(i) for i in self.items],
        }


def _eligibility(conn: Any, source: SourceFile, busy_timeout: float) -> CleanupItem:
    item = CleanupItem(source.repo, source.agent_id, str(source.path), "refused")
    try:
        item.sha256 = file_digest(source.path)
        sqlite_conn = open_readonly(source.path, busy_timeout=busy_timeout)
        try:
            schema = read_schema(sqlite_conn, source.path)
        finally:
            sqlite_conn.close()
    except SourceError as exc:
        item.reason = str(exc)
        return item
    units = ledger.agent_units(conn, source.namespace, source.agent_id)
    reasons = []
    times = []
    for table in schema.tables:
        unit = units.get(table.name)
        if unit is None:
            reasons.append(f"table {table.name} was never migrated into this database")
            continue
        status, sha, loaded, rejected, validated_at = unit
        if status != "validated" or validated_at is None:
            reasons.append(f"table {table.name} is {status}, not validated (run `ws migrate validate`)")
        elif sha != item.sha256:
            reasons.append(f"table {table.name} was validated against another version of the file (sha256 changed)")
        else:
            item.tables[table.name] = int(loaded) + int(rejected)
            times.append(validated_at)
    if not schema.tables:
        reasons.append("the file has no tables to have validated")
    if reasons:
        item.reason = "; ".join(reasons)
        return item
    item.validated_at = max(times).isoformat()
    item.action = "ok"
    return item


@database_errors
def cleanup(
    url: str,
    sources: list[SourceFile],
    archive_dirs: dict[str, Path],
    repo_dirs: dict[str, Path],
    *,
    delete: bool = False,
    dry_run: bool = False,
    busy_timeout: float = 2.0,
) -> CleanupReport:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = CleanupReport([], dry_run)
    with connect(url, autocommit=True) as conn:
        if not ledger.ledger_exists(conn):
            report.items = [
                CleanupItem(s.repo, s.agent_id, str(s.path), "refused", "nothing was migrated into this database")
                for s in sources
            ]
            return report
        for source in sources:
            item = _eligibility(conn, source, busy_timeout)
            report.items.append(item)
            if item.action == "refused":
                continue
            item.action = "delete" if delete else "archive"
            run_dir = archive_dirs[source.repo] / stamp
            destination = run_dir / source.relative
            item.destination = "" if delete else str(destination)
            if dry_run:
                continue
            if delete:
                for companion in ("", *COMPANIONS):
                    source.path.with_name(source.path.name + companion).unlink(missing_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                for companion in ("", *COMPANIONS):
                    part = source.path.with_name(source.path.name + companion)
                    if part.exists():
                        shutil.move(str(part), str(destination.with_name(destination.name + companion)))
            ledger.mark_retired(
                conn, source.namespace, source.agent_id, "deleted" if delete else "archived", item.destination or None
            )
        if not dry_run:
            for repo in sorted({i.repo for i in report.items if i.action in ("archive", "delete")}):
                run_dir = archive_dirs[repo] / stamp
                run_dir.mkdir(parents=True, exist_ok=True)
                manifest = run_dir / "manifest.json"
                entries = [
                    {
                        "agent_id": i.agent_id,
                        "source": str(Path(i.path).relative_to(repo_dirs[repo])),
                        "action": i.action,
                        "archived_to": str(Path(i.destination).relative_to(run_dir)) if i.destination else None,
                        "sha256": i.sha256,
                        "rows": i.tables,
                        "validated_at": i.validated_at,
                    }
                    for i in report.items
                    if i.repo == repo and i.action in ("archive", "delete")
                ]
                manifest.write_text(
                    json.dumps({"created_at": stamp, "repo": repo, "files": entries}, indent=2) + "\n",
                    encoding="utf-8",
                )
                report.manifests.append(str(manifest))
    return report
