"""`ws adopt` on a database shaped like the three repos run today: every table in `public`, one
`public._prisma_migrations` with two repos' migrations, one repo that used `prisma db push` (no rows), data in
every table. Adopt, then deploy: every row stays, every repo's migrations are recorded once (issue 19, item 1)."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from infra.deploy.migrations import migration_files
from infra.deploy.servers import free_port
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.conftest import EXAMPLES, database_url
from tests.helpers import run_ws
from tests.test_deploy_pipeline import REPOS, drop_database, write_example_workspace

NAMESPACES = ("ecosystem", "agents", "specs")
RECORDED = ("saas-ecosystem-architecture", "app-agents")  # saas-spec-driven-development used `prisma db push`


def today_sql(script: str) -> str:
    """A repo's migration as it ran before ws: the same objects, all in public."""
    for namespace in NAMESPACES:
        script = script.replace(f'CREATE SCHEMA IF NOT EXISTS "{namespace}";', "")
        script = script.replace(f'"{namespace}".', '"public".')
    return script


def build_today(url: str, loaded: LoadedWorkspace) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            'CREATE TABLE public."_prisma_migrations" (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, '
            "finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz, "
            "started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count integer NOT NULL DEFAULT 0)"
        )
        for repo in REPOS:
            for migration in migration_files(loaded, repo):
                conn.execute(today_sql(migration.script).encode())
                if repo in RECORDED:
                    conn.execute(
                        'INSERT INTO public."_prisma_migrations" VALUES (%s, %s, now(), %s, NULL, NULL, now(), 1)',
                        [str(uuid.uuid4()), migration.checksum, migration.name],
                    )
        fill_every_table(conn)


def fill_every_table(conn: psycopg.Connection[Any]) -> None:
    """Three rows in every table of public, parents before children, values made up from each column's type."""
    tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
    tables.remove("_prisma_migrations")
    parents: dict[str, dict[str, tuple[str, str]]] = {t: {} for t in tables}
    for child, column, parent, parent_column in conn.execute(
        "SELECT tc.table_name, kcu.column_name, ccu.table_name, ccu.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name) "
        "JOIN information_schema.constraint_column_usage ccu USING (constraint_schema, constraint_name) "
        "WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'"
    ).fetchall():
        parents[child][column] = (parent, parent_column)
    done: list[str] = []
    while len(done) < len(tables):
        ready = [t for t in tables if t not in done and all(p in done for p, _ in parents[t].values())]
        assert ready, "foreign keys form a cycle"
        for table in ready:
            for row in range(3):
                insert_row(conn, table, parents[table], row)
            done.append(table)


def insert_row(conn: psycopg.Connection[Any], table: str, parents: dict[str, tuple[str, str]], row: int) -> None:
    columns = conn.execute(
        "SELECT column_name, data_type, udt_name, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        [table],
    ).fetchall()
    names: list[sql.Composable] = []
    values: list[sql.Composable] = []
    for name, data_type, udt, nullable, default in columns:
        if name in parents:
            parent, parent_column = parents[name]
            value: sql.Composable = sql.SQL("(SELECT {} FROM public.{} ORDER BY 1 LIMIT 1)").format(
                sql.Identifier(parent_column), sql.Identifier(parent)
            )
        elif default is not None:
            continue
        elif data_type == "uuid":
            value = sql.SQL("gen_random_uuid()")
        elif data_type in ("text", "character varying"):
            value = sql.Literal(f"{table}-{name}-{row}")
        elif data_type in ("integer", "bigint", "smallint", "numeric", "double precision", "real"):
            value = sql.Literal(row + 1)
        elif data_type == "jsonb":
            value = sql.Literal(json.dumps({"row": row}))
        elif data_type.startswith("timestamp"):
            value = sql.SQL("now()")
        elif data_type == "boolean":
            value = sql.Literal(True)
        elif data_type == "ARRAY":
            value = sql.SQL("'{}'")
        elif data_type == "USER-DEFINED":
            value = sql.SQL(
                "(SELECT enumlabel::public.{} FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                "WHERE t.typname = {} ORDER BY enumsortorder LIMIT 1)"
            ).format(sql.Identifier(udt), sql.Literal(udt))
        elif nullable == "YES":
            continue
        else:
            raise AssertionError(f"no made-up value for {table}.{name} ({data_type})")
        names.append(sql.Identifier(name))
        values.append(value)
    conn.execute(
        sql.SQL("INSERT INTO public.{} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(names), sql.SQL(", ").join(values)
        )
    )


