"""A temporary three-repo workspace for the GitHub tests: real git repos whose bare "remotes" back the fake GitHub."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.fake_github import FakeGitHub

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ws test",
    "GIT_AUTHOR_EMAIL": "ws-test@example.invalid",
    "GIT_COMMITTER_NAME": "ws test",
    "GIT_COMMITTER_EMAIL": "ws-test@example.invalid",
}
OWNER = "acme"
REPO_SCHEMAS = {
    "saas-ecosystem-architecture": "admin-app/prisma/schema.prisma",
    "app-agents": "shared/database/schema.prisma",
    "saas-spec-driven-development": "prisma/schema.prisma",
}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def git_in(path: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=path, capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY}
    )
    assert result.returncode == 0, f"git {' '.join(args)} in {path}: {result.stderr}"
    return result.stdout.strip()


def commit_file(checkout: Path, relative: str, text: str, message: str) -> str:
    target = checkout / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    git_in(checkout, "add", "--", relative)
    git_in(checkout, "commit", "-q", "-m", message)
    return git_in(checkout, "rev-parse", "HEAD")


def build_workspace(root: Path, fake: FakeGitHub, maintainers: dict[str, list[str]] | None = None) -> Path:
    """Three real repos (clones of bare "remotes" that also back the fake GitHub) and their workspace.yaml.

    Each repo holds the example workspace's Prisma schema, committed and pushed on main.
    """
    maintainers = maintainers or {
        "saas-ecosystem-architecture": ["acme/platform"],
        "app-agents": ["alice"],
        "saas-spec-driven-development": ["bob", "acme/specs"],
    }
    for repo, schema in REPO_SCHEMAS.items():
        bare = root / "remotes" / f"{repo}.git"
        bare.mkdir(parents=True)
        git_in(bare, "init", "-q", "--bare", "-b", "main")
        checkout = root / repo
        checkout.mkdir()
        git_in(checkout, "init", "-q", "-b", "main")
        git_in(checkout, "remote", "add", "origin", str(bare))
        source = (EXAMPLES / repo / schema).read_text(encoding="utf-8")
        commit_file(checkout, schema, source, "initial schema")
        config = EXAMPLES / repo / "prisma.config.ts"
        if config.is_file():
            commit_file(checkout, "prisma.config.ts", config.read_text(encoding="utf-8"), "prisma config")
        commit_file(checkout, "README.md", f"# {repo}\n", "readme")
        git_in(checkout, "push", "-q", "-u", "origin", "main")
        fake.add_repo(f"{OWNER}/{repo}", bare)
    deps = {
        "saas-ecosystem-architecture": "",
        "app-agents": "    depends_on: [saas-ecosystem-architecture]\n",
        "saas-spec-driven-development": "    depends_on: [saas-ecosystem-architecture]\n",
    }
    shared = {
        "saas-ecosystem-architecture": ("ecosystem", "[Organization, Agent, AgentMemory, AgentTool, AgentStatus]"),
        "app-agents": ("agents", "[Organization, Agent, AgentMemory, AgentTool, AgentStatus]"),
        "saas-spec-driven-development": ("specs", "[Organization, Agent, AgentStatus]"),
    }
    repos = ""
    for repo, schema in REPO_SCHEMAS.items():
        role = "primary" if repo == "saas-ecosystem-architecture" else "secondary"
        extends = "" if role == "primary" else "      extends: saas-ecosystem-architecture\n"
        namespace, models = shared[repo]
        repos += (
            f"  {repo}:\n    github: {OWNER}/{repo}\n    path: {repo}\n    role: {role}\n{deps[repo]}"
            f"    schema:\n      prisma: {schema}\n{extends}      namespace: {namespace}\n"
            f"      shared_models: {models}\n"
            f"    maintainers: [{', '.join(maintainers.get(repo, []))}]\n"
        )
    text = (
        "version: 1\nname: temp-ecosystem\n"
        f"github:\n  owner: {OWNER}\n  repo: workspace\n  api_url: {fake.api_url}\n"
        "environments:\n  local:\n    runtime: local\n  prod:\n    runtime: pulumi\n    protected: true\n"
        "database:\n  name: temp_ecosystem\n"
        f"repos:\n{repos}"
    )
    path = root / "workspace.yaml"
    path.write_text(text, encoding="utf-8")
    return path
