"""Generate the workflows: the workflow_dispatch coordinated deployment and the workspace pull-request checks.

The coordinated deployment follows the pipeline of `ws pipeline`: plan -> infra -> migrate -> validate -> one
deploy job per repo (wired by ``needs:`` from ``depends_on``) -> integration -> health, and rollback when any
of them failed. Every job:

* reads dispatch inputs and job outputs only through ``env:`` (never ``${{ }}`` inside ``run:``);
* has the minimum ``permissions`` (the workflow itself has none), a ``timeout-minutes`` and the target
  GitHub ``environment`` (so the protection rules of protected environments, e.g. required reviewers, apply
  and each environment's secrets stay scoped to it);
* checks out without persisting credentials and masks the secrets it receives before running anything.

Deploy jobs of repos that were not selected are skipped without blocking their dependents: each deploy job
and everything after it runs under ``!cancelled() && !failure()`` instead of the default ``success()``.

A deploy job needs only the plan, the validation and the deploy jobs of its ``depends_on`` repos, so the repos
of one stage deploy in parallel: the ``ws pipeline`` steps of one open deployment hold the environment's deploy
lock shared, while ``ws deploy``, ``ws pipeline begin`` and ``ws rollback`` take it alone.

The deploy and rollback steps get the ``WS_GITHUB_TOKEN`` secret as ``GITHUB_TOKEN`` (in that step's ``env:``
only), so ws records a GitHub deployment, with its statuses and a link to the run, in each deployed repo. The
workflow's own token reaches only this repository, so it is not used for that and keeps ``contents: read``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from infra.errors import UsageError
from infra.github.actions import (
    expression,
    local_step,
    mapping,
    output_key,
    run_step,
    safe_name,
    uses_step,
    yaml_text,
)
from infra.github.pins import CHECKOUT, check_pins
from infra.workspace.env import declared_layers
from infra.workspace.graph import edges_of, stages
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import SecretRef, Workspace

DEPLOYMENT_WORKFLOW = ".github/workflows/coordinated-deployment.yml"
PR_WORKFLOW = ".github/workflows/workspace-pr.yml"
RUNNER = "ubuntu-24.04"
# GitHub's limit on workflow_dispatch inputs (raised from 10 to 25 in December 2025).
MAX_DISPATCH_INPUTS = 25
# Secrets every job acting on an environment may need besides those workspace.yaml references:
# where the shared servers are (ws uses them instead of starting its own when set) ...
SERVER_SECRETS = ("DATABASE_URL", "REDIS_URL")
# ... and, when an environment is provisioned by Pulumi, the Pulumi backend's credentials.
PULUMI_SECRETS = ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE")
PATHS_OF_THE_WORKSPACE = (
    "workspace.yaml",
    "workspace.schema.json",
    "actions/**",
    "infra/**",
    "Pulumi.yaml",
    "Pulumi.*.yaml",
    ".github/workflows/**",
    "pyproject.toml",
    "requirements.lock",
)

# A token with access to the workspace's repos (Deployments: write for the deploy records, Contents: read for
# reading schemas at a ref); given to the steps that call GitHub as GITHUB_TOKEN, through their env: only.
GITHUB_TOKEN_SECRET = "WS_GITHUB_TOKEN"
DEPLOYMENT_ID = expression("needs.plan.outputs.deployment_id")
NOT_BLOCKED = "!cancelled() && !failure()"
TIMEOUTS = {
    "plan": 15,
    "infra": 60,
    "migrate": 30,
    "validate": 15,
    "deploy": 30,
    "integration": 30,
    "health": 15,
    "rollback": 30,
    "check": 20,
    "preview": 30,
}


def deploy_job_id(repo: str) -> str:
    return f"deploy-{repo}"


def github_token_env() -> dict[str, str]:
    """The step env that lets ws call GitHub for the workspace's repos (never the job's env: no other step sees it)."""
    return {"GITHUB_TOKEN": expression(f"secrets.{GITHUB_TOKEN_SECRET}")}


def pipeline_run_step(name: str, step: str) -> CommentedMap:
    """A ``ws pipeline <step>`` of the plan job's deployment, run directly (not through a composite action)."""
    return run_step(name, [f'ws pipeline {step} --deployment "$DEPLOYMENT_ID"'], env={"DEPLOYMENT_ID": DEPLOYMENT_ID})


