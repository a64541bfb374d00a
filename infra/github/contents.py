"""Read a repo's files at a branch or SHA through GitHub's contents API (no checkout needed).

Used by ``ws schema check --ref NAME`` so a pull-request workflow can check cross-repo schema alignment
without cloning every repo: :func:`github_readers` gives, per repo, a :class:`GitHubReader` that has the methods
of ``infra.schema.load.Reader`` (read, list_prisma, display). It matches that protocol by its shape; the CLI
hands the factory to the schema loader, so neither package imports the other.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from github3 import exceptions as gh_exceptions

from infra.errors import UsageError
from infra.github.client import GitHub, GitHubError, client
from infra.workspace.located import LoadedWorkspace


def _full_name(loaded: LoadedWorkspace, repo: str) -> str:
    if repo not in loaded.model.repos:
        raise UsageError(f"unknown repo {repo!r}; workspace.yaml declares {', '.join(loaded.model.repos)}")
    return loaded.model.repos[repo].github


def read_files(
    loaded: LoadedWorkspace, repo: str, ref: str, paths: list[str], github: GitHub | None = None
) -> dict[str, str]:
    """The text of each path (relative to the repo) at ``ref``.

    A path that does not exist at ``ref`` is left out of the result (callers decide whether it is optional);
    a ``ref`` that does not exist in the repo is an error naming it.
    """
    full_name = _full_name(loaded, repo)
    github = github or client(loaded)
    repository = github.repo(full_name)
    result: dict[str, str] = {}
    ref_checked = False
    for path in paths:
        clean = path.strip("/")
        with github.call(f"read {clean} at {ref} in {full_name}"):
            try:
                item = repository.file_contents(clean, ref=ref)
            except gh_exceptions.NotFoundError:
                item = None
        if item is None:
            if not ref_checked:
                _check_ref(github, repository, full_name, repo, ref)
                ref_checked = True
            continue
        if getattr(item, "type", "file") != "file":
            raise GitHubError(f"GitHub: {full_name}: {clean} at {ref!r} is a {item.type}, not a file")
        try:
            data = item.decoded if item.decoded is not None else base64.b64decode(item.content or "")
            result[path] = data if isinstance(data, str) else data.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise GitHubError(f"GitHub: {full_name}: {clean} at {ref!r} is not UTF-8 text ({exc})") from None
    return result


def _check_ref(github: GitHub, repository: object, full_name: str, repo: str, ref: str) -> None:
    """Raise a clear error when ``ref`` (branch, tag or SHA) does not exist in the repo."""
    with github.call(f"read commit {ref} in {full_name}"):
        try:
            github.request_json(repository, "GET", ["commits", ref], 200)
        except (gh_exceptions.NotFoundError, gh_exceptions.UnprocessableEntity):
            raise GitHubError(
                f"GitHub: {full_name}: no branch, tag or commit {ref!r} (repo {repo}); push it or check --ref"
            ) from None


def list_dir(loaded: LoadedWorkspace, repo: str, ref: str, path: str, github: GitHub | None = None) -> list[str]:
    """Paths (relative to the repo, sorted) of the entries directly inside folder ``path`` at ``ref``:
    files and sub-folders (a Prisma multi-file schema may nest folders)."""
    full_name = _full_name(loaded, repo)
    github = github or client(loaded)
    repository = github.repo(full_name)
    clean = path.strip("/")
    with github.call(f"list {clean or '/'} at {ref} in {full_name}"):
        try:
            entries = repository.directory_contents(clean, ref=ref)
        except gh_exceptions.NotFoundError:
            raise GitHubError(
                f"GitHub: {full_name}: folder {clean} does not exist at {ref!r}; check repos.{repo}.schema"
                " in workspace.yaml and the ref"
            ) from None
    return sorted(str(item.path) for _name, item in entries if getattr(item, "type", "") in ("file", "dir"))


@dataclass(frozen=True)
class GitHubReader:
    """A repo's files at a branch or SHA, read through GitHub's contents API (a schema loader's reader)."""

    loaded: LoadedWorkspace
    repo: str
    ref: str
    _cache: dict[str, str | None] = field(default_factory=dict, compare=False)

    def read(self, path: str) -> str | None:
        if path not in self._cache:
            self._cache[path] = None
            self._cache.update(read_files(self.loaded, self.repo, self.ref, [path]))
        return self._cache[path]

    def list_prisma(self, path: str) -> list[str] | None:
        if path.endswith(".prisma"):
            return None
        found: list[str] = []
        pending = [path.rstrip("/")]
        while pending:
            folder = pending.pop()
            for entry in list_dir(self.loaded, self.repo, self.ref, folder):
                entry_path = entry if "/" in entry else posixpath.join(folder, entry)
                if entry_path.endswith(".prisma"):
                    found.append(entry_path)
                elif "." not in posixpath.basename(entry_path):
                    pending.append(entry_path)
        return sorted(found)

    def display(self, path: str) -> str:
        return f"{self.loaded.model.repos[self.repo].github}@{self.ref}:{path}"


def ref_exists(loaded: LoadedWorkspace, repo: str, ref: str, github: GitHub | None = None) -> bool:
    """Whether ``ref`` (branch, tag or SHA) exists in the repo on GitHub."""
    full_name = _full_name(loaded, repo)
    github = github or client(loaded)
    try:
        _check_ref(github, github.repo(full_name), full_name, repo, ref)
    except GitHubError as exc:
        if "no branch, tag or commit" in str(exc):
            return False
        raise
    return True


def github_readers(
    loaded: LoadedWorkspace,
    ref: str,
    *,
    fallback: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Callable[[str], GitHubReader]:
    """Reader factory for ``infra.schema.load.load_schemas``: every repo's files at ``ref`` on GitHub.

    ``fallback``: a repo without ``ref`` is read at its default branch instead, and ``notify`` is told which (a
    change that spans only some repos carries its branch name only there).
    """

    def reader(repo: str) -> GitHubReader:
        if fallback and not ref_exists(loaded, repo, ref):
            default = loaded.model.repos[repo].default_branch
            if notify is not None:
                notify(f"{repo}: no branch {ref!r} on GitHub; read at its default branch {default}")
            return GitHubReader(loaded, repo, default)
        return GitHubReader(loaded, repo, ref)

    return reader
