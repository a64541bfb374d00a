"""Shared fixtures: real PostgreSQL and Redis (from DATABASE_URL/REDIS_URL, the local servers, or embedded ones).

Tests never share a database: `fresh_database` creates a uniquely named one and drops it afterwards, so
test modules (and parallel developers) never see each other's tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra.deploy.servers import postgres_server_url, redis_server_url
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT
from tests.workspace_builder import GIT_IDENTITY, build_workspace

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ws-state")


@pytest.fixture(scope="session")
def postgres_url(state_dir: Path) -> str:
    """URL of the server's maintenance database (`postgres`)."""
    return postgres_server_url(state_dir)


def database_url(server_url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database for one test; its libpq URL."""
    name = f"ws_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(postgres_url, name)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def redis_url(state_dir: Path) -> str:
    return redis_server_url(state_dir)


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    """A local HTTP server speaking GitHub's REST API (GitHub cannot be reached from tests)."""
    with FakeGitHub() as server:
        yield server


@pytest.fixture
def github_workspace(tmp_path: Path, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three real git repos with bare remotes behind the fake GitHub, and the workspace.yaml naming them."""
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    build_workspace(tmp_path, fake)
    return tmp_path
