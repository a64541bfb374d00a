"""The scheduled health-probe workflow: `ws health --record` every 5 minutes against each non-local environment.

For environments without a long-running `ws monitor`. One job per environment (a matrix), at most one run of
the workflow at a time (a run that is still probing makes the next one wait; GitHub keeps one pending run).

Protected environments need an approval for every job that names them, which a schedule cannot wait for. The
probe job of a protected environment therefore runs in the GitHub environment ``<env>-monitoring`` (not
protected, holding only what probing needs: DATABASE_URL, REDIS_URL and the Pulumi credentials to read the
stack's outputs), while unprotected environments use their own. Scheduled runs use the default branch's
workflow file only, so no pull-request code ever runs with these secrets.

The jobs check out the repositories as the coordinated deployment does (:func:`infra.github.layout.layout_of`):
this repository, and each repo that lives outside it at its ``default_branch`` beside it (with the
``WS_CHECKOUT_TOKEN`` secret), so a round's schema checks read the repos' schemas too.
"""

from __future__ import annotations

from infra.errors import UsageError
from infra.github.actions import expression, mapping, run_step, safe_name, yaml_text
from infra.github.layout import SAFE_REF, layout_of
from infra.github.pins import check_pins
from infra.github.workflows import job, matrix_secrets, safe_backend, workflow_document
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Workspace
from infra.workspace.yamlwrite import YamlMap, YamlSeq

WORKFLOW = ".github/workflows/health-probes.yml"
CRON = "*/5 * * * *"
INTERVAL = "5m"  # how often the schedule runs: a round stands for at most twice this, longer is a gap
TIMEOUT_MINUTES = 10
MONITORING_SUFFIX = "-monitoring"


def probed_environments(workspace: Workspace) -> list[tuple[str, str]]:
    """(environment, GitHub environment its probe job runs in) of every non-local environment."""
    return [
        (safe_name(name, "environment"), safe_name(name + (MONITORING_SUFFIX if env.protected else ""), "environment"))
        for name, env in workspace.environments.items()
        if env.runtime != "local"
    ]


def default_branches(workspace: Workspace, repos: list[str]) -> dict[str, str]:
    """The branch each repo checked out on its own is probed at: its ``default_branch``."""
    refs = {}
    for repo in repos:
        branch = workspace.repos[repo].default_branch
        if not SAFE_REF.fullmatch(branch):
            raise UsageError(f"cannot generate {WORKFLOW}: repos.{repo}.default_branch {branch!r} is not a safe ref")
        refs[repo] = branch
    return refs


def pulumi_backend(workspace: Workspace, environment: str) -> str | None:
    """The Pulumi backend the environment's stack lives in (None for environments Pulumi does not provision)."""
    return safe_backend(workspace, environment) if workspace.environments[environment].runtime == "pulumi" else None


def pulumi_cli_step() -> YamlMap:
    """The Pulumi CLI of the pinned SDK, on PATH: the pulumi runtime reads the stack's outputs with it."""
    return run_step(
        "Install the Pulumi CLI of the pinned SDK",
        [
            "pulumi_bin=\"$(python -c 'import os; from pulumi.automation import PulumiCommand; "
            "print(os.path.dirname(PulumiCommand.install().command))')\"",
            '"$pulumi_bin/pulumi" version',
            'echo "$pulumi_bin" >> "$GITHUB_PATH"',
        ],
        condition=expression("matrix.runtime == 'pulumi'"),
    )


def health_probe_workflow(workspace: Workspace) -> YamlMap | None:
    targets = probed_environments(workspace)
    if not targets:
        return None
    layout = layout_of(workspace)
    # what `ws health --record` reads in each probed environment (a stack needs no REDIS_URL)
    secrets, only_in = matrix_secrets(workspace, [name for name, _ in targets])
    probe = job(
        "health probes " + expression("matrix.environment"),
        timeout=TIMEOUT_MINUTES,
        environment=False,
        secrets=secrets,
        secrets_only_in=only_in,
        gate="matrix.environment",
        layout=layout,
        refs=default_branches(workspace, list(layout.checkouts)) if layout.checkouts else None,
        steps=[
            pulumi_cli_step(),
            run_step(
                "Probe every component and record the round",
                [
                    'if [ -n "$PULUMI_BACKEND" ]; then export PULUMI_BACKEND_URL="$PULUMI_BACKEND"; fi',
                    f'ws health --env "$ENVIRONMENT" --record --interval {INTERVAL}',
                ],
                env={
                    "ENVIRONMENT": expression("matrix.environment"),
                    "PULUMI_BACKEND": expression("matrix.pulumi_backend"),
                },
            ),
        ],
    )
    include = YamlSeq(
        mapping(
            ("environment", env),
            ("github_environment", gh),
            ("runtime", safe_name(workspace.environments[env].runtime, "runtime")),
            ("pulumi_backend", pulumi_backend(workspace, env)),
        )
        for env, gh in targets
    )
    strategy = mapping(("fail-fast", False), ("matrix", mapping(("include", include))))
    items = list(probe.items())
    probe.clear()
    for key, value in items:
        probe[key] = value
        if key == "name":
            probe["strategy"] = strategy
        if key == "permissions":
            probe["environment"] = mapping(("name", expression("matrix.github_environment")))
    document = workflow_document(
        "health probes",
        mapping(("schedule", YamlSeq([mapping(("cron", CRON))])), ("workflow_dispatch", mapping())),
        mapping(("probe", probe)),
        group="health-probes",
        cancel_in_progress=False,
        env=layout.workspace_env(),
    )
    protected = [name for name, env in workspace.environments.items() if env.protected and env.runtime != "local"]
    note = (
        "Probe jobs of protected environments run in <env>-monitoring: "
        + (", ".join(f"{name}{MONITORING_SUFFIX}" for name in protected) or "none")
        + "."
    )
    document.yaml_set_comment_before_after_key("permissions", before=note + "\nEvery job asks for the least it needs.")
    return document


def generate_workflow(loaded: LoadedWorkspace) -> dict[str, str]:
    check_pins()
    document = health_probe_workflow(loaded.model)
    return {WORKFLOW: yaml_text(document, loaded.path.name)} if document is not None else {}
