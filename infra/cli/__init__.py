"""The `ws` command: parse arguments, call the library, render the result. No logic of its own.

Each area's commands live in a module of this package and register on the root group below.
Errors a user can cause end as one message per problem and exit code 2 (bad usage or configuration)
or 1 (a check found problems); never a traceback.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import click

from infra import __version__
from infra.errors import CheckFailed, UsageError, WorkspaceError

# Command name -> the module of infra.cli that defines it. A module is imported only when one of its commands
# runs, so `ws plan` does not pay for pulumi or github3, and `ws --help` imports none of them (see SUMMARIES).
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
    "repo-files": "github_commands",
    "uptime": "monitor_commands",
    "monitor": "monitor_commands",
    "dashboard": "monitor_commands",
    "adopt": "adopt_commands",
}


# Command name -> the first sentence of its help, which `ws --help` lists without importing the command's module.
# tests/test_cli_startup.py fails when one differs from the command's own help or a command has none here.
SUMMARIES = {
    "check": "Check everything that can be checked offline: the declaration, env, checkouts, generated files.",
    "plan": "Print the deploy stages for ENV: repos in one stage deploy in parallel, stages in order.",
    "graph": "Print the dependency graph (one cluster per stage) as Mermaid or Graphviz dot.",
    "env": "Resolve a repo's environment: shared -> environment -> repo -> repo-in-environment overrides.",
    "generate": "Write every file derived from workspace.yaml (JSON Schema, Pulumi stack files, actions, workflows).",
    "schema": "Shared Prisma models: the primary repo owns them, the secondaries keep exact copies.",
    "migrate": "Move agents' SQLite memory files (repos.<repo>.sqlite_migration) into PostgreSQL, provably.",
    "deploy": "Deploy ENV: infra -> migrate -> validate -> stages (health-gated) -> integration -> health.",
    "pipeline": "The deploy's steps one per command, for CI jobs: begin, infra, migrate, validate, deploy, "
    "integration, health, finish.",
    "rollback": "Roll the services a deployment touched back to their previous versions (reverse stage order).",
    "db": "Database commands of the workspace (the built-in Prisma-compatible migration applier).",
    "health": "Check ENV: database, every repo's migrations, Redis PING, each service's health endpoint "
    "(concurrently, with its timeout and retries) and schema alignment.",
    "status": (
        "Per environment: the last deployments, the last one's duration against the 5-minute target, migration "
        "progress, schema alignment and health."
    ),
    "up": "Bring the workspace up on this machine: PostgreSQL and Redis (DATABASE_URL/REDIS_URL, the local servers, "
    "or embedded ones), migrations, every service in stage order, health.",
    "down": "Stop every service of the local environment and the embedded servers `ws up` started.",
    "branch": "One feature branch across the workspace's repos: create it everywhere, see a status matrix, delete it.",
    "pr": "Linked pull requests: one per repo of a feature branch, each listing the others in merge order.",
    "metrics": "The five DORA figures per environment from the deploy ledger, plus schema alignment and migration "
    "completion.",
    "repo-files": "Write the workflows each repo carries (image release, cross-repo integration checks) into its "
    "checkout.",
    "uptime": "Uptime of ENV per component and for the integration as a whole, against the target.",
    "monitor": "Probe ENV on an interval, record every round and serve /metrics for Prometheus.",
    "dashboard": "Serve (or with -o write) one self-contained HTML page about ENV for a person to look at.",
    "adopt": "Adopt the database the repos already run: move each repo's tables, enums and recorded migrations "
    "into its declared namespace and baseline migrations that ran before ws.",
}


def short_help(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word, as click shortens a command's help in a listing."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 3, 0)].rsplit(" ", 1)[0]
    return cut.rstrip() + "..."


class LazyGroup(click.Group):
    """A click group that imports a command's module on first use and lists commands from SUMMARIES."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `ws --help`, from SUMMARIES: importing every command module would take a second."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            summary = SUMMARIES.get(name)
            if summary is None:  # a command without a summary yet: correct, only slower
                command = self.get_command(ctx, name)
                summary = command.get_short_help_str(limit) if command is not None else ""
            rows.append((name, short_help(summary, limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
    from infra.cli._common import Context  # here, not at the top: `ws --help` needs neither rich nor pydantic

    ctx.obj = Context(workspace_path)


def report(label: str, message: str) -> None:
    """One line on stderr, e.g. ``error: ...``, with the label coloured on a terminal."""
    # Imported here, not at the top: rich costs `ws --help` tens of milliseconds and only errors print through it.
    from rich.markup import escape

    from infra.cli._common import err_console

    colour = "red" if label in ("error", "failed") else "yellow"
    err_console.print(f"[{colour}]{label}[/]: {escape(message)}")


PASSWORD_IN_URL = re.compile(r"(://[^/\s:@]*:)[^/\s@]+@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ***."""
    return PASSWORD_IN_URL.sub(r"\1***@", text)


def command_name(args: list[str]) -> str:
    """`ws` and the (sub)command names in ``args``, e.g. ``ws schema check``, skipping options and their values."""
    names = ["ws"]
    command: click.Command = cli
    ctx = click.Context(cli)
    index = 0
    while isinstance(command, click.Group) and index < len(args):
        token = args[index]
        index += 1
        if token in ("-w", "--workspace"):
            index += 1
            continue
        if token.startswith("-"):
            continue
        try:
            sub = command.get_command(ctx, token)
        except Exception:  # naming the command must never fail the crash report
            sub = None
        if sub is None:
            break
        names.append(token)
        command = sub
    return " ".join(names)


def crash_log(args: list[str], exc: BaseException) -> Path | None:
    """Write the traceback of ``exc`` to a private file (0600 in a 0700 folder); its path, or None if none could be.

    The file is ``$XDG_STATE_HOME/ws/crash/crash-<UTC time>-<pid>.log`` (default ``~/.local/state``), else a fresh
    ``ws-crash-*.log`` in the temporary folder. Passwords in URLs are replaced by ***.
    """
    import datetime
    import os
    import platform
    import tempfile
    import traceback

    text = redact(
        f"ws {__version__} on Python {platform.python_version()}\n"
        f"command: {command_name(args)}\nargv: {args!r}\ncwd: {os.getcwd()}\n\n"
        + "".join(traceback.format_exception(exc))
    )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ws" / "crash"
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        state.chmod(0o700)
        path = state / f"crash-{stamp}-{os.getpid()}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        try:
            fd, name = tempfile.mkstemp(prefix=f"ws-crash-{stamp}-", suffix=".log")  # 0600, unique
        except OSError:
            return None
        path = Path(name)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def crashed(args: list[str], exc: BaseException) -> None:
    """One line for an exception nobody expected: the command, the exception, where its traceback went; exit 1."""
    try:
        where = crash_log(args, exc)
    except Exception:  # the report itself must not end in a traceback
        where = None
    first = (str(exc).splitlines() or [""])[0][:300]
    what = redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    log = f"the traceback is in {where}" if where else "no crash log could be written"
    print(
        f"error: {command_name(args)} failed unexpectedly ({what}); this is a bug in ws: {log}. "
        "Fix: report it with that file",
        file=sys.stderr,
    )
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="ws", standalone_mode=False)
    except WorkspaceError as exc:
        for problem in exc.problems:
            report("error", str(problem))
        sys.exit(2)
    except UsageError as exc:
        report("error", str(exc))
        sys.exit(2)
    except CheckFailed as exc:
        report("failed", str(exc))
        sys.exit(1)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # anything else is a bug: one line here, the traceback in a crash log
        crashed(args, exc)


if __name__ == "__main__":
    main()
