"""`ws migrate`: move every agent's SQLite memory into PostgreSQL (check, run, validate, cleanup, status)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.markup import escape

from infra.cli._common import (
    Context,
    console,
    err_console,
    json_option,
    parse_repos,
    pass_context,
    print_json,
    step_summary,
    table,
)
from infra.errors import CheckFailed
from infra.migrate import MigrationScope, code_scan, scope
from infra.migrate.check import check
from infra.migrate.cleanup import cleanup
from infra.migrate.convert import REJECT_REASONS, RULES
from infra.migrate.load import RunOptions, run_migration
from infra.migrate.progress import for_terminal
from infra.migrate.status import status
from infra.migrate.validate import validate

F = TypeVar("F", bound=Callable[..., Any])


def target_options(func: F) -> F:
    func = click.option(
        "--database-url",
        "database_url",
        default=None,
        envvar="WS_MIGRATE_DATABASE_URL",
        metavar="URL",
        help="PostgreSQL URL to migrate into (libpq or Prisma form; ?schema= is dropped). Env WS_MIGRATE_DATABASE_URL.",
    )(func)
    func = click.option(
        "--env",
        "-e",
        "environment",
        default=None,
        metavar="ENV",
        help="Take the database URL of the repo in this environment of workspace.yaml (local: DATABASE_URL or the "
        "default server).",
    )(func)
    func = click.option(
        "--repos",
        "repos",
        default=None,
        metavar="A,B",
        help="Repos whose sqlite_migration to act on (default: every repo that declares one).",
    )(func)
    return func


def busy_option(func: F) -> F:
    return click.option(
        "--busy-timeout",
        type=float,
        default=2.0,
        show_default=True,
        help="Seconds to wait for a SQLite file locked by a writer before failing that agent.",
    )(func)


def _scope(ctx: Context, repos: str | None, environment: str | None, database_url: str | None) -> MigrationScope:
    names = [n.strip() for n in repos.split(",") if n.strip()] if repos else None
    if environment is None and database_url is None:
        environment = "local" if "local" in ctx.loaded.model.environments else None
    return scope(ctx.loaded, names, environment, database_url)


def _no_files_hint(found: MigrationScope) -> None:
    if not found.sources:
        err_console.print(
            "no SQLite files match the sqlite_migration source glob of "
            + ", ".join(found.repos)
            + " (for the example workspace, generate them: python examples/app-agents/scripts/generate_memories.py)"
        )


@click.group("migrate")
def migrate_group() -> None:
    """Move agents' SQLite memory files (repos.<repo>.sqlite_migration) into PostgreSQL, provably.

    \b
    ws migrate check      read-only plan + profile of every file; exit 1 if anything would be lost
    ws migrate run        COPY every agent in parallel; resumable after any crash; validates as it goes
    ws migrate validate   re-read every file and compare counts + checksums with PostgreSQL; exit 1 on mismatch
    ws migrate cleanup    archive (or --delete) only files whose every table validated
    ws migrate status     dashboard: agents migrated/validated/failed, rows, percent, rejects

    The database comes from --database-url, or --env ENV (default local). The migration's ledger, rejects and
    raw values kept by lossy rules live in the schema ws_migrate of that database.
    """


def _check_code(ctx: Context, repos: str | None, as_json: bool) -> None:
    loaded = ctx.loaded
    scan = code_scan.scan_workspace(loaded, parse_repos(loaded, repos))
    if as_json:
        print_json(scan.as_dict())
    else:
        for repo, findings in scan.repos.items():
            if not findings:
                console.print(f"{repo}: no SQLite import, path or dependency left")
            for finding in findings:
                console.print(escape(f"{repo}/{finding}"))
        for repo, reason in scan.skipped.items():
            console.print(escape(f"{repo}: skipped: {reason}"))
        if not scan.repos and not scan.skipped:
            console.print("no repo declares sqlite_migration; name repos with --repos")
    if scan.total or scan.skipped:
        raise CheckFailed(
            f"{scan.total} place(s) still use SQLite"
            + (f"; {len(scan.skipped)} repo(s) not scanned" if scan.skipped else "")
        )


@migrate_group.command("check")
@target_options
@busy_option
@click.option(
    "--create-tables", is_flag=True, help="Treat missing target tables as ones `run --create-tables` creates."
)
@click.option(
    "--code",
    is_flag=True,
    help="Scan the repos' code instead: every SQLite import, .db path and dependency left (no database needed).",
)
@json_option
@pass_context
def check_command(
    ctx: Context,
    repos: str | None,
    environment: str | None,
    database_url: str | None,
    busy_timeout: float,
    create_tables: bool,
    code: bool,
    as_json: bool,
) -> None:
    """Plan and profile every SQLite file without changing anything (files opened read-only).

    Per file: integrity check, tables, columns, row counts and the target of each table. Per column: storage
    classes (typeof), NUL bytes, invalid UTF-8, out-of-range integers, epoch vs ISO dates, JSON PostgreSQL
    rejects, huge blobs; each with the named rule that converts it. Exit 1 when any row or column would not
    arrive in its target (it would be rejected or has nowhere to go), or a file is unreadable.

    With --code: every place in the repos' code that still opens SQLite (driver imports, .db/.sqlite paths,
    package.json and requirements dependencies), so warnings can be added before the move and, after cleanup,
    proof that none is left. Exit 1 when any is found; a line marked `ws: sqlite-ok` is kept out.
    """
    if code:
        _check_code(ctx, repos, as_json)
        return
    found = _scope(ctx, repos, environment, database_url)
    _no_files_hint(found)
    report = check(found.url, found.sources, create_tables=create_tables, busy_timeout=busy_timeout)
    if as_json:
        print_json(report.as_dict())
    else:
        rows: list[tuple[Any, ...]] = []
        for item in report.files:
            if item.error:
                rows.append((item.agent_id, "-", "-", "-", "-", "[red]unreadable[/]"))
            for t in item.tables:
                rules = ", ".join(f"{k} {v}" for k, v in t.rules.items()) or "-"
                rejects = ", ".join(f"{k} {v}" for k, v in t.rejects.items()) or "-"
                state = "[red]problem[/]" if t.problems or t.rejects else "ok"
                rows.append(
                    (
                        item.agent_id,
                        f"{t.source_table} -> {t.target_table} ({t.action})",
                        t.rows,
                        escape(rules),
                        escape(rejects),
                        state,
                    )
                )
        console.print(
            table("ws migrate check: plan", ["agent", "table", "rows", "rules", "would reject", "state"], rows)
        )
        mixed = [
            (item.agent_id, t.source_table, c.name, ", ".join(f"{k} {v}" for k, v in c.storage_classes.items()))
            for item in report.files
            for t in item.tables
            for c in t.columns
            if len([k for k in c.storage_classes if k != "null"]) > 1
        ]
        if mixed:
            console.print(
                table("columns with mixed storage classes", ["agent", "table", "column", "typeof counts"], mixed)
            )
        huge = [
            (item.agent_id, t.source_table, c.name, c.huge_blobs, f"{c.largest_blob:,} bytes")
            for item in report.files
            for t in item.tables
            for c in t.columns
            if c.huge_blobs
        ]
        if huge:
            console.print(
                table(
                    "huge blobs (> 16 MiB; streamed by COPY, no rule needed)",
                    ["agent", "table", "column", "count", "largest"],
                    huge,
                )
            )
        if report.rules():
            console.print(
                table("rules", ["rule", "count", "meaning"], [(k, v, RULES[k]) for k, v in report.rules().items()])
            )
        for problem in report.problems:
            console.print(f"[red]problem[/]: {escape(problem)}")
        total = sum(f.rows for f in report.files)
        console.print(f"{len(report.files)} file(s), {total:,} rows; {len(report.problems)} problem(s)")
    if not report.ok:
        raise CheckFailed(f"{len(report.problems)} problem(s) would lose data; fix them or see the rules above")


@migrate_group.command("run")
@target_options
@busy_option
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Agents migrated in parallel (= database connections).",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(1),
    default=20_000,
    show_default=True,
    help="Rows per committed batch (the resume granularity).",
)
@click.option(
    "--copy-format",
    type=click.Choice(["text", "binary"]),
    default="binary",
    show_default=True,
    help="COPY format (binary measured faster here; scripts/bench_migrate.py --formats compares).",
)
@click.option("--create-tables", is_flag=True, help="Create missing target tables from the source schema.")
@click.option(
    "--reload", is_flag=True, help="Reload every selected agent from scratch (e.g. after `validate` found a mismatch)."
)
@click.option(
    "--no-validate",
    is_flag=True,
    help="Load only: no content hashes are computed (faster); `ws migrate validate` or a later `run` validates "
    "those tables by re-reading their files.",
)
@click.option("--no-integrity-check", is_flag=True, help="Skip SQLite's quick_check before reading a file.")
@click.option(
    "--no-native",
    is_flag=True,
    help="Convert every row in Python instead of sending clean rows through the native columnar path "
    "(docs/migrate.md says which rows take which path).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--dry-run", is_flag=True, help="Print what would be loaded where, and change nothing.")
@json_option
@pass_context
def run_command(
    ctx: Context,
    repos: str | None,
    environment: str | None,
    database_url: str | None,
    busy_timeout: float,
    jobs: int,
    batch_rows: int,
    copy_format: str,
    create_tables: bool,
    reload: bool,
    no_validate: bool,
    no_integrity_check: bool,
    no_native: bool,
    quiet: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Load every agent's tables with COPY, several agents in parallel; safe to interrupt and re-run.

    Each batch commits together with its ledger row (ws_migrate.units), so after a crash or kill -9 a re-run
    resumes after the last committed row; target rows are keyed by (agent_id, source_rowid), so nothing ever
    duplicates. Anomalies are converted by named, counted rules or their rows go to ws_migrate.rejects with
    the raw value. A corrupt or locked file fails that agent; the others finish. Exit 1 if any agent failed.
    """
    found = _scope(ctx, repos, environment, database_url)
    _no_files_hint(found)
    options = RunOptions(
        jobs=jobs,
        batch_rows=batch_rows,
        copy_format="binary" if copy_format == "binary" else "text",
        create_tables=create_tables,
        busy_timeout=busy_timeout,
        validate=not no_validate,
        integrity_check=not no_integrity_check,
        reload=reload,
        native=not no_native,
    )
    observer = for_terminal(err_console, quiet=quiet or dry_run)
    report = run_migration(found.url, found.sources, options, observer, dry_run=dry_run)
    if as_json:
        print_json(report.as_dict())
    else:
        rows: list[tuple[Any, ...]] = []
        for agent in report.agents:
            for unit in agent.units:
                rows.append(
                    (
                        agent.agent_id,
                        f"{unit.source_table} -> {unit.target_table}",
                        unit.status,
                        unit.rows if dry_run else unit.rows_loaded,
                        unit.rows_rejected,
                        escape(unit.error) or "-",
                    )
                )
            if not agent.units:
                rows.append((agent.agent_id, "-", agent.status, 0, 0, escape(agent.error)))
        title = "ws migrate run --dry-run: plan" if dry_run else f"ws migrate run ({report.copy_format} COPY)"
        console.print(
            table(title, ["agent", "table", "status", "rows" if dry_run else "loaded", "rejected", "detail"], rows)
        )
        if report.rules():
            console.print(
                table(
                    "rules applied",
                    ["rule", "count", "meaning"],
                    [(k, v, RULES.get(k, "")) for k, v in report.rules().items()],
                )
            )
        if not dry_run:
            rate = f", {report.rows_loaded / report.seconds:,.0f} rows/s" if report.seconds else ""
            if report.rows_loaded:
                rate += f"; {100 * report.native_rows / report.rows_loaded:.1f}% of rows took the native path"
            console.print(
                f"{report.rows_loaded:,} rows loaded, {report.rows_rejected:,} rejected (kept in ws_migrate.rejects) in {report.seconds:.1f}s{rate}"
            )
    step_summary(
        f"## ws migrate run\n\n{report.rows_loaded} rows loaded, {report.rows_rejected} rejected, {len(report.failed)} agent(s) failed"
    )
    if report.failed:
        names = ", ".join(f"{a.agent_id} ({a.error or a.status})" for a in report.failed)
        raise CheckFailed(f"{len(report.failed)} of {len(report.agents)} agent(s) not migrated: {names}")


