"""Spec service of the example saas-spec-driven-development repo: specifications with their agents."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from example_service import serve


def specifications(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT s.id, r.key, s.title, s.status::text, a.name AS agent
        FROM specs.specifications s
        JOIN specs.requirements r ON r.id = s.requirement_id
        LEFT JOIN ecosystem.agents a ON a.id = s.agent_id
        ORDER BY r.key, s.title
        """
    ).fetchall()
    return [{"id": r[0], "requirement": r[1], "title": r[2], "status": r[3], "agent": r[4]} for r in rows]


if __name__ == "__main__":
    serve("spec-service", {"/api/specs": specifications})
