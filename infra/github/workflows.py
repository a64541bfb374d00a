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

Checkouts (:class:`Layout`). When workspace.yaml places the repos inside its own folder (as examples/ does), they
are part of this repository's checkout. Otherwise (the default ``../<repo>``) this repository is checked out into
a folder named after it and every repo beside it, where workspace.yaml expects them, with ``actions/checkout``
(pinned by SHA, ``repository:`` from ``repos.<r>.github``, ``persist-credentials: false`` and the read-only
``WS_CHECKOUT_TOKEN`` secret); ``WS_WORKSPACE`` tells ``ws`` where workspace.yaml is. The plan job checks out each
repo at the version asked for (else its default branch) and hands on the commit it got, so every later job
runs the same code. The infra job runs no repo's code and checks out none.

Images (:func:`registry_login_steps`). The plan job (``ws pipeline begin``) and the validate job (``ws pipeline
validate``) ask the registries whether the images to deploy exist (infra.deploy.images). In Pulumi environments
they first log in, read-only, to each registry the images live in: GHCR with the workflow's own token, so only
these two jobs hold ``packages: read``; another registry with its ``REGISTRY_<HOST>_*`` secrets.

Secrets (:func:`gated_secrets`). Each job receives exactly the secrets its steps read in the dispatched
environment, and nothing for the others (:func:`job_reads`): that environment's server secrets (a local one's
``DATABASE_URL``/``REDIS_URL``; a Pulumi one's ``DATABASE_URL``, where the deploy ledger lives, and its own backend's
credentials), and the ``{secret: ...}`` values of the repos whose code the job runs there (:func:`repos_run_by`):
``migrate`` those whose migrate.command runs from the checkout (on a Docker stack a repo with an image migrates in
its one-off container, on Kubernetes every repo in its migration Job, which get their env from Pulumi);
``deploy-<repo>`` and ``rollback`` those whose service starts on the runner (a local environment; a Pulumi stack's
containers get their secrets from the stack); ``integration`` those with integration tests. A secret only some
environments read is written ``${{ (inputs.environment == 'x') && secrets.NAME || '' }}``; the checkout token goes
to the checkout steps only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

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
from infra.github.layout import (
    CHECKOUT_TOKEN_SECRET,
    PR_ENVIRONMENT,
    RUNNER,
    SAFE_REF,
    Layout,
    layout_of,
    ref_key,
)
from infra.github.pins import CHECKOUT, LOGIN, PULUMI_ACTIONS, check_pins
from infra.github.repofiles import generate_repo_files
from infra.workspace.env import declared_layers
from infra.workspace.graph import edges_of, stages
from infra.workspace.images import registry_of, service_image, stack_runs_migration
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Environment, SecretRef, Workspace
from infra.workspace.yamlwrite import YamlMap, YamlSeq

DEPLOYMENT_WORKFLOW = ".github/workflows/coordinated-deployment.yml"
PR_WORKFLOW = ".github/workflows/workspace-pr.yml"
# GitHub's limit on workflow_dispatch inputs (raised from 10 to 25 in December 2025).
MAX_DISPATCH_INPUTS = 25
# Secrets every job acting on an environment may need besides those workspace.yaml references:
# where the shared servers are (ws uses them instead of starting its own when set) ...
SERVER_SECRETS = ("DATABASE_URL", "REDIS_URL")
# ... and, when an environment is provisioned by Pulumi, its backend's credentials (environment_secrets); the
# backend unless workspace.yaml names another:
PULUMI_CLOUD = "https://api.pulumi.com"
# The Pulumi CLI the jobs install: the version of the pulumi SDK in requirements.lock (a test keeps them equal).
PULUMI_VERSION = "3.272.0"
# Backend URLs and Docker hosts written into generated scripts (workspace.yaml's pattern, checked again here).
SAFE_URL = re.compile(r"^([a-z0-9]+://[A-Za-z0-9._~/?=&%+:@-]+)?$")
# The credentials a self-managed Pulumi backend reads from the environment, per URL scheme.
BACKEND_SECRETS = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "azblob": ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY"),
    "gs": ("GOOGLE_CREDENTIALS",),
}
# The private key that reaches an ssh:// Docker host (its public host keys are the DOCKER_SSH_KNOWN_HOSTS variable).
DOCKER_SSH_KEY_SECRET = "DOCKER_SSH_KEY"
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

