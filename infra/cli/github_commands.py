"""Cross-repo feature work: `ws branch`, `ws pr`, `ws metrics`, and `ws schema propagate` (which
infra.cli.schema_commands registers on the schema group)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from infra import metrics, propagate
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
from infra.deploy import dora, durations
from infra.errors import CheckFailed, UsageError
from infra.github import branches, prs, repofiles
from infra.github.client import client, optional_client
from infra.markdown import markdown_table


def _progress(message: str) -> None:
    err_console.print(escape(message))


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


@click.group("branch")
def branch_group() -> None:
    """One feature branch across the workspace's repos: create it everywhere, see a status matrix, delete it.

    GitHub parts (--remote, PR and CI columns) use the token in GITHUB_TOKEN and github.api_url.
    """


@branch_group.command("create")
@click.argument("name")
@repos_option
@click.option("--from", "start", default=None, metavar="REF", help="Start point (default: each repo's default branch).")
@click.option("--remote", is_flag=True, help="Also create the branch on GitHub from the start branch's head there.")
@click.option("--allow-dirty", is_flag=True, help="Switch branches even in checkouts with uncommitted changes.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@json_option
@pass_context
def branch_create(
    ctx: Context,
    name: str,
    repos: str | None,
    start: str | None,
    remote: bool,
    allow_dirty: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Create and check out branch NAME in every selected checkout (and on GitHub with --remote).

    Refuses, before changing anything, when a checkout has uncommitted changes (it names them).
    """
    loaded = ctx.loaded
    github = client(loaded) if remote else None
    actions = branches.create(
        loaded,
        name,
        parse_repos(loaded, repos),
        start=start,
        remote=remote,
        allow_dirty=allow_dirty,
        dry_run=dry_run,
        github=github,
        progress=_progress,
    )
    _print_branch_actions(f"branch {name}", name, dry_run, actions, as_json)


def _print_branch_actions(title: str, name: str, dry_run: bool, actions: Sequence[Any], as_json: bool) -> None:
    """What `branch create` / `branch delete` did (or would do) per repo, locally and on GitHub."""
    if as_json:
        print_json({"branch": name, "dry_run": dry_run, "repos": [a.as_dict() for a in actions]})
        return
    rows = [(a.repo, escape(a.local), escape(a.remote)) for a in actions]
    console.print(table(f"{title}{' (dry run)' if dry_run else ''}", ["repo", "local", "GitHub"], rows))


@branch_group.command("status")
@click.argument("name")
@repos_option
@json_option
@pass_context
def branch_status(ctx: Context, name: str, repos: str | None, as_json: bool) -> None:
    """One row per repo: branch NAME locally / remotely, ahead/behind the default branch, dirty, PR, CI, and the
    PR's review state with the approvals workspace.yaml's review_rules require of it (met or missing, and who
    must approve).
    """
    loaded = ctx.loaded
    github = optional_client(loaded)
    rows = branches.status(loaded, name, github, parse_repos(loaded, repos))
    if as_json:
        print_json({"branch": name, "repos": [r.as_dict() for r in rows]})
        return
    rendered = [
        (
            r.repo,
            _yes_no(r.local),
            _yes_no(r.remote) + (f" ({r.remote_source})" if r.remote is not None else ""),
            "-" if r.ahead is None else f"{r.ahead}/{r.behind}",
            _yes_no(r.dirty),
            f"#{r.pr_number} {r.pr_state}" if r.pr_number else "-",
            r.ci or "-",
            _review_cell(r.review_state),
            _approvals_cell(r.approvals),
            escape("; ".join(r.notes)),
        )
        for r in rows
    ]
    columns = ["repo", "local", "remote", "ahead/behind", "dirty", "PR", "CI", "review", "approvals", "notes"]
    console.print(table(f"branch {name}", columns, rendered))
    for r in rows:
        for line in _approval_lines(r.repo, r.approvals):
            console.print(line)
    summary = "\n".join(f"- {line}" for r in rows for line in _approval_lines(r.repo, r.approvals, markup=False))
    step_summary(f"## Branch `{name}`\n\n{markdown_table(columns, rendered)}" + (f"\n\n{summary}" if summary else ""))


def _review_cell(state: str | None) -> str:
    return state.replace("_", " ") if state else "-"


