"""`ws migrate check --code`: every place in a repo's code that still opens SQLite, before and after the move
(issue 19, item 5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from infra.migrate.code_scan import scan_code
from tests.helpers import EXAMPLES, run_ws

AGENT_TS = """import Database from 'better-sqlite3';
import { readFile } from "node:fs/promises";
const legacy = require("sqlite3");
const memory = new Database(`agents/${id}/memory.db`);
export async function open() { return import('node:sqlite'); }
const keep = "exports/archive.sqlite"; // ws: sqlite-ok (the one-off export stays)
"""
AGENT_PY = """import json
import sqlite3
from aiosqlite import connect
from sqlite3.dbapi2 import Row
path = "agents/a1/memory.db"
sqlite3_note = "not an import"
"""
PACKAGE_JSON = """{
  "name": "app-agents",
  "dependencies": {
    "@prisma/client": "7.10.1",
    "better-sqlite3": "^11.0.0"
  },
  "devDependencies": {
    "@types/better-sqlite3": "^7.6.0"
  }
}
"""


def write_repo(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "agent.ts").write_text(AGENT_TS)
    (root / "src" / "memory.py").write_text(AGENT_PY)
    (root / "src" / "clean.ts").write_text("import { PrismaClient } from '@prisma/client';\n")
    (root / "package.json").write_text(PACKAGE_JSON)
    (root / "requirements.txt").write_text("psycopg==3.3.9\naiosqlite==0.20.0\n")
    (root / "node_modules" / "better-sqlite3").mkdir(parents=True)
    (root / "node_modules" / "better-sqlite3" / "index.js").write_text("require('sqlite3')\n")
    return root


def test_scan_finds_imports_paths_and_dependencies_and_nothing_else(tmp_path: Path) -> None:
    found = {(f.path, f.line, f.kind, f.detail) for f in scan_code(write_repo(tmp_path / "app-agents"))}
    assert found == {
        ("src/agent.ts", 1, "import", "imports better-sqlite3"),
        ("src/agent.ts", 3, "import", "imports sqlite3"),
        ("src/agent.ts", 4, "path", "SQLite file path 'agents/${id}/memory.db'"),
        ("src/agent.ts", 5, "import", "imports node:sqlite"),
        ("src/memory.py", 2, "import", "imports sqlite3"),
        ("src/memory.py", 3, "import", "imports aiosqlite"),
        ("src/memory.py", 4, "import", "imports sqlite3"),
        ("src/memory.py", 5, "path", "SQLite file path 'agents/a1/memory.db'"),
        ("package.json", 5, "dependency", "dependencies has better-sqlite3"),
        ("package.json", 8, "dependency", "devDependencies has @types/better-sqlite3"),
        ("requirements.txt", 2, "dependency", "requires aiosqlite"),
    }


def test_check_code_lists_before_and_proves_nothing_left_after(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace.yaml"
    repo = write_repo(tmp_path / "app-agents")
    text = (EXAMPLES / "workspace.yaml").read_text()
    for name in ("saas-ecosystem-architecture", "saas-spec-driven-development"):
        shutil.copytree(EXAMPLES / name, tmp_path / name)
    shutil.copytree(EXAMPLES / "app-agents" / "shared", repo / "shared")
    workspace.write_text(text.replace("# yaml-language-server: $schema=./workspace.schema.json\n", ""))

    before = run_ws("-w", str(workspace), "migrate", "check", "--code", "--json", in_process=True)
    assert before.returncode == 1, before.stderr
    report = json.loads(before.stdout)
    assert report["total"] == 11 and set(report["repos"]) == {"app-agents"}
    assert "11 place(s) still use SQLite" in before.stderr

    # the move is done: the driver, the paths and the dependencies are gone
    (repo / "src" / "agent.ts").write_text("import { PrismaClient } from '@prisma/client';\n")
    (repo / "src" / "memory.py").write_text("import psycopg\n")
    (repo / "package.json").write_text('{"name": "app-agents", "dependencies": {"@prisma/client": "7.10.1"}}\n')
    (repo / "requirements.txt").write_text("psycopg==3.3.9\n")
    after = run_ws("-w", str(workspace), "migrate", "check", "--code", in_process=True)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "app-agents: no SQLite import, path or dependency left" in after.stdout


def test_check_code_on_a_missing_checkout_is_not_clean(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        (EXAMPLES / "workspace.yaml").read_text().replace("    path: app-agents\n", "    path: gone\n")
    )
    result = run_ws("-w", str(workspace), "migrate", "check", "--code", in_process=True)
    assert result.returncode == 1
    assert "app-agents: skipped: checkout" in result.stdout
