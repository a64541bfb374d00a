"""Shared plumbing of the `ws` commands: the workspace option, output modes and the step summary."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from infra.errors import UsageError

if TYPE_CHECKING:
    from infra.workspace.located import LoadedWorkspace

F = TypeVar("F", bound=Callable[..., Any])

# emoji=False: ":name:" in a message (a URL, a Redis key) is text, and the emoji table is not imported.
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class Context:
    """What every command gets: the path of workspace.yaml, loaded on first use."""

    def __init__(self, workspace_path: Path | None) -> None:
        self.workspace_path = workspace_path
        self._loaded: LoadedWorkspace | None = None

    @property
    def loaded(self) -> LoadedWorkspace:
        if self._loaded is None:
            # Imported on first use, not at the top: pydantic and the YAML loaders cost `ws --help` and
            # `ws <command> --help` a tenth of a second, and they need no workspace.
            from infra.workspace.loader import load_workspace

            self._loaded = load_workspace(self.workspace_path)
        return self._loaded


pass_context = click.make_pass_decorator(Context)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")(func)


def env_option(required: bool = True, default: str | None = None) -> Callable[[F], F]:
    return click.option(
        "--env",
        "-e",
        "environment",
        required=required and default is None,
        default=default,
        metavar="ENV",
        help="Environment declared in workspace.yaml (e.g. local, dev, staging, prod).",
    )


def repos_option(func: F) -> F:
    return click.option(
        "--repos",
        "repos",
        default=None,
        metavar="A,B",
        help="Comma-separated repos to act on (default: all).",
    )(func)


def parse_repos(loaded: LoadedWorkspace, text: str | None) -> list[str] | None:
    """Repos named on the command line, checked against workspace.yaml (None means all)."""
    if text is None or text.strip() in ("", "all"):
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in loaded.model.repos]
    if unknown:
        raise UsageError(
            f"--repos: unknown repo(s) {', '.join(unknown)}; workspace.yaml declares {', '.join(loaded.model.repos)}"
        )
    return names


def check_environment(loaded: LoadedWorkspace, environment: str) -> str:
    if environment not in loaded.model.environments:
        raise UsageError(
            f"--env: unknown environment {environment!r}; workspace.yaml declares "
            f"{', '.join(loaded.model.environments)}"
        )
    return environment


def check_repo(loaded: LoadedWorkspace, repo: str) -> str:
    if repo not in loaded.model.repos:
        raise UsageError(f"--repo: unknown repo {repo!r}; workspace.yaml declares {', '.join(loaded.model.repos)}")
    return repo


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    result = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*[str(cell) for cell in row])
    return result


def step_summary(markdown: str) -> None:
    """Append Markdown to $GITHUB_STEP_SUMMARY when running inside GitHub Actions."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown.rstrip("\n") + "\n\n")


def status_mark(ok: bool | None) -> str:
    if ok is None:
        return "[yellow]skipped[/]" if sys.stdout.isatty() else "skipped"
    if sys.stdout.isatty():
        return "[green]ok[/]" if ok else "[red]FAIL[/]"
    return "ok" if ok else "FAIL"