@migrate_group.command("validate")
@target_options
@busy_option
@click.option(
    "--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True, help="Files validated in parallel."
)
@json_option
@pass_context
def validate_command(
    ctx: Context,
    repos: str | None,
    environment: str | None,
    database_url: str | None,
    busy_timeout: float,
    jobs: int,
    as_json: bool,
) -> None:
    """Re-read every file and compare row counts and content checksums with PostgreSQL, per agent and table.

    On a mismatch the rows are compared one by one and the differing rowids are listed. Exit 1 on any mismatch.
    """
    found = _scope(ctx, repos, environment, database_url)
    _no_files_hint(found)
    report = validate(found.url, found.sources, jobs=jobs, busy_timeout=busy_timeout)
    if as_json:
        print_json(report.as_dict())
    else:
        rows: list[tuple[Any, ...]] = []
        for item in report.files:
            if item.error:
                rows.append((item.agent_id, "-", "-", "-", "[red]FAIL[/]", escape(item.error)))
            for t in item.tables:
                detail = t.reason
                if t.missing_in_target or t.extra_in_target or t.different:
                    detail += (
                        f" (missing rowids {t.missing_in_target}, extra {t.extra_in_target}, different {t.different})"
                    )
                rows.append(
                    (
                        item.agent_id,
                        t.source_table,
                        f"{t.source_rows}+{t.rejected_source} rejected",
                        t.target_rows,
                        "ok" if t.ok else "[red]MISMATCH[/]",
                        escape(detail) or "-",
                    )
                )
        console.print(
            table("ws migrate validate", ["agent", "table", "source rows", "target rows", "result", "detail"], rows)
        )
    if not report.ok:
        raise CheckFailed(f"{len(report.mismatched)} of {len(report.files)} file(s) do not match PostgreSQL")


