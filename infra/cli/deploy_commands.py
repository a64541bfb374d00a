"""Commands that change or inspect running environments: deploy, pipeline, rollback, db, health, status, up, down.

Parse, call infra.deploy, render. Exit codes: 0 ok, 1 the deploy/check failed, 2 bad usage.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.markup import escape

from infra.cli._common import (
    Context,
    check_environment,
    check_repo,
    console,
    env_option,
    err_console,
    json_option,
    parse_repos,
    pass_context,
    print_json,
    repos_option,
    step_summary,
    table,
)
from infra.cli.monitor_commands import record_health, record_options, start_pushgateway, stop_pushgateway
from infra.deploy import health as healthmod
from infra.deploy import migrations, pipeline
from infra.deploy import status as statusmod
from infra.deploy import up as upmod
from infra.deploy.events import DeployObserver
from infra.deploy.plan import PHASES, DeployPlan
from infra.deploy.runtimes import runtime_for
from infra.deploy.schema_gate import SchemaChecks, SchemaResult
from infra.deploy.versions import parse_versions
from infra.errors import CheckFailed
from infra.markdown import markdown_table
from infra.workspace.located import LoadedWorkspace

STATUS_STYLE = {True: "[green]ok[/]", False: "[red]FAIL[/]", None: "[yellow]n/a[/]"}


def progress(message: str) -> None:
    err_console.print(escape(message))


def observer(loaded: LoadedWorkspace) -> DeployObserver | None:
    """The GitHub deployment observer when GITHUB_TOKEN is set (None otherwise)."""
    # imported here, when a deploy runs: github3 costs ~0.7 s, which `ws --help` (it imports this module) must not pay
    from infra.github.deployments import observer_from_environment

    try:
        return observer_from_environment(loaded)
    except Exception as exc:  # an observer never fails a deploy
        progress(f"warning: GitHub deployment records disabled: {exc}")
        return None


def schema_checks(loaded: LoadedWorkspace, database_url: str | None, repos: Sequence[str] | None) -> list[SchemaResult]:
    """infra.schema's alignment and drift, as the deploy's validate step and the health checks read them."""
    # imported here, when a check runs: the schema checks cost ~0.3 s, which `ws --help` must not pay
    from infra.health_checks import schema_checks as checks

    return checks(loaded, database_url, repos)


SCHEMA_CHECKS: SchemaChecks = schema_checks


def versions_option(func: Any) -> Any:
    return click.option(
        "--versions", default=None, metavar="REPO=TAG,...", help="Versions to deploy (default: the current checkout)."
    )(func)


def deployment_option(func: Any) -> Any:
    return click.option("--deployment", "deployment_id", type=int, required=True, metavar="ID", help="Ledger id.")(func)


def render_outcome(outcome: pipeline.Outcome, as_json: bool, title: str) -> None:
    if as_json:
        print_json(outcome.as_dict())
    else:
        rows = [
            (
                s.step,
                s.repo or "",
                "[yellow]skipped[/]" if s.skipped else STATUS_STYLE[s.ok],
                escape(s.detail.splitlines()[0] if s.detail else ""),
            )
            for s in outcome.steps
        ]
        if rows:
            console.print(table(title, ["step", "repo", "status", "detail"], rows))
        console.print(f"deployment {outcome.deployment_id}: {outcome.status}")
        if outcome.error:
            console.print(f"error: {escape(outcome.error)}")
        if any(s.step == "rollback" for s in outcome.steps):
            console.print(f"note: {pipeline.SCHEMA_NOTE}")
    summary_table(
        f"## {title}: {outcome.status}",
        ["step", "repo", "status", "detail"],
        [
            (
                s.step,
                s.repo or "",
                "skipped" if s.skipped else ("ok" if s.ok else "FAIL"),
                s.detail.splitlines()[0] if s.detail else "",
            )
            for s in outcome.steps
        ],
    )
    if not outcome.ok:
        raise CheckFailed(f"deployment {outcome.deployment_id} {outcome.status.replace('_', ' ')}")


def summary_table(heading: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Append a Markdown table under ``heading`` to $GITHUB_STEP_SUMMARY."""
    step_summary(f"{heading}\n\n{markdown_table(columns, list(rows))}")


