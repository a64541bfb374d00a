"""The database roles script, run for real with psql against PostgreSQL: one namespace + login role per repo,
each owning only its namespace, with read/reference on the primary's tables (today's and future ones)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from ruamel.yaml import YAML

from infra.stack.roles import admin_environment, roles_script, roles_sql
from infra.workspace import shape
from infra.workspace.env import database_password_secret, role_name
from infra.workspace.loader import load_workspace
from infra.workspace.model import Workspace
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql (PostgreSQL client) is not installed")


def renamed_workspace(database: str, suffix: str) -> Workspace:
    """The real workspace with every repo renamed (roles are cluster-wide, tests run in parallel)."""
    data: dict[str, Any] = YAML(typ="safe").load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    rename = {name: f"{name}-{suffix}" for name in data["repos"]}
    repos = {}
    for name, repo in data["repos"].items():
        repo["depends_on"] = [rename[d] for d in repo.get("depends_on", [])]
        if repo.get("schema") and repo["schema"].get("extends"):
            repo["schema"]["extends"] = rename[repo["schema"]["extends"]]
        repo["schema"]["namespace"] = f"{repo['schema']['namespace']}_{suffix}"
        repos[rename[name]] = repo
    data["repos"] = repos
    data["database"]["name"] = database
    return shape.validate(Workspace, data)


@pytest.fixture
def provisioned(fresh_database: str) -> Iterator[tuple[Workspace, dict[str, str], str]]:
    info = psycopg.conninfo.conninfo_to_dict(fresh_database)
    ws = renamed_workspace(str(info["dbname"]), uuid.uuid4().hex[:8])
    passwords = {repo: uuid.uuid4().hex for repo in ws.repos}
    try:
        yield ws, passwords, fresh_database
    finally:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles")}
            # one at a time, dependents first (several at once trips over the shared default ACL)
            for repo in reversed(list(ws.repos)):
                if role_name(repo) in existing:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role_name(repo))))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role_name(repo))))


def run_script(ws: Workspace, url: str, passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": str(info.get("host") or "127.0.0.1"),
        "PGPORT": str(info.get("port") or 5432),
        "POSTGRES_USER": str(info.get("user") or "postgres"),
        "POSTGRES_DB": str(info["dbname"]),
        **({"PGPASSWORD": str(info["password"])} if info.get("password") else {}),
        **{database_password_secret(repo): pw for repo, pw in passwords.items()},
    }
    return subprocess.run(["sh", "-c", roles_script(ws)], env=env, capture_output=True, text=True, timeout=60)


def recording_psql(tmp_path: Path) -> Path:
    """A folder holding a `psql` that writes its arguments to ``tmp_path/args``, then runs the real psql."""
    real = shutil.which("psql")
    assert real is not None
    wrapper = tmp_path / "bin" / "psql"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper.parent


def connect_as(url: str, ws: Workspace, repo: str, password: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, user=role_name(repo), password=password, autocommit=True)


def test_roles_script_gives_each_repo_its_namespace_and_read_reference_on_the_primary(
    provisioned: tuple[Workspace, dict[str, str], str],
) -> None:
    ws, passwords, url = provisioned
    for _ in range(2):  # idempotent: the set-up container runs it again on every change
        done = run_script(ws, url, passwords)
        assert done.returncode == 0, done.stderr
    primary = ws.primary
    agents, specs = [r for r in ws.repos if r != primary]
    ns = {repo: schema.namespace for repo in ws.repos if (schema := ws.repos[repo].schema_) is not None}
    with psycopg.connect(url, autocommit=True) as conn:
        owners: dict[str, str] = dict(
            conn.execute(
                "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ANY(%s)",
                [list(ns.values())],
            ).fetchall()
        )
        assert owners == {ns[r]: role_name(r) for r in ws.repos}
        flags = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s",
            [role_name(agents)],
        ).fetchone()
        assert flags == (True, False, False, True)

    shared = sql.Identifier(ns[primary], "Agent")
    with connect_as(url, ws, primary, passwords[primary]) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, name text)").format(shared))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'planner')").format(shared))
    with connect_as(url, ws, specs, passwords[specs]) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(ns[specs], "Spec")))

    with connect_as(url, ws, agents, passwords[agents]) as conn:
        # read the primary's (future) tables and point foreign keys at them, in its own namespace
        assert conn.execute(sql.SQL("SELECT name FROM {}").format(shared)).fetchall() == [("planner",)]
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, agent_id int REFERENCES {} (id))").format(
                sql.Identifier(ns[agents], "AgentRun"), shared
            )
        )
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 1)").format(sql.Identifier(ns[agents], "AgentRun")))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql.SQL("INSERT INTO {} VALUES (2, 'intruder')").format(shared))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(ns[primary], "Mine")))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(ns[specs], "Spec")))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.stray (id int)")


def test_roles_script_fails_loudly_without_a_password(provisioned: tuple[Workspace, dict[str, str], str]) -> None:
    ws, passwords, url = provisioned
    missing = next(iter(ws.repos))
    del passwords[missing]
    done = run_script(ws, url, passwords)
    assert done.returncode != 0
    assert f"{database_password_secret(missing)} is not set" in done.stderr


def test_script_holds_no_password_and_quotes_every_identifier() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    text = roles_sql(ws)
    assert "PASSWORD :'pw_app_agents'" in text
    assert 'CREATE SCHEMA IF NOT EXISTS "agents" AUTHORIZATION "app_agents"' in text
    assert (
        'ALTER DEFAULT PRIVILEGES FOR ROLE "saas_ecosystem_architecture" IN SCHEMA "ecosystem" '
        'GRANT SELECT, REFERENCES ON TABLES TO "app_agents"'
    ) in text
    assert '"ecosystem" TO "saas_ecosystem_architecture"' not in text  # the owner needs no grant


def test_no_password_reaches_a_command_line(provisioned: tuple[Workspace, dict[str, str], str], tmp_path: Path) -> None:
    """Found by review: `psql -v pw_x="$SECRET"` put every role's password in psql's arguments (/proc/*/cmdline).
    A psql wrapper records the arguments the script gives it; the roles still get their passwords."""
    ws, passwords, url = provisioned
    folder = recording_psql(tmp_path)
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{folder}{os.pathsep}{saved}"
    try:
        done = run_script(ws, url, passwords)
    finally:
        os.environ["PATH"] = saved
    assert done.returncode == 0, done.stderr
    arguments = (tmp_path / "args").read_text()
    assert arguments and all(password not in arguments for password in passwords.values())
    repo = next(iter(ws.repos))
    with connect_as(url, ws, repo, passwords[repo]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role_name(repo),)


def test_an_admin_url_reaches_psql_as_libpq_variables_never_as_an_argument(
    provisioned: tuple[Workspace, dict[str, str], str], tmp_path: Path
) -> None:
    """Found by review: an external database's admin URL was psql's --dbname, its password in /proc/*/cmdline.
    The Kubernetes roles Job now gets admin_environment(url); the real script connects with it alone."""
    ws, passwords, url = provisioned
    info = psycopg.conninfo.conninfo_to_dict(url)
    admin_password = "adm:" + uuid.uuid4().hex  # ':' percent-encoded in the URL, decoded by libpq
    admin_url = (
        f"postgresql://{info.get('user') or 'postgres'}:{admin_password.replace(':', '%3A')}"
        f"@{info.get('host') or '127.0.0.1'}:{info.get('port') or 5432}/{info['dbname']}"
        "?sslmode=disable&application_name=ws-roles"
    )
    environment = admin_environment(admin_url)
    assert environment["PGPASSWORD"] == admin_password and environment["POSTGRES_DB"] == info["dbname"]
    env = {
        "PATH": f"{recording_psql(tmp_path)}{os.pathsep}{os.environ['PATH']}",
        **environment,
        **{database_password_secret(repo): pw for repo, pw in passwords.items()},
    }
    done = subprocess.run(["sh", "-c", roles_script(ws)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    arguments = (tmp_path / "args").read_text()
    assert admin_password not in arguments and "postgresql://" not in arguments
    # the server here trusts local connections, so a control shows where the connection comes from: the same
    # script, given the variables of a URL naming a port nothing listens on, cannot connect
    elsewhere = admin_environment(admin_url.replace(f":{info.get('port') or 5432}/", ":1/"))
    failed = subprocess.run(
        ["sh", "-c", roles_script(ws)], env={**env, **elsewhere}, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode != 0 and "port 1" in failed.stderr
    repo = next(iter(ws.repos))
    with connect_as(url, ws, repo, passwords[repo]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role_name(repo),)


def test_an_admin_url_that_libpq_cannot_read_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL connection URL") as refused:
        admin_environment("postgresql://admin:s3cret@db.example.com:notaport/x?bad")
    assert "s3cret" not in str(refused.value)
    with pytest.raises(ValueError, match="'fallback_application_name' has no libpq environment variable"):
        admin_environment("postgresql://admin:s3cret@db.example.com/x?fallback_application_name=y")
    assert admin_environment("postgresql://db.example.com") == {
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "PGHOST": "db.example.com",
    }