# The jobs whose `ws pipeline` step asks the registries whether the images to deploy exist (infra.deploy.images):
# `ws pipeline begin` in the plan job and `ws pipeline validate` in the validate job. Only they log in to the
# registries, read-only, and only they hold `packages: read` (when an image lives on GHCR).
IMAGE_CHECK_JOBS = ("plan", "validate")
GHCR = "ghcr.io"
SAFE_REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?$")

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


def pipeline_run_step(name: str, step: str) -> YamlMap:
    """A ``ws pipeline <step>`` of the plan job's deployment, run directly (not through a composite action)."""
    return run_step(name, [f'ws pipeline {step} --deployment "$DEPLOYMENT_ID"'], env={"DEPLOYMENT_ID": DEPLOYMENT_ID})


def deployment_step(layout: Layout, name: str, action: str, *, github: bool = False) -> YamlMap:
    """A composite action acting on the plan job's deployment; ``github``: it records GitHub deployments."""
    return layout.action(name, action, {"deployment": DEPLOYMENT_ID}, env=github_token_env() if github else None)


def checkout_steps(layout: Layout, refs: Mapping[str, str] | None) -> list[YamlMap]:
    """This repository, then (with ``refs``: repo -> ref expression) every repo checked out on its own."""
    own = uses_step(
        "Check out" if layout.folder is None else "Check out the workspace",
        CHECKOUT,
        {"path": layout.folder, "persist-credentials": False} if layout.folder else {"persist-credentials": False},
    )
    steps = [own]
    if refs is None:
        return steps
    for repo, (full_name, path) in layout.checkouts.items():
        steps.append(
            uses_step(
                f"Check out {repo}",
                CHECKOUT,
                {
                    "repository": full_name,
                    "ref": refs[repo],
                    "path": path,
                    "token": expression(f"secrets.{CHECKOUT_TOKEN_SECRET}"),
                    "persist-credentials": False,
                },
            )
        )
    return steps


# --- secrets ----------------------------------------------------------------------------------------


def base_secrets(workspace: Workspace) -> list[str]:
    """The server secrets, and the credentials of every Pulumi backend an environment names: Pulumi Cloud's token
    (the default backend), the cloud storage keys of a self-managed one, and the passphrase of its secrets."""
    names = list(SERVER_SECRETS)
    pulumi = [env for env in workspace.environments.values() if env.runtime == "pulumi"]
    if not pulumi:
        return names
    schemes = {backend_of(env).split("://", 1)[0] for env in pulumi}
    if "https" in schemes:
        names.append("PULUMI_ACCESS_TOKEN")
    names.append("PULUMI_CONFIG_PASSPHRASE")
    for scheme in ("s3", "azblob", "gs"):
        if scheme in schemes:
            names += BACKEND_SECRETS[scheme]
    return names


def backend_of(environment: Environment) -> str:
    """The Pulumi backend URL of a ``runtime: pulumi`` environment (Pulumi Cloud unless workspace.yaml names one)."""
    settings = environment.pulumi
    return settings.backend if settings is not None and settings.backend else PULUMI_CLOUD


def docker_host_of(environment: Environment) -> str:
    settings = environment.pulumi
    return settings.docker_host if settings is not None and settings.docker_host else ""


def environment_secrets(workspace: Workspace, environment: str) -> list[str]:
    """The server and Pulumi backend secrets ``ws`` reads in one environment: a local one finds the servers in
    ``DATABASE_URL``/``REDIS_URL``; a Pulumi one finds the deploy ledger in ``DATABASE_URL`` (else the stack's
    output; the servers' addresses come from the stack) and logs in to its own backend."""
    env = workspace.environments[environment]
    if env.runtime != "pulumi":
        return list(SERVER_SECRETS)
    scheme = backend_of(env).split("://", 1)[0]
    cloud = ["PULUMI_ACCESS_TOKEN"] if scheme == "https" else []
    return ["DATABASE_URL", *cloud, "PULUMI_CONFIG_PASSPHRASE", *BACKEND_SECRETS.get(scheme, ())]


def migrates_on_runner(workspace: Workspace, environment: str, repo: str) -> bool:
    """Whether ``ws pipeline migrate`` runs ``repo``'s migrate.command from its checkout on the runner (and so with
    the repo's env), as infra.deploy does (PulumiRuntime.runs_migration): always in a local environment; never on
    a Kubernetes stack (the repo's migration Job runs it); on a Docker stack only for a repo without a service (the
    others run it in their one-off migration container). Pulumi gives the container and the Job their env."""
    migrate = workspace.repos[repo].migrate
    has_command = migrate is not None and bool(migrate.command)
    return has_command and not stack_runs_migration(workspace, environment, repo)


