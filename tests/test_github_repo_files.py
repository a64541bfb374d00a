"""The workflows generated for the repos themselves: the image release and the cross-repo integration check.

`ws generate` keeps them under .github/repo-files/<repo>/; `ws repo-files` writes them into the checkouts and,
with --pr, opens the linked pull requests (here against the local fake GitHub). The integration check runs for
real through the step runner on three separate repositories (bare git repositories it clones from): the
workspace comes up on the runner, every repo's integration tests run, the workspace goes down.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from infra.github import repofiles, workflows
from infra.github.pins import BUILD_PUSH, LOGIN, SETUP_BUILDX
from infra.github.steprunner import LocalRunner
from infra.workspace.loader import load_workspace
from tests.fake_github import FakeGitHub
from tests.helpers import EXAMPLES, ROOT, run_ws
from tests.test_github_actions_e2e import EXAMPLE_PORTS, REPOS, database_name, free_port
from tests.workspace_builder import GIT_IDENTITY, OWNER, REPO_SCHEMAS, git_in

GOLDEN_WORKSPACE = ROOT / "tests" / "golden" / "github" / "workspace.yaml"
IGNORED = shutil.ignore_patterns(".ws", "node_modules", "__pycache__", "*.db", ".env*")


def load(text: str) -> dict:
    document = YAML(typ="safe", pure=True).load(text)
    assert isinstance(document, dict)
    return document


def test_release_workflows_push_each_commits_image() -> None:
    files = repofiles.repo_files(load_workspace(GOLDEN_WORKSPACE))
    # only repos with an image get a release workflow; every repo checked out on its own gets the integration check
    assert {repo: sorted(own) for repo, own in files.items()} == {
        "core": [repofiles.RELEASE_WORKFLOW, repofiles.INTEGRATION_WORKFLOW],
        "api": [repofiles.RELEASE_WORKFLOW, repofiles.INTEGRATION_WORKFLOW],
        "worker": [repofiles.INTEGRATION_WORKFLOW],
        "web": [repofiles.INTEGRATION_WORKFLOW],
    }
    core = load(files["core"][repofiles.RELEASE_WORKFLOW])
    assert core["on"] == {"push": {"branches": ["main"]}}
    assert core["permissions"] == {}
    job = core["jobs"]["image"]
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert "environment" not in job  # ghcr.io: the workflow's own token, no stored secret
    uses = [step["uses"] for step in job["steps"]]
    assert uses[1:] == [SETUP_BUILDX.uses, LOGIN.uses, BUILD_PUSH.uses]
    assert job["steps"][2]["with"] == {
        "registry": "ghcr.io",
        "username": "${{ github.actor }}",
        "password": "${{ github.token }}",
    }
    assert job["steps"][3]["with"] == {
        "context": ".",
        "push": True,
        "tags": "ghcr.io/golden-org/core:${{ github.sha }}",
    }
    # another registry: its credentials are secrets of the `release` environment
    api = load(files["api"][repofiles.RELEASE_WORKFLOW])["jobs"]["image"]
    assert api["environment"] == {"name": "release"}
    assert api["steps"][2]["with"]["registry"] == "registry.example.com"
    assert api["steps"][2]["with"]["password"] == "${{ secrets.REGISTRY_PASSWORD }}"
    # ws generate keeps them under .github/repo-files/<repo>/
    generated = workflows.generate_workflows(load_workspace(GOLDEN_WORKSPACE))
    assert (
        generated[f".github/repo-files/core/{repofiles.RELEASE_WORKFLOW}"] == files["core"][repofiles.RELEASE_WORKFLOW]
    )


def test_the_integration_check_reads_the_siblings_with_the_token_behind_the_pr_environment() -> None:
    files = repofiles.repo_files(load_workspace(GOLDEN_WORKSPACE))
    document = load(files["api"][repofiles.INTEGRATION_WORKFLOW])
    assert list(document["on"]) == ["pull_request"]
    assert document["env"] == {"WS_WORKSPACE": "coordination/workspace.yaml"}
    job = document["jobs"]["integration"]
    assert job["environment"] == {"name": "workspace-pr"}
    assert job["permissions"] == {"contents": "read"}
    steps = job["steps"]
    assert steps[0]["with"] == {"path": "api", "persist-credentials": False}  # the pull request's own code
    branches = steps[1]
    assert branches["env"] == {"BRANCH": "${{ github.head_ref }}", "TOKEN": "${{ secrets.WS_CHECKOUT_TOKEN }}"}
    checkouts = {s["with"]["repository"]: s["with"] for s in steps if "repository" in s.get("with", {})}
    assert sorted(checkouts) == ["golden-org/coordination", "golden-org/core", "golden-org/web", "golden-org/worker"]
    assert checkouts["golden-org/core"]["ref"] == "${{ steps.branches.outputs.ref_core }}"
    runs = [step.get("run", "").strip() for step in steps]
    assert runs[-3:] == ["ws up --env local", "ws deploy --env local", "ws down --env local"]
    assert steps[-1]["if"] == "always()"


def outside_workspace(root: Path, fake: FakeGitHub) -> Path:
    """The built three-repo workspace with its workspace.yaml in a coordination folder beside the repos (each at
    ../<repo>) and an image per repo."""
    text = (root / "workspace.yaml").read_text()
    for repo in REPO_SCHEMAS:
        text = text.replace(f"    path: {repo}\n", "")
        text = text.replace(
            f"  {repo}:\n    github: {OWNER}/{repo}\n",
            f"  {repo}:\n    github: {OWNER}/{repo}\n    service:\n      port: {free_port()}\n"
            f"      image: ghcr.io/{OWNER}/{repo}\n",
        )
    (root / "workspace").mkdir()
    (root / "workspace" / "workspace.yaml").write_text(text)
    return root / "workspace" / "workspace.yaml"


def test_ws_repo_files_writes_the_checkouts_and_opens_linked_pull_requests(
    github_workspace: Path, fake: FakeGitHub
) -> None:
    workspace = str(outside_workspace(github_workspace, fake))
    env = {"GITHUB_TOKEN": fake.token, **GIT_IDENTITY}
    dry = run_ws("-w", workspace, "repo-files", "--dry-run", "--json", env=env, in_process=True)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert {r["repo"] for r in planned["repos"]} == set(REPO_SCHEMAS)
    assert all(state == "created" for r in planned["repos"] for _, state in r["files"])
    assert not (github_workspace / "app-agents" / ".github").exists()  # a dry run writes nothing

    opened = run_ws("-w", workspace, "repo-files", "--pr", "--json", env=env, in_process=True)
    assert opened.returncode == 0, opened.stderr
    result = json.loads(opened.stdout)
    loaded = load_workspace(Path(workspace))
    for repo, own in repofiles.repo_files(loaded).items():
        for path, content in own.items():
            assert (github_workspace / repo / path).read_text() == content
        # committed on ws/repo-files and pushed to the repo's remote (what GitHub sees)
        bare = github_workspace / "remotes" / f"{repo}.git"
        listed = git_in(bare, "ls-tree", "-r", "--name-only", repofiles.BRANCH).splitlines()
        assert set(own) <= set(listed)
    pulls = result["pull_requests"]
    assert sorted(p["repo"] for p in pulls) == sorted(REPO_SCHEMAS)
    assert all(p["number"] for p in pulls)

    again = run_ws("-w", workspace, "repo-files", "--json", env=env, in_process=True)
    assert {state for r in json.loads(again.stdout)["repos"] for _, state in r["files"]} == {"unchanged"}

    (github_workspace / "app-agents" / "wip.txt").write_text("wip\n")
    refused = run_ws("-w", workspace, "repo-files", "--pr", env=env, in_process=True)
    assert refused.returncode == 2 and "uncommitted changes in app-agents" in refused.stderr


@pytest.mark.slow
def test_the_integration_check_runs_the_workspace_on_the_runner(
    tmp_path: Path, fresh_database: str, postgres_url: str, redis_url: str
) -> None:
    """app-agents' pull request on branch feature/x, which saas-spec-driven-development also carries: the check
    clones the coordination repository and the siblings (each at feature/x where it exists, else main), brings the
    workspace up, runs every repo's integration tests and takes it down."""
    runner_dir = tmp_path / "runner"
    git = tmp_path / "git"
    sources = tmp_path / "sources"
    coordination = sources / "workspace"
    coordination.mkdir(parents=True)
    for item in EXAMPLES.iterdir():
        if item.name in (*REPOS, "common", ".ws", ".github", "actions"):
            continue
        (
            shutil.copytree(item, coordination / item.name, ignore=IGNORED)
            if item.is_dir()
            else shutil.copy(item, coordination)
        )
    shutil.copytree(EXAMPLES / "common", runner_dir / "common", ignore=IGNORED)  # the example services' helper
    text = (EXAMPLES / "workspace.yaml").read_text()
    for repo in REPOS:
        text = text.replace(f"    path: {repo}\n", "")
    for port in EXAMPLE_PORTS:
        text = text.replace(f"port: {port}\n", f"port: {free_port()}\n")
    text = text.replace("  name: example_ecosystem\n", f"  name: {database_name(fresh_database)}\n")
    branch = "feature/x"
    with FakeGitHub() as github:
        text = text.replace("  repo: workspace\n", f"  repo: workspace\n  api_url: {github.api_url}\n", 1)
        (coordination / "workspace.yaml").write_text(text)
        generated = run_ws("generate", cwd=coordination)
        assert generated.returncode == 0, generated.stdout + generated.stderr
        loaded = load_workspace(coordination / "workspace.yaml")
        own_files = repofiles.repo_files(loaded)
        for name in ("workspace", *REPOS):
            source = sources / name if name == "workspace" else sources / name
            if name != "workspace":
                shutil.copytree(EXAMPLES / name, source, ignore=IGNORED)
                for path, content in own_files[name].items():  # as `ws repo-files` writes them
                    (source / path).parent.mkdir(parents=True, exist_ok=True)
                    (source / path).write_text(content)
            git_in(source, "init", "-q", "-b", "main")
            git_in(source, "add", "-A")
            git_in(source, "commit", "-q", "-m", f"{name} on main")
            if name in ("app-agents", "saas-spec-driven-development"):
                git_in(source, "checkout", "-q", "-b", branch)
                (source / "CHANGE.md").write_text("the change\n")
                git_in(source, "add", "CHANGE.md")
                git_in(source, "commit", "-q", "-m", "the change")
            git_in(tmp_path, "clone", "-q", "--bare", str(source), str(git / f"{name}.git"))
            github.add_repo(f"example-ecosystem/{name}", git / f"{name}.git")
        # the pull request's working copy: app-agents at feature/x, where the runner starts
        git_in(tmp_path, "clone", "-q", "--branch", branch, str(git / "app-agents.git"), str(runner_dir / "app-agents"))

        secrets = {"WS_CHECKOUT_TOKEN": github.token}
        machine = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "WS_WORKSPACE")}
        # the runner machine's own services stand in for the embedded ones ws would start
        machine.update({"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "GITHUB_API_URL": github.api_url})
        runner = LocalRunner(
            runner_dir / "app-agents",
            workdir=runner_dir,
            env=machine,
            secrets=secrets,
            remote=str(git / "{name}.git"),
            github={"repository": "example-ecosystem/app-agents", "event_name": "pull_request", "head_ref": branch},
        )
        try:
            result = runner.run_workflow(repofiles.INTEGRATION_WORKFLOW)
        finally:
            run_ws(
                "down",
                "--env",
                "local",
                cwd=runner_dir / "workspace",
                env={"DATABASE_URL": postgres_url, "REDIS_URL": redis_url},
            )
    job = result.jobs["integration"]
    assert job.result == "success", job.log
    assert job.environment == "workspace-pr"
    log = job.log
    assert "example-ecosystem/saas-spec-driven-development: checked at feature/x" in log
    assert "example-ecosystem/saas-ecosystem-architecture: checked at main" in log
    assert "example-ecosystem/workspace: checked at main" in log
    assert (runner_dir / "saas-spec-driven-development" / "CHANGE.md").is_file()
    assert not (runner_dir / "saas-ecosystem-architecture" / "CHANGE.md").exists()
    outcomes = {step.name: step.outcome for step in job.steps}
    assert outcomes["Run every repo's integration tests against the running services"] == "success"
    assert outcomes["Stop the workspace"] == "success"
    assert github.token not in log