def deployment_step(name: str, action: str, *, github: bool = False) -> CommentedMap:
    """A composite action acting on the plan job's deployment; ``github``: it records GitHub deployments."""
    return local_step(name, action, {"deployment": DEPLOYMENT_ID}, env=github_token_env() if github else None)


# --- secrets ----------------------------------------------------------------------------------------


def repo_secrets(workspace: Workspace, repo: str) -> list[str]:
    """Names of the secrets workspace.yaml declares for ``repo`` (``{secret: NAME}``), in any environment.

    Secrets that ws generates itself (database role passwords in provisioned environments) live in the Pulumi
    stack, not in GitHub, so they are not among them.
    """
    names: set[str] = set()
    for environment in workspace.environments:
        for _, layer in declared_layers(workspace, environment, repo):
            names.update(value.secret for value in layer.values() if isinstance(value, SecretRef))
    return sorted(names)


def base_secrets(workspace: Workspace) -> list[str]:
    names = list(SERVER_SECRETS)
    if any(env.runtime == "pulumi" for env in workspace.environments.values()):
        names += PULUMI_SECRETS
    return names


def secrets_env(names: Iterable[str]) -> CommentedMap:
    return mapping(*((safe_name(name, "secret"), expression(f"secrets.{name}")) for name in names))


# --- job building blocks -------------------------------------------------------------------------------


def checkout_step() -> CommentedMap:
    return uses_step("Check out", CHECKOUT, {"persist-credentials": False})


def setup_step(secret_names: Iterable[str]) -> CommentedMap:
    names = " ".join(secret_names)
    return local_step("Set up ws", "setup", {"mask-variables": names} if names else None)


def job(
    name: str,
    *,
    needs: list[str] | None = None,
    condition: str | None = None,
    timeout: int,
    environment: bool = True,
    secrets: list[str],
    steps: list[CommentedMap],
    outputs: CommentedMap | None = None,
) -> CommentedMap:
    result = mapping(("name", name))
    if needs:
        result["needs"] = CommentedSeq(needs)
    if condition:
        result["if"] = expression(condition)
    result["runs-on"] = RUNNER
    result["timeout-minutes"] = timeout
    result["permissions"] = mapping(("contents", "read"))
    if environment:
        result["environment"] = mapping(("name", expression("inputs.environment")))
    if outputs:
        result["outputs"] = outputs
    if secrets:
        result["env"] = secrets_env(secrets)
    result["steps"] = CommentedSeq([checkout_step(), setup_step(secrets), *steps])
    return result


def workflow_document(
    name: str,
    on: CommentedMap,
    jobs: CommentedMap,
    *,
    group: str,
    cancel_in_progress: bool,
    run_name: str | None = None,
) -> CommentedMap:
    """A workflow: no permissions at the top (each job asks for its own) and one run per concurrency group."""
    return mapping(
        ("name", name),
        ("run-name", run_name),
        ("on", on),
        ("permissions", mapping()),
        ("concurrency", mapping(("group", group), ("cancel-in-progress", cancel_in_progress))),
        ("jobs", jobs),
    )


# --- the coordinated deployment ------------------------------------------------------------------------