def repo_secrets_in(workspace: Workspace, environment: str, repo: str) -> set[str]:
    """The ``{secret: NAME}`` values of ``repo``'s env in one environment (a later layer's value replaces an
    earlier one's, as the env resolves). Secrets that ws generates itself (database role passwords in provisioned
    environments) live in the Pulumi stack, not in GitHub, so they are not among them."""
    merged: dict[str, object] = {}
    for _, layer in declared_layers(workspace, environment, repo):
        merged.update(layer)
    return {value.secret for value in merged.values() if isinstance(value, SecretRef)}


def serves_on_runner(workspace: Workspace, environment: str, repo: str) -> bool:
    """Whether deploying ``repo`` in ``environment`` starts its service on the runner with the repo's env, as
    infra.deploy does (LocalRuntime.deploy): a local environment and a service with a local run command (else it
    only records the version). On a Pulumi stack the deploy is a stack update: the containers get their env, the
    repo's secrets included, from the stack's config."""
    spec = workspace.repos[repo]
    if workspace.environments[environment].runtime == "pulumi":
        return False
    return spec.service is not None and spec.service.run.local is not None


def repos_run_by(workspace: Workspace, job_id: str, environment: str) -> list[str]:
    """The repos whose code ``job_id``'s ``ws`` steps run with the repo's env (and so its ``{secret: ...}`` values)
    in ``environment``: migrate.command from the checkout (migrate), the service (deploy-<repo>, and rollback,
    which deploys the previous versions again), the integration tests (integration, from the checkout in every
    runtime). The other jobs run no repo's code."""
    repos = workspace.repos
    if job_id == "migrate":
        return [r for r in repos if migrates_on_runner(workspace, environment, r)]
    if job_id == "integration":
        return [r for r, spec in repos.items() if spec.test.integration]
    if job_id == "rollback":
        return [r for r in repos if serves_on_runner(workspace, environment, r)]
    if job_id.startswith("deploy-"):
        repo = job_id.removeprefix("deploy-")
        return [repo] if serves_on_runner(workspace, environment, repo) else []
    return []


def job_reads(workspace: Workspace, job_id: str, environment: str) -> set[str]:
    """The secrets ``job_id``'s steps read (besides those a step names in its own ``with:``/``env:``) when the
    dispatched environment is ``environment``: its server and backend secrets and the ``{secret: ...}`` values
    of the repos whose code the job runs there."""
    names = set(environment_secrets(workspace, environment))
    for repo in repos_run_by(workspace, job_id, environment):
        names |= repo_secrets_in(workspace, environment, repo)
    return names


def job_secrets(workspace: Workspace, job_id: str) -> dict[str, list[str]]:
    """The secrets ``job_id``'s steps read, each with the environments where they read it (:func:`job_reads`);
    the server and backend secrets first. The job's env gives a secret only when the dispatched environment is
    one of those (:func:`secrets_env`)."""
    needed: dict[str, list[str]] = {}
    for environment in workspace.environments:
        for name in job_reads(workspace, job_id, environment):
            needed.setdefault(name, []).append(environment)
    base = [name for name in base_secrets(workspace) if name in needed]
    return {name: needed[name] for name in [*base, *sorted(set(needed) - set(base))]}


