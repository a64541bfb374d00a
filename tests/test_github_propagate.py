"""`ws schema propagate`: a primary schema change becomes synced, committed, pushed, reviewed PRs in the secondaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import propagate
from infra.errors import UsageError
from infra.github import prs
from infra.github.client import GitHub
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.fake_github import FakeGitHub
from tests.helpers import run_ws
from tests.workspace_builder import GIT_IDENTITY, OWNER, REPO_SCHEMAS, commit_file, git_in

PRIMARY, AGENTS, SPECS = "saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development"
ENV = {**GIT_IDENTITY, "GITHUB_TOKEN": "test-token"}
TYPES = [
    "shared-database-types/python/cross_repository_metrics.py",
    "shared-database-types/python/shared_database_types.py",
    "shared-database-types/typescript/index.ts",
    "shared-database-types/typescript/metrics.ts",
    "shared-database-types/typescript/package.json",
    "shared-database-types/typescript/tsconfig.json",
]


@pytest.fixture
def root(github_workspace: Path) -> Path:
    """The workspace after a committed, pushed change of the primary's schema on branch feat-schema."""
    tmp_path = github_workspace
    primary = tmp_path / PRIMARY
    schema = REPO_SCHEMAS[PRIMARY]
    text = (primary / schema).read_text()
    assert "model Agent {\n" in text
    git_in(primary, "checkout", "-q", "-b", "feat-schema")
    commit_file(primary, schema, text.replace("model Agent {\n", "model Agent {\n  nickname String?\n", 1), "nickname")
    git_in(primary, "push", "-q", "origin", "feat-schema")
    return tmp_path


def loaded_of(root: Path) -> LoadedWorkspace:
    return load_workspace(root / "workspace.yaml")


def test_dry_run_prints_the_diffs_and_the_plan_and_changes_nothing(root: Path, fake: FakeGitHub) -> None:
    before = {repo: git_in(root / repo, "rev-parse", "HEAD") for repo in (AGENTS, SPECS)}
    plan = propagate.propagate(loaded_of(root), None, dry_run=True)
    assert plan.branch == "feat-schema"  # the primary's feature branch
    assert plan.reviewers == ["acme/platform", "alice", "bob", "acme/specs"]
    by_repo = {p.repo: p for p in plan.repos}
    assert by_repo[AGENTS].files == [REPO_SCHEMAS[AGENTS], *TYPES]
    assert by_repo[SPECS].files == [REPO_SCHEMAS[SPECS], *TYPES]
    assert f"+++ b/{AGENTS}/{REPO_SCHEMAS[AGENTS]}" in by_repo[AGENTS].diff()
    assert "+  nickname       String?" in by_repo[AGENTS].diff()
    assert "nickname: str | None = None" in by_repo[SPECS].diff()
    assert {repo: git_in(root / repo, "rev-parse", "HEAD") for repo in (AGENTS, SPECS)} == before
    assert all(git_in(root / repo, "branch", "--show-current") == "main" for repo in (AGENTS, SPECS))
    assert fake.requests == []


