"""`ws branch create|status|delete` on three real repos (with bare "remotes" that back the fake GitHub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.errors import UsageError
from infra.github import branches
from infra.github.client import GitHub
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.fake_github import FakeGitHub
from tests.helpers import run_ws
from tests.workspace_builder import GIT_IDENTITY, OWNER, REPO_SCHEMAS, commit_file, git_in

REPOS = list(REPO_SCHEMAS)
ENV = {**GIT_IDENTITY, "GITHUB_TOKEN": "test-token"}


@pytest.fixture
def root(github_workspace: Path) -> Path:
    tmp_path = github_workspace
    return tmp_path


def loaded_of(root: Path) -> LoadedWorkspace:
    return load_workspace(root / "workspace.yaml")


def bare_sha(root: Path, repo: str, branch: str) -> str | None:
    import subprocess

    result = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=root / "remotes" / f"{repo}.git",
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or None


def test_create_everywhere_locally_and_on_github(root: Path, fake: FakeGitHub) -> None:
    result = run_ws("-w", str(root / "workspace.yaml"), "branch", "create", "feat-x", "--remote", "--json", env=ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["repo"] for r in report["repos"]] == REPOS
    for repo in REPOS:
        assert git_in(root / repo, "branch", "--show-current") == "feat-x"
        main = git_in(root / repo, "rev-parse", "main")
        assert bare_sha(root, repo, "feat-x") == main
    expected = []
    for repo in REPOS:
        remote_main = bare_sha(root, repo, "main")
        expected += [
            ("GET", f"/repos/{OWNER}/{repo}", None),
            ("GET", f"/repos/{OWNER}/{repo}/git/ref/heads/feat-x", None),
            ("GET", f"/repos/{OWNER}/{repo}/git/ref/heads/main", None),
            ("POST", f"/repos/{OWNER}/{repo}/git/refs", {"ref": "refs/heads/feat-x", "sha": remote_main}),
        ]
    assert [(r.method, r.path, r.body) for r in fake.requests] == expected
    # Running it again changes nothing and creates nothing on GitHub.
    again = run_ws(
        "-w", str(root / "workspace.yaml"), "branch", "create", "feat-x", "--remote", "--json", env=ENV, in_process=True
    )
    assert again.returncode == 0, again.stderr
    assert {r["local"] for r in json.loads(again.stdout)["repos"]} == {"exists; checked out"}
    assert not [r for r in fake.requests[len(expected) :] if r.method == "POST"]


def test_create_refuses_a_dirty_tree_before_touching_anything(root: Path) -> None:
    (root / "app-agents" / "notes.txt").write_text("wip\n")
    result = run_ws("-w", str(root / "workspace.yaml"), "branch", "create", "feat-y", env=GIT_IDENTITY, in_process=True)
    assert result.returncode == 2
    assert "uncommitted changes in app-agents (1 changed file(s): notes.txt)" in result.stderr
    assert "--allow-dirty" in result.stderr and "Traceback" not in result.stderr
    for repo in REPOS:
        assert git_in(root / repo, "branch", "--show-current") == "main"
        assert git_in(root / repo, "branch", "--list", "feat-y") == ""
    allowed = run_ws(
        "-w",
        str(root / "workspace.yaml"),
        "branch",
        "create",
        "feat-y",
        "--allow-dirty",
        env=GIT_IDENTITY,
        in_process=True,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert git_in(root / "app-agents", "branch", "--show-current") == "feat-y"
    assert (root / "app-agents" / "notes.txt").exists()


def test_create_dry_run_changes_nothing(root: Path, fake: FakeGitHub) -> None:
    result = run_ws(
        "-w",
        str(root / "workspace.yaml"),
        "branch",
        "create",
        "feat-d",
        "--remote",
        "--dry-run",
        "--json",
        env=ENV,
        in_process=True,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["repos"]
    assert rows[0]["local"] == "would create from main and check out"
    assert rows[0]["remote"].startswith("would create from main at ")
    assert all(git_in(root / r, "branch", "--list", "feat-d") == "" for r in REPOS)
    assert all(r.method == "GET" for r in fake.requests)


def test_invalid_branch_name_is_refused(root: Path) -> None:
    with pytest.raises(UsageError, match="not a valid branch name"):
        branches.create(loaded_of(root), "bad..name")


def test_status_matrix(root: Path, fake: FakeGitHub) -> None:
    loaded = loaded_of(root)
    github = GitHub(fake.api_url, fake.token)
    branches.create(loaded, "feat-s", remote=True, github=github)
    head = commit_file(root / "app-agents", "agents/new.txt", "x\n", "add a file")
    git_in(root / "app-agents", "push", "-q", "origin", "feat-s")
    fake.set_status(f"{OWNER}/app-agents", head, "success", "ci/unit")
    fake.add_check_run(f"{OWNER}/app-agents", head, "completed", "failure")
    (root / "saas-spec-driven-development" / "README.md").write_text("changed\n")
    git_in(root / "saas-ecosystem-architecture", "checkout", "-q", "main")
    commit_file(root / "saas-ecosystem-architecture", "CHANGELOG.md", "main moved\n", "main moves on")
    git_in(root / "saas-ecosystem-architecture", "push", "-q", "origin", "main")
    fake.requests.clear()
    rows = {r.repo: r for r in branches.status(loaded, "feat-s", github)}
    agents = rows["app-agents"]
    assert (agents.local, agents.remote, agents.ahead, agents.behind, agents.dirty) == (True, True, 1, 0, False)
    assert agents.ci == "failure"  # a failed check run outweighs a green commit status
    assert agents.pr_number is None
    assert rows["saas-spec-driven-development"].dirty is True
    assert rows["saas-spec-driven-development"].ci == "none"
    primary = rows["saas-ecosystem-architecture"]
    assert (primary.ahead, primary.behind, primary.local) == (0, 1, True)  # main moved on since the branch
    assert ("GET", f"/repos/{OWNER}/app-agents/commits/{head}/status") in fake.calls()
    assert ("GET", f"/repos/{OWNER}/app-agents/commits/{head}/check-runs") in fake.calls()
    pulls = [r for r in fake.requests if r.path == f"/repos/{OWNER}/app-agents/pulls"]
    assert pulls[0].query["head"] == f"{OWNER}:feat-s" and pulls[0].query["state"] == "all"


def test_status_without_a_token_uses_origin_and_says_what_is_missing(root: Path) -> None:
    run_ws("-w", str(root / "workspace.yaml"), "branch", "create", "feat-t", env=GIT_IDENTITY, in_process=True)
    git_in(root / "app-agents", "push", "-q", "origin", "feat-t")
    result = run_ws(
        "-w",
        str(root / "workspace.yaml"),
        "branch",
        "status",
        "feat-t",
        "--json",
        env={"GITHUB_TOKEN": ""},
        in_process=True,
    )
    assert result.returncode == 0, result.stderr
    rows = {r["repo"]: r for r in json.loads(result.stdout)["repos"]}
    assert rows["app-agents"]["remote"] is True and rows["app-agents"]["remote_source"] == "origin"
    assert rows["saas-spec-driven-development"]["remote"] is False
    assert rows["app-agents"]["notes"] == ["PR and CI need GITHUB_TOKEN"]
    table = run_ws(
        "-w",
        str(root / "workspace.yaml"),
        "branch",
        "status",
        "feat-t",
        env={"GITHUB_TOKEN": "", "COLUMNS": "300"},
        in_process=True,
    )
    assert "app-agents" in table.stdout and "PR and CI need GITHUB_TOKEN" in table.stdout


def test_delete_refuses_unmerged_work_unless_forced(root: Path, fake: FakeGitHub) -> None:
    loaded = loaded_of(root)
    github = GitHub(fake.api_url, fake.token)
    branches.create(loaded, "feat-z", remote=True, github=github)
    commit_file(root / "app-agents", "wip.txt", "wip\n", "work in progress")
    with pytest.raises(UsageError) as caught:
        branches.delete(loaded, "feat-z", remote=True, github=github)
    assert "unmerged work in app-agents locally (1 commit(s) not in main)" in str(caught.value)
    assert all(git_in(root / r, "branch", "--list", "feat-z") for r in REPOS), "nothing was deleted"
    assert not [r for r in fake.requests if r.method == "DELETE"]
    fake.requests.clear()
    actions = branches.delete(loaded, "feat-z", remote=True, force=True, github=github)
    assert {a.local for a in actions} == {"deleted"} and {a.remote for a in actions} == {"deleted"}
    for repo in REPOS:
        assert git_in(root / repo, "branch", "--list", "feat-z") == ""
        assert git_in(root / repo, "branch", "--show-current") == "main"
        assert bare_sha(root, repo, "feat-z") is None
    deletes = [(r.method, r.path) for r in fake.requests if r.method == "DELETE"]
    assert deletes == [("DELETE", f"/repos/{OWNER}/{repo}/git/refs/heads/feat-z") for repo in REPOS]


def test_delete_a_merged_branch_needs_no_force(root: Path) -> None:
    result = run_ws("-w", str(root / "workspace.yaml"), "branch", "create", "feat-m", env=GIT_IDENTITY, in_process=True)
    assert result.returncode == 0, result.stderr
    deleted = run_ws(
        "-w", str(root / "workspace.yaml"), "branch", "delete", "feat-m", "--json", env=GIT_IDENTITY, in_process=True
    )
    assert deleted.returncode == 0, deleted.stderr
    assert {r["local"] for r in json.loads(deleted.stdout)["repos"]} == {"deleted"}
    refused = run_ws("-w", str(root / "workspace.yaml"), "branch", "delete", "main", env=GIT_IDENTITY, in_process=True)
    assert refused.returncode == 2 and "it is a default branch" in refused.stderr


def test_missing_checkouts_and_start_points_are_named(root: Path) -> None:
    loaded = loaded_of(root)
    with pytest.raises(UsageError, match=r"--from: start point not found in .*\(no 'release-9'\)"):
        branches.create(loaded, "feat-f", start="release-9")
    import shutil

    shutil.rmtree(root / "app-agents")
    with pytest.raises(UsageError) as caught:
        branches.create(loaded, "feat-f")
    assert f"no checkout for app-agents ({root / 'app-agents'})" in str(caught.value)
    assert "--remote" in str(caught.value)
    assert all(git_in(root / r, "branch", "--list", "feat-f") == "" for r in REPOS if r != "app-agents")
