"""Helpers of the ws migrate tests: target databases, example copies, nasty SQLite corpora."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from tests.helpers import EXAMPLES, run_ws

PRIMARY_MIGRATIONS = EXAMPLES / "saas-ecosystem-architecture" / "admin-app" / "prisma" / "migrations"
AGENTS_MIGRATIONS = EXAMPLES / "app-agents" / "shared" / "database" / "migrations"


def generator() -> ModuleType:
    path = EXAMPLES / "app-agents" / "scripts" / "generate_memories.py"
    spec = importlib.util.spec_from_file_location("generate_memories", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def apply_target_migrations(url: str) -> None:
    """The primary's migrations, then app-agents' (its tables reference ecosystem.*), as the deploy applies them."""
    files = sorted(PRIMARY_MIGRATIONS.glob("*/migration.sql")) + sorted(AGENTS_MIGRATIONS.glob("*/migration.sql"))
    with psycopg.connect(url, autocommit=True) as conn:
        for file in files:
            conn.execute(file.read_text(encoding="utf-8"))


def copy_example(tmp: Path) -> Path:
    """A private copy of the example workspace (cleanup moves files; tests must not touch the shared tree)."""
    target = tmp / "examples"
    shutil.copytree(
        EXAMPLES,
        target,
        ignore=shutil.ignore_patterns("node_modules", "agents", ".ws", "__pycache__", "*.db*"),
    )
    return target / "workspace.yaml"


def workspace(tmp: Path, namespace: str = "agents", tables: str = "") -> Path:
    """A minimal workspace whose repo `bot` (folder bot/) migrates bot/agents/*/memory.db into ``namespace``."""
    (tmp / "bot").mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(
        f"""\
        version: 1
        name: migrate-test
        github: {{owner: example}}
        environments:
          local: {{runtime: local}}
        database: {{name: migrate_test}}
        repos:
          bot:
            github: example/bot
            path: bot
            role: primary
            schema: {{prisma: schema.prisma, namespace: {namespace}}}
            sqlite_migration:
              source: agents/*/memory.db
        """
    )
    if tables:
        text += f"      tables: {tables}\n"
    path = tmp / "workspace.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def agent_file(tmp: Path, agent: str) -> Path:
    path = tmp / "bot" / "agents" / agent / "memory.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def create_memory_tables(conn: sqlite3.Connection, *, loose: bool = False) -> None:
    """The agent tables; ``loose`` declares content and tokens without a type, so SQLite's type affinity keeps
    whatever storage class a value arrives with (how real files end up with mixed types in one column)."""
    content, tokens = ("content", "tokens") if loose else ("content TEXT", "tokens INTEGER")
    conn.executescript(
        f"""
        CREATE TABLE memories (id INTEGER PRIMARY KEY, kind TEXT, {content}, embedding BLOB, metadata TEXT,
                               created_at);
        CREATE TABLE conversations (id INTEGER PRIMARY KEY, session_id TEXT, role TEXT, message TEXT,
                                    {tokens}, created_at);
        """
    )


def ws_json(*args: str, expect: int | None = 0, timeout: float = 120) -> tuple[int, Any]:
    """Run `ws ... --json`; return (exit code, parsed JSON) and fail with the output when the code is wrong."""
    proc = run_ws(*args, "--json", timeout=timeout)
    if expect is not None:
        assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None
