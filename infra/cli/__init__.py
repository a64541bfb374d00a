"""The `ws` command: parse arguments, call the library, render the result. No logic of its own.

Each area's commands live in a module of this package and register on the root group below.
Errors a user can cause end as one message per problem and exit code 2 (bad usage or configuration)
or 1 (a check found problems); never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click
from rich.markup import escape

from infra import __version__
from infra.cli._common import Context, err_console
from infra.errors import CheckFailed, UsageError, WorkspaceError

# Command name -> the module of infra.cli that defines it. Modules are imported only when one of their
# commands runs (or when `ws --help` lists them all), so `ws plan` does not pay for pulumi or github3.
COMMAND_MODULES = {
    "check": "workspace_commands",
    "plan": "workspace_commands",
    "graph": "workspace_commands",
    "env": "workspace_commands",
    "generate": "workspace_commands",
    "schema": "schema_commands",
    "migrate": "migrate_commands",
    "deploy": "deploy_commands",
    "pipeline": "deploy_commands",
    "rollback": "deploy_commands",
    "db": "deploy_commands",
    "health": "deploy_commands",
    "status": "deploy_commands",
    "up": "deploy_commands",
    "down": "deploy_commands",
    "branch": "github_commands",
    "pr": "github_commands",
    "metrics": "github_commands",
    "uptime": "monitor_commands",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"infra.cli.{module_name}")
        for command in module.COMMANDS:
            if command.name == cmd_name:
                return command
        raise RuntimeError(f"infra.cli.{module_name} does not define the command {cmd_name!r}")


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option(
    "--workspace",
    "-w",
    "workspace_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WS_WORKSPACE",
    default=None,
    help="Path of workspace.yaml (default: the nearest one in this folder or above; env WS_WORKSPACE).",
)
@click.version_option(__version__, prog_name="ws")
@click.pass_context
def cli(ctx: click.Context, workspace_path: Path | None) -> None:
    """Coordinate repositories that share one PostgreSQL database and one Redis as one system.

    Everything is derived from workspace.yaml: deploy plans, env files, Pulumi stacks, GitHub workflows
    and schema checks. Exit codes: 0 ok, 1 a check found problems, 2 bad usage or configuration.
    """
    ctx.obj = Context(workspace_path)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="ws", standalone_mode=False)
    except WorkspaceError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]error[/]: {escape(str(problem))}")
        sys.exit(2)
    except UsageError as exc:
        err_console.print(f"[red]error[/]: {escape(str(exc))}")
        sys.exit(2)
    except CheckFailed as exc:
        err_console.print(f"[red]failed[/]: {escape(str(exc))}")
        sys.exit(1)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