def test_propagate_opens_linked_prs_reviewed_by_every_maintainer(root: Path, fake: FakeGitHub) -> None:
    loaded = loaded_of(root)
    result = propagate.propagate(loaded, GitHub(fake.api_url, fake.token))
    primary_sha = git_in(root / PRIMARY, "rev-parse", "HEAD")
    for repo in (AGENTS, SPECS):
        assert git_in(root / repo, "branch", "--show-current") == "feat-schema"
        assert git_in(root / repo, "status", "--porcelain") == ""
        log = git_in(root / repo, "log", "-1", "--format=%s")
        assert log == f"Sync shared schema from {PRIMARY}@{primary_sha[:7]}"
        bare = root / "remotes" / f"{repo}.git"
        assert git_in(bare, "rev-parse", "feat-schema") == git_in(root / repo, "rev-parse", "HEAD")
        assert "nickname String?" in (root / repo / REPO_SCHEMAS[repo]).read_text().replace("       ", " ")
        assert (root / repo / TYPES[0]).is_file()
    # After propagating, `ws schema sync` has nothing left to do on the branch.
    from infra.schema import sync

    assert sync.plan_sync(loaded) == []
    # One PR per repo, the primary first; every one links the other two and asks all maintainers.
    assert [(p.repo, p.action, p.number) for p in result.pulls] == [
        (PRIMARY, "opened", 1),
        (AGENTS, "opened", 1),
        (SPECS, "opened", 1),
    ]
    title = f"Sync shared schema from {PRIMARY}@{primary_sha[:7]}"
    posts = [(r.path, r.body) for r in fake.requests if r.method == "POST"]
    body = propagate.body_of(result)
    for repo in (PRIMARY, AGENTS, SPECS):
        assert (
            f"/repos/{OWNER}/{repo}/pulls",
            {"title": title, "body": body, "base": "main", "head": "feat-schema"},
        ) in posts
        assert (
            f"/repos/{OWNER}/{repo}/pulls/1/requested_reviewers",
            {"reviewers": ["alice", "bob"], "team_reviewers": ["platform", "specs"]},
        ) in posts
        pull = fake.pull(f"{OWNER}/{repo}", 1)
        assert pull["body"].count(prs.BLOCK_START) == 1
        assert f"1. {OWNER}/{PRIMARY}#1" in pull["body"]
        assert pull["reviewers"] == ["alice", "bob"] and pull["teams"] == ["platform", "specs"]

    # Re-running finds nothing to change: no new commit, no duplicate PR.
    heads = {repo: git_in(root / repo, "rev-parse", "HEAD") for repo in (AGENTS, SPECS)}
    fake.requests.clear()
    again = propagate.propagate(loaded_of(root), GitHub(fake.api_url, fake.token))
    assert all(p.edits == [] for p in again.repos)
    assert {repo: git_in(root / repo, "rev-parse", "HEAD") for repo in (AGENTS, SPECS)} == heads
    assert not [r for r in fake.requests if r.method == "POST" and r.path.endswith("/pulls")]
    assert all(len(fake.repos[f"{OWNER}/{repo}"].pulls) == 1 for repo in (PRIMARY, AGENTS, SPECS))


def test_an_uncommitted_primary_change_is_refused(root: Path) -> None:
    schema = root / PRIMARY / REPO_SCHEMAS[PRIMARY]
    schema.write_text(schema.read_text() + "\n// more\n")
    with pytest.raises(UsageError, match="is not committed; commit it first"):
        propagate.plan(loaded_of(root))


def test_a_dirty_secondary_is_refused_before_anything_changes(root: Path, fake: FakeGitHub) -> None:
    (root / AGENTS / "scratch.txt").write_text("x")
    with pytest.raises(UsageError, match=r"uncommitted changes in app-agents \(scratch.txt\)"):
        propagate.propagate(loaded_of(root), GitHub(fake.api_url, fake.token))
    assert git_in(root / SPECS, "branch", "--show-current") == "main"
    assert fake.requests == []


def test_cli_dry_run_and_json(root: Path, fake: FakeGitHub) -> None:
    workspace = str(root / "workspace.yaml")
    result = run_ws(
        "-w", workspace, "schema", "propagate", "--dry-run", "--no-types", env={"GITHUB_TOKEN": ""}, in_process=True
    )
    assert result.returncode == 0, result.stderr
    assert f"+++ b/{AGENTS}/{REPO_SCHEMAS[AGENTS]}" in result.stdout
    assert "shared-database-types" not in result.stdout
    assert "types: not exported (--no-types)" in result.stdout
    assert "reviewers: acme/platform, alice, bob, acme/specs" in result.stdout
    as_json = run_ws("-w", workspace, "schema", "propagate", "--dry-run", "--json", "--repos", SPECS, in_process=True)
    data = json.loads(as_json.stdout)
    assert [r["repo"] for r in data["repos"]] == [SPECS] and data["dry_run"] is True
    assert fake.requests == []
    wrong = run_ws("-w", workspace, "schema", "propagate", "--dry-run", "--repos", PRIMARY, in_process=True)
    assert wrong.returncode == 2 and "do not extend the primary's schema" in wrong.stderr


