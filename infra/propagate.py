"""`ws schema propagate`: turn a change of the primary's schema into reviewed, linked PRs in the secondaries.

For each secondary whose copies differ: create a branch (from its default branch), apply what ``ws schema sync``
would write (infra.schema.sync.plan_sync / apply_edits) and the regenerated shared types
(infra.schema.export.export_types, written under ``shared-database-types/`` of the secondary; or, when
workspace.yaml's ``types.package`` publishes them, the exact new version in its package.json and, when it has
one, in its package-lock.json with the packed package's integrity), commit, push,
then open linked PRs (infra.github.prs) that request review from the maintainers of every repo: a schema
change needs all of them. ``dry_run`` computes the same plan (diffs and PR plan) and changes nothing.

The plan reads each secondary at the commit the branch will start from (git objects, not the working tree),
and the primary from its checkout, whose schema change must be committed so the PRs can name its commit.

This module orchestrates two areas (infra.schema and infra.github, which do not import each other), so it sits in
the layer above them, beside infra.checks and infra.generate.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import UsageError
from infra.github.client import GitHub
from infra.github.git import Checkout
from infra.github.prs import PullRecord, open_pulls
from infra.schema import export, sync, types_package
from infra.schema.load import LocalReader, Reader
from infra.schema.sync import FileEdit
from infra.workspace.located import LoadedWorkspace

TYPES_DIR = "shared-database-types"
Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


@dataclass(frozen=True)
class GitRefReader:
    """A repo's files at a git ref of its checkout (an infra.schema.load.Reader)."""

    checkout: Checkout
    ref: str

    def read(self, path: str) -> str | None:
        result = self.checkout.run("cat-file", "blob", f"{self.ref}:{path}", check=False)
        return result.stdout if result.returncode == 0 else None

    def list_prisma(self, path: str) -> list[str] | None:
        kind = self.checkout.run("cat-file", "-t", f"{self.ref}:{path}", check=False).stdout.strip()
        if kind != "tree":
            return None
        names = self.checkout.out("ls-tree", "-r", "--name-only", self.ref, "--", path).splitlines()
        return sorted(n for n in names if n.endswith(".prisma"))

    def display(self, path: str) -> str:
        return f"{self.checkout.repo}@{self.ref}:{path}"


@dataclass
class RepoPlan:
    repo: str
    base: str  # the ref the branch starts from (or the existing branch on a re-run)
    edits: list[FileEdit] = field(default_factory=list)
    commit: str | None = None
    pushed: bool = False

    @property
    def files(self) -> list[str]:
        return [e.path for e in self.edits]

    def diff(self) -> str:
        return "".join(e.diff() for e in self.edits)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "base": self.base,
            "files": self.files,
            "diff": self.diff(),
            "commit": self.commit,
            "pushed": self.pushed,
        }


@dataclass
class Propagation:
    primary: str
    primary_sha: str
    branch: str
    title: str
    reviewers: list[str]
    repos: list[RepoPlan]
    types: str  # what happened to the shared types (or why not)
    dry_run: bool
    pulls: list[PullRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "primary_sha": self.primary_sha,
            "branch": self.branch,
            "title": self.title,
            "reviewers": self.reviewers,
            "types": self.types,
            "dry_run": self.dry_run,
            "repos": [r.as_dict() for r in self.repos],
            "pull_requests": [p.as_dict() for p in self.pulls],
        }


def all_maintainers(loaded: LoadedWorkspace) -> list[str]:
    """Every repo's maintainers, once each, in workspace.yaml order: schema changes need all of them."""
    seen: list[str] = []
    for repo in loaded.model.repos.values():
        for login in repo.maintainers:
            if login not in seen:
                seen.append(login)
    return seen


def secondaries(loaded: LoadedWorkspace, repos: Sequence[str] | None) -> list[str]:
    primary = loaded.model.primary
    names = [
        name
        for name, repo in loaded.model.repos.items()
        if name != primary and repo.schema_ is not None and repo.schema_.extends == primary
    ]
    if repos:
        unknown = [r for r in repos if r not in names]
        if unknown:
            raise UsageError(f"--repos: {', '.join(unknown)} do not extend the primary's schema ({primary})")
        names = [n for n in names if n in repos]
    return names


