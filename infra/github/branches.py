"""One feature branch across the workspace's repos: create, status matrix, delete (local checkouts and GitHub)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from github3 import exceptions as gh_exceptions

from infra.errors import UsageError
from infra.github.client import GitHub
from infra.github.git import Checkout
from infra.github.reviews import pull_review
from infra.workspace.located import LoadedWorkspace

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


def check_branch_name(name: str) -> str:
    result = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True, text=True)
    if result.returncode != 0 or name.startswith("-"):
        raise UsageError(f"{name!r} is not a valid branch name; use letters, digits, '-', '_', '/' and '.'")
    return name


def selected(loaded: LoadedWorkspace, repos: Sequence[str] | None) -> list[str]:
    return list(repos) if repos else list(loaded.model.repos)


def checkout_of(loaded: LoadedWorkspace, repo: str) -> Checkout:
    return Checkout(repo, loaded.repo_dir(repo))


@dataclass
class BranchAction:
    repo: str
    local: str = "-"  # what happened (or would happen) in the checkout
    remote: str = "-"  # what happened (or would happen) on GitHub

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _summarise(files: list[str]) -> str:
    shown = ", ".join(files[:3])
    return f"{len(files)} changed file(s): {shown}{', ...' if len(files) > 3 else ''}"


def create(
    loaded: LoadedWorkspace,
    name: str,
    repos: Sequence[str] | None = None,
    *,
    start: str | None = None,
    remote: bool = False,
    allow_dirty: bool = False,
    dry_run: bool = False,
    github: GitHub | None = None,
    progress: Progress = _quiet,
) -> list[BranchAction]:
    """Create and check out ``name`` in every selected checkout; with ``remote``, create it on GitHub too.

    Refuses (before changing anything) when a checkout is missing (unless only GitHub is asked for it) or
    has uncommitted changes (unless ``allow_dirty``).
    """
    check_branch_name(name)
    names = selected(loaded, repos)
    actions = {repo: BranchAction(repo) for repo in names}
    missing, dirty, bad_start = [], [], []
    for repo in names:
        checkout = checkout_of(loaded, repo)
        if not checkout.exists():
            if remote:
                actions[repo].local = f"skipped: no checkout at {checkout.path}"
            else:
                missing.append(f"{repo} ({checkout.path})")
            continue
        files = checkout.dirty_files()
        if files and not allow_dirty:
            dirty.append(f"{repo} ({_summarise(files)})")
        base = start or loaded.model.repos[repo].default_branch
        if not checkout.has_branch(name) and not checkout.has_ref(base) and not checkout.has_ref(f"origin/{base}"):
            bad_start.append(f"{repo} (no {base!r})")
    if missing:
        raise UsageError(
            f"no checkout for {', '.join(missing)}; clone it there, set repos.<name>.path in workspace.yaml,"
            " or pass --remote to create the branch on GitHub only"
        )
    if dirty:
        raise UsageError(
            f"refusing to switch branches with uncommitted changes in {'; '.join(dirty)}; commit or stash them,"
            " or pass --allow-dirty"
        )
    if bad_start:
        raise UsageError(f"--from: start point not found in {', '.join(bad_start)}; fetch it or pick another")
    for repo in names:
        checkout = checkout_of(loaded, repo)
        if not checkout.exists():
            continue
        base = start or loaded.model.repos[repo].default_branch
        if not checkout.has_ref(base):
            base = f"origin/{base}"
        if checkout.has_branch(name):
            actions[repo].local = "exists; checked out" if not dry_run else "exists; would check out"
            if not dry_run:
                checkout.checkout(name)
        else:
            actions[repo].local = (
                f"created from {base}; checked out" if not dry_run else f"would create from {base} and check out"
            )
            if not dry_run:
                checkout.create_branch(name, base)
        progress(f"{repo}: {actions[repo].local}")
    if remote:
        if github is None:
            raise UsageError("--remote needs GITHUB_TOKEN")
        for repo in names:
            actions[repo].remote = create_remote(loaded, github, repo, name, start, dry_run)
            progress(f"{repo}: GitHub {actions[repo].remote}")
    return list(actions.values())


def remote_sha(github: GitHub, full_name: str, branch: str) -> str | None:
    """The SHA a branch points at on GitHub, or None when the branch does not exist there."""
    repository = github.repo(full_name)
    with github.call(f"read branch {branch} of {full_name}"):
        try:
            ref = repository.ref(f"heads/{branch}")
        except gh_exceptions.NotFoundError:
            return None
    return str(ref.object.sha) if ref is not None else None


def create_remote(
    loaded: LoadedWorkspace, github: GitHub, repo: str, name: str, start: str | None, dry_run: bool
) -> str:
    full_name = loaded.model.repos[repo].github
    existing = remote_sha(github, full_name, name)
    if existing is not None:
        return f"exists at {existing[:7]}"
    base = start or loaded.model.repos[repo].default_branch
    sha = remote_sha(github, full_name, base)
    if sha is None:
        raise UsageError(f"{repo}: branch {base!r} does not exist on GitHub ({full_name}); pick another --from")
    if dry_run:
        return f"would create from {base} at {sha[:7]}"
    with github.call(f"create branch {name} in {full_name}"):
        github.repo(full_name).create_ref(f"refs/heads/{name}", sha)
    return f"created from {base} at {sha[:7]}"


# ---------------------------------------------------------------------------------------------- status


@dataclass
class BranchStatus:
    repo: str
    local: bool | None  # None: no checkout
    remote: bool | None  # None: unknown (no token and no reachable origin)
    remote_source: str  # github | origin | -
    ahead: int | None
    behind: int | None
    dirty: bool | None
    pr_number: int | None = None
    pr_state: str | None = None  # open | closed | merged
    pr_url: str | None = None
    ci: str | None = None  # success | failure | pending | none
    review_state: str | None = None  # approved | changes_requested | review_required
    approvals: list[dict[str, Any]] | None = None  # what the review rules require of the PR, with who approved
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(
    loaded: LoadedWorkspace, name: str, github: GitHub | None, repos: Sequence[str] | None = None
) -> list[BranchStatus]:
    """One row per repo: exists locally/remotely, ahead/behind the default branch, dirty, PR, combined CI, and the
    PR's review state and the approvals the review rules require of it (infra.github.reviews)."""
    check_branch_name(name)
    rows = []
    for repo in selected(loaded, repos):
        declared = loaded.model.repos[repo]
        checkout = checkout_of(loaded, repo)
        row = BranchStatus(repo, None, None, "-", None, None, None)
        if checkout.exists():
            row.local = checkout.has_branch(name)
            row.dirty = bool(checkout.dirty_files())
            base = checkout.base_ref(declared.default_branch)
            if row.local and base:
                row.ahead, row.behind = checkout.ahead_behind(base, f"refs/heads/{name}")
        else:
            row.notes.append(f"no checkout at {checkout.path}")
        if github is not None:
            head = remote_sha(github, declared.github, name)
            row.remote, row.remote_source = head is not None, "github"
            if head is not None:
                if row.ahead is None:
                    row.ahead, row.behind = compare(github, declared.github, declared.default_branch, name)
                row.ci = combined_ci(github, declared.github, head)
            pull = latest_pull(github, declared.github, name)
            if pull is not None:
                row.pr_number, row.pr_state, row.pr_url = pull
                review = pull_review(loaded, github, repo, row.pr_number)
                row.review_state = review.state
                row.approvals = [a.as_dict() for a in review.approvals]
        else:
            if checkout.exists():
                row.remote = checkout.remote_has_branch(name)
                row.remote_source = "origin" if row.remote is not None else "-"
            row.notes.append("PR and CI need GITHUB_TOKEN")
        rows.append(row)
    return rows