def dispatch_inputs(workspace: Workspace) -> CommentedMap:
    environments = [safe_name(name, "environment") for name in workspace.environments]
    repos = ", ".join(workspace.repos)
    inputs = mapping(
        (
            "environment",
            mapping(
                ("description", "Environment to deploy to (declared in workspace.yaml)."),
                ("type", "choice"),
                ("required", True),
                ("default", environments[0]),
                ("options", CommentedSeq(environments)),
            ),
        ),
        (
            "repositories",
            mapping(
                ("description", f"Comma-separated repos to deploy, or all ({repos})."),
                ("type", "string"),
                ("required", False),
                ("default", "all"),
            ),
        ),
        (
            "versions",
            mapping(
                ("description", "Comma-separated repo=version pairs; repos not named deploy their default version."),
                ("type", "string"),
                ("required", False),
                ("default", ""),
            ),
        ),
        (
            "dry_run",
            mapping(
                ("description", "Record and print every step's plan without changing anything."),
                ("type", "boolean"),
                ("required", False),
                ("default", False),
            ),
        ),
    )
    if len(inputs) > MAX_DISPATCH_INPUTS:
        raise UsageError(
            f"{DEPLOYMENT_WORKFLOW}: {len(inputs)} workflow_dispatch inputs; GitHub allows at most "
            f"{MAX_DISPATCH_INPUTS}. Fix: fold inputs together"
        )
    return inputs


def selection_script(repos: list[str]) -> list[str]:
    """Bash that writes ``deploy_<repo>=true|false`` to $GITHUB_OUTPUT for every repo (input via env only)."""
    lines = [
        "selected=\",$(printf '%s' \"$REPOSITORIES\" | tr -d '[:space:]'),\"",
        'if [ "$selected" = ",," ] || [ "$selected" = ",all," ]; then',
        '  selected=",' + ",".join(repos) + ',"',
        "fi",
    ]
    for repo in repos:
        key = output_key(repo)
        lines += [
            f'case "$selected" in *",{repo},"*) value=true ;; *) value=false ;; esac',
            f'echo "{key}=$value" >> "$GITHUB_OUTPUT"',
            f'echo "{repo}: selected=$value"',
        ]
    return lines


def plan_job(workspace: Workspace, secrets: list[str]) -> CommentedMap:
    repos = [safe_name(repo, "repo") for repo in workspace.repos]
    outputs = mapping(("deployment_id", expression("steps.begin.outputs.deployment_id")))
    for repo in repos:
        outputs[output_key(repo)] = expression(f"steps.select.outputs.{output_key(repo)}")
    inputs_env = {
        "ENVIRONMENT": expression("inputs.environment"),
        "REPOSITORIES": expression("inputs.repositories"),
    }
    steps = [
        run_step(
            "Plan the stages (Mermaid graph in the job summary)",
            ['ws plan --env "$ENVIRONMENT" --repos "$REPOSITORIES"'],
            env=inputs_env,
        ),
        run_step(
            "Select the repositories to deploy",
            selection_script(repos),
            env={"REPOSITORIES": expression("inputs.repositories")},
            step_id="select",
        ),
        run_step(
            "Begin the deployment in the ledger",
            [
                'args=(--env "$ENVIRONMENT")',
                'if [ -n "$REPOSITORIES" ] && [ "$REPOSITORIES" != "all" ]; then',
                '  args+=(--repos "$REPOSITORIES")',
                "fi",
                'if [ -n "$VERSIONS" ]; then',
                '  args+=(--versions "$VERSIONS")',
                "fi",
                'if [ "$DRY_RUN" = "true" ]; then',
                "  args+=(--dry-run)",
                "fi",
                'ws pipeline begin "${args[@]}"',
            ],
            env={
                **inputs_env,
                "VERSIONS": expression("inputs.versions"),
                "DRY_RUN": expression("inputs.dry_run"),
            },
            step_id="begin",
        ),
    ]
    return job("plan", timeout=TIMEOUTS["plan"], secrets=secrets, steps=steps, outputs=outputs)


