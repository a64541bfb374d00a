"""A real coordinated deploy of the example workspace (`ws deploy`) leaves GitHub deployment records and statuses.

The deploy runs for real (processes, PostgreSQL, Redis, health gates, rollback); only GitHub is the local fake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra.deploy.servers import free_port
from tests.fake_github import FakeGitHub
from tests.helpers import run_ws
from tests.test_deploy_pipeline import REPOS, write_example_workspace

pytestmark = pytest.mark.slow
OWNER = "example-ecosystem"
RUN = "https://github.example/example-ecosystem/workspace/actions/runs/99"


@pytest.fixture
def deployed(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[tuple[FakeGitHub, Path, dict[str, str]]]:
    name = f"ws_ghdeploy_{uuid.uuid4().hex[:10]}"
    ports = {repo: free_port() for repo in REPOS}
    with FakeGitHub() as fake:
        for repo in REPOS:
            fake.add_repo(f"{OWNER}/{repo}")
        workspace = write_example_workspace(tmp_path, name, ports, start_period=6.0)
        text = workspace.read_text()
        assert "  repo: workspace\n" in text
        workspace.write_text(text.replace("  repo: workspace\n", f"  repo: workspace\n  api_url: {fake.api_url}\n", 1))
        env = {
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_url,
            "GITHUB_TOKEN": fake.token,
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_REPOSITORY": "example-ecosystem/workspace",
            "GITHUB_RUN_ID": "99",
        }
        try:
            yield fake, workspace, env
        finally:
            run_ws("-w", str(workspace), "down", cwd=tmp_path, env=env)
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_deploy_then_rollback_leave_records_with_every_state(deployed: tuple[FakeGitHub, Path, dict[str, str]]) -> None:
    fake, workspace, env = deployed
    first = run_ws(
        "-w", str(workspace), "deploy", "--env", "local", "--json", cwd=workspace.parent, env=env, timeout=240
    )
    assert first.returncode == 0, first.stderr
    for repo in REPOS:
        [record] = fake.repos[f"{OWNER}/{repo}"].deployments
        assert record["environment"] == "local" and record["transient_environment"] is True
        statuses = fake.repos[f"{OWNER}/{repo}"].deployment_statuses[record["id"]]
        assert [s["state"] for s in statuses] == ["in_progress", "success"]
        assert {s["log_url"] for s in statuses} == {RUN}

    bad = "saas-ecosystem-architecture=1.1.0,app-agents=2.0.0,saas-spec-driven-development=1.1.0"
    second = run_ws(
        "-w", str(workspace), "deploy", "--env", "local", "--json", "--versions", bad,
        cwd=workspace.parent, env=env, timeout=240,
    )  # fmt: skip
    assert second.returncode == 1, second.stderr
    deployment_id = json.loads(second.stdout)["deployment_id"]
    states = {}
    for repo in REPOS:
        records = fake.repos[f"{OWNER}/{repo}"].deployments
        latest = [r for r in records if r["payload"]["ws_deployment_id"] == deployment_id]
        if not latest:
            continue
        states[repo] = [s["state"] for s in fake.repos[f"{OWNER}/{repo}"].deployment_statuses[latest[0]["id"]]]
    # app-agents 2.0.0 fails its health gate; the primary (deployed in stage 1) is rolled back: inactive
    assert states["app-agents"][:2] == ["in_progress", "failure"]
    assert states["saas-ecosystem-architecture"] == ["in_progress", "success", "inactive"]
    posts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/deployments")]
    assert all(set(r.body) >= {"ref", "environment", "payload", "description"} for r in posts)

    # `ws metrics` finds the local environment's own database (like `ws status`) and reads its ledger.
    figures = run_ws("-w", str(workspace), "metrics", "--env", "local", "--json", cwd=workspace.parent, env=env)
    assert figures.returncode == 0, figures.stderr
    [local] = json.loads(figures.stdout)["environments"]
    assert local["deployments"] == 2
    assert local["change_fail_rate"]["value"] == 0.5
    assert local["deployment_frequency"]["samples"] == 1
    assert local["failed_deployment_recovery_time"]["value"] is None
    assert local["failed_deployment_recovery_time"]["detail"] == "1 failure(s) not yet recovered"
