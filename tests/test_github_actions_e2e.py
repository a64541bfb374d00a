"""End to end: the generated coordinated-deployment workflow carries the example workspace through every job.

A copy of examples/ (its own database on the real PostgreSQL server, free ports for its services) gets its
GitHub automation from `ws generate`; the local step runner then runs the workflow's jobs in order, each job's
`run:` steps calling the real `ws pipeline` commands, which start the example services and gate them on /health.
The second test deploys a release of app-agents whose /health fails (its migration has not shipped), so the
deploy job fails, integration and health are skipped and the rollback job takes the deployment back.
GitHub itself is the local fake API (workspace.yaml's github.api_url points at it): the deploy and rollback
steps get the WS_GITHUB_TOKEN secret as GITHUB_TOKEN and record GitHub deployments in the three repos.
The runner runs jobs one at a time; the whole-deployment test holds the environment's deploy lock shared through
the deploy jobs, standing in for the same-stage job GitHub would run beside each of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from infra.deploy.ledger import environment_lock
from infra.github import workflows
from infra.github.steprunner import LocalRunner, RunResult
from tests.fake_github import FakeGitHub
from tests.helpers import EXAMPLES, run_ws

pytestmark = pytest.mark.slow

EXAMPLE_PORTS = (4100, 4101, 4102)
OWNER = "example-ecosystem"
SERVER = "https://github.example"
COORDINATION_REPO = "example-ecosystem/workspace"
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
    with FakeGitHub() as github:
        for repo in REPOS:
            github.add_repo(f"{OWNER}/{repo}")
        assert "  repo: workspace\n" in text
        text = text.replace("  repo: workspace\n", f"  repo: workspace\n  api_url: {github.api_url}\n", 1)
        (root / "workspace.yaml").write_text(text)
        generated = run_ws("generate", cwd=root)
        assert generated.returncode == 0, generated.stdout + generated.stderr
        assert (root / workflows.DEPLOYMENT_WORKFLOW).is_file()
        assert (root / "actions/deploy-stage/action.yml").is_file()
        secrets = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "WS_GITHUB_TOKEN": github.token}
        try:
            yield {"root": root, "secrets": secrets, "database": fresh_database, "ports": ports, "github": github}
        finally:
            down = run_ws("down", "--env", "local", cwd=root, env=secrets)
            assert down.returncode == 0, down.stdout + down.stderr


def run(example: dict[str, object], echo: Callable[[str], None] | None = None, **inputs: object) -> RunResult:
    root = example["root"]
    secrets = example["secrets"]
    assert isinstance(root, Path) and isinstance(secrets, dict)
    # what a GitHub runner sets for every step (the run id comes from the step runner itself)
    machine = {**os.environ, "GITHUB_SERVER_URL": SERVER, "GITHUB_REPOSITORY": COORDINATION_REPO}
    machine.pop("GITHUB_TOKEN", None)
    runner = LocalRunner(root, env=machine, secrets=secrets, echo=echo)
    example["run_url"] = f"{SERVER}/{COORDINATION_REPO}/actions/runs/{runner.run_id}"
    return runner.run_workflow(workflows.DEPLOYMENT_WORKFLOW, {"environment": "local", **inputs})


def github_states(example: dict[str, object], deployment_id: str) -> dict[str, list[str]]:
    """The statuses of the GitHub deployment recorded for ledger deployment ``deployment_id`` in each repo."""
    github = example["github"]
    assert isinstance(github, FakeGitHub)
    states: dict[str, list[str]] = {}
    for repo in REPOS:
        state = github.repos[f"{OWNER}/{repo}"]
        records = [r for r in state.deployments if r["payload"]["ws_deployment_id"] == int(deployment_id)]
        assert len(records) <= 1, records
        for record in records:
            assert record["environment"] == "local"
            statuses = state.deployment_statuses[record["id"]]
            assert {s["log_url"] for s in statuses} == {example["run_url"]}
            states[repo] = [s["state"] for s in statuses]
    return states


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
    # GitHub starts the deploy jobs of one stage together; this runner runs them one after another. Stand in for
    # the neighbour running at the same time: from the first deploy job until the health job (whose `ws pipeline
    # finish` needs the lock alone), hold the environment's deploy lock shared, as a `ws pipeline` job does. Were
    # the deploy steps to take it exclusively, they would fail on it at once.
    database = example["database"]
    assert isinstance(database, str)
    database_url: str = database  # a plain str for the closure below (mypy does not carry the narrowing into it)
    neighbour = contextlib.ExitStack()
    held: list[str] = []

    def watch(line: str) -> None:
        if line == "job deploy-saas-ecosystem-architecture: running":
            neighbour.enter_context(environment_lock(database_url, "local", "test:same-stage-neighbour", shared=True))
            held.append(line)
        elif line.startswith("job health:"):
            neighbour.close()

    with neighbour:
        result = run(example, echo=watch)
    assert held, "the deploy jobs never started"
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
    # each deploy job recorded its repo's GitHub deployment, linked to the workflow run
    assert github_states(example, deployment_id) == {repo: ["in_progress", "success"] for repo in REPOS}

    # the services the workflow deployed answer for real, and the server URL secret never reached a log
    ports = example["ports"]
    assert isinstance(ports, dict)
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[4101]}/health", timeout=5) as response:
        assert response.status == 200
    secrets = example["secrets"]
    assert isinstance(secrets, dict)
    assert secrets["DATABASE_URL"] not in everything_logged(result)


def test_a_failing_deploy_ends_in_the_rollback_job(example: dict[str, object]) -> None:
    first = run(example)
    assert first.conclusion == "success", first.report() + "\n" + everything_logged(first)
    # app-agents 2.0.0 reads a table whose migration has not shipped: its /health answers 503
    result = run(
        example, versions="saas-ecosystem-architecture=1.1.0,app-agents=2.0.0,saas-spec-driven-development=1.1.0"
    )
    report = result.report() + "\n" + everything_logged(result)
    jobs = {job_id: job.result for job_id, job in result.jobs.items()}
    assert jobs == {
        "plan": "success",
        "infra": "success",
        "migrate": "success",
        "validate": "success",
        "deploy-saas-ecosystem-architecture": "success",
        "deploy-app-agents": "failure",
        # same stage as app-agents: it needs only the primary, so its failing neighbour does not stop it
        "deploy-saas-spec-driven-development": "success",
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
    assert ("deploy", "saas-spec-driven-development", "succeeded") in steps
    for repo in REPOS:
        assert ("rollback", repo, "succeeded") in steps, steps
    # the services run the first deployment's versions again
    previous = first.jobs["plan"].outputs["deployment_id"]
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT versions_after FROM ws.deployments WHERE id = %s", [int(previous)]).fetchone()
    assert row is not None
    ports = example["ports"]
    assert isinstance(ports, dict)
    for port, repo in zip(EXAMPLE_PORTS, REPOS, strict=True):
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[port]}/health", timeout=5) as response:
            assert json.loads(response.read())["version"] == row[0][repo]
    # the rollback job (its own process) found the GitHub records the deploy jobs made and marked them inactive
    states = github_states(example, deployment_id)
    assert states["app-agents"][:2] == ["in_progress", "failure"], states
    for repo in ("saas-ecosystem-architecture", "saas-spec-driven-development"):
        assert states[repo] == ["in_progress", "success", "inactive"], states


def test_hostile_versions_are_refused_as_plain_text_and_a_dry_run_changes_nothing(example: dict[str, object]) -> None:
    """A hostile `versions` input reaches ws as data: refused by its version check with the text quoted, never
    executed, its `${{ }}` never evaluated, so no deployment opens and nothing after the plan runs. `dry_run` (a
    boolean input) reaches ws as --dry-run: every job runs, the ledger records the plan, nothing starts."""
    hostile = "$(touch pwned);`touch pwned`'\"${{ secrets.DATABASE_URL }}"
    refused = run(example, versions=f"app-agents={hostile}", dry_run=True)
    assert refused.ran() == ["plan"] and refused.jobs["plan"].result == "failure"
    begin = next(step for step in refused.jobs["plan"].steps if step.outcome == "failure")
    assert begin.name == "Begin the deployment in the ledger"
    assert f"app-agents={hostile!r} is not a safe version" in begin.log, begin.log
    assert refused.jobs["plan"].outputs["deployment_id"] == ""  # so the rollback job does not run either
    root = example["root"]
    assert isinstance(root, Path)
    assert not (root / "pwned").exists()

    result = run(example, versions="app-agents=9.9.9", dry_run=True)
    assert result.conclusion == "success", result.report() + "\n" + everything_logged(result)
    assert result.ran() == EVERY_JOB[:-1]
    database = example["database"]
    assert isinstance(database, str)
    deployment_id = result.jobs["plan"].outputs["deployment_id"]
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT dry_run, versions_after ->> 'app-agents' FROM ws.deployments WHERE id = %s", [int(deployment_id)]
        ).fetchone()
    assert row == (True, "9.9.9")
    assert github_states(example, deployment_id) == {}  # a dry run records no GitHub deployment either
    # a dry run starts nothing
    ports = example["ports"]
    assert isinstance(ports, dict)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", ports[4101])) != 0
