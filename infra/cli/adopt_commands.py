"""`ws adopt`: move a database the repos already run into the layout workspace.yaml declares."""

from __future__ import annotations

import click
from rich.markup import escape

from infra import adopt as adoption
from infra.cli._common import (
    Context,
    check_environment,
    console,
    env_option,
    err_console,
    json_option,
    pass_context,
    print_json,
    step_summary,
)
from infra.errors import CheckFailed


@click.command("adopt")
@env_option()
@click.option(
    "--database-url",
    default=None,
    metavar="URL",
    envvar="WS_ADOPT_DATABASE_URL",
    help="The database the repos run on today (default: the environment's, found like `ws status`).",
)
@click.option("--apply", "apply", is_flag=True, help="Carry the plan out (one transaction); without it, only print it.")
@click.option(
    "--lock-timeout",
    default="5s",
    show_default=True,
    metavar="DURATION",
    help="How long a move may wait for a table in use before everything is rolled back.",
)
@json_option
@pass_context
def adopt_command(
    ctx: Context, environment: str, database_url: str | None, apply: bool, lock_timeout: str, as_json: bool
) -> None:
    """Adopt the database the repos already run: move each repo's tables, enums and recorded migrations into its
    declared namespace and baseline migrations that ran before ws.

    Dry run by default: prints the plan and changes nothing. With --apply the plan runs in one transaction under
    Prisma's advisory lock, so it happens whole or not at all; running it again finds nothing to do. See
    docs/adopting.md.
    """
    loaded = ctx.loaded
    check_environment(loaded, environment)
    url = adoption.database_url_for(loaded, environment, database_url)
    plan = adoption.adopt(
        loaded, url, apply=apply, lock_timeout=lock_timeout, progress=lambda line: err_console.print(escape(line))
    )
    if as_json:
        print_json({"applied": apply and not plan.problems and not plan.empty, **plan.as_dict()})
    else:
        for line in adoption.lines(plan):
            console.print(escape(line))
        if not plan.empty and not plan.problems:
            console.print("applied" if apply else "dry run: nothing changed; run again with --apply to carry it out")
    step_summary("## ws adopt\n\n" + "\n".join(f"- {line}" for line in adoption.lines(plan)))
    if plan.problems:
        raise CheckFailed(f"adopt: {len(plan.problems)} problem(s) stop the plan (see above)")


COMMANDS = [adopt_command]
