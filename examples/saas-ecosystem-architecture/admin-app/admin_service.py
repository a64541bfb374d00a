"""Admin app of the example primary repo: organizations and their agents."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))
from example_service import serve


def organizations(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT o.id, o.slug, o.name, count(a.id) AS agents
        FROM organizations o LEFT JOIN agents a ON a.organization_id = o.id
        GROUP BY o.id ORDER BY o.slug
        """
    ).fetchall()
    return [{"id": r[0], "slug": r[1], "name": r[2], "agents": r[3]} for r in rows]


if __name__ == "__main__":
    serve("admin-app", {"/api/organizations": organizations})