def _approvals_cell(approvals: Sequence[dict[str, Any]] | None) -> str:
    """``2/3 met`` (required approvals given / required), ``none required``, or ``-`` without a pull request."""
    if approvals is None:
        return "-"
    if not approvals:
        return "none required"
    return f"{sum(1 for a in approvals if a['ok'])}/{len(approvals)} met"


def _approval_lines(repo: str, approvals: Sequence[dict[str, Any]] | None, *, markup: bool = True) -> list[str]:
    """One line per required approval: rule, reviewer group, ok (who approved) or missing (who must approve).

    ``markup``: rich markup for the terminal (colours, escaped text); else plain text (the step summary).
    """
    lines = []
    for approval in approvals or []:
        if approval["ok"]:
            mark, who = "ok", ", ".join(approval["approved_by"])
        else:
            mark, who = "missing", "needs one of " + ", ".join(approval["owners"])
        text = [repo, approval["rule"], approval["group"]]
        if markup:
            text = [escape(part) for part in text]
            mark, who = ("[green]ok[/]" if approval["ok"] else "[red]missing[/]"), escape(who)
        lines.append(f"{': '.join(text)}: {mark} ({who})")
    return lines


@branch_group.command("delete")
@click.argument("name")
@repos_option
@click.option("--local/--no-local", "local", default=True, show_default=True, help="Delete the local branches.")
@click.option("--remote", is_flag=True, help="Also delete the branch on GitHub.")
@click.option("--force", is_flag=True, help="Delete even when the branch has commits not in the default branch.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@json_option
@pass_context
def branch_delete(
    ctx: Context, name: str, repos: str | None, local: bool, remote: bool, force: bool, dry_run: bool, as_json: bool
) -> None:
    """Delete branch NAME locally and/or on GitHub; refuses unmerged work unless --force."""
    loaded = ctx.loaded
    if not local and not remote:
        raise UsageError("nothing to delete: --no-local without --remote")
    github = client(loaded) if remote else None
    actions = branches.delete(
        loaded,
        name,
        parse_repos(loaded, repos),
        local=local,
        remote=remote,
        force=force,
        dry_run=dry_run,
        github=github,
        progress=_progress,
    )
    _print_branch_actions(f"delete {name}", name, dry_run, actions, as_json)


@click.group("pr")
def pr_group() -> None:
    """Linked pull requests: one per repo of a feature branch, each listing the others in merge order."""


@pr_group.command("open")
@click.argument("name")
@click.option("--title", required=True, help="Title of every pull request.")
@click.option(
    "--body-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Markdown body (the linked-PR block is appended; kept from the existing PR when omitted).",
)
@repos_option
@click.option("--reviewer", "reviewers", multiple=True, metavar="LOGIN", help="Request a review (org/team for teams).")
@click.option("--push", is_flag=True, help="First push each checkout's local branch NAME to its origin.")
@click.option("--dry-run", is_flag=True, help="Print which PRs would be opened or updated; change nothing.")
@json_option
@pass_context
def pr_open(
    ctx: Context,
    name: str,
    title: str,
    body_file: Path | None,
    repos: str | None,
    reviewers: tuple[str, ...],
    push: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Open one PR per repo whose branch NAME has commits (or update the open one), then link them all.

    Every body gets a generated block listing all sibling PRs in merge order (dependencies first).
    Re-running updates the PRs; it never opens duplicates.
    """
    loaded = ctx.loaded
    body = body_file.read_text(encoding="utf-8") if body_file else None
    records = prs.open_pulls(
        loaded,
        client(loaded),
        name,
        title,
        body,
        repos=parse_repos(loaded, repos),
        reviewers=reviewers,
        dry_run=dry_run,
        push=push,
        progress=_progress,
    )
    _render_pulls(f"pull requests for {name}{' (dry run)' if dry_run else ''}", records, as_json)


@pr_group.command("status")
@click.argument("name")
@repos_option
@json_option
@pass_context
def pr_status(ctx: Context, name: str, repos: str | None, as_json: bool) -> None:
    """The linked set of branch NAME in merge order: number, state (open, closed, merged), CI, and the approvals
    workspace.yaml's review_rules require of each (one per reviewer group), with who gave them.

    Exit 1 when an open pull request lacks a required approval.
    """
    loaded = ctx.loaded
    records = prs.pull_status(loaded, client(loaded), name, parse_repos(loaded, repos))
    _render_pulls(f"pull requests for {name}", records, as_json)
    missing = [
        f"{r.reference} needs an approval from {a['group']} ({a['rule']})"
        for r in records
        if r.state == "open"
        for a in r.approvals or []
        if not a["ok"]
    ]
    if not as_json:
        for record in records:
            for line in _approval_lines(record.repo, record.approvals):
                console.print(line)
    if missing:
        raise CheckFailed(f"{len(missing)} required approval(s) missing: " + "; ".join(missing))


def _render_pulls(title: str, records: list[prs.PullRecord], as_json: bool) -> None:
    if as_json:
        print_json([r.as_dict() for r in records])
        return
    rows = [
        (
            index,
            r.repo,
            escape(r.action),
            r.reference if r.number else "-",
            r.state or "-",
            r.ci or "-",
            _review_cell(r.review_state),
            r.url or "-",
        )
        for index, r in enumerate(records, start=1)
    ]
    console.print(table(title, ["order", "repo", "action", "PR", "state", "CI", "review", "url"], rows))
    summary_rows = [
        (
            i,
            r.repo,
            r.action,
            r.reference if r.number else "-",
            r.state or "-",
            r.ci or "-",
            _review_cell(r.review_state),
        )
        for i, r in enumerate(records, start=1)
    ]
    summary_columns = ["order", "repo", "action", "PR", "state", "CI", "review"]
    step_summary(f"## {title}\n\n{markdown_table(summary_columns, summary_rows)}")


@click.command("metrics")
@click.option("--env", "-e", "environment", default=None, metavar="ENV", help="One environment (default: all).")
@click.option("--days", default=30, show_default=True, type=int, help="Window: the last N days.")
@click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="Read every environment's rows from this ledger (default: each environment's own database).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "prometheus"]),
    default="table",
    show_default=True,
    help="table: for people; json: same as --json; prometheus: the text exposition format, for a scrape.",
)
@json_option
@pass_context
def metrics_command(
    ctx: Context, environment: str | None, days: int, database_url: str | None, fmt: str, as_json: bool
) -> None:
    """The five DORA figures per environment from the deploy ledger, plus schema alignment and migration completion.

    Deployment frequency, change lead time, change fail rate, failed deployment recovery time and deployment
    rework rate; a figure without data says why instead of showing a number. Then each environment's deploy time
    (median, p90, last) against the 5-minute target, for the whole deployment and per part (each deploy stage).
    """
    loaded = ctx.loaded
    if environment is not None:
        check_environment(loaded, environment)
    result = metrics.report(loaded, database_url, environment=environment, days=days)
    names = [env.environment for env in result.environments]
    times = durations.report(loaded, database_url, names, result.since, result.until)
    if as_json or fmt == "json":
        print_json({**result.as_dict(), "deploy_time": [t.as_dict() for t in times]})
        return
    if fmt == "prometheus":
        click.echo(metrics.prometheus(result), nl=False)
        return
    rows = []
    for env in result.environments:
        unreadable = dora.common_reason(env)
        if unreadable is not None:
            rows.append((env.environment, "all figures", "n/a", escape(unreadable)))
            continue
        rows += [
            (env.environment, dora.FIGURE_NAMES[key], dora.format_value(f), escape(dora.format_detail(f)))
            for key, f in env.figures().items()
        ]
    columns = ["environment", "figure", "value", "detail"]
    console.print(table(f"DORA figures, last {days} days", columns, rows))
    for extra in result.extra:
        value = f"{extra.value * 100:.1f}%" if extra.value is not None else "n/a"
        console.print(f"{extra.name.replace('_', ' ')}: {value} ({escape(extra.detail)})")
    time_rows = _deploy_time_rows(times)
    time_columns = ["environment", "part", "deployments", "median", "p90", "last", "within target"]
    target = durations.format_seconds(durations.TARGET_SECONDS)
    console.print(table(f"deploy time against the {target} target, last {days} days", time_columns, time_rows))
    step_summary(
        f"## DORA figures (last {days} days)\n\n{markdown_table(columns, rows)}\n\n"
        f"## Deploy time (target {target})\n\n{markdown_table(time_columns, time_rows)}"
    )


def _deploy_time_rows(times: Sequence[durations.EnvironmentDurations]) -> list[tuple[str, ...]]:
    """Per environment: the whole deployment, then each part, as median, p90 and last against the target."""
    rows: list[tuple[str, ...]] = []
    for env in times:
        if env.total.count == 0:
            rows.append((env.environment, "whole deployment", "0", "-", "-", "-", escape(env.reason)))
            continue
        for part, figures in [("whole deployment", env.total), *env.parts.items()]:
            verdict = "p90 within" if figures.meets_target else "p90 over"
            rows.append(
                (
                    env.environment,
                    part,
                    str(figures.count),
                    durations.format_seconds(figures.median),
                    durations.format_seconds(figures.p90),
                    durations.format_seconds(figures.last),
                    f"{figures.within_target}/{figures.count}; {verdict}",
                )
            )
    return rows


@click.command("propagate")
@click.option(
    "--branch",
    default=None,
    metavar="NAME",
    help="Branch for the secondaries (default: the primary's feature branch, else schema/sync-<sha>).",
)
@click.option("--title", default=None, help="Title of the pull requests (default: names the primary's commit).")
@repos_option
@click.option(
    "--types-dir",
    default=propagate.TYPES_DIR,
    show_default=True,
    metavar="PATH",
    help="Folder of the exported shared types inside each secondary.",
)
@click.option("--no-types", is_flag=True, help="Do not write the exported shared types.")
@click.option("--dry-run", is_flag=True, help="Print the diffs and the pull-request plan; change nothing.")
@json_option
@pass_context
def propagate_command(
    ctx: Context,
    branch: str | None,
    title: str | None,
    repos: str | None,
    types_dir: str,
    no_types: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """After a change to the primary's schema: one branch per secondary with `ws schema sync` and the shared
    types applied, committed and pushed, and linked pull requests reviewed by every repo's maintainers.
    """
    loaded = ctx.loaded
    github = None if dry_run else client(loaded)
    result = propagate.propagate(
        loaded,
        github,
        branch=branch,
        title=title,
        repos=parse_repos(loaded, repos),
        types_dir=None if no_types else types_dir,
        dry_run=dry_run,
        progress=_progress,
    )
    if as_json:
        print_json(result.as_dict())
        return
    for repo_plan in result.repos:
        if dry_run and repo_plan.edits:
            click.echo(repo_plan.diff(), nl=False)
    rows = [
        (
            p.repo,
            f"{result.branch} (from {p.base})",
            ", ".join(p.files) or "in sync",
            (p.commit or "-")[:7] if not dry_run else "-",
        )
        for p in result.repos
    ]
    heading = f"propagate {result.primary}@{result.primary_sha[:7]}{' (dry run)' if dry_run else ''}"
    console.print(table(heading, ["repo", "branch", "files", "commit"], [tuple(escape(c) for c in r) for r in rows]))
    console.print(f"types: {escape(result.types)}")
    console.print(f"pull requests: {escape(result.title)}; reviewers: {escape(', '.join(result.reviewers) or '-')}")
    if result.pulls:
        _render_pulls(f"pull requests for {result.branch}", result.pulls, False)


@click.command("repo-files")
@repos_option
@click.option("--pr", "open_prs", is_flag=True, help="Commit on branch ws/repo-files, push, open linked pull requests.")
@click.option("--dry-run", is_flag=True, help="Print which files would be written; change nothing.")
@json_option
@pass_context
def repo_files_command(ctx: Context, repos: str | None, open_prs: bool, dry_run: bool, as_json: bool) -> None:
    """Write the workflows each repo carries (image release, cross-repo integration checks) into its checkout.

    They are the files `ws generate` keeps under .github/repo-files/<repo>/. With --pr: on branch ws/repo-files
    from the default branch, commit, push and open one pull request per changed repo, linked to each other.
    """
    loaded = ctx.loaded
    github = client(loaded) if open_prs and not dry_run else None
    results, pulls = repofiles.write_repo_files(
        loaded, parse_repos(loaded, repos), dry_run=dry_run, pr=open_prs, github=github, progress=_progress
    )
    if as_json:
        print_json(
            {"dry_run": dry_run, "repos": [r.as_dict() for r in results], "pull_requests": [p.as_dict() for p in pulls]}
        )
        return
    rows = [
        (r.repo, escape(path), state if not dry_run or state == "unchanged" else f"would be {state}")
        for r in results
        for path, state in r.files
    ]
    console.print(table(f"repo files{' (dry run)' if dry_run else ''}", ["repo", "file", "state"], rows))
    if pulls:
        _render_pulls(f"pull requests for {repofiles.BRANCH}", pulls, False)


COMMANDS = [branch_group, pr_group, metrics_command, repo_files_command]