def snapshot(url: str) -> dict[str, tuple[str, int]]:
    """Every user table by name (whatever its schema): a digest of its rows and their count."""
    found: dict[str, tuple[str, int]] = {}
    with psycopg.connect(url) as conn:
        for schema, table in conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'ws') "
            "AND tablename <> '_prisma_migrations'"
        ).fetchall():
            digest, count = conn.execute(
                sql.SQL(
                    "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')), count(*) FROM {}.{} t"
                ).format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchone() or ("", 0)
            assert table not in found, f"{table} exists twice"
            found[table] = (str(digest), int(count))
    return found


def recorded_migrations(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname FROM pg_tables WHERE tablename = '_prisma_migrations' ORDER BY 1"
        ).fetchall()
        return {
            schema: [
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT migration_name FROM {}._prisma_migrations ORDER BY 1").format(
                        sql.Identifier(schema)
                    )
                ).fetchall()
            ]
            for (schema,) in rows
        }


@pytest.fixture
def today(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[tuple[Path, str, dict[str, str]]]:
    name = f"ws_adopt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    workspace = write_example_workspace(tmp_path, name, {repo: free_port() for repo in REPOS})
    url = database_url(postgres_url, name)
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url}
    try:
        yield workspace, url, env
    finally:
        run_ws("-w", str(workspace), "down", env=env, timeout=60)
        drop_database(postgres_url, name)