def _base(checkout: Checkout, branch: str, default: str) -> str:
    if checkout.has_branch(branch):
        return branch
    if checkout.has_branch(default):
        return default
    if checkout.has_ref(f"origin/{default}"):
        return f"origin/{default}"
    raise UsageError(f"{checkout.repo}: default branch {default!r} not found in {checkout.path}; fetch it")


def plan(
    loaded: LoadedWorkspace,
    *,
    branch: str | None = None,
    title: str | None = None,
    repos: Sequence[str] | None = None,
    types_dir: str | None = TYPES_DIR,
) -> Propagation:
    """What propagate would do: per secondary, the files it rewrites (as diffs), and the PR plan."""
    model = loaded.model
    primary = model.primary
    primary_checkout = Checkout(primary, loaded.repo_dir(primary))
    if not primary_checkout.exists():
        raise UsageError(f"the primary {primary} is not checked out at {primary_checkout.path}; clone it there")
    schema = model.repos[primary].schema_
    if schema is None:
        raise UsageError(f"the primary {primary} declares no schema in workspace.yaml")
    pending = primary_checkout.run("status", "--porcelain", "--", schema.prisma).stdout.strip()
    if pending:
        raise UsageError(
            f"{primary}: the schema change in {schema.prisma} is not committed; commit it first so the"
            " secondaries' pull requests can name its commit"
        )
    primary_sha = primary_checkout.sha("HEAD")
    current = primary_checkout.current_branch()
    if branch is None:
        on_feature = current is not None and current != model.repos[primary].default_branch
        branch = current if on_feature and current else f"schema/sync-{primary_sha[:7]}"
    names = secondaries(loaded, repos)
    missing = [f"{n} ({loaded.repo_dir(n)})" for n in names if not Checkout(n, loaded.repo_dir(n)).exists()]
    if missing:
        raise UsageError(f"not checked out: {', '.join(missing)}; clone them or pass --repos")
    readers: dict[str, Reader] = {primary: LocalReader(primary_checkout.path)}
    plans: dict[str, RepoPlan] = {}
    for name in names:
        checkout = Checkout(name, loaded.repo_dir(name))
        base = _base(checkout, branch, model.repos[name].default_branch)
        readers[name] = GitRefReader(checkout, base)
        plans[name] = RepoPlan(name, base)
    for name in model.repos:
        readers.setdefault(name, LocalReader(loaded.repo_dir(name)))
    edits = sync.plan_sync(loaded, lambda repo: readers[repo], repos=names)
    for edit in edits:
        plans[edit.repo].edits.append(edit)
    types = "not exported (--no-types)"
    if types_dir is not None and model.types is not None:
        types = _plan_package_bump(loaded, plans, readers)
    elif types_dir is not None:
        types = _plan_types(loaded, plans, readers, types_dir)
    title = title or f"Sync shared schema from {primary}@{primary_sha[:7]}"
    return Propagation(primary, primary_sha, branch, title, all_maintainers(loaded), list(plans.values()), types, True)


def _plan_types(loaded: LoadedWorkspace, plans: dict[str, RepoPlan], readers: dict[str, Reader], types_dir: str) -> str:
    files = export.export_types(loaded)
    for name, repo_plan in plans.items():
        for relative, text in sorted(files.items()):
            path = posixpath.join(types_dir, relative)
            old = readers[name].read(path)
            if old != text:
                repo_plan.edits.append(FileEdit(name, path, old, text))
    return f"{len(files)} file(s) under {types_dir}/ in each secondary"


