"""Agent registry of the example app-agents repo: agents with their run and memory counts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from example_service import serve


def agents(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT a.id, a.name, a.status::text,
               (SELECT count(*) FROM agents.agent_runs r WHERE r.agent_id = a.id) AS runs,
               (SELECT count(*) FROM agents.memories m WHERE m.agent_id = a.id::text) AS memories
        FROM ecosystem.agents a ORDER BY a.name
        """
    ).fetchall()
    return [{"id": r[0], "name": r[1], "status": r[2], "runs": r[3], "memories": r[4]} for r in rows]


if __name__ == "__main__":
    serve("app-agents", {"/api/agents": agents})
