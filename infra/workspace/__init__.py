"""workspace.yaml: the model, loading with located errors, the dependency graph and env resolution."""

from infra.errors import CheckFailed, Problem, UsageError, WorkspaceError
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Repo, SecretRef, Workspace

__all__ = [
    "CheckFailed",
    "LoadedWorkspace",
    "Problem",
    "Repo",
    "SecretRef",
    "UsageError",
    "Workspace",
    "WorkspaceError",
    "load_workspace",
]