def _plan_package_bump(loaded: LoadedWorkspace, plans: dict[str, RepoPlan], readers: dict[str, Reader]) -> str:
    """``types.package`` set: each secondary's package.json depends on the exact version of this schema, and its
    package-lock.json (when it has one) locks that version with the integrity of the package as ``ws schema
    package`` packs it (built once, in a temporary folder)."""
    settings = types_package.settings(loaded)
    version = types_package.version_of(loaded)
    packed: list[types_package.LockedPackage] = []
    locks = 0
    for name, repo_plan in plans.items():
        reader = readers[name]
        manifest = None
        for path, edit in (("package.json", types_package.bump_dependency), (".npmrc", types_package.scope_npmrc)):
            old = reader.read(path)
            new = edit(old, settings, name, reader.display(path), version)
            if path == "package.json":
                manifest = new
            if new is not None and new != old:
                repo_plan.edits.append(FileEdit(name, path, old, new))
        for path in types_package.LOCKFILES:
            old = reader.read(path)
            if old is None or manifest is None:
                continue
            if not packed:
                packed.append(_pack(loaded, version, reader.display(path)))
            new = types_package.bump_lockfile(old, settings, reader.display(path), manifest, packed[0])
            locks += 1
            if new != old:
                repo_plan.edits.append(FileEdit(name, path, old, new))
    locked = f"; {locks} lockfile(s) lock it (integrity {packed[0].integrity[:19]}...)" if packed else ""
    return f"package.json depends on {settings.package}@{version} in each secondary{locked}"


def _pack(loaded: LoadedWorkspace, version: str, lockfile: str) -> types_package.LockedPackage:
    """The lock entry of the types package as ``ws schema package --pack`` builds it (what the release publishes)."""
    with tempfile.TemporaryDirectory(prefix="ws-types-") as folder:
        try:
            built = types_package.build(loaded, Path(folder) / "package", pack=True)
        except UsageError as exc:
            raise UsageError(
                f"{lockfile} locks the types package, and its new integrity needs the packed package: {exc}"
                " (or pass --no-types)"
            ) from None
        assert built.tarball is not None and built.version == version
        return types_package.locked_package(built.tarball, built.version)


def body_of(result: Propagation) -> str:
    lines = [
        f"Schema change of **{result.primary}** at `{result.primary_sha[:12]}`, carried to the secondaries by"
        " `ws schema propagate`:",
        "",
        "- `ws schema sync`: the secondaries' copies of the shared models and enums, prisma.config.ts external lists",
        f"- the regenerated shared types ({result.types})",
        "",
        "Schema changes need a review from the maintainers of every repo of the workspace.",
    ]
    return "\n".join(lines)


def propagate(
    loaded: LoadedWorkspace,
    github: GitHub | None,
    *,
    branch: str | None = None,
    title: str | None = None,
    repos: Sequence[str] | None = None,
    types_dir: str | None = TYPES_DIR,
    dry_run: bool = False,
    progress: Progress = _quiet,
) -> Propagation:
    """Apply the plan: branch, sync, types, commit, push per secondary; then linked PRs with all maintainers."""
    result = plan(loaded, branch=branch, title=title, repos=repos, types_dir=types_dir)
    result.dry_run = dry_run
    if dry_run:
        return result
    if github is None:
        raise UsageError("ws schema propagate opens pull requests: set GITHUB_TOKEN (or use --dry-run)")
    touched = [p for p in result.repos if p.edits or p.base == result.branch]
    dirty = [
        f"{p.repo} ({', '.join(files[:3])})"
        for p in touched
        if (files := Checkout(p.repo, loaded.repo_dir(p.repo)).dirty_files())
    ]
    if dirty:
        raise UsageError(f"uncommitted changes in {'; '.join(dirty)}; commit or stash them first")
    message = (
        f"Sync shared schema from {result.primary}@{result.primary_sha[:7]}\n\n"
        "Applied by `ws schema propagate`: `ws schema sync` and the regenerated shared types."
    )
    for repo_plan in touched:
        checkout = Checkout(repo_plan.repo, loaded.repo_dir(repo_plan.repo))
        if checkout.has_branch(result.branch):
            checkout.checkout(result.branch)
        else:
            checkout.create_branch(result.branch, repo_plan.base)
        if repo_plan.edits:
            sync.apply_edits(loaded, repo_plan.edits)
            repo_plan.commit = checkout.commit_all(message, repo_plan.files)
            progress(f"{repo_plan.repo}: committed {len(repo_plan.files)} file(s) on {result.branch}")
        checkout.push(result.branch)
        repo_plan.pushed = True
        progress(f"{repo_plan.repo}: pushed {result.branch}")
    if touched:
        result.pulls = open_pulls(
            loaded,
            github,
            result.branch,
            result.title,
            None,
            repos=[result.primary, *(p.repo for p in touched)],
            reviewers=result.reviewers,
            body_for_new=body_of(result),
            update_title=False,
            progress=progress,
        )
    return result