@migrate_group.command("cleanup")
@target_options
@busy_option
@click.option("--delete", is_flag=True, help="Delete validated files instead of moving them to the archive folder.")
@click.option(
    "--dry-run", is_flag=True, help="Say what would be archived or deleted and what is refused, change nothing."
)
@json_option
@pass_context
def cleanup_command(
    ctx: Context,
    repos: str | None,
    environment: str | None,
    database_url: str | None,
    busy_timeout: float,
    delete: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Retire SQLite files whose every table validated against this database (unchanged since).

    They move to the repo's sqlite_migration.archive folder (a manifest records sha256, rows and validation
    time), or are deleted with --delete. Anything else is refused with the reason: exit 1 if any file is refused.
    """
    found = _scope(ctx, repos, environment, database_url)
    _no_files_hint(found)
    report = cleanup(
        found.url,
        found.sources,
        found.archive_dirs,
        found.repo_dirs,
        delete=delete,
        dry_run=dry_run,
        busy_timeout=busy_timeout,
    )
    if as_json:
        print_json(report.as_dict())
    else:
        rows = [(i.agent_id, i.action, escape(i.destination or i.reason or "-")) for i in report.items]
        console.print(
            table(
                "ws migrate cleanup" + (" --dry-run" if dry_run else ""), ["agent", "action", "to / why refused"], rows
            )
        )
        for manifest in report.manifests:
            console.print(f"manifest: {manifest}")
    if report.refused:
        raise CheckFailed(f"{len(report.refused)} file(s) refused (not validated against this database)")


@migrate_group.command("status")
@target_options
@json_option
@pass_context
def status_command(
    ctx: Context, repos: str | None, environment: str | None, database_url: str | None, as_json: bool
) -> None:
    """The migration dashboard: agents total/migrated/validated/failed, rows, percent complete, rejects."""
    found = _scope(ctx, repos, environment, database_url)
    report = status(found.url, found.sources, found.namespaces)
    data = report.as_dict()
    if as_json:
        print_json(data)
        return
    counts = data["agents"]
    console.print(
        table(
            "ws migrate status",
            [
                "agents",
                "migrated",
                "validated",
                "archived",
                "failed",
                "in progress",
                "pending",
                "complete",
                "rows",
                "rejected",
            ],
            [
                (
                    counts["total"],
                    counts["migrated"],
                    counts["validated"],
                    counts["archived"],
                    counts["failed"],
                    counts["in_progress"],
                    counts["pending"],
                    f"{data['percent_complete']}%",
                    f"{data['rows_loaded']:,}",
                    f"{data['rows_rejected']:,}",
                )
            ],
        )
    )
    if report.rejects:
        console.print(
            table(
                "rejects",
                ["reason", "rows", "meaning"],
                [(k, v, REJECT_REASONS.get(k, "")) for k, v in report.rejects.items()],
            )
        )
    troubled = [
        (a.agent_id, a.status, escape(a.error)) for a in report.agents if a.status in ("failed", "mismatch", "changed")
    ]
    if troubled:
        console.print(table("agents needing attention", ["agent", "status", "error"], troubled))
    step_summary(
        f"## ws migrate status\n\n{counts['validated']}/{counts['total']} agents validated ({data['percent_complete']}%)"
    )


COMMANDS = (migrate_group,)
