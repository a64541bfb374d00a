"""`ws schema propagate`: a primary schema change becomes synced, committed, pushed, reviewed PRs in the secondaries."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from infra import propagate
from infra.errors import UsageError
from infra.github import prs
from infra.github.client import GitHub
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.background_http import BackgroundHTTPServer
from tests.fake_github import FakeGitHub
from tests.fixtures.prisma.nodetools import node_modules
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


class NpmRegistry:
    """A loopback npm registry standing in for GitHub Packages (which tests cannot reach): the packument of each
    package it holds (GET /@scope%2fname) and the tarballs (GET /download/@scope/name/VERSION/FILE)."""

    def __init__(self) -> None:
        self.tarballs: dict[str, dict[str, Path]] = {}  # package -> version -> tarball
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                registry.requests.append(self.path)
                path = unquote(self.path.split("?", 1)[0]).lstrip("/")
                if path.startswith("download/"):
                    package, version, _ = path[len("download/") :].rsplit("/", 2)
                    found = registry.tarballs.get(package, {}).get(version)
                    body = found.read_bytes() if found else None
                    kind = "application/octet-stream"
                elif path in registry.tarballs:
                    body, kind = json.dumps(registry.packument(path)).encode(), "application/json"
                else:
                    body = None
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = BackgroundHTTPServer(Handler).start()
        self.url = f"http://127.0.0.1:{self.server.port}/"

    def publish(self, package: str, tarball: Path, version: str) -> None:
        self.tarballs.setdefault(package, {})[version] = tarball

    def packument(self, package: str) -> dict[str, Any]:
        versions = {}
        for version, tarball in self.tarballs[package].items():
            data = tarball.read_bytes()
            versions[version] = {
                "name": package,
                "version": version,
                "license": "UNLICENSED",
                "dist": {
                    "tarball": f"{self.url}download/{package}/{version}/{tarball.name}",
                    "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
                    "shasum": hashlib.sha1(data).hexdigest(),
                },
            }
        return {"name": package, "versions": versions, "dist-tags": {"latest": max(versions)}}

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def npm_registry() -> Iterator[NpmRegistry]:
    registry = NpmRegistry()
    yield registry
    registry.close()


def npm(folder: Path, *args: str, registry: NpmRegistry) -> subprocess.CompletedProcess[str]:
    """npm in ``folder`` with the scope sent to the loopback registry (and no other registry used)."""
    command = [shutil.which("npm") or "npm", *args, f"--@acme:registry={registry.url}", "--ignore-scripts"]
    command += ["--no-audit", "--no-fund", "--registry=http://127.0.0.1:9/"]  # nothing else may come from a registry
    env = {**os.environ, "NODE_AUTH_TOKEN": "unused"}
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("lockfile_version", [2, 3])
def test_propagate_locks_the_new_types_version_in_package_lock(
    root: Path,
    fake: FakeGitHub,
    npm_registry: NpmRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lockfile_version: int,
) -> None:
    """Found by review: propagate bumped package.json but left package-lock.json at the old version, so `npm ci` on
    the propagate branch refused to install (package.json and the lockfile out of sync)."""
    from infra.schema import types_package

    monkeypatch.setenv("WS_TSC", str(node_modules() / ".bin" / "tsc"))
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    package = "@acme/shared-database-types"
    workspace = root / "workspace.yaml"
    workspace.write_text(workspace.read_text() + f'types:\n  package: "{package}"\n')
    # the version the secondary locks today: the types of the primary's main, published
    git_in(root / PRIMARY, "checkout", "-q", "main")
    old = types_package.build(loaded_of(root), tmp_path / "old", pack=True)
    git_in(root / PRIMARY, "checkout", "-q", "feat-schema")
    assert old.tarball is not None
    npm_registry.publish(package, old.tarball, old.version)
    agents = root / AGENTS
    (agents / "libs" / "local-utils").mkdir(parents=True)
    (agents / "libs" / "local-utils" / "package.json").write_text('{"name": "local-utils", "version": "1.0.0"}\n')
    dependencies = {package: old.version, "local-utils": "file:libs/local-utils"}
    manifest = {"name": AGENTS, "version": "1.0.0", "dependencies": dependencies}
    (agents / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    locked = npm(agents, "install", "--package-lock-only", f"--lockfile-version={lockfile_version}",
                 "--omit-lockfile-registry-resolved=false", registry=npm_registry)  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    before = json.loads((agents / "package-lock.json").read_text())
    key = f"node_modules/{package}"
    assert before["lockfileVersion"] == lockfile_version and before["packages"][key]["version"] == old.version
    assert before["packages"][key]["resolved"].startswith(npm_registry.url)
    assert ("dependencies" in before) == (lockfile_version == 2)
    git_in(agents, "add", "package.json", "package-lock.json", "libs")
    git_in(agents, "commit", "-q", "-m", "types package locked")

    loaded = loaded_of(root)
    version = types_package.version_of(loaded)
    assert version != old.version
    propagate.propagate(loaded, GitHub(fake.api_url, fake.token))

    assert git_in(agents, "status", "--porcelain") == ""
    committed = set(git_in(agents, "show", "--name-only", "--format=", "HEAD").splitlines())
    assert committed == {REPO_SCHEMAS[AGENTS], ".npmrc", "package-lock.json", "package.json"}
    after = json.loads((agents / "package-lock.json").read_text())
    assert after["packages"][key]["version"] == version, "package-lock.json still locks the old version"
    new = types_package.build(loaded, tmp_path / "new", pack=True)  # what the release publishes
    assert new.tarball is not None and new.version == version
    integrity = types_package.locked_package(new.tarball, version).integrity
    assert after["packages"][key] == {"version": version, "integrity": integrity, "license": "UNLICENSED"}
    assert after["packages"][""]["dependencies"][package] == version
    if lockfile_version == 2:
        assert after["dependencies"][package] == {"version": version, "integrity": integrity}
    # every other entry and key is as npm wrote it
    for lock in (before, after):
        del lock["packages"][key], lock["packages"][""]["dependencies"][package]
        lock.get("dependencies", {}).pop(package, None)
    assert after == before
    assert not (root / SPECS / "package-lock.json").exists()  # a repo without a lockfile gets none

    # npm agrees: the lockfile matches package.json, and `npm ci` installs the published tarball (integrity checked)
    npm_registry.publish(package, new.tarball, version)
    listed = npm(agents, "ls", "--package-lock-only", registry=npm_registry)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    installed = npm(agents, "ci", registry=npm_registry)
    assert installed.returncode == 0, installed.stderr
    unpacked = json.loads((agents / "node_modules" / package / "package.json").read_text())
    assert unpacked["version"] == version
    assert any(path.endswith(new.tarball.name) for path in npm_registry.requests)


def test_lockfile_bump_adds_a_missing_entry_in_order_and_keeps_a_v1_lockfile() -> None:
    """What npm would write when the package is new to the lockfile (a devDependency here), and lockfile v1."""
    from infra.schema import types_package
    from infra.workspace.model import TypesPackage

    types = TypesPackage(package="@acme/shared-database-types")
    locked = types_package.LockedPackage("0.1.0-schema-0123456789ab", "sha512-abc==", "UNLICENSED")
    manifest = json.dumps({"name": "a", "devDependencies": {"@acme/shared-database-types": locked.version}})
    v3: dict[str, Any] = {
        "name": "a",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {
            "": {"name": "a", "devDependencies": {"zod": "3.23.8"}},
            "node_modules/@zeta/x": {"version": "1.0.0", "resolved": "https://r/x.tgz", "integrity": "sha512-x"},
            "node_modules/zod": {"version": "3.23.8", "dev": True, "integrity": "sha512-z", "license": "MIT"},
        },
    }
    out = json.loads(
        types_package.bump_lockfile(json.dumps(v3, indent=4), types, "a/package-lock.json", manifest, locked)
    )
    assert list(out["packages"]) == [
        "",
        "node_modules/@acme/shared-database-types",
        "node_modules/@zeta/x",
        "node_modules/zod",
    ]
    assert out["packages"]["node_modules/@acme/shared-database-types"] == {
        "version": locked.version,
        "integrity": locked.integrity,
        "dev": True,
        "license": "UNLICENSED",
    }
    assert out["packages"][""]["devDependencies"] == {"@acme/shared-database-types": locked.version, "zod": "3.23.8"}
    assert {k: v for k, v in out["packages"].items() if k.startswith("node_modules/@z") or k.endswith("zod")} == {
        k: v for k, v in v3["packages"].items() if k != ""
    }
    v1: dict[str, Any] = {
        "name": "a",
        "lockfileVersion": 1,
        "requires": True,
        "dependencies": {
            "@acme/shared-database-types": {"version": "0.1.0-schema-000000000000", "resolved": "https://r/old.tgz",
                                             "integrity": "sha512-old", "dev": True},
            "zod": {"version": "3.23.8", "resolved": "https://r/zod.tgz", "integrity": "sha512-z"},
        },
    }  # fmt: skip
    text = json.dumps(v1, indent=2) + "\n"
    bumped = types_package.bump_lockfile(text, types, "a/package-lock.json", manifest, locked)
    assert bumped.endswith("}\n") and '\n  "name": "a"' in bumped
    assert json.loads(bumped)["dependencies"] == {
        "@acme/shared-database-types": {"version": locked.version, "integrity": locked.integrity, "dev": True},
        "zod": v1["dependencies"]["zod"],
    }
    assert types_package.bump_lockfile(bumped, types, "a/package-lock.json", manifest, locked) == bumped
    with pytest.raises(UsageError, match=r"a/package-lock.json is not valid JSON .*run `npm install`"):
        types_package.bump_lockfile("{", types, "a/package-lock.json", manifest, locked)
