"""The `ws` command: parse arguments, call the library, render the result. No logic of its own.

Each area's commands live in a module of this package and register on the root group below.
Errors a user can cause end as one message per problem and exit code 2 (bad usage or configuration)
or 1 (a check found problems); never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from infra import __version__
from infra.cli._common import Context, err_console
from infra.workspace.errors import CheckFailed, UsageError, WorkspaceError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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


def _register() -> None:
    from infra.cli import deploy_commands, github_commands, migrate_commands, schema_commands, workspace_commands

    for module in (workspace_commands, github_commands, schema_commands, deploy_commands, migrate_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


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