def secrets_only_in(workspace: Workspace, secrets: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Of a job's secrets (:func:`job_secrets`), those not every environment reads, with the environments that do."""
    every = len(workspace.environments)
    return {name: envs for name, envs in secrets.items() if len(envs) < every}


def gated_secrets(workspace: Workspace, job_id: str) -> tuple[list[str], dict[str, list[str]]]:
    """(secrets, secrets_only_in) for :func:`job`: exactly the secrets ``job_id``'s steps read in the dispatched
    environment (:func:`job_secrets`), those not every environment reads gated on it (:func:`secrets_env`)."""
    secrets = job_secrets(workspace, job_id)
    return list(secrets), secrets_only_in(workspace, secrets)


def gated_expression(name: str, environments: Iterable[str] | None = None, gate: str = "inputs.environment") -> str:
    """``${{ secrets.NAME }}``, or with ``environments`` the secret only when the job's environment (``gate``: the
    dispatch input, or ``matrix.environment``) is one of them: ``${{ (inputs.environment == 'x') && secrets.NAME
    || '' }}`` (empty elsewhere)."""
    value = f"secrets.{safe_name(name, 'secret')}"
    if environments:
        condition = " || ".join(f"{gate} == '{safe_name(env, 'environment')}'" for env in environments)
        value = f"({condition}) && {value} || ''"
    return expression(value)


def secrets_env(
    names: Iterable[str], only_in: Mapping[str, list[str]] | None = None, gate: str = "inputs.environment"
) -> YamlMap:
    """The job's env: each secret by name. ``only_in``: secret -> the environments that need it, for a secret not
    every environment needs; it is given only when the job's environment (``gate``) is one of them (else empty)."""
    return mapping(*((name, gated_expression(name, (only_in or {}).get(name), gate)) for name in names))


# --- registries of the images ----------------------------------------------------------------------------


def image_registries(workspace: Workspace) -> list[str]:
    """The registries holding the images the coordinated deployment checks: only Pulumi environments run images
    (a local environment's versions are checkouts), and only repos with a service have one."""
    if not any(env.runtime == "pulumi" for env in workspace.environments.values()):
        return []
    return sorted({registry_of(service_image(workspace, r)) for r, spec in workspace.repos.items() if spec.service})


def registry_secrets(registry: str) -> tuple[str, str]:
    """The secrets holding a read-only login to a registry other than GHCR: ``REGISTRY_<HOST>_USERNAME`` and
    ``..._PASSWORD``, with every character of the host other than a letter or digit as ``_``."""
    host = re.sub(r"[^A-Z0-9]+", "_", registry.upper()).strip("_")
    return f"REGISTRY_{host}_USERNAME", f"REGISTRY_{host}_PASSWORD"


def registry_login_steps(workspace: Workspace) -> list[YamlMap]:
    """A read-only docker/login-action per registry of the images (pinned by SHA), in the dispatched environment
    only when it is a Pulumi one (only those check images). GHCR takes the workflow's own token (``packages:
    read`` on the job); any other registry its two secrets, and without them the login fails softly
    (``continue-on-error``): the check then reports the image as not checked, as it would without a login. The
    login is written to Docker's config.json, where infra.deploy.images reads it; login-action's post step logs
    out at the end of the job (``logout`` defaults to true). These steps come before the Pulumi steps, which name
    a remote ``DOCKER_HOST``: the login speaks to the runner's own Docker engine."""
    environments = [name for name, env in workspace.environments.items() if env.runtime == "pulumi"]
    condition = expression(
        " || ".join(f"inputs.environment == '{safe_name(name, 'environment')}'" for name in environments)
    )
    steps = []
    for registry in image_registries(workspace):
        if not SAFE_REGISTRY.fullmatch(registry):
            raise UsageError(f"cannot generate GitHub automation: image registry {registry!r} is unsafe")
        if registry == GHCR:
            username, password = expression("github.actor"), expression("github.token")
        else:
            username, password = (expression(f"secrets.{name}") for name in registry_secrets(registry))
        with_ = {"registry": registry, "username": username, "password": password}
        step = uses_step(f"Log in to {registry} (read-only) for the image check", LOGIN, with_, condition=condition)
        if registry != GHCR:
            step["continue-on-error"] = True
        steps.append(step)
    return steps


def image_check_permissions(workspace: Workspace) -> YamlMap:
    """``contents: read``, and ``packages: read`` when an image lives on GHCR (the workflow's token reads it)."""
    permissions = mapping(("contents", "read"))
    if GHCR in image_registries(workspace):
        permissions["packages"] = "read"
        permissions.yaml_add_eol_comment("the image check reads the images' GHCR packages", "packages")
    return permissions


# --- job building blocks -------------------------------------------------------------------------------


def pulumi_steps(workspace: Workspace, layout: Layout) -> list[YamlMap]:
    """When the dispatched environment is a ``runtime: pulumi`` one: the Pulumi CLI (pinned action), the ``.venv``
    that Pulumi.yaml names (from the hash-pinned lock), a login to the environment's backend, its Docker host
    (``DOCKER_HOST``; for ``ssh://`` the key secret and the known host keys) and its stack selected."""
    environments = [name for name, env in workspace.environments.items() if env.runtime == "pulumi"]
    if not environments:
        return []
    condition = " || ".join(f"inputs.environment == '{safe_name(name, 'environment')}'" for name in environments)
    cases = []
    for name in environments:
        env = workspace.environments[name]
        backend, docker_host = backend_of(env), docker_host_of(env)
        for value in (backend, docker_host):
            if not SAFE_URL.fullmatch(value):
                raise UsageError(f"cannot generate GitHub automation: environments.{name}.pulumi: {value!r} is unsafe")
        stack = safe_name(workspace.stack_of(name), "stack")
        cases.append(f"  {name}) backend='{backend}'; docker_host='{docker_host}'; stack='{stack}' ;;")
    folder = layout.folder or "."
    lines = [
        'case "$ENVIRONMENT" in',
        *cases,
        '  *) echo "::error::$ENVIRONMENT is not a Pulumi environment" >&2; exit 2 ;;',
        "esac",
        'echo "PULUMI_BACKEND_URL=$backend" >> "$GITHUB_ENV"',
        'pulumi login "$backend"',
        'if [ -n "$docker_host" ]; then',
        '  echo "DOCKER_HOST=$docker_host" >> "$GITHUB_ENV"',
        '  case "$docker_host" in',
        "    ssh://*)",
        '      host="${docker_host#ssh://*@}"',
        '      host="${host%%:*}"',
        '      install -m 700 -d "$HOME/.ssh"',
        '      (umask 077 && printf \'%s\\n\' "$DOCKER_SSH_KEY" > "$HOME/.ssh/ws_docker_host")',
        '      printf \'%s\\n\' "$DOCKER_SSH_KNOWN_HOSTS" >> "$HOME/.ssh/known_hosts"',
        '      printf \'Host %s\\n  IdentityFile ~/.ssh/ws_docker_host\\n  IdentitiesOnly yes\\n\' "$host" >> "$HOME/.ssh/config"',
        "      ;;",
        "  esac",
        "fi",
        f'pulumi stack select --create "$stack" --cwd "$GITHUB_WORKSPACE/{folder}"',
    ]
    login_env = {"ENVIRONMENT": expression("inputs.environment")}
    ssh = [name for name in environments if docker_host_of(workspace.environments[name]).startswith("ssh://")]
    if ssh:  # the key only where the dispatched environment's Docker host is reached over ssh
        login_env["DOCKER_SSH_KEY"] = gated_expression(DOCKER_SSH_KEY_SECRET, ssh if ssh != environments else None)
        login_env["DOCKER_SSH_KNOWN_HOSTS"] = expression("vars.DOCKER_SSH_KNOWN_HOSTS")
    install = uses_step(
        "Install the Pulumi CLI", PULUMI_ACTIONS, {"pulumi-version": PULUMI_VERSION}, condition=expression(condition)
    )
    return [
        install,
        run_step(
            "Create the .venv that Pulumi.yaml names, from the hash-pinned lock",
            [
                "python -m venv .venv",
                ".venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock",
                ".venv/bin/python -m pip install --quiet --no-deps .",
            ],
            condition=expression(condition),
            working_directory=layout.folder,
        ),
        run_step(
            "Log in to the environment's Pulumi backend, name its Docker host, select its stack",
            lines,
            env=login_env,
            condition=expression(condition),
        ),
    ]


def setup_step(layout: Layout, secret_names: Iterable[str]) -> YamlMap:
    names = " ".join(secret_names)
    with_ = mapping(("mask-variables", names or None), ("working-directory", layout.folder))
    return layout.action("Set up ws", "setup", with_ or None)


def job(
    name: str,
    *,
    needs: list[str] | None = None,
    condition: str | None = None,
    timeout: int,
    environment: bool | str = True,
    secrets: list[str],
    steps: list[YamlMap],
    outputs: YamlMap | None = None,
    layout: Layout | None = None,
    refs: Mapping[str, str] | None = None,
    checkouts: list[YamlMap] | None = None,
    pulumi: list[YamlMap] | None = None,
    logins: list[YamlMap] | None = None,
    permissions: YamlMap | None = None,
    secrets_only_in: Mapping[str, list[str]] | None = None,
    gate: str = "inputs.environment",
) -> YamlMap:
    """A job: checkouts (this repository; with ``refs`` every repo too), ``ws`` set up with the job's secrets
    masked, the registry ``logins``, the ``pulumi`` steps, then ``steps``. ``environment``: True for the dispatch
    input's environment, or a fixed name. ``permissions``: ``contents: read`` unless given. ``secrets_only_in``: the
    secrets given only in some environments, as ``gate`` names them (:func:`secrets_env`)."""
    layout = layout or Layout()
    pulumi = pulumi or []
    logins = logins or []
    result = mapping(("name", name))
    if needs:
        result["needs"] = YamlSeq(needs)
    if condition:
        result["if"] = expression(condition)
    result["runs-on"] = RUNNER
    result["timeout-minutes"] = timeout
    result["permissions"] = permissions if permissions is not None else mapping(("contents", "read"))
    if environment:
        name_of = expression("inputs.environment") if environment is True else environment
        result["environment"] = mapping(("name", name_of))
    if outputs:
        result["outputs"] = outputs
    if secrets:
        result["env"] = secrets_env(secrets, secrets_only_in, gate)
    before = checkouts if checkouts is not None else checkout_steps(layout, refs)
    result["steps"] = YamlSeq([*before, setup_step(layout, secrets), *logins, *pulumi, *steps])
    return result


def workflow_document(
    name: str,
    on: YamlMap,
    jobs: YamlMap,
    *,
    group: str,
    cancel_in_progress: bool,
    run_name: str | None = None,
    env: YamlMap | None = None,
) -> YamlMap:
    """A workflow: no permissions at the top (each job asks for its own) and one run per concurrency group."""
    return mapping(
        ("name", name),
        ("run-name", run_name),
        ("on", on),
        ("permissions", mapping()),
        ("concurrency", mapping(("group", group), ("cancel-in-progress", cancel_in_progress))),
        ("env", env),
        ("jobs", jobs),
    )


# --- the coordinated deployment ------------------------------------------------------------------------


def dispatch_inputs(workspace: Workspace) -> YamlMap:
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
                ("options", YamlSeq(environments)),
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


def versions_script(layout: Layout, workspace: Workspace) -> list[str]:
    """Bash writing ``ref_<repo>=`` the version asked for in ``$VERSIONS`` (else the default branch) per repo checked
    out on its own. The input arrives through env only; whitespace is dropped, so it cannot add output lines."""
    lines = [
        "versions=\",$(printf '%s' \"$VERSIONS\" | tr -d '[:space:]'),\"",
        "version_of() {",
        '  local rest="${versions#*,"$1"=}"',
        '  if [ "$rest" = "$versions" ]; then',
        "    printf '%s' \"$2\"",
        "    return",
        "  fi",
        '  rest="${rest%%,*}"',
        '  case "$rest" in',
        "    '' | [.-]* | *[!A-Za-z0-9._-]*)",
        '      echo "::error::versions: $1=$rest is not a safe version (letters, digits, ., _, -)" >&2',
        "      return 2",
        "      ;;",
        "  esac",
        "  printf '%s' \"$rest\"",
        "}",
    ]
    for repo in layout.checkouts:
        branch = workspace.repos[repo].default_branch
        if not SAFE_REF.fullmatch(branch):
            raise UsageError(
                f"cannot generate GitHub automation: repos.{repo}.default_branch {branch!r} is not a safe ref"
            )
        lines += [
            f'ref="$(version_of {repo} {branch})"',
            f'echo "{ref_key(repo)}=$ref" >> "$GITHUB_OUTPUT"',
            f'echo "{repo}: check out $ref"',
        ]
    return lines


def commits_script(layout: Layout) -> list[str]:
    """Bash writing the commit each repo's checkout holds, for the later jobs to check out the same."""
    lines = []
    for repo, (_, path) in layout.checkouts.items():
        lines += [
            f'commit="$(git -C "$GITHUB_WORKSPACE/{path}" rev-parse HEAD)"',
            f'echo "{ref_key(repo)}=$commit" >> "$GITHUB_OUTPUT"',
            f'echo "{repo}: $commit"',
        ]
    return lines


def plan_job(workspace: Workspace, layout: Layout) -> YamlMap:
    repos = [safe_name(repo, "repo") for repo in workspace.repos]
    outputs = mapping(("deployment_id", expression("steps.begin.outputs.deployment_id")))
    for repo in repos:
        outputs[output_key(repo)] = expression(f"steps.select.outputs.{output_key(repo)}")
    for repo in layout.checkouts:
        outputs[ref_key(repo)] = expression(f"steps.commits.outputs.{ref_key(repo)}")
    inputs_env = {
        "ENVIRONMENT": expression("inputs.environment"),
        "REPOSITORIES": expression("inputs.repositories"),
    }
    checkouts = checkout_steps(layout, None)
    if layout.checkouts:
        checkouts.append(
            run_step(
                "Choose the version of each repo to check out",
                versions_script(layout, workspace),
                env={"VERSIONS": expression("inputs.versions")},
                step_id="versions",
            )
        )
        refs = {repo: expression(f"steps.versions.outputs.{ref_key(repo)}") for repo in layout.checkouts}
        checkouts += checkout_steps(layout, refs)[1:]
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
    if layout.checkouts:
        steps.append(run_step("Record the commits checked out", commits_script(layout), step_id="commits"))
    secrets, only_in = gated_secrets(workspace, "plan")
    return job(
        "plan",
        timeout=TIMEOUTS["plan"],
        secrets=secrets,
        secrets_only_in=only_in,
        steps=steps,
        outputs=outputs,
        layout=layout,
        checkouts=checkouts,
        pulumi=pulumi_steps(workspace, layout),
        logins=registry_login_steps(workspace),
        permissions=image_check_permissions(workspace),
    )


def planned_refs(layout: Layout) -> dict[str, str]:
    """The commit of every repo the plan job checked out: the later jobs check out the same."""
    return {repo: expression(f"needs.plan.outputs.{ref_key(repo)}") for repo in layout.checkouts}


def deploy_job(workspace: Workspace, layout: Layout, repo: str, depends_on: Iterable[str]) -> YamlMap:
    """The deploy job of ``repo``: after the validation and its ``depends_on`` repos' deploy jobs only (not after
    the other repos of its stage, which deploy at the same time)."""
    secrets, only_in = gated_secrets(workspace, deploy_job_id(repo))
    return job(
        f"deploy {repo}",
        needs=["plan", "validate", *(deploy_job_id(dep) for dep in sorted(depends_on))],
        condition=f"{NOT_BLOCKED} && needs.plan.outputs.{output_key(repo)} == 'true'",
        timeout=TIMEOUTS["deploy"],
        secrets=secrets,
        secrets_only_in=only_in,
        steps=[
            layout.action(
                f"Deploy {repo}",
                "deploy-stage",
                {"deployment": DEPLOYMENT_ID, "repo": repo},
                env=github_token_env(),
            )
        ],
        layout=layout,
        refs=planned_refs(layout),
        pulumi=pulumi_steps(workspace, layout),
    )


def deployment_workflow(workspace: Workspace) -> YamlMap:
    edges = edges_of(workspace)
    order = [repo for layer in stages(edges) for repo in layer]
    layout = layout_of(workspace)
    refs = planned_refs(layout)
    protected = [name for name, env in workspace.environments.items() if env.protected]

    jobs = mapping()
    logins, reads = registry_login_steps(workspace), image_check_permissions(workspace)

    def add(
        job_id: str,
        name: str,
        needs: list[str],
        *steps: YamlMap,
        condition: str | None = None,
        checkouts: bool = True,
    ) -> None:
        """A pipeline job after the plan, its timeout from TIMEOUTS and its secrets from :func:`gated_secrets`."""
        secrets, only_in = gated_secrets(workspace, job_id)
        jobs[job_id] = job(
            name,
            needs=needs,
            condition=condition,
            timeout=TIMEOUTS[job_id],
            secrets=secrets,
            steps=list(steps),
            layout=layout,
            refs=refs if checkouts else None,
            pulumi=pulumi_steps(workspace, layout),
            logins=logins if job_id in IMAGE_CHECK_JOBS else None,
            permissions=reads if job_id in IMAGE_CHECK_JOBS else None,
            secrets_only_in=only_in,
        )

    jobs["plan"] = plan_job(workspace, layout)
    add(
        "infra",
        "infrastructure",
        ["plan"],
        pipeline_run_step("Provision PostgreSQL, Redis and the services", "infra"),
        checkouts=False,
    )
    add("migrate", "migrate", ["plan", "infra"], deployment_step(layout, "Migrate the database", "migrate"))
    add(
        "validate",
        "validate schemas",
        ["plan", "migrate"],
        deployment_step(layout, "Validate schema alignment and drift", "schema-check"),
    )
    for repo in order:
        jobs[deploy_job_id(repo)] = deploy_job(workspace, layout, repo, edges[repo])
    deploy_jobs = [deploy_job_id(repo) for repo in order]
    add(
        "integration",
        "integration tests",
        ["plan", *deploy_jobs],
        deployment_step(layout, "Run the integration tests", "integration-test"),
        condition=NOT_BLOCKED,
    )
    add(
        "health",
        "health checks",
        ["plan", "integration"],
        deployment_step(layout, "Check every service's health", "health-check"),
        pipeline_run_step("Record the deployment's outcome", "finish"),
        condition=NOT_BLOCKED,
    )
    add(
        "rollback",
        "rollback",
        ["plan", "infra", "migrate", "validate", *deploy_jobs, "integration", "health"],
        deployment_step(layout, "Roll back the deployment", "rollback", github=True),
        condition="(failure() || cancelled()) && needs.plan.outputs.deployment_id != ''",
    )

    document = workflow_document(
        "coordinated deployment",
        mapping(("workflow_dispatch", mapping(("inputs", dispatch_inputs(workspace))))),
        jobs,
        group="coordinated-deployment-" + expression("inputs.environment"),
        cancel_in_progress=False,
        run_name="deploy to " + expression("inputs.environment"),
        env=layout.workspace_env(),
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


def safe_backend(workspace: Workspace, environment: str) -> str:
    """The environment's Pulumi backend URL, checked to be safe to write into a workflow."""
    backend = backend_of(workspace.environments[environment])
    if not SAFE_URL.fullmatch(backend):
        raise UsageError(
            f"cannot generate GitHub automation: environments.{environment}.pulumi backend {backend!r} is unsafe"
        )
    return backend


def matrix_secrets(
    workspace: Workspace, environments: list[str], leave_out: Iterable[str] = ()
) -> tuple[list[str], dict[str, list[str]]]:
    """(secrets, secrets_only_in) of a job with one matrix entry per environment: the server and backend secrets
    each reads (:func:`environment_secrets`, but ``leave_out``), one that only some need given only to their
    entries (gated on ``matrix.environment``)."""
    left_out = set(leave_out)
    needed: dict[str, list[str]] = {}
    for environment in environments:
        for name in environment_secrets(workspace, environment):
            if name not in left_out:
                needed.setdefault(name, []).append(environment)
    ordered = [name for name in base_secrets(workspace) if name in needed]
    return ordered, {name: envs for name, envs in needed.items() if len(envs) < len(environments)}


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


def schema_check_step(workspace: Workspace) -> YamlMap:
    """The pull request's schema alignment check.

    When the repos are checked out with this repository, their checkouts are read. Otherwise every repo's schema
    is read through the GitHub API at the pull request's head branch name: a change that spans repos is made on
    one branch name in the repos it touches (``ws branch create NAME``), and the coordination repository's pull
    request uses that name too. A repo without that branch is read at its default branch, and the check says
    which repos those are. The branch name reaches the shell only through the action's ``env:``; the token is
    the read-only ``WS_CHECKOUT_TOKEN`` secret (Contents: read), in the step's ``env:`` only.
    """
    if checked_out_with_workspace(workspace):
        return local_step("Schema alignment of the checkouts", "schema-check")
    return local_step(
        "Schema alignment at the pull request's branch (else the default branch) in every repo",
        "schema-check",
        {"ref": expression("github.head_ref")},
        env={"GITHUB_TOKEN": expression(f"secrets.{CHECKOUT_TOKEN_SECRET}")},
    )


def pr_workflow(workspace: Workspace) -> YamlMap:
    # A check that reads the repos with a token runs in the workspace-pr environment: its required reviewers
    # approve before a pull request's code runs beside the token. Without a token it needs no environment.
    checks = job(
        "workspace checks",
        timeout=TIMEOUTS["check"],
        environment=False if checked_out_with_workspace(workspace) else PR_ENVIRONMENT,
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
        # a preview records nothing: no deploy ledger (DATABASE_URL)
        secrets, only_in = matrix_secrets(workspace, [env for env, _ in stacks], leave_out=["DATABASE_URL"])
        preview = job(
            "pulumi preview " + expression("matrix.stack"),
            needs=["check"],
            timeout=TIMEOUTS["preview"],
            environment=False,
            secrets=secrets,
            secrets_only_in=only_in,
            gate="matrix.environment",
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
                    [
                        'export PULUMI_BACKEND_URL="$PULUMI_BACKEND"',
                        '"$PULUMI" preview --stack "$STACK" --non-interactive --diff',
                    ],
                    env={
                        "PULUMI": expression("steps.pulumi.outputs.pulumi"),
                        "STACK": expression("matrix.stack"),
                        "PULUMI_BACKEND": expression("matrix.pulumi_backend"),
                    },
                ),
            ],
        )
        include = YamlSeq(
            mapping(("environment", env), ("stack", stack), ("pulumi_backend", safe_backend(workspace, env)))
            for env, stack in stacks
        )
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
        mapping(("pull_request", mapping(("paths", YamlSeq(PATHS_OF_THE_WORKSPACE))))),
        jobs,
        group="workspace-pr-" + expression("github.event.pull_request.number"),
        cancel_in_progress=True,
    )


def generate_workflows(loaded: LoadedWorkspace) -> dict[str, str]:
    """``ws generate``: both workflows and the repos' own (infra.github.repofiles), keyed by their path relative to
    workspace.yaml's folder."""
    check_pins()
    source = loaded.path.name
    return {
        DEPLOYMENT_WORKFLOW: yaml_text(deployment_workflow(loaded.model), source),
        PR_WORKFLOW: yaml_text(pr_workflow(loaded.model), source),
        **generate_repo_files(loaded),
    }
