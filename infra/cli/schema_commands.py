"""`ws schema ...`: shared Prisma models across repos: check, sync, format, export-types, package, drift."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from infra.cli._common import (
    Context,
    check_environment,
    console,
    err_console,
    json_option,
    parse_repos,
    pass_context,
    print_json,
    repos_option,
    step_summary,
    table,
)
from infra.cli.github_commands import propagate_command
from infra.errors import CheckFailed
from infra.github.contents import github_readers
from infra.schema import align, export, formatting, load, sync, types_package
from infra.schema import drift as drift_module
from infra.workspace.located import LoadedWorkspace


@click.group("schema")
def schema_group() -> None:
    """Shared Prisma models: the primary repo owns them, the secondaries keep exact copies.

    check compares the copies with the primary, sync repairs them, export-types writes TypeScript and
    Python types for them, package builds those types as the versioned npm package, drift compares a live
    database with every repo's declared models.
    """


@schema_group.command("check")
@click.option(
    "--ref",
    default=None,
    metavar="NAME",
    help="Read every repo's schema at this branch, tag or SHA through the GitHub API instead of the checkouts.",
)
@click.option(
    "--default-branch-fallback",
    is_flag=True,
    help="With --ref: read a repo that has no such ref at its default branch (each one is named).",
)
@json_option
@pass_context
def check_command(ctx: Context, ref: str | None, default_branch_fallback: bool, as_json: bool) -> None:
    """Report, per secondary, every shared model and enum that differs from the primary, field by field.

    Also checks that secondary tables do not collide with primary tables, that relations into shared
    models point at existing fields and that prisma.config.ts declares the shared tables external.
    Exit 1 below 100% alignment.
    """
    loaded = ctx.loaded
    readers = None
    if ref:
        readers = github_readers(
            loaded, ref, fallback=default_branch_fallback, notify=lambda note: err_console.print(escape(note))
        )
    report = align.check_alignment(load.load_schemas(loaded, readers))
    if as_json:
        print_json(report.as_dict())
    else:
        rows = []
        for status in report.statuses:
            mark = "[green]aligned[/]" if status.aligned else "[red]differs[/]"
            rows.append((status.repo, status.name, mark, escape("\n".join(str(d) for d in status.differences))))
        for problem in report.problems:
            rows.append((problem.repo, problem.name, "[red]problem[/]", escape(str(problem))))
        for repo, reason in report.skipped.items():
            rows.append((repo, "-", "[yellow]skipped[/]", escape(reason)))
        console.print(table(f"schema check (primary: {report.primary})", ["repo", "shared", "status", "detail"], rows))
        if report.total:
            console.print(f"alignment: {report.percent:g}% ({report.aligned}/{report.total} aligned)")
        else:
            console.print("alignment: nothing compared (no secondary schema could be read)")
    step_summary(report.markdown())
    if not report.ok:
        raise CheckFailed(
            f"schema alignment {report.percent:g}% ({report.aligned}/{report.total}), {len(report.problems)} other "
            "problem(s); run `ws schema sync` to copy the primary's shared models"
        )


@schema_group.command("sync")
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 when a sync would change a file.")
@click.option("--dry-run", is_flag=True, help="Print the diff without writing.")
@click.option("--repos", "repos", default=None, metavar="A,B", help="Secondaries to sync (default: all).")
@json_option
@pass_context
def sync_command(ctx: Context, check_only: bool, dry_run: bool, repos: str | None, as_json: bool) -> None:
    """Rewrite the secondaries' copies of the shared models and enums from the primary.

    Back-relation fields of the copies and every other byte of the files are kept; prisma.config.ts's
    external lists follow shared_models. Prints a unified diff.
    """
    loaded = ctx.loaded
    edits = sync.plan_sync(loaded, repos=parse_repos(loaded, repos))
    _apply_and_report(
        loaded,
        edits,
        check_only=check_only,
        dry_run=dry_run,
        as_json=as_json,
        nothing="shared models are in sync",
        done="synced",
        stale="file(s) out of sync with the primary; run `ws schema sync`",
    )


@schema_group.command("format")
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 when a schema file is not formatted.")
@click.option("--dry-run", is_flag=True, help="Print the diff without writing.")
@repos_option
@json_option
@pass_context
def format_command(ctx: Context, check_only: bool, dry_run: bool, repos: str | None, as_json: bool) -> None:
    """Write every repo's Prisma schema as `prisma format` would, without Prisma's engine.

    Relations are completed first, as Prisma completes them (missing back-relation fields, relation scalars and
    @relation arguments), then each file is rendered in Prisma's layout. Prints a unified diff.
    """
    loaded = ctx.loaded
    edits = formatting.plan_format(loaded, repos=parse_repos(loaded, repos))
    _apply_and_report(
        loaded,
        edits,
        check_only=check_only,
        dry_run=dry_run,
        as_json=as_json,
        nothing="every schema is formatted",
        done="formatted",
        stale="schema file(s) not formatted; run `ws schema format`",
    )


def _apply_and_report(
    loaded: LoadedWorkspace,
    edits: list[sync.FileEdit],
    *,
    check_only: bool,
    dry_run: bool,
    as_json: bool,
    nothing: str,
    done: str,
    stale: str,
) -> None:
    """Write ``edits`` unless --check or --dry-run, print the diff (or JSON), and fail --check when any is left."""
    write = not (check_only or dry_run)
    if write:
        sync.apply_edits(loaded, edits)
    if as_json:
        print_json({"changed": bool(edits), "written": write and bool(edits), "edits": [e.as_dict() for e in edits]})
    else:
        click.echo(sync.unified_diff(edits), nl=False)
        if not edits:
            console.print(nothing)
        elif write:
            console.print(f"{done} {len(edits)} file(s)")
    if check_only and edits:
        raise CheckFailed(f"{len(edits)} {stale}")


@schema_group.command("export-types")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder to write into (default: .ws/shared-database-types beside workspace.yaml).",
)
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 when a file in --out is stale.")
@json_option
@pass_context
def export_types_command(ctx: Context, out_dir: Path | None, check_only: bool, as_json: bool) -> None:
    """Write TypeScript (interfaces, enums, package.json) and Python (pydantic) types of the shared models."""
    loaded = ctx.loaded
    files = export.export_types(loaded)
    target = out_dir or loaded.root / ".ws" / "shared-database-types"
    states = export.compare(target, files) if check_only else export.write(target, files)
    if as_json:
        print_json({"out": str(target), "files": [{"path": p, "state": s} for p, s in states]})
    else:
        for path, state in states:
            console.print(f"{state:>9}  {escape(str(target / path))}")
    stale = [p for p, s in states if s != "unchanged"]
    if check_only and stale:
        raise CheckFailed(f"stale exported type file(s): {', '.join(stale)}; run `ws schema export-types`")


@schema_group.command("package")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Package folder to write (default: .ws/types-package beside workspace.yaml).",
)
@click.option("--pack", is_flag=True, help="Also run `npm pack` and report the tarball.")
@json_option
@pass_context
def package_command(ctx: Context, out_dir: Path | None, pack: bool, as_json: bool) -> None:
    """Build the shared types as the npm package workspace.yaml's `types:` names, ready to publish.

    Writes package.json (version <types.version>-schema-<hash of the exported types>: the same shared schema
    always gives the same version), the types compiled by tsc into dist/ (.js and .d.ts), the Python types and
    a README. The primary's release workflow publishes it; `ws schema propagate` bumps the secondaries to it.
    """
    loaded = ctx.loaded
    target = out_dir or loaded.root / ".ws" / "types-package"
    result = types_package.build(loaded, target, pack=pack)
    if as_json:
        print_json(result.as_dict())
    else:
        console.print(f"{escape(result.package)}@{escape(result.version)} in {escape(str(result.folder))}")
        if result.tarball is not None:
            console.print(f"packed {escape(str(result.tarball))}")


@schema_group.command("drift")
@click.option("--env", "-e", "environment", default=None, metavar="ENV", help="Environment whose database to read.")
@click.option("--database-url", default=None, metavar="URL", help="Database to read (overrides --env).")
@json_option
@pass_context
def drift_command(ctx: Context, environment: str | None, database_url: str | None, as_json: bool) -> None:
    """Compare the live PostgreSQL database with every repo's declared models (Prisma's default mapping).

    Names missing/extra tables, columns, type, nullability and default differences, primary keys, unique
    constraints, indexes, foreign keys and enums. Exit 1 on drift.
    """
    loaded = ctx.loaded
    if database_url is None:
        check_environment(loaded, environment or "local")
        database_url = drift_module.database_url_for(loaded, environment or "local")
    err_console.print("reading the database catalog ...")
    report = drift_module.drift(loaded, database_url)
    if as_json:
        print_json(report.as_dict())
    else:
        rows = [(d.kind, escape(d.object), escape(d.detail)) for d in report.items]
        for repo, reason in report.skipped.items():
            rows.append(("skipped", repo, escape(reason)))
        if rows:
            console.print(table("schema drift", ["kind", "object", "detail"], rows))
        if report.namespaces:
            console.print(
                f"{len(report.items)} difference(s) in {', '.join(report.namespaces)}; "
                f"{report.tables} tables compared in {report.seconds:.2f}s"
            )
        else:
            console.print("nothing compared: no repo's schema could be read (see skipped)")
    step_summary(report.markdown())
    if report.items:
        raise CheckFailed(f"{len(report.items)} difference(s) between the database and the declared models")


schema_group.add_command(propagate_command)

COMMANDS = [schema_group]
