"""GitHub deployment records and statuses left by the coordinated deploy (DeployObserver implementation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.deploy.events import DeployObserver
from infra.github.client import GitHub
from infra.github.deployments import GitHubDeployments, observer_from_environment, workflow_run_url
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.fake_github import FakeGitHub
from tests.workspace_builder import OWNER, git_in

PRIMARY, AGENTS = "saas-ecosystem-architecture", "app-agents"
RUN = "https://github.example/acme/workspace/actions/runs/42"


@pytest.fixture
def setup(github_workspace: Path) -> tuple[Path, LoadedWorkspace]:
    return github_workspace, load_workspace(github_workspace / "workspace.yaml")


def test_a_rolled_back_deploy_leaves_deployments_and_every_status(
    setup: tuple[Path, LoadedWorkspace], fake: FakeGitHub
) -> None:
    root, loaded = setup
    observer: DeployObserver = GitHubDeployments(loaded, GitHub(fake.api_url, fake.token), RUN)
    primary_sha = git_in(root / PRIMARY, "rev-parse", "HEAD")
    agents_sha = git_in(root / AGENTS, "rev-parse", "HEAD")
    observer.deployment_started(7, "prod", [PRIMARY, AGENTS])
    observer.repo_state(7, "prod", PRIMARY, primary_sha, "in_progress", "deploying")
    observer.repo_state(7, "prod", PRIMARY, primary_sha, "success", "healthy")
    observer.repo_state(7, "prod", AGENTS, agents_sha, "in_progress", "deploying")
    observer.repo_state(7, "prod", AGENTS, agents_sha, "failure", "health check failed: /health answered 500")
    observer.repo_state(7, "prod", PRIMARY, primary_sha, "inactive", "rolled back to the previous version")
    observer.deployment_finished(7, "prod", "rolled_back")

    posts = [(r.path, r.body) for r in fake.requests if r.method == "POST"]
    primary_id = fake.repos[f"{OWNER}/{PRIMARY}"].deployments[0]["id"]
    agents_id = fake.repos[f"{OWNER}/{AGENTS}"].deployments[0]["id"]

    def deployment(repo: str, sha: str) -> dict[str, object]:
        return {
            "ref": sha,
            "task": "deploy",
            "auto_merge": False,
            "required_contexts": [],
            "payload": {"ws_deployment_id": 7, "repo": repo, "version": sha},
            "environment": "prod",
            "description": f"ws deployment #7: {repo} {sha} to prod",
            "transient_environment": False,
            "production_environment": True,
        }

    def status(state: str, description: str) -> dict[str, object]:
        return {
            "state": state,
            "description": description,
            "environment": "prod",
            "log_url": RUN,
            "environment_url": RUN,
        }

    assert posts == [
        (f"/repos/{OWNER}/{PRIMARY}/deployments", deployment(PRIMARY, primary_sha)),
        (f"/repos/{OWNER}/{PRIMARY}/deployments/{primary_id}/statuses", status("in_progress", "deploying")),
        (f"/repos/{OWNER}/{PRIMARY}/deployments/{primary_id}/statuses", status("success", "healthy")),
        (f"/repos/{OWNER}/{AGENTS}/deployments", deployment(AGENTS, agents_sha)),
        (f"/repos/{OWNER}/{AGENTS}/deployments/{agents_id}/statuses", status("in_progress", "deploying")),
        (
            f"/repos/{OWNER}/{AGENTS}/deployments/{agents_id}/statuses",
            status("failure", "health check failed: /health answered 500"),
        ),
        (
            f"/repos/{OWNER}/{PRIMARY}/deployments/{primary_id}/statuses",
            status("inactive", "rolled back to the previous version"),
        ),
    ]
    states = [s["state"] for s in fake.repos[f"{OWNER}/{PRIMARY}"].deployment_statuses[primary_id]]
    assert states == ["in_progress", "success", "inactive"]


def test_a_version_that_is_not_a_git_ref_is_recorded_on_the_default_branch(
    setup: tuple[Path, LoadedWorkspace], fake: FakeGitHub
) -> None:
    _root, loaded = setup
    observer = GitHubDeployments(loaded, GitHub(fake.api_url, fake.token), None)
    observer.repo_state(3, "local", AGENTS, "image-2026.01.02", "in_progress", "")
    posts = [r.body for r in fake.requests if r.method == "POST"]
    assert posts[0]["ref"] == "image-2026.01.02"
    assert posts[1]["ref"] == "main"
    assert posts[1]["description"] == "ws deployment #3: app-agents version image-2026.01.02 (not a git ref)"
    assert posts[1]["transient_environment"] is True and posts[1]["production_environment"] is False
    assert posts[2] == {"state": "in_progress", "description": "in_progress", "environment": "local"}


def test_repos_left_in_progress_get_an_error_status_when_the_deploy_ends(
    setup: tuple[Path, LoadedWorkspace], fake: FakeGitHub
) -> None:
    root, loaded = setup
    observer = GitHubDeployments(loaded, GitHub(fake.api_url, fake.token), None)
    sha = git_in(root / AGENTS, "rev-parse", "HEAD")
    observer.repo_state(9, "prod", AGENTS, sha, "in_progress", "deploying")
    observer.deployment_finished(9, "prod", "interrupted")
    last = fake.requests[-1]
    assert last.method == "POST" and last.path.endswith("/statuses")
    assert last.body["state"] == "error"
    assert last.body["description"] == "deployment #9 ended interrupted before this repo"


def test_factory_needs_a_token_and_links_the_workflow_run(
    setup: tuple[Path, LoadedWorkspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    _root, loaded = setup
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert observer_from_environment(loaded) is None
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/workspace")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    observer = observer_from_environment(loaded)
    assert observer is not None and observer.run_url == RUN
    assert workflow_run_url({"GITHUB_SERVER_URL": "https://x"}) is None


def test_a_later_process_posts_to_the_deployment_an_earlier_one_created(
    setup: tuple[Path, LoadedWorkspace], fake: FakeGitHub
) -> None:
    root, loaded = setup
    sha = git_in(root / AGENTS, "rev-parse", "HEAD")
    deploy_step = GitHubDeployments(loaded, GitHub(fake.api_url, fake.token), RUN)
    deploy_step.repo_state(11, "prod", AGENTS, sha, "in_progress", "deploying")
    deploy_step.repo_state(11, "prod", AGENTS, sha, "success", "healthy")
    other = GitHubDeployments(loaded, GitHub(fake.api_url, fake.token), RUN)
    other.repo_state(12, "prod", AGENTS, sha, "in_progress", "deploying")  # another deployment: its own record
    fake.requests.clear()
    rollback = GitHubDeployments(loaded, GitHub(fake.api_url, fake.token), RUN)  # `ws rollback`, a new process
    rollback.repo_state(11, "prod", AGENTS, sha, "inactive", "rolled back to 1.0.0")
    records = fake.repos[f"{OWNER}/{AGENTS}"].deployments
    assert len(records) == 2
    first = records[0]["id"]
    listing = [r for r in fake.requests if r.method == "GET" and r.path == f"/repos/{OWNER}/{AGENTS}/deployments"]
    assert listing[0].query == {"environment": "prod", "per_page": "100"}
    assert [(r.method, r.path) for r in fake.requests if r.method == "POST"] == [
        ("POST", f"/repos/{OWNER}/{AGENTS}/deployments/{first}/statuses")
    ]
    states = [s["state"] for s in fake.repos[f"{OWNER}/{AGENTS}"].deployment_statuses[first]]
    assert states == ["in_progress", "success", "inactive"]
