"""Local git, by running `git` in a repo's checkout. Failures become one line naming the checkout and the command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import UsageError

if TYPE_CHECKING:
    import subprocess


class GitError(UsageError):
    """A git command failed in a checkout."""


@dataclass(frozen=True)
class Checkout:
    repo: str  # the repo's name in workspace.yaml
    path: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        import subprocess  # here: the workflow generators (and so `ws check`) import this module, and run no git

        try:
            result = subprocess.run(
                ["git", *args],
                cwd=self.path,
                capture_output=True,
                text=True,
                check=False,
                env=None,
            )
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH; install git") from None
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit code {result.returncode}"
            raise GitError(f"{self.repo} ({self.path}): `git {' '.join(args)}` failed: {reason}")
        return result

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    # ------------------------------------------------------------------ questions
    def exists(self) -> bool:
        return (self.path / ".git").exists()

    def has_ref(self, ref: str) -> bool:
        return self.run("rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False).returncode == 0

    def has_branch(self, name: str) -> bool:
        return self.has_ref(f"refs/heads/{name}")

    def current_branch(self) -> str | None:
        result = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return result.stdout.strip() or None

    def dirty_files(self) -> list[str]:
        """Changed or untracked paths (what `git status --porcelain` lists)."""
        lines = self.run("status", "--porcelain", "--untracked-files=normal").stdout.splitlines()
        return [line[3:] for line in lines if line.strip()]

    def sha(self, ref: str) -> str:
        return self.out("rev-parse", ref + "^{commit}")

    def base_ref(self, default_branch: str) -> str | None:
        """The default branch to compare with: origin/<default> when fetched, else the local branch."""
        for ref in (f"refs/remotes/origin/{default_branch}", f"refs/heads/{default_branch}"):
            if self.has_ref(ref):
                return ref
        return None

    def ahead_behind(self, base: str, head: str) -> tuple[int, int]:
        """Commits ``head`` has that ``base`` lacks (ahead), and the reverse (behind)."""
        left, right = self.out("rev-list", "--left-right", "--count", f"{base}...{head}").split()
        return int(right), int(left)

    def is_merged(self, branch: str, into: str) -> bool:
        return self.run("merge-base", "--is-ancestor", branch, into, check=False).returncode == 0

    def remote_has_branch(self, name: str, remote: str = "origin") -> bool | None:
        """Whether the remote has the branch (None when there is no such remote or it cannot be reached)."""
        if self.run("remote", "get-url", remote, check=False).returncode != 0:
            return None
        result = self.run("ls-remote", "--exit-code", "--heads", remote, name, check=False)
        if result.returncode == 2:
            return False
        return True if result.returncode == 0 else None

    # ------------------------------------------------------------------ actions
    def create_branch(self, name: str, start: str) -> None:
        self.run("checkout", "-b", name, start)

    def checkout(self, name: str) -> None:
        self.run("checkout", name)

    def delete_branch(self, name: str, force: bool) -> None:
        self.run("branch", "-D" if force else "-d", name)

    def push(self, name: str, remote: str = "origin") -> None:
        self.run("push", "--set-upstream", remote, f"refs/heads/{name}:refs/heads/{name}")

    def delete_remote_branch(self, name: str, remote: str = "origin") -> None:
        self.run("push", remote, "--delete", name)

    def commit_all(self, message: str, paths: list[str]) -> str:
        self.run("add", "--", *paths)
        self.run("commit", "-m", message, "--", *paths)
        return self.sha("HEAD")