def render_plan(plan: DeployPlan, as_json: bool) -> None:
    """The plan's steps, exactly those `ws deploy` executes, phase by phase."""
    if as_json:
        print_json({"dry_run": True, "plan": plan.as_dict()})
        return
    runtime = plan.snapshot.runtime if plan.snapshot else "?"
    console.print(f"[bold]Plan for {plan.environment}[/] (runtime {runtime}); nothing is changed")
    infra = plan.snapshot.infra if plan.snapshot else None
    where = (
        f"PostgreSQL {infra['database']} ({infra['database_source']}); Redis {infra['cache']} ({infra['cache_source']})"
        if infra
        else "not running: would be provisioned"
    )
    for number, phase in enumerate(PHASES, start=1):
        steps = plan.of(phase.kind)
        heading = f"{number}. {phase.kind}"
        if not phase.per_repo:
            extra = f" ({escape(where)})" if phase.kind == "infra" else ""
            console.print(f"{heading}: {escape(steps[0].action)}{extra}")
            continue
        console.print(f"{heading}:" + ("" if steps else " nothing to do"))
        for step in steps:
            detail = f" ({escape(step.detail)})" if step.detail else ""
            console.print(f"   stage {step.stage}: {step.repo}: {escape(step.action)}{detail}")
        if phase.kind == "deploy" and plan.preview is not None:
            console.print(f"   pulumi preview: {escape(plan.preview)}")
    console.print(f"on failure: roll back services deployed by this run in reverse stage order; {pipeline.SCHEMA_NOTE}")


@click.command("deploy")
@env_option()
@repos_option
@versions_option
@click.option("--dry-run", is_flag=True, help="Print the exact plan; change nothing.")
@json_option
@pass_context
def deploy_command(
    ctx: Context, environment: str, repos: str | None, versions: str | None, dry_run: bool, as_json: bool
) -> None:
    """Deploy ENV: infra -> migrate -> validate -> stages (health-gated) -> integration -> health.

    On any failure every service deployed by this run goes back to its previous version, in reverse stage
    order, and health is checked again. Rollback never reverts schema: migrations stay applied.
    A second deploy of the same environment while one runs fails at once, naming the holder.
    """
    loaded = ctx.loaded
    check_environment(loaded, environment)
    selected = parse_repos(loaded, repos)
    wanted = parse_versions(loaded, versions)
    runner = pipeline.Pipeline(
        loaded,
        environment,
        schema_checks=SCHEMA_CHECKS,
        progress=progress,
        observer=None if dry_run else observer(loaded),
    )
    if dry_run:
        render_plan(runner.plan(selected, wanted, preview=True), as_json)
        return
    render_outcome(runner.run(selected, wanted), as_json, f"ws deploy {environment}")


@click.group("pipeline")
def pipeline_group() -> None:
    """The deploy's steps one per command, for CI jobs: begin, infra, migrate, validate, deploy, integration,
    health, finish. Each takes the environment lock for its own run and records itself in the ledger."""


@pipeline_group.command("begin")
@env_option()
@repos_option
@versions_option
@click.option("--dry-run", is_flag=True, help="Record a dry-run deployment: later steps only print their plan.")
@pass_context
def pipeline_begin(ctx: Context, environment: str, repos: str | None, versions: str | None, dry_run: bool) -> None:
    """Create the deployment in the ledger; print its id (and add deployment_id=<id> to $GITHUB_OUTPUT)."""
    loaded = ctx.loaded
    check_environment(loaded, environment)
    deployment_id = pipeline.pipeline_begin(
        loaded,
        environment,
        parse_repos(loaded, repos),
        parse_versions(loaded, versions),
        dry_run=dry_run,
        schema_checks=SCHEMA_CHECKS,
        progress=progress,
        observer=observer(loaded),
    )
    click.echo(deployment_id)
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(f"deployment_id={deployment_id}\n")


def _step_command(step: str, doc: str, needs_repo: bool = False) -> click.Command:
    @click.pass_obj
    def run(ctx: Context, deployment_id: int, as_json: bool, repo: str | None = None) -> None:
        loaded = ctx.loaded
        if repo is not None:
            check_repo(loaded, repo)
        outcome = pipeline.pipeline_step(
            loaded,
            deployment_id,
            step,
            repo=repo,
            schema_checks=SCHEMA_CHECKS,
            progress=progress,
            observer=observer(loaded),
        )
        render_outcome(outcome, as_json, f"ws pipeline {step}")

    params: list[click.Parameter] = [
        click.Option(["--deployment", "deployment_id"], type=int, required=True, metavar="ID", help="Ledger id."),
        click.Option(["--json", "as_json"], is_flag=True, help="Print machine-readable JSON instead of tables."),
    ]
    if needs_repo:
        params.append(click.Option(["--repo"], required=True, metavar="R", help="The repo to deploy."))
    return click.Command(step, callback=run, params=params, help=doc)