def deploy_job(workspace: Workspace, repo: str, depends_on: Iterable[str], base: list[str]) -> CommentedMap:
    """The deploy job of ``repo``: after the validation and its ``depends_on`` repos' deploy jobs only (not after
    the other repos of its stage, which deploy at the same time)."""
    return job(
        f"deploy {repo}",
        needs=["plan", "validate", *(deploy_job_id(dep) for dep in sorted(depends_on))],
        condition=f"{NOT_BLOCKED} && needs.plan.outputs.{output_key(repo)} == 'true'",
        timeout=TIMEOUTS["deploy"],
        secrets=sorted({*base, *repo_secrets(workspace, repo)}),
        steps=[
            local_step(
                f"Deploy {repo}",
                "deploy-stage",
                {"deployment": DEPLOYMENT_ID, "repo": repo},
                env=github_token_env(),
            )
        ],
    )


def deployment_workflow(workspace: Workspace) -> CommentedMap:
    edges = edges_of(workspace)
    order = [repo for layer in stages(edges) for repo in layer]
    base = base_secrets(workspace)
    every_secret = sorted({*base, *(s for repo in order for s in repo_secrets(workspace, repo))})
    protected = [name for name, env in workspace.environments.items() if env.protected]

    jobs = mapping()

    def add(
        job_id: str, name: str, needs: list[str], secrets: list[str], *steps: CommentedMap, condition: str | None = None
    ) -> None:
        """A pipeline job after the plan, its timeout from TIMEOUTS."""
        jobs[job_id] = job(
            name, needs=needs, condition=condition, timeout=TIMEOUTS[job_id], secrets=secrets, steps=list(steps)
        )

    jobs["plan"] = plan_job(workspace, base)
    add(
        "infra",
        "infrastructure",
        ["plan"],
        every_secret,
        pipeline_run_step("Provision PostgreSQL, Redis and the services", "infra"),
    )
    add("migrate", "migrate", ["plan", "infra"], base, deployment_step("Migrate the database", "migrate"))
    add(
        "validate",
        "validate schemas",
        ["plan", "migrate"],
        base,
        deployment_step("Validate schema alignment and drift", "schema-check"),
    )
    for repo in order:
        jobs[deploy_job_id(repo)] = deploy_job(workspace, repo, edges[repo], base)
    deploy_jobs = [deploy_job_id(repo) for repo in order]
    add(
        "integration",
        "integration tests",
        ["plan", *deploy_jobs],
        base,
        deployment_step("Run the integration tests", "integration-test"),
        condition=NOT_BLOCKED,
    )
    add(
        "health",
        "health checks",
        ["plan", "integration"],
        base,
        deployment_step("Check every service's health", "health-check"),
        pipeline_run_step("Record the deployment's outcome", "finish"),
        condition=NOT_BLOCKED,
    )
    add(
        "rollback",
        "rollback",
        ["plan", "infra", "migrate", "validate", *deploy_jobs, "integration", "health"],
        every_secret,
        deployment_step("Roll back the deployment", "rollback", github=True),
        condition="(failure() || cancelled()) && needs.plan.outputs.deployment_id != ''",
    )

    document = workflow_document(
        "coordinated deployment",
        mapping(("workflow_dispatch", mapping(("inputs", dispatch_inputs(workspace))))),
        jobs,
        group="coordinated-deployment-" + expression("inputs.environment"),
        cancel_in_progress=False,
        run_name="deploy to " + expression("inputs.environment"),
    )
    note = "Protected environments (approval required): " + (", ".join(protected) if protected else "none") + "."
    document.yaml_set_comment_before_after_key("permissions", before=note + "\nEvery job asks for the least it needs.")
    return document


# --- pull-request checks ---------------------------------------------------------------------------------


def pulumi_stacks(workspace: Workspace) -> list[tuple[str, str]]:
    """(environment, Pulumi stack) of every environment that Pulumi provisions, in declaration order."""
    return [
        (safe_name(name, "environment"), safe_name(workspace.stack_of(name), "stack"))
        for name, env in workspace.environments.items()
        if env.runtime == "pulumi"
    ]


