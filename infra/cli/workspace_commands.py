"""Commands about the declaration itself: check, plan, graph, env, generate."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from infra.cli._common import (
    Context,
    check_environment,
    check_repo,
    console,
    env_option,
    json_option,
    parse_repos,
    pass_context,
    print_json,
    repos_option,
    step_summary,
    table,
)
from infra.errors import CheckFailed, UsageError
from infra.markdown import markdown_table
from infra.workspace import env as envmod
from infra.workspace import graph

STATUS_STYLE = {"ok": "[green]ok[/]", "fail": "[red]FAIL[/]", "skipped": "[yellow]skipped[/]"}


@click.command("check")
@json_option
@pass_context
def check_command(ctx: Context, as_json: bool) -> None:
    """Check everything that can be checked offline: the declaration, env, checkouts, generated files.

    Exit 1 when any check fails; skipped checks say why.
    """
    # Imported here: the checks reach into every area (generators, schema, migrate) that `ws plan` never needs.
    from infra import checks

    results = checks.run_checks(ctx.loaded)
    failed = [r for r in results if r.status == "fail"]
    if as_json:
        print_json({"ok": not failed, "checks": [r.as_dict() for r in results]})
    else:
        rows = [(r.name, STATUS_STYLE[r.status], escape(r.detail)) for r in results]
        console.print(table(f"ws check: {ctx.loaded.path.name}", ["check", "status", "detail"], rows))
    step_summary(
        "## ws check\n\n"
        + markdown_table(["check", "status", "detail"], [(r.name, r.status, r.detail) for r in results])
    )
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(results)} checks failed: {', '.join(r.name for r in failed)}")


@click.command("plan")
@env_option()
@repos_option
@json_option
@pass_context
def plan_command(ctx: Context, environment: str, repos: str | None, as_json: bool) -> None:
    """Print the deploy stages for ENV: repos in one stage deploy in parallel, stages in order.

    --repos deploys only those repos (their dependencies must already be deployed).
    """
    loaded = ctx.loaded
    check_environment(loaded, environment)
    selected = parse_repos(loaded, repos)
    layers = graph.selected_stages(loaded.model, selected)
    env = loaded.model.environments[environment]
    if as_json:
        print_json(
            {
                "workspace": loaded.model.name,
                "environment": environment,
                "runtime": env.runtime,
                "protected": env.protected,
                "stages": [
                    {
                        "stage": index,
                        "repos": [{"name": r, "depends_on": list(loaded.model.repos[r].depends_on)} for r in layer],
                    }
                    for index, layer in enumerate(layers, start=1)
                ],
            }
        )
    else:
        rows = [
            (
                index,
                ", ".join(layer),
                "; ".join(f"{r} <- {', '.join(loaded.model.repos[r].depends_on) or '-'}" for r in layer),
            )
            for index, layer in enumerate(layers, start=1)
        ]
        title = f"plan: {loaded.model.name} -> {environment} ({env.runtime}{', protected' if env.protected else ''})"
        console.print(table(title, ["stage", "repos (in parallel)", "depends on"], rows))
    step_summary(f"## Deploy plan: {environment}\n\n```mermaid\n{graph.mermaid(loaded.model, selected)}```")


@click.command("graph")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="mermaid: for Markdown and GitHub summaries; dot: for Graphviz.",
)
@repos_option
@pass_context
def graph_command(ctx: Context, fmt: str, repos: str | None) -> None:
    """Print the dependency graph (one cluster per stage) as Mermaid or Graphviz dot."""
    selected = parse_repos(ctx.loaded, repos)
    render = graph.mermaid if fmt == "mermaid" else graph.dot
    click.echo(render(ctx.loaded.model, selected), nl=False)


@click.group("env", invoke_without_command=True)
@env_option(required=False)
@click.option("--repo", "-r", default=None, help="Repo whose environment to resolve.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dotenv", "json"]),
    default="dotenv",
    show_default=True,
    help="dotenv: KEY=value lines to source or pass to docker --env-file; json: each value with its secret flag.",
)
@click.option(
    "--secrets-from",
    type=click.Choice(["ref", "env"]),
    default="ref",
    show_default=True,
    help="ref: print secrets as ${secret:NAME}; env: take their values from this process's environment.",
)
@click.pass_context
def env_group(click_ctx: click.Context, environment: str | None, repo: str | None, fmt: str, secrets_from: str) -> None:
    """Resolve a repo's environment: shared -> environment -> repo -> repo-in-environment overrides.

    ws env --env dev --repo app-agents prints its .env; `ws env check` and `ws env template` are below.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    if environment is None or repo is None:
        raise UsageError("ws env needs --env ENV and --repo REPO (or a subcommand: check, template)")
    loaded = ctx.loaded
    check_environment(loaded, environment)
    check_repo(loaded, repo)
    values = envmod.resolve(loaded.model, environment, repo)
    source = envmod.environ_secrets if secrets_from == "env" else None
    if source is not None:
        missing = envmod.missing_secrets(values, source)
        if missing:
            raise UsageError(f"--secrets-from env: secret(s) not set in the environment: {', '.join(missing)}")
    if fmt == "json":
        print_json(
            {
                key: {
                    "value": envmod.render(value, source),
                    "secret": envmod.is_secret(value),
                }
                for key, value in values.items()
            }
        )
    else:
        click.echo(envmod.dotenv(values, source), nl=False)


@env_group.command("check")
@json_option
@pass_context
def env_check(ctx: Context, as_json: bool) -> None:
    """Prove every variable each repo requires is defined in every environment (exit 1 if not)."""
    missing = envmod.required_report(ctx.loaded.model)
    if as_json:
        print_json(
            {"ok": not missing, "missing": [{"environment": e, "repo": r, "variable": v} for e, r, v in missing]}
        )
    elif missing:
        console.print(table("undefined required variables", ["environment", "repo", "variable"], missing))
    else:
        console.print("every required variable is defined in every environment")
    if missing:
        raise CheckFailed(f"{len(missing)} required variable(s) undefined; declare them under env: in workspace.yaml")


@env_group.command("template")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Write here (default: stdout).")
@pass_context
def env_template(ctx: Context, output: Path | None) -> None:
    """Write the .env.shared template (shared variables; secrets as references)."""
    text = envmod.shared_template(ctx.loaded.model)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


@click.command("generate")
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 when a generated file is stale.")
@json_option
@pass_context
def generate_command(ctx: Context, check_only: bool, as_json: bool) -> None:
    """Write every file derived from workspace.yaml (JSON Schema, Pulumi stack files, actions, workflows)."""
    # Imported here: the generators of actions, workflows and stack files are not needed by the other commands.
    from infra import generate

    loaded = ctx.loaded
    if check_only:
        stale = generate.stale_files(loaded)
        if as_json:
            print_json({"ok": not stale, "stale": stale})
        elif not stale:
            console.print("generated files are up to date")
        if stale:
            raise CheckFailed(f"stale generated file(s): {', '.join(stale)}; run `ws generate` and commit")
        return
    results = generate.write(loaded)
    if as_json:
        print_json([{"path": p, "state": s} for p, s in results])
    else:
        for path, state in results:
            console.print(f"{state:>9}  {path}")


COMMANDS = [check_command, plan_command, graph_command, env_group, generate_command]