for _phase in PHASES:
    pipeline_group.add_command(_step_command(_phase.kind.value, _phase.summary, _phase.needs_repo))
pipeline_group.add_command(
    _step_command(pipeline.FINISH, "Mark the deployment succeeded, rolled_back or failed from its steps.")
)


@click.command("rollback")
@deployment_option
@json_option
@pass_context
def rollback_command(ctx: Context, deployment_id: int, as_json: bool) -> None:
    """Roll the services a deployment touched back to their previous versions (reverse stage order).

    Works on failed, interrupted (deployer killed) and still-open pipeline deployments. Schema is never
    reverted: migrations stay applied.
    """
    loaded = ctx.loaded
    outcome = pipeline.rollback(
        loaded, deployment_id, schema_checks=SCHEMA_CHECKS, progress=progress, observer=observer(loaded)
    )
    render_outcome(outcome, as_json, f"ws rollback {deployment_id}")


@click.group("db")
def db_group() -> None:
    """Database commands of the workspace (the built-in Prisma-compatible migration applier)."""


@db_group.command("migrate")
@env_option()
@click.option("--repo", required=True, metavar="R", help="The repo whose migrations to apply.")
@click.option("--dry-run", is_flag=True, help="List the pending migrations; apply nothing.")
@json_option
@pass_context
def db_migrate(ctx: Context, environment: str, repo: str, dry_run: bool, as_json: bool) -> None:
    """Apply REPO's Prisma migration folders like `prisma migrate deploy`, recording _prisma_migrations rows.

    Refuses like Prisma: a failed migration (P3009), a non-empty schema without history (P3005), an applied
    migration whose migration.sql changed since.
    """
    loaded = ctx.loaded
    check_environment(loaded, environment)
    check_repo(loaded, repo)
    result = migrations.migrate_repo(runtime_for(loaded, environment), loaded, repo, dry_run=dry_run, progress=progress)
    if as_json:
        print_json(result.as_dict())
        return
    verb = "would apply" if dry_run else "applied"
    if result.migrations:
        console.print(
            f"{repo} ({result.namespace}): {verb} {len(result.migrations)} migration(s): {', '.join(result.migrations)}"
        )
    else:
        console.print(f"{repo} ({result.namespace}): up to date")
    if result.note:
        console.print(result.note)


@click.command("health")
@env_option()
@json_option
@click.option("--format", "fmt", type=click.Choice(["table", "prometheus"]), default="table", help="Output format.")
@record_options
@pass_context
def health_command(
    ctx: Context, environment: str, as_json: bool, fmt: str, record: bool, record_interval: str, retention: str
) -> None:
    """Check ENV: database, every repo's migrations, Redis PING, each service's health endpoint (concurrently,
    with its timeout and retries) and schema alignment. Exit 1 when anything is unhealthy."""
    loaded = ctx.loaded
    check_environment(loaded, environment)
    runtime = runtime_for(loaded, environment)
    report = healthmod.check(loaded, environment, runtime, runtime.locate(), schema_checks=SCHEMA_CHECKS)
    if record:
        record_health(loaded, runtime, report, record_interval, retention)
    if as_json:
        print_json(report.as_dict())
    elif fmt == "prometheus":
        sys.stdout.write(report.prometheus())
    else:
        render_health(report)
    summary_table(
        f"## ws health {environment}: {'ok' if report.ok else 'UNHEALTHY'}",
        ["component", "status", "ms", "detail"],
        [
            (
                c.name,
                "n/a" if c.ok is None else ("ok" if c.ok else "FAIL"),
                "" if c.latency_ms is None else f"{c.latency_ms:.1f}",
                c.detail,
            )
            for c in report.components
        ],
    )
    if not report.ok:
        raise CheckFailed(f"{environment} is unhealthy: {', '.join(c.name for c in report.failed)}")


def render_health(report: healthmod.HealthReport) -> None:
    rows = [
        (c.name, STATUS_STYLE[c.ok], "" if c.latency_ms is None else f"{c.latency_ms:.1f}", escape(c.detail))
        for c in report.components
    ]
    console.print(table(f"health of {report.environment}", ["component", "status", "ms", "detail"], rows))


