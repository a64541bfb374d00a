"""The factory that picks the runtime of an environment (`runtime:` in workspace.yaml)."""

from __future__ import annotations

from infra.deploy.local import LocalRuntime
from infra.deploy.pulumi_runtime import PulumiRuntime
from infra.deploy.runtime import Runtime
from infra.workspace.located import LoadedWorkspace


def runtime_for(loaded: LoadedWorkspace, environment: str) -> Runtime:
    """The runtime that deploys ``environment``: local subprocesses or its Pulumi stack."""
    if loaded.model.environments[environment].runtime == "local":
        return LocalRuntime(loaded, environment)
    return PulumiRuntime(loaded, environment)
