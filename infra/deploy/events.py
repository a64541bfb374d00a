"""What the deploy pipeline tells the outside world while it runs (GitHub deployment records, logs).

Observers are optional and must never fail a deployment: the pipeline logs an observer's error and goes on.
"""

from __future__ import annotations

from typing import Literal, Protocol

RepoState = Literal["in_progress", "success", "failure", "inactive"]


class DeployObserver(Protocol):
    def deployment_started(self, deployment_id: int, environment: str, repos: list[str]) -> None: ...

    def repo_state(
        self, deployment_id: int, environment: str, repo: str, version: str, state: RepoState, detail: str
    ) -> None:
        """A repo's deploy moved: in_progress when it starts, success/failure when its health gate decides,
        inactive when a rollback takes it back to its previous version."""
        ...

    def deployment_finished(self, deployment_id: int, environment: str, status: str) -> None: ...
