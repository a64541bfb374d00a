"""Versions named on the command line (``--versions repo=tag,...``), checked before anything uses them.

A version becomes a Docker image tag, a git ref and a process argument, so it must be a safe tag: the
intersection of what Docker accepts for a tag and what git accepts for a ref name, with no shell metacharacters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from infra.errors import UsageError
from infra.workspace.located import LoadedWorkspace

VERSION_RULE = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
_VERSION = re.compile(VERSION_RULE)
RULE_TEXT = (
    f"a version must match {VERSION_RULE} (letters, digits, '_', '.', '-'; at most 128 characters; "
    "not starting with '.' or '-'), as Docker tags and git refs allow"
)


def check_versions(loaded: LoadedWorkspace, versions: Mapping[str, str]) -> dict[str, str]:
    """Each repo declared in workspace.yaml and each version a safe tag; else one UsageError naming the item."""
    for repo, version in versions.items():
        if repo not in loaded.model.repos:
            raise UsageError(
                f"--versions: unknown repo {repo!r} in {repo}={version}; the repo must be one workspace.yaml "
                f"declares: {', '.join(loaded.model.repos)}"
            )
        if not _VERSION.fullmatch(version):
            raise UsageError(f"--versions: {repo}={version!r} is not a safe version: {RULE_TEXT}")
    return dict(versions)


def parse_versions(loaded: LoadedWorkspace, text: str | None) -> dict[str, str]:
    """``repo=tag,repo=tag`` -> {repo: tag}, checked by :func:`check_versions`."""
    versions: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        repo, sep, tag = item.partition("=")
        if not sep or not tag.strip():
            raise UsageError(f"--versions: {item.strip()!r} is not repo=tag (e.g. app-agents=1.4.2)")
        if repo.strip() in versions:
            raise UsageError(f"--versions: {repo.strip()} is named twice; give each repo one version")
        versions[repo.strip()] = tag.strip()
    return check_versions(loaded, versions)
