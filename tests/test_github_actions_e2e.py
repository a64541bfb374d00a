"""End to end: the generated coordinated-deployment workflow carries the example workspace through every job.

A copy of examples/ (its own database on the real PostgreSQL server, free ports for its services) gets its
GitHub automation from `ws generate`; the local step runner then runs the workflow's jobs in order, each job's
`run:` steps calling the real `ws pipeline` commands, which start the example services and gate them on /health.
The second test deploys a release of app-agents whose /health fails (its migration has not shipped), so the
deploy job fails, integration and health are skipped and the rollback job takes the deployment back.
"""

from __future__ import annotations

import json
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.github import workflows
from infra.github.steprunner import LocalRunner, RunResult
from tests.helpers import EXAMPLES, run_ws

pytestmark = pytest.mark.slow

EXAMPLE_PORTS = (4100, 4101, 4102)
REPOS = ("saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development")
EVERY_JOB = [
    "plan",
    "infra",
    "migrate",
    "validate",
    "deploy-saas-ecosystem-architecture",
    "deploy-app-agents",
    "deploy-saas-spec-driven-development",
    "integration",
    "health",
    "rollback",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_name(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


@pytest.fixture
def example(tmp_path: Path, fresh_database: str, postgres_url: str, redis_url: str) -> Iterator[dict[str, object]]:
    """A copy of the example workspace on its own database and ports, with `ws generate`'s files written."""
    root = tmp_path / "workspace"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns(".ws", "node_modules", "__pycache__"))
    text = (root / "workspace.yaml").read_text()
    ports = {}
    for port in EXAMPLE_PORTS:
        ports[port] = free_port()
        assert f"port: {port}\n" in text
        text = text.replace(f"port: {port}\n", f"port: {ports[port]}\n")
    assert "  name: example_ecosystem\n" in text
    text = text.replace("  name: example_ecosystem\n", f"  name: {database_name(fresh_database)}\n")
    (root / "workspace.yaml").write_text(text)
    generated = run_ws("generate", cwd=root)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert (root / workflows.DEPLOYMENT_WORKFLOW).is_file() and (root / "actions/deploy-stage/action.yml").is_file()
    secrets = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url}
    try:
        yield {"root": root, "secrets": secrets, "database": fresh_database, "ports": ports}
    finally:
        down = run_ws("down", "--env", "local", cwd=root, env=secrets)
        assert down.returncode == 0, down.stdout + down.stderr


def run(example: dict[str, object], **inputs: object) -> RunResult:
    root = example["root"]
    secrets = example["secrets"]
    assert isinstance(root, Path) and isinstance(secrets, dict)
    runner = LocalRunner(root, secrets=secrets)
    return runner.run_workflow(workflows.DEPLOYMENT_WORKFLOW, {"environment": "local", **inputs})


def ledger(database: str, deployment_id: str) -> tuple[str, list[tuple[str, str | None, str]]]:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT status FROM ws.deployments WHERE id = %s", [int(deployment_id)]).fetchone()
        assert row is not None
        steps = conn.execute(
            "SELECT step, repo, status FROM ws.deployment_steps WHERE deployment_id = %s ORDER BY id",
            [int(deployment_id)],
        ).fetchall()
    return str(row[0]), [(str(s), r, str(st)) for s, r, st in steps]


def everything_logged(result: RunResult) -> str:
    return "\n".join(job.log + job.summary + json.dumps(job.outputs) for job in result.jobs.values())


def test_a_whole_coordinated_deployment_runs_through_every_job(example: dict[str, object]) -> None:
    result = run(example)
    report = result.report() + "\n" + everything_logged(result)
    assert result.conclusion == "success", report
    assert result.order == EVERY_JOB
    assert result.ran() == EVERY_JOB[:-1], report  # every job but the rollback
    assert result.jobs["rollback"].result == "skipped"
    # every job ran in the GitHub environment chosen by the input (where approvals and its secrets apply)
    assert {result.jobs[job_id].environment for job_id in result.ran()} == {"local"}

    plan = result.jobs["plan"]
    assert {key: plan.outputs[key] for key in plan.outputs if key.startswith("deploy_")} == {
        "deploy_saas_ecosystem_architecture": "true",
        "deploy_app_agents": "true",
        "deploy_saas_spec_driven_development": "true",
    }
    assert "```mermaid" in plan.summary and 'subgraph stage2["stage 2"]' in plan.summary
    deployment_id = plan.outputs["deployment_id"]
    assert deployment_id.isdigit()

    database = example["database"]
    assert isinstance(database, str)
    status, steps = ledger(database, deployment_id)
    assert status == "succeeded"
    for repo in REPOS:
        assert ("deploy", repo, "succeeded") in steps
    for step in ("infra", "migrate", "validate", "integration", "health"):
        assert any(s == step and st == "succeeded" for s, _, st in steps), (step, steps)

    # the services the workflow deployed answer for real, and the server URL secret never reached a log
    ports = example["ports"]
    assert isinstance(ports, dict)
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[4101]}/health", timeout=5) as response:
        assert response.status == 200
    secrets = example["secrets"]
    assert isinstance(secrets, dict)
    assert secrets["DATABASE_URL"] not in everything_logged(result)


def test_a_failing_deploy_ends_in_the_rollback_job(example: dict[str, object]) -> None:
    # app-agents 2.0.0 reads a table whose migration has not shipped: its /health answers 503
    result = run(example, versions="app-agents=2.0.0")
    report = result.report() + "\n" + everything_logged(result)
    jobs = {job_id: job.result for job_id, job in result.jobs.items()}
    assert jobs == {
        "plan": "success",
        "infra": "success",
        "migrate": "success",
        "validate": "success",
        "deploy-saas-ecosystem-architecture": "success",
        "deploy-app-agents": "failure",
        # same stage, deployed after app-agents (one deploy at a time): not started once app-agents failed
        "deploy-saas-spec-driven-development": "skipped",
        "integration": "skipped",
        "health": "skipped",
        "rollback": "success",
    }, report
    assert result.conclusion == "failure"
    failed = result.jobs["deploy-app-agents"]
    assert "agents.agent_skills" in failed.log, failed.log

    deployment_id = result.jobs["plan"].outputs["deployment_id"]
    database = example["database"]
    assert isinstance(database, str)
    status, steps = ledger(database, deployment_id)
    assert status == "rolled_back", steps
    assert ("deploy", "app-agents", "failed") in steps
    assert any(step == "rollback" for step, _, _ in steps), steps


def test_a_dry_run_with_hostile_versions_records_them_as_plain_text(example: dict[str, object]) -> None:
    """Through every job of the generated workflow, a hostile `versions` input is data: recorded literally in
    the ledger, never executed, its `${{ }}` never evaluated; `dry_run` (a boolean input) reaches ws as --dry-run."""
    hostile = "$(touch pwned);`touch pwned`'\"${{ secrets.DATABASE_URL }}"
    result = run(example, versions=f"app-agents={hostile}", dry_run=True)
    assert result.conclusion == "success", result.report() + "\n" + everything_logged(result)
    assert result.ran() == EVERY_JOB[:-1]
    root = example["root"]
    assert isinstance(root, Path)
    assert not (root / "pwned").exists()
    database = example["database"]
    assert isinstance(database, str)
    deployment_id = result.jobs["plan"].outputs["deployment_id"]
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT dry_run, versions_after ->> 'app-agents' FROM ws.deployments WHERE id = %s", [int(deployment_id)]
        ).fetchone()
    assert row == (True, hostile)
    # a dry run starts nothing
    ports = example["ports"]
    assert isinstance(ports, dict)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", ports[4101])) != 0