def test_end_to_end_propagate_then_the_remote_check_is_aligned(root: Path, fake: FakeGitHub) -> None:
    """`ws schema check --ref` reads every repo through the contents API; `ws schema propagate` fixes it."""
    workspace = str(root / "workspace.yaml")
    env = {**GIT_IDENTITY, "GITHUB_TOKEN": fake.token}
    missing = run_ws("-w", workspace, "schema", "check", "--ref", "feat-schema", env=env, in_process=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"error: GitHub: {OWNER}/{AGENTS}: no branch, tag or commit 'feat-schema' (repo {AGENTS}); push it or check --ref"
    )
    done = run_ws("-w", workspace, "schema", "propagate", "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [(p["repo"], p["action"]) for p in data["pull_requests"]] == [
        (PRIMARY, "opened"),
        (AGENTS, "opened"),
        (SPECS, "opened"),
    ]
    assert f"{AGENTS}: pushed feat-schema" in done.stderr  # progress on stderr
    fake.requests.clear()
    check = run_ws("-w", workspace, "schema", "check", "--ref", "feat-schema", "--json", env=env, in_process=True)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True
    reads = {(r.path, r.query.get("ref")) for r in fake.requests if "/contents/" in r.path}
    for repo in (PRIMARY, AGENTS, SPECS):
        assert (f"/repos/{OWNER}/{repo}/contents/{REPO_SCHEMAS[repo]}", "feat-schema") in reads


def test_a_change_on_the_default_branch_gets_a_sync_branch(root: Path) -> None:
    primary = root / PRIMARY
    git_in(primary, "checkout", "-q", "main")
    git_in(primary, "merge", "-q", "--ff-only", "feat-schema")
    plan = propagate.plan(loaded_of(root))
    sha = git_in(primary, "rev-parse", "HEAD")
    assert plan.branch == f"schema/sync-{sha[:7]}"
    assert plan.title == f"Sync shared schema from {PRIMARY}@{sha[:7]}"
    assert {p.repo: p.base for p in plan.repos} == {AGENTS: "main", SPECS: "main"}
    assert all(p.edits for p in plan.repos)


def test_with_a_types_package_propagate_bumps_the_dependency_instead_of_copying(root: Path, fake: FakeGitHub) -> None:
    from infra.schema import types_package

    workspace = root / "workspace.yaml"
    workspace.write_text(workspace.read_text() + 'types:\n  package: "@acme/shared-database-types"\n')
    agents_manifest = {
        "name": "app-agents",
        "version": "1.0.0",
        "dependencies": {"@acme/shared-database-types": "0.1.0-schema-000000000000", "zod": "3.23.8"},
        "scripts": {"start": "node server.js"},
    }
    commit_file(root / AGENTS, "package.json", json.dumps(agents_manifest, indent=4) + "\n", "manifest")
    commit_file(root / AGENTS, ".npmrc", "engine-strict=true\n", "npmrc")
    loaded = loaded_of(root)
    version = types_package.version_of(loaded)
    result = propagate.propagate(loaded, GitHub(fake.api_url, fake.token))
    assert result.types == f"package.json depends on @acme/shared-database-types@{version} in each secondary"
    for repo in (AGENTS, SPECS):
        assert not (root / repo / "shared-database-types").exists()  # no copied files
        manifest = json.loads((root / repo / "package.json").read_text())
        assert manifest["dependencies"]["@acme/shared-database-types"] == version
        assert "@acme:registry=https://npm.pkg.github.com" in (root / repo / ".npmrc").read_text().splitlines()
        assert git_in(root / repo, "status", "--porcelain") == ""
    # the existing manifest keeps its keys, order, other dependencies and indentation; .npmrc keeps its lines
    text = (root / AGENTS / "package.json").read_text()
    assert list(json.loads(text)) == ["name", "version", "dependencies", "scripts"]
    assert json.loads(text)["dependencies"]["zod"] == "3.23.8" and '\n    "name": "app-agents"' in text
    assert (root / AGENTS / ".npmrc").read_text().startswith("engine-strict=true\n")
    # the version is the primary's new schema: before its change (main) the types had another version
    git_in(root / PRIMARY, "checkout", "-q", "main")
    assert types_package.version_of(loaded_of(root)) != version
