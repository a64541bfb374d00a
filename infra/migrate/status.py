"""`ws migrate status`: the mission dashboard: agents total/migrated/validated/failed, rows, percent, rejects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from infra.migrate import ledger
from infra.migrate.source import SourceFile
from infra.migrate.target import connect, database_errors

MIGRATED = {"loaded", "validated", "mismatch", "archived", "deleted"}
VALIDATED = {"validated", "archived", "deleted"}


@dataclass
class AgentStatus:
    namespace: str
    agent_id: str
    status: str  # pending, running, loaded, validated, mismatch, failed, archived, deleted, changed
    rows_loaded: int = 0
    rows_rejected: int = 0
    error: str = ""
    source_present: bool = True


@dataclass
class StatusReport:
    agents: list[AgentStatus]
    rejects: dict[str, int] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        total = len(self.agents)
        statuses = [a.status for a in self.agents]
        return {
            "total": total,
            "migrated": sum(s in MIGRATED for s in statuses),
            "validated": sum(s in VALIDATED for s in statuses),
            "archived": sum(s in ("archived", "deleted") for s in statuses),
            "failed": sum(s in ("failed", "mismatch") for s in statuses),
            "in_progress": sum(s in ("running", "loading") for s in statuses),
            "pending": sum(s in ("pending", "changed") for s in statuses),
        }

    @property
    def percent_complete(self) -> float:
        counts = self.counts()
        return round(100.0 * counts["validated"] / counts["total"], 1) if counts["total"] else 100.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "agents": self.counts(),
            "percent_complete": self.percent_complete,
            "rows_loaded": sum(a.rows_loaded for a in self.agents),
            "rows_rejected": sum(a.rows_rejected for a in self.agents),
            "rejects_by_reason": self.rejects,
            "rules": self.rules,
            "per_agent": [asdict(a) for a in self.agents],
        }


@database_errors
def status(url: str, sources: list[SourceFile], namespaces: list[str]) -> StatusReport:
    with connect(url, autocommit=True) as conn:
        agents: dict[tuple[str, str], AgentStatus] = {
            (s.namespace, s.agent_id): AgentStatus(s.namespace, s.agent_id, "pending") for s in sources
        }
        if not ledger.ledger_exists(conn):
            return StatusReport(sorted(agents.values(), key=lambda a: (a.namespace, a.agent_id)))
        stats = {(s.namespace, s.agent_id): s.path.stat() for s in sources if s.path.exists()}
        for namespace, agent, state, error, size, mtime in ledger.file_rows(conn, namespaces):
            entry = agents.get((namespace, agent))
            if entry is None:
                entry = agents[(namespace, agent)] = AgentStatus(namespace, agent, state, source_present=False)
            entry.status, entry.error = state, error
            current = stats.get((namespace, agent))
            changed = current is not None and (current.st_size, current.st_mtime_ns) != (size, mtime)
            if state in ("loaded", "validated", "mismatch") and changed:
                entry.status = "changed"
                entry.error = "the SQLite file changed since it was migrated; run `ws migrate run` to reload it"
        for namespace, agent, loaded, rejected in ledger.unit_totals(conn, namespaces):
            entry = agents.get((namespace, agent))
            if entry is not None:
                entry.rows_loaded, entry.rows_rejected = loaded, rejected
        rejects = ledger.reject_counts(conn, namespaces)
        rules = ledger.rule_counts(conn, namespaces)
    return StatusReport(sorted(agents.values(), key=lambda a: (a.namespace, a.agent_id)), rejects, rules)
