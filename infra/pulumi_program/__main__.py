"""Pulumi program entry (Pulumi.yaml: main infra/pulumi_program/): workspace.yaml + stack config -> resources.

The workspace file is $WS_WORKSPACE, else the workspace.yaml beside Pulumi.yaml, else the nearest one from
the working directory up; the stack selects the environment (its `stack:` in workspace.yaml). Everything
else is in infra.stack.
"""

from __future__ import annotations

import pulumi

from infra.errors import UsageError, WorkspaceError
from infra.stack.program import build, current_environment, locate_workspace, read_settings
from infra.workspace.loader import load_workspace


def main() -> None:
    try:
        loaded = load_workspace(locate_workspace())
        environment = current_environment(loaded)
        build(loaded, environment, read_settings(loaded, environment))
    except WorkspaceError as exc:  # one located message per problem, no traceback
        raise pulumi.RunError(str(exc)) from None
    except UsageError as exc:
        raise pulumi.RunError(str(exc)) from None


main()
