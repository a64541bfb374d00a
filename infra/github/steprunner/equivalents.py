"""Local equivalents of the pinned third-party actions the generators use (nothing is downloaded).

Each takes the machine's facts, the step's ``with:`` and the job's state, and returns the action's outputs and
one line for the log. A ``uses:`` of an action without an equivalent, or not pinned to a full commit SHA, is
refused by the runner.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
    """What an action's equivalent sees of the runner: the workspace folder (``GITHUB_WORKSPACE``)."""

    workdir: Path


def _checkout(machine: Machine, with_: Mapping[str, str], state: JobState) -> tuple[dict[str, str], str]:
    return {}, f"actions/checkout: the working copy {machine.workdir} is the checkout (nothing fetched, no credentials)"


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