def built_and_planned(
    workspace: Path, url: str, env: dict[str, str], loaded: LoadedWorkspace
) -> tuple[dict[str, tuple[str, int]], dict[str, Any]]:
    """Today's databases built (11 tables of 3 rows), their snapshot, and `ws adopt --json`'s dry-run plan."""
    build_today(url, loaded)
    before = snapshot(url)
    assert len(before) == 11 and all(count == 3 for _, count in before.values())
    dry = run_ws("-w", str(workspace), "adopt", "--env", "local", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    return before, json.loads(dry.stdout)


def test_adopt_then_deploy_keeps_every_row_and_records_each_migration_once(
    today: tuple[Path, str, dict[str, str]],
) -> None:
    workspace, url, env = today
    loaded = load_workspace(workspace)
    before, plan = built_and_planned(workspace, url, env, loaded)
    assert plan["applied"] is False and plan["problems"] == []
    assert {(m["name"], m["target"]) for m in plan["moves"] if m["kind"] == "table"} == {
        ("organizations", "ecosystem"),
        ("agents", "ecosystem"),
        ("agent_memories", "ecosystem"),
        ("agent_tools", "ecosystem"),
        ("agent_runs", "agents"),
        ("tool_invocations", "agents"),
        ("memories", "agents"),
        ("conversations", "agents"),
        ("requirements", "specs"),
        ("specifications", "specs"),
        ("dev_artifacts", "specs"),
    }
    assert {m["name"] for m in plan["moves"] if m["kind"] == "enum"} == {"AgentStatus", "RunStatus", "SpecStatus"}
    assert [b["repo"] for b in plan["baselines"]] == ["saas-spec-driven-development"]
    ran_before = sorted(m.name for repo in RECORDED for m in migration_files(loaded, repo))
    assert recorded_migrations(url) == {"public": ran_before}  # a dry run changes nothing
    assert snapshot(url) == before

    applied = run_ws("-w", str(workspace), "adopt", "--env", "local", "--apply", env=env)
    assert applied.returncode == 0, applied.stderr
    again = run_ws("-w", str(workspace), "adopt", "--env", "local", "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["steps"] == []

    deploy = run_ws("-w", str(workspace), "deploy", "--env", "local", "--json", env=env, timeout=300)
    assert deploy.returncode == 0, deploy.stderr
    assert snapshot(url) == before
    recorded = recorded_migrations(url)
    for repo, namespace in zip(REPOS, NAMESPACES, strict=True):
        assert recorded[namespace] == [m.name for m in migration_files(loaded, repo)], repo
    assert recorded.get("public", []) == []


def test_only_the_primary_may_keep_public(tmp_path: Path) -> None:
    workspace = write_example_workspace(tmp_path, "ws_adopt_rule", {repo: free_port() for repo in REPOS})
    text = workspace.read_text()
    primary = text.replace("namespace: ecosystem", "namespace: public", 1)
    workspace.write_text(primary)
    assert run_ws("-w", str(workspace), "check", in_process=True).stdout.count("namespace 'public' is reserved") == 0
    workspace.write_text(text.replace("namespace: agents", "namespace: public", 1))
    refused = run_ws("-w", str(workspace), "check", in_process=True)
    assert refused.returncode == 2
    assert "namespace 'public' is reserved" in refused.stderr
    assert "only the primary repo may keep public" in refused.stderr


def test_a_db_push_repo_missing_a_declared_column_is_not_baselined(today: tuple[Path, str, dict[str, str]]) -> None:
    """Found by review: baselining every migration of a repo whose tables exist would mark a migration applied that
    never ran (here the one adding a column), and no deploy would ever apply it."""
    workspace, url, env = today
    build_today(url, load_workspace(workspace))
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = 'dev_artifacts' AND column_name <> 'id' ORDER BY ordinal_position DESC LIMIT 1"
        ).fetchone()
        assert row is not None
        conn.execute(sql.SQL("ALTER TABLE public.dev_artifacts DROP COLUMN {}").format(sql.Identifier(row[0])))
    result = run_ws("-w", str(workspace), "adopt", "--env", "local", "--json", env=env)
    assert result.returncode == 1
    plan = json.loads(result.stdout)
    assert plan["baselines"] == []
    assert any(
        f"dev_artifacts.{row[0]}" in p and p.startswith("saas-spec-driven-development") for p in plan["problems"]
    )
    refused = run_ws("-w", str(workspace), "adopt", "--env", "local", "--apply", env=env)
    assert refused.returncode == 1 and recorded_migrations(url).keys() == {"public"}  # nothing changed


def keep_public(workspace: Path) -> None:
    """Turn the example copy into the "primary keeps public" layout: the primary's namespace is public, so its
    schema, migrations, the secondaries' copies and external lists, and the services' queries name public."""
    text = workspace.read_text()
    assert text.count("namespace: ecosystem\n") == 1
    workspace.write_text(text.replace("namespace: ecosystem\n", "namespace: public\n"))
    (workspace.parent / "common").symlink_to(EXAMPLES / "common", target_is_directory=True)  # the services' helper
    for repo in REPOS:
        link = workspace.parent / repo
        source = link.resolve()
        link.unlink()
        shutil.copytree(source, link)
        for path in link.rglob("*"):
            if path.suffix not in (".prisma", ".sql", ".ts", ".py") or not path.is_file():
                continue
            old = path.read_text(encoding="utf-8")
            new = re.sub(r"(?<![\w-])ecosystem\.", "public.", old.replace('"ecosystem"', '"public"'))
            new = new.replace('"ecosystem.', '"public.')
            path.write_text(new, encoding="utf-8")


def test_primary_keeps_public_adopt_deploy_then_check_and_drift_pass(
    today: tuple[Path, str, dict[str, str]],
) -> None:
    """The other documented layout end to end: the primary's tables stay in public with its recorded migrations,
    the secondaries move to their own schemas; deploy applies nothing twice; schema check and drift pass."""
    workspace, url, env = today
    keep_public(workspace)
    loaded = load_workspace(workspace)
    primary, agents, specs = REPOS
    schema_text = (workspace.parent / primary / "admin-app/prisma/schema.prisma").read_text()
    assert '@@schema("public")' in schema_text and '"ecosystem"' not in schema_text
    before, plan = built_and_planned(workspace, url, env, loaded)
    assert plan["layout"] == "the primary keeps public; each secondary in its own schema"
    assert plan["problems"] == [] and plan["namespaces"] == ["agents", "specs"]
    assert {(m["name"], m["source"], m["target"]) for m in plan["moves"]} == {
        ("agent_runs", "public", "agents"),
        ("tool_invocations", "public", "agents"),
        ("memories", "public", "agents"),
        ("conversations", "public", "agents"),
        ("RunStatus", "public", "agents"),
        ("requirements", "public", "specs"),
        ("specifications", "public", "specs"),
        ("dev_artifacts", "public", "specs"),
        ("SpecStatus", "public", "specs"),
    }  # nothing of the primary moves
    assert [(m["repo"], m["source"], m["target"]) for m in plan["ledger_moves"]] == [(agents, "public", "agents")]
    assert [b["repo"] for b in plan["baselines"]] == [specs]

    applied = run_ws("-w", str(workspace), "adopt", "--env", "local", "--apply", env=env)
    assert applied.returncode == 0, applied.stderr
    again = run_ws("-w", str(workspace), "adopt", "--env", "local", "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["steps"] == []
    recorded = recorded_migrations(url)
    assert recorded["public"] == [m.name for m in migration_files(loaded, primary)]  # the primary's rows stayed

    # a primary migration written after the adoption: the deploy applies it (into public), and only it
    primary_dir = workspace.parent / primary / "admin-app/prisma"
    (primary_dir / "migrations/20260301090000_audit_log").mkdir()
    (primary_dir / "migrations/20260301090000_audit_log/migration.sql").write_text(
        '-- CreateTable\nCREATE TABLE "public"."audit_log" (\n    "id" SERIAL NOT NULL,\n    "note" TEXT,\n\n'
        '    CONSTRAINT "audit_log_pkey" PRIMARY KEY ("id")\n);\n'
    )
    with (primary_dir / "schema.prisma").open("a") as schema:
        schema.write(
            "\nmodel AuditLog {\n  id   Int     @id @default(autoincrement())\n  note String?\n\n"
            '  @@map("audit_log")\n  @@schema("public")\n}\n'
        )
    deploy = run_ws("-w", str(workspace), "deploy", "--env", "local", "--json", env=env, timeout=300)
    assert deploy.returncode == 0, deploy.stderr
    migrated = {s["repo"]: s["detail"] for s in json.loads(deploy.stdout)["steps"] if s["step"] == "migrate"}
    assert migrated[agents] == "up to date (namespace agents)" and migrated[specs] == "up to date (namespace specs)"
    assert "20260301090000_audit_log" in migrated[primary] and "namespace public" in migrated[primary]
    check = run_ws("-w", str(workspace), "schema", "check", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True
    drift = run_ws("-w", str(workspace), "schema", "drift", "--env", "local", "--json", env=env)
    assert drift.returncode == 0, drift.stdout + drift.stderr

    after = snapshot(url)
    assert after.pop("audit_log") == ("d41d8cd98f00b204e9800998ecf8427e", 0)  # the new, empty table
    assert after == before  # every row unchanged
    with psycopg.connect(url) as conn:
        where: dict[str, str] = dict(
            conn.execute(
                "SELECT tablename, schemaname FROM pg_tables WHERE tablename IN ('agents', 'agent_runs', 'requirements')"
            ).fetchall()
        )
    assert where == {"agents": "public", "agent_runs": "agents", "requirements": "specs"}
    recorded = recorded_migrations(url)
    for repo, namespace in zip(REPOS, ("public", "agents", "specs"), strict=True):
        assert recorded[namespace] == [m.name for m in migration_files(loaded, repo)], repo


def test_tables_no_repo_declares_in_a_kept_namespace_are_named(today: tuple[Path, str, dict[str, str]]) -> None:
    """Found by review: with the primary keeping public, a table nobody declares that stays in public (an old
    table, an extension's) becomes part of the primary's namespace, and `ws schema drift` (the deploy's validate
    gate) then fails on it; the plan said nothing about it."""
    workspace, url, env = today
    keep_public(workspace)
    build_today(url, load_workspace(workspace))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.legacy_audit (id integer PRIMARY KEY); CREATE TYPE public.\"OldKind\" AS ENUM ('A')"
        )
    result = run_ws("-w", str(workspace), "adopt", "--env", "local", "--json", env=env)
    assert result.returncode == 0, result.stderr
    notes = json.loads(result.stdout)["notes"]
    assert (
        "public (saas-ecosystem-architecture's namespace) holds what no repo declares: table legacy_audit, enum OldKind;"
        " `ws schema drift` reports them as extra. Fix: declare them in saas-ecosystem-architecture's schema, or move"
        " or drop them" in notes
    ), notes
    applied = run_ws("-w", str(workspace), "adopt", "--env", "local", "--apply", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "note: public (saas-ecosystem-architecture's namespace) holds what no repo declares" in applied.stdout
    drift = run_ws("-w", str(workspace), "schema", "drift", "--database-url", url, "--json", env=env)
    assert drift.returncode == 1  # what the note said, and nothing else
    assert {(d["kind"], d["object"]) for d in json.loads(drift.stdout)["drift"]} == {
        ("extra table", "public.legacy_audit"),
        ("extra enum", "public.OldKind"),
    }
