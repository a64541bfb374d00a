"""Local equivalents of the pinned third-party actions the generators use (nothing is downloaded).

Each takes the machine's facts, the step's ``with:`` and the job's state, and returns the action's outputs and
one line for the log. A ``uses:`` of an action without an equivalent, or not pinned to a full commit SHA, is
refused by the runner.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.github.steprunner.expressions import RunnerError

SHA_REF = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class JobState:
    """What the steps of one job share: env and PATH additions, failure so far, the summary, its folder."""

    job_id: str
    job_dir: Path
    env: dict[str, str]
    path: list[str]
    failed: bool = False
    summary: list[str] = field(default_factory=list)
    deadline: float | None = None


@dataclass(frozen=True)
class Machine:
    """What an action's equivalent sees of the runner.

    ``workdir`` is ``GITHUB_WORKSPACE``; ``root`` the working copy of the workflow's own repository
    (``repository``, as ``owner/name``). ``remote`` turns another repository's ``owner/name`` into the URL (or
    path) it is cloned from: a template with ``{repository}``, ``{owner}`` and ``{name}``, e.g.
    ``/srv/git/{name}.git``; None when the runner was given none.
    """

    workdir: Path
    root: Path
    repository: str
    remote: str | None = None


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def _checkout(machine: Machine, with_: Mapping[str, str], state: JobState) -> tuple[dict[str, str], str]:
    """actions/checkout.

    The workflow's own repository (no ``repository:``, or the runner's own): its working copy is the checkout, at
    ``path:`` when given (which must then be where that working copy is); nothing is fetched.

    Another repository: cloned from ``machine.remote`` into ``path:`` (inside ``GITHUB_WORKSPACE``, as
    actions/checkout requires), at ``ref:`` (a branch, tag or commit; default the remote's default branch), detached
    at that commit. A folder an earlier job of this run cloned is fetched and switched instead (GitHub gives each
    job a fresh machine; here the jobs share one, and the services they started keep running from that folder, so
    untracked files are kept rather than cleaned). No credentials are written: the ``token:`` is not needed to
    read a local remote and is never stored.
    """
    repository = with_.get("repository", "").strip() or machine.repository
    relative = with_.get("path", "").strip()
    target = (machine.workdir / relative).resolve() if relative else machine.workdir
    if target != machine.workdir and machine.workdir not in target.parents:
        raise RunnerError(f"actions/checkout: path {relative!r} is not under GITHUB_WORKSPACE {machine.workdir}")
    if repository.casefold() == machine.repository.casefold():
        if target != machine.root:
            raise RunnerError(
                f"actions/checkout: {repository} (this workflow's repository) is checked out at {target}, but its "
                f"working copy is {machine.root}; run the runner with workdir set so that path: names it"
            )
        return (
            {},
            f"actions/checkout: the working copy {machine.root} is the checkout (nothing fetched, no credentials)",
        )
    if machine.remote is None:
        raise RunnerError(
            f"actions/checkout: {repository} is another repository and this runner has no remote to clone it "
            "from; pass remote= (e.g. '/srv/git/{name}.git')"
        )
    owner, _, name = repository.partition("/")
    url = machine.remote.format(repository=repository, owner=owner, name=name)
    ref = with_.get("ref", "").strip()
    if (target / ".git").exists():
        origin = _git(target, "remote", "get-url", "origin").stdout.strip()
        if origin != url:
            raise RunnerError(f"actions/checkout: {target} holds a clone of {origin or 'nothing'}, not of {url}")
        fetched = _git(target, "fetch", "--quiet", "--tags", "--force", "--prune", "origin")
        if fetched.returncode != 0:
            raise RunnerError(f"actions/checkout: cannot fetch {repository} from {url}: {fetched.stderr.strip()}")
        _git(target, "remote", "set-head", "origin", "--auto")
        action = "fetched"
    else:
        if target.exists() and any(target.iterdir()):
            raise RunnerError(f"actions/checkout: {target} exists and is not a clone of {repository}")
        target.parent.mkdir(parents=True, exist_ok=True)
        cloned = _git(machine.workdir, "clone", "--quiet", "--no-checkout", url, str(target))
        if cloned.returncode != 0:
            raise RunnerError(f"actions/checkout: cannot clone {repository} from {url}: {cloned.stderr.strip()}")
        action = "cloned"
    candidates = (
        [f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref] if ref and not ref.startswith("refs/") else [ref]
    )
    if not ref:
        candidates = ["refs/remotes/origin/HEAD"]
    commit = ""
    for candidate in candidates:
        found = _git(target, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if found.returncode == 0:
            commit = found.stdout.strip()
            break
    if not commit:
        raise RunnerError(f"actions/checkout: {repository} has no branch, tag or commit {ref!r}")
    switched = _git(target, "checkout", "--quiet", "--force", "--detach", commit)
    if switched.returncode != 0:
        raise RunnerError(f"actions/checkout: cannot check out {commit} of {repository}: {switched.stderr.strip()}")
    note = (
        f"actions/checkout: {action} {repository} from {url} into {target} at {ref or 'its default branch'}"
        f" ({commit[:12]}); no credentials written"
    )
    return {"ref": ref, "commit": commit}, note


def _setup_python(machine: Machine, with_: Mapping[str, str], state: JobState) -> tuple[dict[str, str], str]:
    folder = str(Path(sys.executable).parent)
    state.path.append(folder)
    version = platform.python_version()
    wanted = with_.get("python-version", "")
    note = f"actions/setup-python: using {sys.executable} (Python {version}; asked for {wanted or 'any'})"
    return {"python-version": version, "python-path": sys.executable, "cache-hit": "false"}, note


def _cache(machine: Machine, with_: Mapping[str, str], state: JobState) -> tuple[dict[str, str], str]:
    paths = [p.strip() for p in with_.get("path", "").splitlines() if p.strip()]
    hit = bool(paths) and all((machine.workdir / os.path.expanduser(p)).exists() for p in paths)
    return {"cache-hit": "true" if hit else "false"}, f"actions/cache: {'hit' if hit else 'miss'} for {paths}"


LocalEquivalent = Callable[[Machine, Mapping[str, str], JobState], tuple[dict[str, str], str]]
LOCAL_EQUIVALENTS: dict[str, LocalEquivalent] = {
    "actions/checkout": _checkout,
    "actions/setup-python": _setup_python,
    "actions/cache": _cache,
}
