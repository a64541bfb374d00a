"""Where a workflow's jobs find the coordination repository and the workspace's repos under ``GITHUB_WORKSPACE``.

When workspace.yaml places every repo inside its own folder (as examples/ does), they are part of the coordination
repository's checkout. Otherwise (the default ``../<repo>``) the coordination repository is checked out into a
folder named after it and every repo beside it, where workspace.yaml expects them; ``WS_WORKSPACE`` tells ``ws``
where workspace.yaml is.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from infra.errors import UsageError
from infra.github.actions import ACTIONS_DIR, local_step, mapping, safe_name
from infra.workspace.model import Workspace
from infra.workspace.yamlwrite import YamlMap

RUNNER = "ubuntu-24.04"
# Branch names written into generated scripts (workspace.yaml's default_branch): git's rules, no shell characters.
SAFE_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,99}$")
# A token that can read the workspace's repos (Contents: read), for actions/checkout of repos other than this one.
CHECKOUT_TOKEN_SECRET = "WS_CHECKOUT_TOKEN"
# The GitHub environment the pull-request check runs in when it reads the repos with a token: give it required
# reviewers, so a pull request's code gets the token only once someone has looked at it.
PR_ENVIRONMENT = "workspace-pr"


def inside(path: str | None) -> bool:
    """Whether a repo ``path:`` lies inside workspace.yaml's folder (relative and never leaving it)."""
    if path is None:
        return False
    parts = PurePosixPath(path.replace("\\", "/"))
    return not parts.is_absolute() and ".." not in parts.parts


@dataclass(frozen=True)
class Layout:
    """Where the jobs find this repository and the workspace's repos under ``GITHUB_WORKSPACE``.

    ``folder`` is this repository's checkout folder (None: ``GITHUB_WORKSPACE`` itself); ``checkouts`` maps each
    repo checked out on its own (not part of this repository) to its ``owner/name`` and its folder.
    """

    folder: str | None = None
    checkouts: dict[str, tuple[str, str]] = field(default_factory=dict)

    def action(
        self,
        name: str,
        action: str,
        with_: Mapping[str, str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> YamlMap:
        step = local_step(name, action, with_, env=env)
        if self.folder is not None:
            step["uses"] = f"./{self.folder}/{ACTIONS_DIR}/{action}"
        return step

    def workspace_env(self) -> YamlMap | None:
        """The workflow's env telling ``ws`` where workspace.yaml is (None when it is where the jobs start)."""
        if self.folder is None:
            return None
        return mapping(("WS_WORKSPACE", f"{self.folder}/workspace.yaml"))


def layout_of(workspace: Workspace) -> Layout:
    """This repository at the top when every repo lives inside it; else in a folder beside the repos' checkouts."""
    outside = [name for name, repo in workspace.repos.items() if not inside(repo.path)]
    if not outside:
        return Layout()
    folder = safe_name(workspace.github.repo or "workspace", "coordination repository")
    checkouts: dict[str, tuple[str, str]] = {}
    for name in outside:
        repo = workspace.repos[name]
        declared = repo.path if repo.path is not None else f"../{name}"
        where = posixpath.normpath(posixpath.join(folder, declared.replace("\\", "/")))
        if PurePosixPath(declared).is_absolute() or where.startswith("..") or where in (".", folder):
            raise UsageError(
                f"cannot generate the coordinated deployment: repos.{name}.path {declared!r} puts its checkout "
                "outside the runner's workspace folder; use a path beside this repository (../<repo>) or inside it"
            )
        checkouts[safe_name(name, "repo")] = (repo.github, where)
    return Layout(folder, checkouts)


def ref_key(repo: str) -> str:
    """The plan job's output naming the commit of ``repo`` every job checks out (an identifier, no hyphens)."""
    return "ref_" + repo.replace("-", "_")