def compare(github: GitHub, full_name: str, base: str, head: str) -> tuple[int, int]:
    with github.call(f"compare {base}...{head} in {full_name}"):
        comparison = github.repo(full_name).compare_commits(base, head)
    return int(comparison.ahead_by), int(comparison.behind_by)


def latest_pull(github: GitHub, full_name: str, branch: str) -> tuple[int, str, str] | None:
    """The newest pull request from ``branch``: number, state (open, closed, merged), web URL."""
    owner = full_name.split("/")[0]
    with github.call(f"list pull requests of {branch} in {full_name}"):
        pulls = list(github.repo(full_name).pull_requests(state="all", head=f"{owner}:{branch}"))
    if not pulls:
        return None
    pull = pulls[0]
    state = "merged" if pull.merged_at else str(pull.state)
    return int(pull.number), state, str(pull.html_url)


def combined_ci(github: GitHub, full_name: str, sha: str) -> str:
    """success, failure, pending or none: commit statuses and check runs of ``sha`` together."""
    repository = github.repo(full_name)
    with github.call(f"read CI status of {sha[:7]} in {full_name}"):
        combined = github.request_json(repository, "GET", ["commits", sha, "status"], 200)
        runs = github.request_json(repository, "GET", ["commits", sha, "check-runs"], 200)
    states: list[str] = []
    if combined and combined.get("total_count"):
        states.append(str(combined["state"]))
    for run in (runs or {}).get("check_runs", []):
        if run.get("status") != "completed":
            states.append("pending")
        elif run.get("conclusion") in ("success", "neutral", "skipped"):
            states.append("success")
        else:
            states.append("failure")
    if not states:
        return "none"
    if "failure" in states or "error" in states:
        return "failure"
    if "pending" in states:
        return "pending"
    return "success"