def checked_out_with_workspace(workspace: Workspace) -> bool:
    """Whether every schema repo's checkout lies inside workspace.yaml's folder (a relative ``path:`` that does not
    leave it), so checking out the coordination repository checks them out too (as in examples/)."""
    for repo in workspace.repos.values():
        if repo.schema_ is None:
            continue
        if repo.path is None:
            return False
        path = PurePosixPath(repo.path.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            return False
    return True


def schema_check_step(workspace: Workspace) -> CommentedMap:
    """The pull request's schema alignment check.

    When the repos are checked out with this repository, their checkouts are read. Otherwise every repo's schema
    is read through the GitHub API at the pull request's head branch name: a change that spans repos is made on
    one branch name in all of them (``ws branch create NAME``), and the coordination repository's pull request
    uses that name too. A repo without that branch fails the check with ws's message naming it: push the branch
    there, or name the pull request's branch like the one the repos carry. The branch name reaches the shell
    only through the action's ``env:``; the token is the ``WS_GITHUB_TOKEN`` secret (Contents: read suffices).
    """
    if checked_out_with_workspace(workspace):
        return local_step("Schema alignment of the checkouts", "schema-check")
    return local_step(
        "Schema alignment at the pull request's branch in every repo",
        "schema-check",
        {"ref": expression("github.head_ref")},
        env=github_token_env(),
    )


def pr_workflow(workspace: Workspace) -> CommentedMap:
    checks = job(
        "workspace checks",
        timeout=TIMEOUTS["check"],
        environment=False,
        secrets=[],
        steps=[
            run_step("ws check", ["ws check"]),
            run_step("Generated files are up to date", ["ws generate --check"]),
            schema_check_step(workspace),
        ],
    )
    jobs = mapping(("check", checks))
    stacks = pulumi_stacks(workspace)
    if stacks:
        preview = job(
            "pulumi preview " + expression("matrix.stack"),
            needs=["check"],
            timeout=TIMEOUTS["preview"],
            environment=False,
            secrets=list(PULUMI_SECRETS),
            steps=[
                run_step(
                    "Install the Pulumi CLI of the pinned SDK",
                    [
                        "pulumi_bin=\"$(python -c 'import os; from pulumi.automation import PulumiCommand; "
                        "print(os.path.dirname(PulumiCommand.install().command))')\"",
                        '"$pulumi_bin/pulumi" version',
                        'echo "pulumi=$pulumi_bin/pulumi" >> "$GITHUB_OUTPUT"',
                    ],
                    step_id="pulumi",
                ),
                run_step(
                    "Preview the stack",
                    ['"$PULUMI" preview --stack "$STACK" --non-interactive --diff'],
                    env={"PULUMI": expression("steps.pulumi.outputs.pulumi"), "STACK": expression("matrix.stack")},
                ),
            ],
        )
        include = CommentedSeq(mapping(("environment", env), ("stack", stack)) for env, stack in stacks)
        strategy = mapping(("fail-fast", False), ("matrix", mapping(("include", include))))
        # The stack's secrets are its environment's: the job runs in that GitHub environment, so previews of
        # protected environments wait for the same approval as their deployments.
        environment = mapping(("name", expression("matrix.environment")))
        items = list(preview.items())
        preview.clear()
        for key, value in items:
            preview[key] = value
            if key == "needs":
                preview["strategy"] = strategy
            if key == "permissions":
                preview["environment"] = environment
        jobs["preview"] = preview

    return workflow_document(
        "workspace pull request",
        mapping(("pull_request", mapping(("paths", CommentedSeq(PATHS_OF_THE_WORKSPACE))))),
        jobs,
        group="workspace-pr-" + expression("github.event.pull_request.number"),
        cancel_in_progress=True,
    )


def generate_workflows(loaded: LoadedWorkspace) -> dict[str, str]:
    """``ws generate``: both workflows, keyed by their path relative to workspace.yaml's folder."""
    check_pins()
    source = loaded.path.name
    return {
        DEPLOYMENT_WORKFLOW: yaml_text(deployment_workflow(loaded.model), source),
        PR_WORKFLOW: yaml_text(pr_workflow(loaded.model), source),
    }
