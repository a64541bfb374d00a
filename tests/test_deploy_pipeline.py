"""The staged deploy of the example workspace with real processes, PostgreSQL and Redis.

Each test writes its own copy of examples/workspace.yaml into tmp_path: free service ports, a fresh database
name, short health start periods, and `path:` entries pointing at the real example repos. The example
services' releases.json gives two realistic bad releases: app-agents 2.0.0 reads a table whose migration has
not shipped (its /health answers 503) and spec 3.0.0 drops /api/specs, which the integration tests still call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from infra.deploy.servers import free_port
from tests.conftest import database_url
from tests.helpers import EXAMPLES, ROOT, run_ws

REPOS = ("saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development")

pytestmark = pytest.mark.slow


@dataclass
class ExampleEnv:
    root: Path
    workspace: Path
    database: str  # libpq URL of the workspace database
    ports: dict[str, int]
    env: dict[str, str]

    @property
    def name(self) -> str:
        """The workspace database's name (``database`` is a libpq key=value string)."""
        return str(psycopg.conninfo.conninfo_to_dict(self.database)["dbname"])

    def ws(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run_ws("-w", str(self.workspace), *args, cwd=self.root, env=self.env, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        return subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "-w", str(self.workspace), *args],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def query(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.database, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(query, params).fetchall()

    def deployment(self, deployment_id: int) -> dict[str, Any]:
        return self.query("SELECT * FROM ws.deployments WHERE id = %s", deployment_id)[0]

    def steps(self, deployment_id: int) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM ws.deployment_steps WHERE deployment_id = %s ORDER BY id", deployment_id)

    def health(self, repo: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[repo]}/health", timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body


def write_example_workspace(
    root: Path, db_name: str, ports: dict[str, int], *, start_period: float = 2.0, extra_top: str = ""
) -> Path:
    """A copy of examples/workspace.yaml with its own ports, database and short health start periods; its repos
    are links to the example repos beside it (a repo's path must stay within one folder of workspace.yaml's)."""
    text = (EXAMPLES / "workspace.yaml").read_text()
    text = text.replace("name: example_ecosystem", f"name: {db_name}{extra_top}")
    root.mkdir(parents=True, exist_ok=True)
    for repo, old in zip(REPOS, (4100, 4101, 4102), strict=True):
        assert f"    path: {repo}\n" in text
        link = root / repo
        if not link.is_symlink():
            link.symlink_to(EXAMPLES / repo, target_is_directory=True)
        text = text.replace(f"port: {old}\n", f"port: {ports[repo]}\n")
    text = text.replace("start_period: 5}", f"start_period: {start_period}}}")
    text = text.replace("# yaml-language-server: $schema=./workspace.schema.json\n", "")
    path = root / "workspace.yaml"
    path.write_text(text)
    return path


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def make_example(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str, redis_url: str
) -> Callable[[float], ExampleEnv]:
    """Build the example copy; ``start_period`` is the services' health start period (a bad release's gate
    lasts that long, which the concurrency and kill tests use as a window).

    Each copy registers its own finalizers as soon as its database name exists: `ws down`, then the drop of the
    database. pytest runs every finalizer even when the test or another finalizer fails, so no database is left.
    """

    def make(start_period: float = 6.0) -> ExampleEnv:
        name = f"ws_deploy_{uuid.uuid4().hex[:10]}"
        request.addfinalizer(lambda: drop_database(postgres_url, name))  # runs last (finalizers run LIFO)
        ports = {repo: free_port() for repo in REPOS}
        workspace = write_example_workspace(tmp_path, name, ports, start_period=start_period)
        env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url}
        example = ExampleEnv(tmp_path, workspace, database_url(postgres_url, name), ports, env)
        request.addfinalizer(lambda: example.ws("down", timeout=60))
        return example

    return make


@pytest.fixture
def example(make_example: Callable[[float], ExampleEnv]) -> ExampleEnv:
    return make_example(6.0)


def deploy_json(example: ExampleEnv, *args: str) -> tuple[int, dict[str, Any], str]:
    done = example.ws("deploy", "--env", "local", "--json", *args)
    return done.returncode, json.loads(done.stdout), done.stderr


def test_full_deploy_of_the_example_workspace(example: ExampleEnv) -> None:
    code, out, err = deploy_json(example)
    assert code == 0, err
    assert out["status"] == "succeeded"
    deployment = example.deployment(out["deployment_id"])
    assert deployment["status"] == "succeeded" and deployment["trigger"] == "cli"
    assert deployment["versions_before"] == {repo: None for repo in REPOS}
    commits = deployment["commits"]  # the checkouts' commits, for the change lead time of `ws metrics`
    assert set(commits) == set(REPOS) and all(len(c["sha"]) == 40 and c["committed_at"] for c in commits.values())
    assert commits[REPOS[0]]["sha"].startswith(deployment["versions_after"][REPOS[0]].split("-")[0])
    steps = example.steps(out["deployment_id"])
    assert [(s["step"], s["repo"]) for s in steps if s["step"] in ("infra", "migrate")] == [
        ("infra", None),
        ("migrate", "saas-ecosystem-architecture"),
        ("migrate", "app-agents"),
        ("migrate", "saas-spec-driven-development"),
    ]
    deploys = [s for s in steps if s["step"] == "deploy"]
    assert [(s["repo"], s["stage"]) for s in deploys][0] == ("saas-ecosystem-architecture", 1)
    assert {s["repo"] for s in deploys[1:]} == {"app-agents", "saas-spec-driven-development"}
    assert all(s["status"] == "succeeded" and s["version_before"] is None for s in deploys)
    # stage 2 started only after stage 1 was healthy
    assert min(s["started_at"] for s in deploys[1:]) >= deploys[0]["finished_at"]
    integration = [s for s in steps if s["step"] == "integration"]
    assert len(integration) == 3 and all(s["status"] == "succeeded" for s in integration)
    assert "integration ok" in integration[0]["log_excerpt"]
    assert steps[-1]["step"] == "health" and steps[-1]["status"] == "succeeded"
    for repo in REPOS:
        body = example.health(repo)
        assert body["status"] == "ok" and body["version"] == deployment["versions_after"][repo]
    # migrations recorded like Prisma, in each repo's namespace
    rows = example.query("SELECT migration_name, applied_steps_count FROM agents._prisma_migrations")
    assert rows == [{"migration_name": "20260106090000_agent_runtime", "applied_steps_count": 1}]

    health = example.ws("health", "--env", "local", "--json")
    assert health.returncode == 0, health.stderr
    report = json.loads(health.stdout)
    assert report["ok"] and {c["name"] for c in report["components"]} >= {
        "postgres",
        "redis",
        "migrations:app-agents",
        "service:saas-spec-driven-development",
    }
    prometheus = example.ws("health", "--env", "local", "--format", "prometheus")
    assert 'ws_health_up{environment="local",component="service:app-agents",kind="service"} 1' in prometheus.stdout
    status = example.ws("status", "--env", "local", "--json")
    assert status.returncode == 0, status.stderr
    [local] = json.loads(status.stdout)
    assert local["deployments"][0]["id"] == out["deployment_id"] and local["health"]["ok"]

    # deploying the same versions again changes nothing: every deploy step is skipped
    code, again, err = deploy_json(example)
    assert code == 0, err
    assert {s["status"] for s in example.steps(again["deployment_id"]) if s["step"] == "deploy"} == {"skipped"}


def test_health_failure_in_stage_2_rolls_every_deployed_service_back(example: ExampleEnv) -> None:
    code, first, err = deploy_json(example)
    assert code == 0, err
    before = example.deployment(first["deployment_id"])["versions_after"]

    code, out, err = deploy_json(
        example, "--versions", "saas-ecosystem-architecture=1.1.0,app-agents=2.0.0,saas-spec-driven-development=1.1.0"
    )
    assert code == 1
    assert "rolled back" in err
    deployment = example.deployment(out["deployment_id"])
    assert deployment["status"] == "rolled_back"
    assert deployment["versions_before"] == before
    assert "app-agents" in deployment["error"] and "agents.agent_skills" in deployment["error"]
    steps = example.steps(out["deployment_id"])
    failed = [s for s in steps if s["status"] == "failed"]
    assert [(s["step"], s["repo"]) for s in failed] == [("deploy", "app-agents")]
    assert "missing table" in failed[0]["detail"] and failed[0]["log_excerpt"]
    assert not [s for s in steps if s["step"] == "integration"]  # never reached
    rollbacks = [s for s in steps if s["step"] == "rollback"]
    assert {s["repo"] for s in rollbacks} == set(REPOS)
    assert [s["stage"] for s in rollbacks] == sorted((s["stage"] for s in rollbacks), reverse=True)
    assert rollbacks[-1]["repo"] == "saas-ecosystem-architecture"
    assert all(s["status"] == "succeeded" and s["version_after"] == before[s["repo"]] for s in rollbacks)
    assert steps[-1]["step"] == "health" and steps[-1]["status"] == "succeeded"
    assert "after rollback" in steps[-1]["detail"]
    for repo in REPOS:
        assert example.health(repo)["version"] == before[repo]
    # schema is never reverted: the migrations stay applied
    assert example.query("SELECT count(*) AS n FROM agents._prisma_migrations")[0]["n"] == 1


def test_failing_integration_test_rolls_back(example: ExampleEnv) -> None:
    code, first, err = deploy_json(example)
    assert code == 0, err
    before = example.deployment(first["deployment_id"])["versions_after"]

    code, out, err = deploy_json(
        example, "--repos", "saas-spec-driven-development", "--versions", "saas-spec-driven-development=3.0.0"
    )
    assert code == 1
    deployment = example.deployment(out["deployment_id"])
    assert deployment["status"] == "rolled_back" and deployment["repos"] == ["saas-spec-driven-development"]
    steps = example.steps(out["deployment_id"])
    deploy = next(s for s in steps if s["step"] == "deploy")
    assert deploy["status"] == "succeeded" and deploy["version_after"] == "3.0.0"  # healthy, so the gate passed
    integration = next(s for s in steps if s["step"] == "integration")
    assert integration["status"] == "failed" and "404" in integration["log_excerpt"]
    [rollback] = [s for s in steps if s["step"] == "rollback"]
    assert rollback["repo"] == "saas-spec-driven-development" and rollback["status"] == "succeeded"
    assert rollback["version_after"] == before["saas-spec-driven-development"]
    assert example.health("saas-spec-driven-development")["version"] == before["saas-spec-driven-development"]
    with urllib.request.urlopen(f"http://127.0.0.1:{example.ports['saas-spec-driven-development']}/api/specs") as r:
        assert r.status == 200


def wait_for(predicate: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = predicate()
        except psycopg.Error:
            found = None
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def running_deploy_step(example: ExampleEnv, repo: str) -> dict[str, Any] | None:
    rows = example.query(
        "SELECT s.* FROM ws.deployment_steps s JOIN ws.deployments d ON d.id = s.deployment_id "
        "WHERE d.status = 'running' AND s.step = 'deploy' AND s.repo = %s AND s.status = 'running'",
        repo,
    )
    return rows[0] if rows else None


def test_concurrent_deploy_of_the_same_environment_is_refused(make_example: Callable[[float], ExampleEnv]) -> None:
    example = make_example(60.0)  # the bad release's health gate holds the lock for a minute
    code, _, err = deploy_json(example)
    assert code == 0, err
    slow = example.popen("deploy", "--env", "local", "--versions", "app-agents=2.0.0")
    try:
        step = wait_for(lambda: running_deploy_step(example, "app-agents"))
        second = example.ws("deploy", "--env", "local")
        assert second.returncode == 1
        assert "environment local is being deployed by" in second.stderr
        assert f":{slow.pid} (deployment {step['deployment_id']}," in second.stderr  # names the holder host:pid
        assert slow.poll() is None  # the holder was still deploying while the second one was refused
    finally:
        slow.kill()
        slow.wait(timeout=30)
    assert example.query("SELECT count(*) AS n FROM ws.deployments")[0]["n"] == 2  # the refused one left no row


def test_deployer_killed_mid_stage_is_marked_interrupted_and_rolled_back(
    make_example: Callable[[float], ExampleEnv],
) -> None:
    example = make_example(60.0)
    code, first, err = deploy_json(example)
    assert code == 0, err
    before = example.deployment(first["deployment_id"])["versions_after"]
    deployer = example.popen("deploy", "--env", "local", "--versions", "app-agents=2.0.0")
    step = wait_for(lambda: running_deploy_step(example, "app-agents"))
    os.kill(deployer.pid, signal.SIGKILL)
    deployer.wait(timeout=30)
    killed = step["deployment_id"]
    assert example.deployment(killed)["status"] == "running"  # nobody could write anything else

    # the next run on the environment marks it interrupted; `ws rollback` then restores the versions before
    done = example.ws("rollback", "--deployment", str(killed), "--json")
    assert done.returncode == 0, done.stderr
    assert f"deployment {killed} was left running by a deployer that stopped: marked interrupted" in done.stderr
    deployment = example.deployment(killed)
    assert deployment["status"] == "rolled_back" and deployment["error"].startswith("interrupted, then rolled back")
    steps = example.steps(killed)
    gate = next(s for s in steps if s["step"] == "deploy" and s["repo"] == "app-agents")
    assert gate["status"] == "interrupted"
    rollback = [s for s in example.steps(killed) if s["step"] == "rollback"]
    # app-agents goes back; its stage-2 neighbour, if its step had started, already runs its previous version
    assert ("app-agents", "succeeded") in [(s["repo"], s["status"]) for s in rollback]
    assert all(s["status"] == "skipped" for s in rollback if s["repo"] != "app-agents")
    assert example.health("app-agents")["version"] == before["app-agents"]
    again = example.ws("rollback", "--deployment", str(killed))  # idempotent: nothing left to undo
    assert again.returncode == 0, again.stderr
    last = [s for s in example.steps(killed) if s["step"] == "rollback"][-1]
    assert last["status"] == "skipped" and "already runs" in last["detail"]


def test_pipeline_commands_run_the_same_steps_as_separate_processes(example: ExampleEnv, tmp_path: Path) -> None:
    output = tmp_path / "github_output"
    example.env["GITHUB_OUTPUT"] = str(output)
    begin = example.ws("pipeline", "begin", "--env", "local")
    assert begin.returncode == 0, begin.stderr
    deployment_id = int(begin.stdout.strip())
    assert output.read_text() == f"deployment_id={deployment_id}\n"
    for command in (["infra"], ["migrate"], ["validate"], ["deploy", "--repo", REPOS[0]]):
        done = example.ws("pipeline", command[0], "--deployment", str(deployment_id), *command[1:])
        assert done.returncode == 0, (command, done.stderr)
    # the two repos of stage 2 deploy in parallel jobs, as the workflow runs them
    jobs = [example.popen("pipeline", "deploy", "--deployment", str(deployment_id), "--repo", r) for r in REPOS[1:]]
    for job in jobs:
        _, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
    stage2 = [s for s in example.steps(deployment_id) if s["step"] == "deploy" and s["stage"] == 2]
    assert sorted(s["repo"] for s in stage2) == sorted(REPOS[1:]) and {s["status"] for s in stage2} == {"succeeded"}
    for command in (["integration"], ["health"], ["finish"]):
        done = example.ws("pipeline", command[0], "--deployment", str(deployment_id))
        assert done.returncode == 0, (command, done.stderr)
    deployment = example.deployment(deployment_id)
    assert deployment["status"] == "succeeded" and deployment["trigger"] == "pipeline"
    assert [s["step"] for s in example.steps(deployment_id)].count("deploy") == 3
    for repo in REPOS:  # the services outlived every `ws pipeline` process
        assert example.health(repo)["status"] == "ok"
    again = example.ws("pipeline", "health", "--deployment", str(deployment_id))
    assert again.returncode == 1 and "already succeeded" in again.stderr
    bad = example.ws("pipeline", "deploy", "--deployment", str(deployment_id))
    assert bad.returncode == 2 and "--repo" in bad.stderr


def test_dry_run_prints_the_plan_and_touches_nothing(example: ExampleEnv, postgres_url: str) -> None:
    done = example.ws("deploy", "--env", "local", "--dry-run", "--json", "--versions", "app-agents=2.0.0")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["plan"]
    assert [[e["repo"] for e in s["repos"]] for s in plan["stages"]] == [
        ["saas-ecosystem-architecture"],
        ["app-agents", "saas-spec-driven-development"],
    ]
    assert plan["stages"][1]["repos"][0]["version_after"] == "2.0.0"
    assert plan["migrate"]["app-agents"]["apply"] == ["20260106090000_agent_runtime"]
    name = example.name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None
    assert not (example.root / ".ws" / "local" / "state" / "services.json").exists()
    text = example.ws("deploy", "--env", "local", "--dry-run")
    assert "nothing is changed" in text.stdout and "schema is never reverted" in text.stdout


def test_bad_versions_and_unknown_deployment_are_usage_errors(example: ExampleEnv) -> None:
    done = example.ws("deploy", "--env", "local", "--versions", "app-agents")
    assert done.returncode == 2 and "is not repo=tag" in done.stderr
    done = example.ws(
        "deploy", "--env", "local", "--repos", "app-agents", "--versions", "saas-ecosystem-architecture=1"
    )
    assert done.returncode == 2 and "--versions names saas-ecosystem-architecture" in done.stderr
    done = example.ws("rollback", "--deployment", "999999")
    assert done.returncode == 2 and "no deployment 999999" in done.stderr


def pipeline_ws(example: ExampleEnv, step: str, deployment_id: int, *args: str) -> None:
    done = example.ws("pipeline", step, "--deployment", str(deployment_id), *args)
    assert done.returncode == 0, (step, done.stdout, done.stderr)


def test_validate_of_a_subset_checks_only_the_selected_repos(example: ExampleEnv) -> None:
    # a fresh database: only the primary's migrations run, so the other repos' tables do not exist yet
    begin = example.ws("pipeline", "begin", "--env", "local", "--repos", REPOS[0])
    assert begin.returncode == 0, begin.stderr
    deployment_id = int(begin.stdout.strip())
    pipeline_ws(example, "infra", deployment_id)
    pipeline_ws(example, "migrate", deployment_id)
    done = example.ws("pipeline", "validate", "--deployment", str(deployment_id), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [validate] = json.loads(done.stdout)["steps"]
    assert validate["ok"] and not validate["skipped"], validate
    unchecked = "not checked: app-agents, saas-spec-driven-development: not selected by --repos"
    assert "drift: no drift in" in validate["detail"] and unchecked in validate["detail"]
    [row] = [s for s in example.steps(deployment_id) if s["step"] == "validate"]
    assert row["status"] == "succeeded" and unchecked in row["detail"]
    # the agents namespace really is empty: a whole-workspace validate still finds its drift
    assert not example.query("SELECT 1 FROM pg_namespace WHERE nspname = 'agents'")


def test_a_subset_deploy_on_a_fresh_database_is_gated_on_its_own_repos(example: ExampleEnv) -> None:
    """`ws deploy --repos X` on a fresh database: the final health check covers the database, Redis and X (its
    migrations, service and schema); repos outside the deployment that run nothing are named as not checked
    instead of failing it (their migrations did not run), and a running one is still probed (it shares the
    database this deployment migrated)."""
    primary, agents, spec = REPOS
    # the example primary's integration test calls its neighbours; here it is one that does not
    text = example.workspace.read_text(encoding="utf-8")
    calls_neighbours = "integration: python tests/admin_integration.py"
    assert calls_neighbours in text
    example.workspace.write_text(text.replace(calls_neighbours, 'integration: python -c "pass"'), encoding="utf-8")
    code, out, err = deploy_json(example, "--repos", primary)
    assert code == 0, (out, err)
    health_step = out["steps"][-1]
    assert health_step["step"] == "health" and health_step["ok"], health_step
    assert f"not checked: {agents}, {spec}: not part of this deployment" in health_step["detail"]
    assert example.health(primary)["status"] == "ok"
    assert not example.query("SELECT 1 FROM pg_namespace WHERE nspname = 'agents'")

    # the other two deployed; then the spec service hangs (stopped, still recorded as running): a deploy of
    # app-agents alone (whose integration test does not call it) is still failed by the spec service's probe
    code, out, err = deploy_json(example, "--repos", f"{agents},{spec}")
    assert code == 0, (out, err)
    services = json.loads((example.workspace.parent / ".ws/local/state/services.json").read_text())
    group = int(services[spec]["pgid"])
    os.killpg(group, signal.SIGSTOP)
    try:
        code, out, err = deploy_json(example, "--repos", agents, "--versions", f"{agents}=1.1.0")
    finally:
        os.killpg(group, signal.SIGCONT)
    assert code == 1 and out["status"] != "succeeded", out
    failed = [s for s in out["steps"] if not s["ok"]]
    assert failed[0]["step"] == "health" and f"service:{spec}" in failed[0]["detail"], out["steps"]
    assert f"service:{primary}" not in failed[0]["detail"]


def test_rollback_exit_code_follows_the_health_check_after_it(example: ExampleEnv) -> None:
    code, first, err = deploy_json(example)
    assert code == 0, err
    spec = "saas-spec-driven-development"
    before = example.deployment(first["deployment_id"])["versions_after"][spec]
    begin = example.ws("pipeline", "begin", "--env", "local", "--repos", spec, "--versions", f"{spec}=1.1.0")
    assert begin.returncode == 0, begin.stderr
    deployment_id = int(begin.stdout.strip())
    pipeline_ws(example, "deploy", deployment_id, "--repo", spec)
    assert example.health(spec)["version"] == "1.1.0"

    # a migration of the deployed repo recorded as failed (as Prisma leaves one): the health check after the
    # rollback fails (a subset deployment is gated on its own repos' migrations)
    example.query(
        "INSERT INTO specs._prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) "
        "VALUES ('broken', 'x', '20990101000000_broken', now(), 0) RETURNING id"
    )
    done = example.ws("rollback", "--deployment", str(deployment_id), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    out = json.loads(done.stdout)
    [rollback] = [s for s in out["steps"] if s["step"] == "rollback"]
    assert rollback["ok"] and not rollback["skipped"]  # the service itself went back...
    assert example.health(spec)["version"] == before
    assert out["steps"][-1]["step"] == "health" and not out["steps"][-1]["ok"]  # ...but the environment is unhealthy
    deployment = example.deployment(deployment_id)
    assert deployment["status"] == "failed"
    assert "rollback did not restore a healthy environment: health" in deployment["error"]
    assert "20990101000000_broken" in deployment["error"]

    # once the environment is healthy again, the same rollback (nothing left to undo) succeeds
    example.query("DELETE FROM specs._prisma_migrations WHERE id = 'broken' RETURNING id")
    done = example.ws("rollback", "--deployment", str(deployment_id), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert [s["skipped"] for s in out["steps"] if s["step"] == "rollback"] == [True]
    assert out["steps"][-1]["ok"] and example.deployment(deployment_id)["status"] == "rolled_back"


def test_unsafe_versions_and_unknown_repos_are_refused_before_anything_runs(
    example: ExampleEnv, postgres_url: str
) -> None:
    marker = example.root / "pwned"
    for command in (["deploy", "--env", "local"], ["pipeline", "begin", "--env", "local"]):
        done = example.ws(*command, "--versions", f"app-agents=1.0; touch {marker}")
        assert done.returncode == 2, done.stderr
        assert "app-agents='1.0; touch" in done.stderr and "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$" in done.stderr
        assert "Traceback" not in done.stderr
        done = example.ws(*command, "--versions", "no-such-repo=1.0")
        assert done.returncode == 2 and "unknown repo 'no-such-repo'" in done.stderr, done.stderr
        assert "workspace.yaml declares: saas-ecosystem-architecture" in done.stderr
    assert not marker.exists()
    name = example.name  # refused before anything ran: not even the database exists
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None


def test_a_failing_first_deployment_rolls_back_to_nothing_running(example: ExampleEnv) -> None:
    code, out, err = deploy_json(example, "--versions", "app-agents=2.0.0")
    assert code == 1, err
    deployment = example.deployment(out["deployment_id"])
    assert deployment["versions_before"] == {repo: None for repo in REPOS}
    assert deployment["status"] == "rolled_back", deployment["error"]
    steps = example.steps(out["deployment_id"])
    rollbacks = [s for s in steps if s["step"] == "rollback"]
    assert rollbacks and all(s["status"] == "succeeded" and s["version_after"] is None for s in rollbacks)
    after = steps[-1]
    assert after["step"] == "health" and after["status"] == "succeeded", after["detail"]
    assert "after rollback" in after["detail"]
    for repo in REPOS:  # nothing was running before, so nothing runs after
        with pytest.raises(OSError):
            example.health(repo)


def test_a_deploy_executes_exactly_the_plan_its_dry_run_prints(example: ExampleEnv) -> None:
    """`ws deploy --dry-run` and `ws deploy` build one DeployPlan from the same state; the real run reports the plan
    it executed, and its ledger rows are exactly the plan's steps."""
    code, _, err = deploy_json(example)  # from here on the database exists: both runs see the same state
    assert code == 0, err
    args = ("--versions", "app-agents=1.1.0")
    done = example.ws("deploy", "--env", "local", "--dry-run", "--json", *args)
    assert done.returncode == 0, done.stderr
    planned = json.loads(done.stdout)["plan"]
    assert [s["step"] for s in planned["steps"]][:2] == ["infra", "migrate"]
    code, out, err = deploy_json(example, *args)
    assert code == 0, err
    assert out["plan"] == planned
    rows = example.steps(out["deployment_id"])
    # the ledger rows are the planned steps (the stage-2 deploys ran in parallel: their rows' order may vary)
    assert [r["step"] for r in rows] == [s["step"] for s in planned["steps"]]
    assert Counter((r["step"], r["repo"], r["stage"]) for r in rows) == Counter(
        (s["step"], s["repo"], s["stage"]) for s in planned["steps"]
    )
    deploys = {r["repo"]: r for r in rows if r["step"] == "deploy"}
    assert deploys["app-agents"]["version_after"] == "1.1.0" and deploys["app-agents"]["status"] == "succeeded"


def test_a_missing_checkout_is_refused_before_anything_starts(example: ExampleEnv, postgres_url: str) -> None:
    """Issue 14 item 16: a repo that is not checked out stops `ws deploy` and `ws pipeline begin` with exit 2
    naming the repo and its path, before any server, database or deployment exists."""
    missing = example.root / "app-agents"
    missing.unlink()
    for command in (["deploy", "--env", "local"], ["pipeline", "begin", "--env", "local"]):
        done = example.ws(*command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert f"app-agents: checkout {missing} does not exist" in done.stderr, done.stderr
        assert "repos.app-agents.path" in done.stderr
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [example.name]).fetchone() is None


def test_a_checkout_gone_during_a_pipeline_ends_its_deployment_failed(example: ExampleEnv) -> None:
    begin = example.ws("pipeline", "begin", "--env", "local")
    assert begin.returncode == 0, begin.stderr
    deployment_id = int(begin.stdout.strip())
    pipeline_ws(example, "infra", deployment_id)
    missing = example.root / "saas-spec-driven-development"
    missing.unlink()
    done = example.ws("pipeline", "migrate", "--deployment", str(deployment_id))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"saas-spec-driven-development: checkout {missing} does not exist" in done.stderr
    deployment = example.deployment(deployment_id)
    assert deployment["status"] == "failed" and "saas-spec-driven-development: checkout" in deployment["error"]


def test_health_reports_what_a_missing_checkout_hides_as_skipped(example: ExampleEnv, postgres_url: str) -> None:
    """`ws health` with a repo not checked out: its migrations, the alignment and the drift cannot be known, so they
    are 'skipped: <why>', never 'ok' (before: "0/0 applied", "0/0 shared models aligned", "no drift in 0 tables")."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(example.name)))
    for repo in REPOS:  # an empty database: with its schema at hand, each repo would show missing migrations
        (example.root / repo).unlink()
    done = example.ws("health", "--env", "local", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    components = {c["name"]: c for c in json.loads(done.stdout)["components"]}
    for name in [f"migrations:{repo}" for repo in REPOS] + ["schema:alignment", "schema:drift"]:
        assert components[name]["ok"] is None, components[name]
        assert components[name]["detail"].startswith("skipped: "), components[name]
        assert "not checked out" in components[name]["detail"], components[name]
    assert components["postgres"]["ok"] is True


def test_every_command_finds_the_workspace_database_where_deploy_put_it(example: ExampleEnv) -> None:
    """Issue 14 item 17: DATABASE_URL names the server's maintenance database `postgres` (as the example's does);
    `ws deploy` migrates database.name, and `ws env`, `ws schema drift` and `ws db migrate` resolve that same
    database (before, they used `postgres` and drift reported every table missing while health said no drift)."""
    assert psycopg.conninfo.conninfo_to_dict(example.env["DATABASE_URL"]).get("dbname", "postgres") == "postgres"
    code, out, err = deploy_json(example)
    assert code == 0, err
    done = example.ws("env", "--env", "local", "--repo", "app-agents", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert f"/{example.name}?schema=agents" in json.loads(done.stdout)["DATABASE_URL"]["value"]
    drift = example.ws("schema", "drift", "--env", "local", "--json")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert json.loads(drift.stdout)["drift"] == []
    migrate = example.ws("db", "migrate", "--env", "local", "--repo", REPOS[0], "--dry-run", "--json")
    assert migrate.returncode == 0 and json.loads(migrate.stdout)["migrations"] == [], migrate.stdout