@click.command("status")
@env_option(required=False)
@json_option
@pass_context
def status_command(ctx: Context, environment: str | None, as_json: bool) -> None:
    """Per environment: the last deployments, the last one's duration against the 5-minute target, migration
    progress, schema alignment and health."""
    loaded = ctx.loaded
    if environment:
        check_environment(loaded, environment)
    results = statusmod.status(loaded, SCHEMA_CHECKS, environment)
    if as_json:
        print_json(results)
        return
    for env in results:
        console.print(f"[bold]{env['environment']}[/] ({env['runtime']})")
        if not env.get("reachable"):
            console.print(f"  {escape(env.get('detail', 'not reachable'))}")
            continue
        rows = [
            (
                d["id"],
                d["status"] + (" (dry run)" if d["dry_run"] else ""),
                ", ".join(f"{r}={v}" for r, v in d["versions_after"].items()),
                f"{d['started_at']:%Y-%m-%d %H:%M:%S}",
                d["trigger"],
                escape((d["error"] or "")[:100]),
            )
            for d in env["deployments"]
        ]
        console.print(table("  last deployments", ["id", "status", "versions", "started", "trigger", "error"], rows))
        timed = env.get("deploy_time")
        console.print(f"  deploy time: {escape(timed['summary'] if timed else 'no deployment recorded yet')}")
        health = env["health"]
        checks = [(c["name"], STATUS_STYLE[c["ok"]], escape(c["detail"])) for c in health["components"]]
        console.print(table("  migrations, schema and health", ["component", "status", "detail"], checks))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command("up")
@env_option(default="local")
@click.option("--attach", is_flag=True, help="Stay in the foreground; Ctrl-C stops everything (ws down).")
@json_option
@pass_context
def up_command(ctx: Context, environment: str, attach: bool, as_json: bool) -> None:
    """Bring the workspace up on this machine: PostgreSQL and Redis (DATABASE_URL/REDIS_URL, the local
    servers, or embedded ones), migrations, every service in stage order, health. Services keep running
    until `ws down` (or Ctrl-C with --attach). State and logs: .ws/<env>/ beside workspace.yaml."""
    loaded = ctx.loaded
    started = time.monotonic()
    start_pushgateway(loaded, environment)  # where the services' trackCrossRepositoryMetric pushes land
    result = upmod.up(loaded, environment, schema_checks=SCHEMA_CHECKS, progress=progress, observer=observer(loaded))
    elapsed = time.monotonic() - started
    if as_json:
        print_json(
            {
                **result.outcome.as_dict(),
                "urls": result.urls,
                "health": result.report.as_dict(),
                "seconds": round(elapsed, 2),
            }
        )
    else:
        rows = [(repo, url) for repo, url in result.urls.items()]
        console.print(table(f"{loaded.model.name} ({environment}) in {elapsed:.1f}s", ["service", "url"], rows))
        render_health(result.report)
        console.print(f"logs: {loaded.root / '.ws' / environment / 'logs'}; stop with `ws down --env {environment}`")
    if not result.outcome.ok or not result.report.ok:
        raise CheckFailed(
            f"ws up: deployment {result.outcome.deployment_id} {result.outcome.status}"
            + (f": {result.outcome.error}" if result.outcome.error else "")
        )
    if attach:
        signal.signal(signal.SIGTERM, _interrupt)
        try:  # announce inside the try: a Ctrl-C right after the announcement must still stop everything
            progress("attached: Ctrl-C stops the workspace")
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            stopped = upmod.down(loaded, environment)
            for line in stopped.stopped + stop_pushgateway(loaded, environment):
                progress(f"stopped {line}")
            for line in stopped.skipped:
                progress(f"skipped {line}")


@click.command("down")
@env_option(default="local")
@json_option
@pass_context
def down_command(ctx: Context, environment: str, as_json: bool) -> None:
    """Stop every service of the local environment and the embedded servers `ws up` started."""
    result = upmod.down(ctx.loaded, environment)
    stopped = result.stopped + stop_pushgateway(ctx.loaded, environment)
    if as_json:
        print_json({"environment": environment, "stopped": stopped, "skipped": result.skipped})
        return
    for line in stopped:
        console.print(f"stopped {line}")
    for line in result.skipped:  # recorded pids that belong to other processes now: reported, never signalled
        console.print(f"skipped {escape(line)}")
    if not stopped and not result.skipped:
        console.print(f"nothing running in {environment}")


COMMANDS = (
    deploy_command,
    pipeline_group,
    rollback_command,
    db_group,
    health_command,
    status_command,
    up_command,
    down_command,
)
