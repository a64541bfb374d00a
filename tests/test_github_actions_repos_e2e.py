"""End to end, as on GitHub: the coordinated deployment of three repositories that live in repositories of their own.

The example workspace is split the way the real one is: the coordination repository (workspace.yaml and the
generated automation, no repo code) and three separate git repositories, here bare repositories the step runner
clones from (its stand-in for GitHub). workspace.yaml names no `path:`, so each repo is expected at `../<repo>`;
the generated workflow checks the coordination repository out into `workspace/` of the runner's workspace folder
and every repo beside it, in every job that runs their code. Like the real workspace.yaml, two repos declare a
`{secret: ...}` (NEXTAUTH_SECRET, OPENAI_API_KEY); every secret reaches the run only through the runner's
`secrets=`, never through the machine's environment.

The first test deploys everything; the second deploys a release of app-agents whose /health fails, and the
rollback job takes the deployment back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.github import workflows
from infra.github.steprunner import LocalRunner, RunResult
from tests.fake_github import FakeGitHub
from tests.helpers import EXAMPLES, run_ws
from tests.test_github_actions_e2e import (
    EXAMPLE_PORTS,
    OWNER,
    REPOS,
    SERVER,
    database_name,
    everything_logged,
    free_port,
    ledger,
)
from tests.workspace_builder import git_in

pytestmark = pytest.mark.slow

COORDINATION_REPO = f"{OWNER}/workspace"
REPO_SECRETS = {"NEXTAUTH_SECRET": "nextauth-value-5f1c", "OPENAI_API_KEY": "sk-openai-value-9a2e"}
TAGS = ("1.1.0", "2.0.0")  # the releases the tests deploy, tagged in every repo
IGNORED = shutil.ignore_patterns(".ws", "node_modules", "__pycache__", "*.db", ".env*")


@pytest.fixture
def split(tmp_path: Path, fresh_database: str, postgres_url: str, redis_url: str) -> Iterator[dict[str, object]]:
    """The coordination repository in ``runner/workspace`` and one bare repository per repo under ``git/``."""
    runner_dir = tmp_path / "runner"  # GITHUB_WORKSPACE
    root = runner_dir / "workspace"
    root.mkdir(parents=True)
    for item in EXAMPLES.iterdir():
        if item.name in (*REPOS, "common", ".ws", ".github", "actions"):
            continue
        if item.is_dir():
            shutil.copytree(item, root / item.name, ignore=IGNORED)
        else:
            shutil.copy(item, root / item.name)
    # The example services import a helper from a `common/` folder beside their repo; on this runner it stands
    # beside the checkouts (in a real workspace each repo ships its own code).
    shutil.copytree(EXAMPLES / "common", runner_dir / "common", ignore=IGNORED)
    for repo in REPOS:
        source = tmp_path / "sources" / repo
        shutil.copytree(EXAMPLES / repo, source, ignore=IGNORED)
        git_in(source, "init", "-q", "-b", "main")
        git_in(source, "add", "-A")
        git_in(source, "commit", "-q", "-m", f"{repo} release")
        for tag in TAGS:
            git_in(source, "tag", tag)
        git_in(tmp_path, "clone", "-q", "--bare", str(source), str(tmp_path / "git" / f"{repo}.git"))

    text = (EXAMPLES / "workspace.yaml").read_text()
    for repo in REPOS:
        assert f"    path: {repo}\n" in text
        text = text.replace(f"    path: {repo}\n", "")  # each repo is its own repository, at ../<repo>
    ports = {}
    for port in EXAMPLE_PORTS:
        ports[port] = free_port()
        assert f"port: {port}\n" in text
        text = text.replace(f"port: {port}\n", f"port: {ports[port]}\n")
    assert "  name: example_ecosystem\n" in text
    text = text.replace("  name: example_ecosystem\n", f"  name: {database_name(fresh_database)}\n")
    # the real workspace.yaml's shape: the primary and app-agents each declare a secret
    for repo, secret in (("saas-ecosystem-architecture", "NEXTAUTH_SECRET"), ("app-agents", "OPENAI_API_KEY")):
        anchor = f"  {repo}:\n    github: {OWNER}/{repo}\n"
        assert anchor in text
        text = text.replace(anchor, f"{anchor}    env:\n      {secret}: {{secret: {secret}}}\n")
    with FakeGitHub() as github:
        for repo in REPOS:
            github.add_repo(f"{OWNER}/{repo}")
        text = text.replace("  repo: workspace\n", f"  repo: workspace\n  api_url: {github.api_url}\n", 1)
        (root / "workspace.yaml").write_text(text)
        generated = run_ws("generate", cwd=root)
        assert generated.returncode == 0, generated.stdout + generated.stderr
        secrets = {
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_url,
            "WS_GITHUB_TOKEN": github.token,
            "WS_CHECKOUT_TOKEN": "read-only-token-3c7d",
            **REPO_SECRETS,
        }
        try:
            yield {
                "runner": runner_dir,
                "root": root,
                "git": tmp_path / "git",
                "secrets": secrets,
                "database": fresh_database,
                "ports": ports,
                "github": github,
            }
        finally:
            down = run_ws("down", "--env", "local", cwd=root, env=secrets)
            assert down.returncode == 0, down.stdout + down.stderr


def run(split: dict[str, object], **inputs: object) -> RunResult:
    root, runner_dir, git, secrets = split["root"], split["runner"], split["git"], split["secrets"]
    assert isinstance(root, Path) and isinstance(runner_dir, Path) and isinstance(git, Path)
    assert isinstance(secrets, dict)
    # what a GitHub runner sets for every step; no secret, no token and no ws setting comes from the machine
    machine = {
        key: value
        for key, value in os.environ.items()
        if key not in secrets and key not in ("GITHUB_TOKEN", "WS_WORKSPACE")
    }
    machine.update({"GITHUB_SERVER_URL": SERVER, "GITHUB_REPOSITORY": COORDINATION_REPO})
    runner = LocalRunner(root, workdir=runner_dir, env=machine, secrets=secrets, remote=str(git / "{name}.git"))
    return runner.run_workflow(workflows.DEPLOYMENT_WORKFLOW, {"environment": "local", **inputs})


def checked_out(runner_dir: Path, repo: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=runner_dir / repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_three_repositories_deploy_from_their_own_checkouts_with_their_secrets(split: dict[str, object]) -> None:
    result = run(split)
    report = result.report() + "\n" + everything_logged(result)
    assert result.conclusion == "success", report
    assert result.ran() == [job for job in result.order if job != "rollback"], report

    # every repo was cloned from its own repository, beside the coordination repository, at its default branch;
    # the plan job handed that commit to every later job
    runner_dir, git = split["runner"], split["git"]
    assert isinstance(runner_dir, Path) and isinstance(git, Path)
    plan = result.jobs["plan"]
    for repo in REPOS:
        head = git_in(git / f"{repo}.git", "rev-parse", "main")
        assert checked_out(runner_dir, repo) == head
        assert plan.outputs[f"ref_{repo.replace('-', '_')}"] == head
        origin = git_in(runner_dir / repo, "remote", "get-url", "origin")
        assert origin == str(git / f"{repo}.git")
        assert "extraheader" not in git_in(runner_dir / repo, "config", "--list")  # no credentials persisted
    for job_id in ("migrate", "validate", "deploy-app-agents", "integration", "health"):
        notes = [step.log for step in result.jobs[job_id].steps if step.name.startswith("Check out ")]
        assert len(notes) == 1 + len(REPOS), job_id  # the workspace and each repo
    infra_checkouts = [step.name for step in result.jobs["infra"].steps if step.name.startswith("Check out")]
    assert infra_checkouts == ["Check out the workspace"]  # it runs no repo's code

    deployment_id = plan.outputs["deployment_id"]
    database = split["database"]
    assert isinstance(database, str)
    status, steps = ledger(database, deployment_id)
    assert status == "succeeded", steps
    for repo in REPOS:
        assert ("deploy", repo, "succeeded") in steps
    assert any(s == "integration" and st == "succeeded" for s, _, st in steps), steps

    ports = split["ports"]
    assert isinstance(ports, dict)
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[4101]}/health", timeout=5) as response:
        assert response.status == 200
    logged = everything_logged(result)
    secrets = split["secrets"]
    assert isinstance(secrets, dict)
    for value in secrets.values():
        assert value not in logged


def test_a_failing_release_of_one_repository_is_rolled_back(split: dict[str, object]) -> None:
    first = run(split)
    assert first.conclusion == "success", first.report() + "\n" + everything_logged(first)
    # app-agents 2.0.0 reads a table whose migration has not shipped: its /health answers 503
    result = run(
        split, versions="saas-ecosystem-architecture=1.1.0,app-agents=2.0.0,saas-spec-driven-development=1.1.0"
    )
    report = result.report() + "\n" + everything_logged(result)
    jobs = {job_id: job.result for job_id, job in result.jobs.items()}
    assert jobs["deploy-app-agents"] == "failure", report
    assert jobs["deploy-saas-spec-driven-development"] == "success", report
    assert jobs["integration"] == "skipped" and jobs["health"] == "skipped", report
    assert jobs["rollback"] == "success", report

    # the plan job checked each repo out at the tag asked for
    git = split["git"]
    assert isinstance(git, Path)
    for repo in REPOS:
        tag = "2.0.0" if repo == "app-agents" else "1.1.0"
        assert result.jobs["plan"].outputs[f"ref_{repo.replace('-', '_')}"] == git_in(
            git / f"{repo}.git", "rev-parse", f"{tag}^{{commit}}"
        )

    deployment_id = result.jobs["plan"].outputs["deployment_id"]
    database = split["database"]
    assert isinstance(database, str)
    status, steps = ledger(database, deployment_id)
    assert status == "rolled_back", steps
    for repo in REPOS:
        assert ("rollback", repo, "succeeded") in steps, steps
    previous = first.jobs["plan"].outputs["deployment_id"]
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT versions_after FROM ws.deployments WHERE id = %s", [int(previous)]).fetchone()
    assert row is not None
    ports = split["ports"]
    assert isinstance(ports, dict)
    for port, repo in zip(EXAMPLE_PORTS, REPOS, strict=True):
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[port]}/health", timeout=5) as response:
            assert json.loads(response.read())["version"] == row[0][repo]


def test_a_version_that_is_not_a_safe_ref_stops_the_plan_before_any_checkout(split: dict[str, object]) -> None:
    hostile = "$(touch pwned)"
    result = run(split, versions=f"app-agents={hostile}")
    plan = result.jobs["plan"]
    assert plan.result == "failure" and result.ran() == ["plan"]
    failed = next(step for step in plan.steps if step.outcome == "failure")
    assert failed.name == "Choose the version of each repo to check out"
    # printed as data (whitespace dropped, as the step drops it from the whole input), never run
    assert "app-agents=$(touchpwned) is not a safe version" in failed.log
    runner_dir = split["runner"]
    assert isinstance(runner_dir, Path)
    assert not (runner_dir / "pwned").exists() and not (runner_dir / "app-agents").exists()
