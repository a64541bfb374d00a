"""GitHub deployment records for the coordinated deploy: one deployment per deployed repo and environment.

:class:`GitHubDeployments` implements :class:`infra.deploy.events.DeployObserver`. When a repo's deploy starts
it creates the deployment (``POST /repos/{owner}/{repo}/deployments``) and then posts each state the pipeline
reports (``POST .../deployments/{id}/statuses``: in_progress, success, failure, inactive after a rollback),
each with a link to the workflow run when the deploy runs in GitHub Actions.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from github3 import exceptions as gh_exceptions

from infra.github.client import GitHub, RetryPolicy, optional_client
from infra.workspace.located import LoadedWorkspace

DESCRIPTION_LIMIT = 140  # GitHub truncates deployment (status) descriptions at 140 characters
# The states the deploy pipeline reports for a repo (infra.deploy.events.RepoState; this package does not import
# infra.deploy: the CLI hands this observer to the pipeline, which checks it against its DeployObserver protocol).
RepoState = Literal["in_progress", "success", "failure", "inactive"]


def workflow_run_url(environ: dict[str, str] | None = None) -> str | None:
    """Link to the current GitHub Actions run, from GITHUB_SERVER_URL, GITHUB_REPOSITORY and GITHUB_RUN_ID."""
    env = os.environ if environ is None else environ
    server, repository, run = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    if not (server and repository and run):
        return None
    return f"{server.rstrip('/')}/{repository}/actions/runs/{run}"


@dataclass
class Record:
    repo: str
    full_name: str
    environment: str
    github_id: int
    states: list[str] = field(default_factory=list)


class GitHubDeployments:
    """A deploy observer that leaves GitHub deployment records and statuses."""

    def __init__(self, loaded: LoadedWorkspace, github: GitHub, run_url: str | None = None) -> None:
        self.loaded = loaded
        self.github = github
        self.run_url = run_url
        self.records: dict[tuple[int, str], Record] = {}
        self.environments: dict[int, str] = {}
        self._lock = threading.Lock()  # the pipeline deploys a stage's repos in parallel

    def deployment_started(self, deployment_id: int, environment: str, repos: list[str]) -> None:
        self.environments[deployment_id] = environment

    def repo_state(
        self, deployment_id: int, environment: str, repo: str, version: str, state: RepoState, detail: str
    ) -> None:
        with self._lock:
            record = self.records.get((deployment_id, repo))
            if record is None:
                record = self._existing(deployment_id, environment, repo) or self._create(
                    deployment_id, environment, repo, version
                )
                self.records[(deployment_id, repo)] = record
            self._post_status(record, state, detail)

    def deployment_finished(self, deployment_id: int, environment: str, status: str) -> None:
        """Repos left in progress when the deployment ended (interrupted, failed elsewhere) get an error status."""
        with self._lock:
            for (number, _repo), record in self.records.items():
                if number == deployment_id and record.states and record.states[-1] == "in_progress":
                    self._post_status(record, "error", f"deployment #{deployment_id} ended {status} before this repo")

    # ------------------------------------------------------------------------------------------------
    def _existing(self, deployment_id: int, environment: str, repo: str) -> Record | None:
        """The record an earlier process made for this deployment and repo (the workflow runs each step, and
        the rollback, as separate `ws` processes), found by the ledger id its payload carries."""
        declared = self.loaded.model.repos[repo]
        repository = self.github.repo(declared.github)
        with self.github.call(f"list deployments of {declared.github} in {environment}"):
            found = self.github.request_json(
                repository, "GET", ["deployments"], 200, params={"environment": environment, "per_page": "100"}
            )
        for item in found or []:
            payload = item.get("payload")
            if (
                isinstance(payload, dict)
                and payload.get("ws_deployment_id") == deployment_id
                and (payload.get("repo") == repo)
            ):
                return Record(repo, declared.github, environment, int(item["id"]), ["(earlier process)"])
        return None

    def _create(self, deployment_id: int, environment: str, repo: str, version: str) -> Record:
        declared = self.loaded.model.repos[repo]
        env = self.loaded.model.environments.get(environment)
        repository = self.github.repo(declared.github)
        data: dict[str, Any] = {
            "ref": version,
            "task": "deploy",
            "auto_merge": False,
            "required_contexts": [],
            "payload": {"ws_deployment_id": deployment_id, "repo": repo, "version": version},
            "environment": environment,
            "description": _short(f"ws deployment #{deployment_id}: {repo} {version} to {environment}"),
            "transient_environment": bool(env is not None and env.runtime == "local"),
            "production_environment": bool(env is not None and env.protected),
        }
        what = f"create deployment of {declared.github}@{version} to {environment}"
        with self.github.call(what):
            try:
                created = self.github.request_json(repository, "POST", ["deployments"], 201, data)
            except gh_exceptions.UnprocessableEntity:
                # The version is not a ref GitHub knows (e.g. an image tag): record it against the default branch.
                data["ref"] = declared.default_branch
                data["description"] = _short(
                    f"ws deployment #{deployment_id}: {repo} version {version} (not a git ref)"
                )
                created = self.github.request_json(repository, "POST", ["deployments"], 201, data)
        return Record(repo, declared.github, environment, int(created["id"]))

    def _post_status(self, record: Record, state: str, detail: str) -> None:
        data: dict[str, Any] = {
            "state": state,
            "description": _short(detail or state),
            "environment": record.environment,
        }
        if self.run_url:
            data["log_url"] = self.run_url
            data["environment_url"] = self.run_url
        repository = self.github.repo(record.full_name)
        with self.github.call(f"post deployment status {state} for {record.full_name} #{record.github_id}"):
            self.github.request_json(repository, "POST", ["deployments", str(record.github_id), "statuses"], 201, data)
        record.states.append(state)


def _short(text: str) -> str:
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 3] + "..."


def observer_from_environment(loaded: LoadedWorkspace, policy: RetryPolicy | None = None) -> GitHubDeployments | None:
    """The observer when GITHUB_TOKEN is set (None otherwise): records deployments on GitHub."""
    github = optional_client(loaded, policy)
    if github is None:
        return None
    return GitHubDeployments(loaded, github, workflow_run_url())