# ---------------------------------------------------------------------------------------------- delete


def delete(
    loaded: LoadedWorkspace,
    name: str,
    repos: Sequence[str] | None = None,
    *,
    local: bool = True,
    remote: bool = False,
    force: bool = False,
    dry_run: bool = False,
    github: GitHub | None = None,
    progress: Progress = _quiet,
) -> list[BranchAction]:
    """Delete ``name`` locally and/or on GitHub; refuses unmerged work (all checked first) unless ``force``."""
    check_branch_name(name)
    names = selected(loaded, repos)
    if remote and github is None:
        raise UsageError("--remote needs GITHUB_TOKEN")
    if name in {loaded.model.repos[r].default_branch for r in names}:
        raise UsageError(f"refusing to delete {name!r}: it is a default branch")
    actions = {repo: BranchAction(repo) for repo in names}
    unmerged: list[str] = []
    plan_local: list[str] = []
    plan_remote: list[str] = []
    for repo in names:
        declared = loaded.model.repos[repo]
        checkout = checkout_of(loaded, repo)
        if local:
            if not checkout.exists():
                actions[repo].local = f"skipped: no checkout at {checkout.path}"
            elif not checkout.has_branch(name):
                actions[repo].local = "absent"
            else:
                base = checkout.base_ref(declared.default_branch)
                if base is None:
                    raise UsageError(f"{repo}: default branch {declared.default_branch!r} not found locally")
                ahead, _ = checkout.ahead_behind(base, f"refs/heads/{name}")
                if ahead and not checkout.is_merged(f"refs/heads/{name}", base):
                    unmerged.append(f"{repo} locally ({ahead} commit(s) not in {declared.default_branch})")
                plan_local.append(repo)
        if remote and github is not None:
            if remote_sha(github, declared.github, name) is None:
                actions[repo].remote = "absent"
            else:
                ahead, _ = compare(github, declared.github, declared.default_branch, name)
                if ahead:
                    unmerged.append(f"{repo} on GitHub ({ahead} commit(s) not in {declared.default_branch})")
                plan_remote.append(repo)
    if unmerged and not force:
        raise UsageError(
            f"refusing to delete {name!r}: unmerged work in {'; '.join(unmerged)}; merge it first or pass --force"
        )
    for repo in plan_local:
        checkout = checkout_of(loaded, repo)
        default = loaded.model.repos[repo].default_branch
        if dry_run:
            actions[repo].local = "would delete"
            continue
        if checkout.current_branch() == name:
            checkout.checkout(default if checkout.has_branch(default) else f"origin/{default}")
        checkout.delete_branch(name, force=True)
        actions[repo].local = "deleted"
        progress(f"{repo}: deleted local branch {name}")
    for repo in plan_remote:
        assert github is not None
        full_name = loaded.model.repos[repo].github
        if dry_run:
            actions[repo].remote = "would delete"
            continue
        with github.call(f"delete branch {name} in {full_name}"):
            ref = github.repo(full_name).ref(f"heads/{name}")
            ref.delete()
        actions[repo].remote = "deleted"
        progress(f"{repo}: deleted branch {name} on GitHub")
    return list(actions.values())
