"""The Pulumi program under pulumi.runtime.set_mocks (no CLI, plugin or Docker): for every `runtime: pulumi`
environment of the example and the real workspace, with the settings read from the committed stack files
through Pulumi config, exactly as `pulumi up` reads them."""

from __future__ import annotations

import json
import os
import secrets as token
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pytest
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from psycopg.conninfo import conninfo_to_dict
from pulumi.runtime.mocks import MockMonitor
from ruamel.yaml import YAML

from infra.errors import UsageError
from infra.generate import write as generate_write
from infra.stack import naming
from infra.stack.program import build, current_environment, read_settings
from infra.stack.stackfiles import (
    SERVICES_KEY,
    docker_host_address,
    pulumi_environments,
    read_stack_config,
    settings_from_config,
    stack_file_name,
)
from infra.workspace.env import CACHE_PASSWORD_SECRET, database_password_secret, is_secret, render, resolve
from infra.workspace.graph import edges_of
from infra.workspace.images import service_image
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import SecretRef
from tests.helpers import ROOT

SECRET_SIG = "4dabf18193072939515e22adb298388d"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
PASSWORD = "random:index/randomPassword:RandomPassword"
PROJECT_FILE = YAML(typ="safe").load((ROOT / "Pulumi.yaml").read_text())
PROJECT = PROJECT_FILE["name"]
PROGRAM = ROOT / PROJECT_FILE["main"]  # the folder whose __main__.py Pulumi runs


class Secret:
    """A value that reached the engine wrapped as a secret."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return "Secret(...)"


def decode(value: Any) -> Any:
    """Raw RPC inputs (as JSON) -> Python, with secret-wrapped values as Secret (secretness kept per element)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return Secret(decode(value["value"]))
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def plain_strings(value: Any) -> list[str]:
    """Every string in an input that is NOT inside a secret."""
    if isinstance(value, Secret):
        return []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *plain_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    dependencies: list[str]
    protect: bool = False


@dataclass
class Run:
    resources: list[Registration] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)  # RandomPassword name -> generated value
    config_secrets: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: dict[str, bool] = field(default_factory=dict)
    environment: str = ""

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Registration:
        (found,) = [r for r in self.resources if r.name == name]
        return found

    def by_urn(self, urn: str) -> Registration:
        (found,) = [r for r in self.resources if r.urn == urn]
        return found

    def secret_values(self) -> list[str]:
        return [*self.passwords.values(), *self.config_secrets.values()]


class Recorder(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, run: Run):
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            inputs = decode(MessageToDict(request.object, preserving_proto_field_name=True))
            urn = self.make_urn(request.parent, request.type, request.name)
            self.run.resources.append(
                Registration(urn, request.type, request.name, inputs, list(request.dependencies), request.protect)
            )
        return super().RegisterResource(request)


class Mocks(pulumi.runtime.Mocks):
    def __init__(self, run: Run, roles_exit_code: int = 0, exit_codes: dict[str, int] | None = None):
        self.run = run
        self.roles_exit_code = roles_exit_code
        self.exit_codes = exit_codes or {}  # resource name -> exit code of a one-off (attached) container

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == PASSWORD:
            value = "Pw" + token.token_hex(12)
            self.run.passwords[args.name] = value
            state["result"] = value
        if args.typ == REMOTE_IMAGE:
            state["imageId"] = "sha256:" + args.name
        if args.typ == CONTAINER and args.inputs.get("attach"):
            # what Docker reports once the one-off container ended
            state["exitCode"] = self.exit_codes.get(args.name, self.roles_exit_code)
            state["containerLogs"] = f"{args.name}: done\n"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def external_secrets(loaded: LoadedWorkspace, environment: str) -> set[str]:
    generated = {CACHE_PASSWORD_SECRET, *(database_password_secret(r) for r in loaded.model.repos)}
    names = {
        part.secret
        for repo in loaded.model.repos
        for value in resolve(loaded.model, environment, repo).values()
        for part in value
        if isinstance(part, SecretRef)
    }
    return names - generated


def run_program(
    loaded: LoadedWorkspace,
    environment: str,
    stack_config: dict[str, Any] | None = None,
    roles_exit_code: int = 0,
    exit_codes: dict[str, int] | None = None,
) -> Run:
    """Run infra.stack.program as `pulumi up` would, with the stack file's config, under mocks."""
    run = Run(environment=environment)
    stack = loaded.model.stack_of(environment)
    if stack_config is None:
        path = loaded.root / stack_file_name(loaded.model, environment)
        stack_config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    mocks = Mocks(run, roles_exit_code, exit_codes)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=Recorder(mocks, run))
    config = {key: json.dumps(value) if isinstance(value, dict) else str(value) for key, value in stack_config.items()}
    run.config_secrets = {name: "ext-" + token.token_hex(10) for name in external_secrets(loaded, environment)}
    for name, value in run.config_secrets.items():
        config[f"{PROJECT}:{name}"] = value
    pulumi.runtime.set_all_config(config, [f"{PROJECT}:{n}" for n in run.config_secrets])
    return execute(loaded, environment, run)


def execute(loaded: LoadedWorkspace, environment: str, run: Run) -> Run:
    """Build the program under the mocks and config already set, as `pulumi up` would; its outputs go to ``run``."""

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        assert current_environment(loaded) == environment
        result = build(loaded, environment, read_settings(loaded, environment))
        names = list(result.outputs)
        values = [pulumi.Output.from_input(result.outputs[n]) for n in names]

        def record(resolved: list[Any]) -> None:
            run.outputs = dict(zip(names, resolved, strict=True))

        async def flags(_: None) -> None:
            # awaited only once every output resolved (a failing program leaves no coroutine behind)
            run.secret_outputs = {n: await v.is_secret() for n, v in zip(names, values, strict=True)}

        return pulumi.Output.all(*values).apply(record).apply(flags)

    program()
    return run


WORKSPACES = {"real": ROOT / "workspace.yaml", "example": ROOT / "examples" / "workspace.yaml"}
CASES = [  # the Docker environments (tests/test_kubernetes.py covers `target: kubernetes`)
    (kind, environment)
    for kind, path in WORKSPACES.items()
    for environment in pulumi_environments(load_workspace(path).model)
    if load_workspace(path).model.environments[environment].target == "docker"
]


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str], tuple[LoadedWorkspace, Run]]:
    result = {}
    for kind, environment in CASES:
        loaded = load_workspace(WORKSPACES[kind])
        result[(kind, environment)] = (loaded, run_program(loaded, environment))
    return result


def containers(run: Run) -> dict[str, Registration]:
    return {r.inputs["name"]: r for r in run.of_type(CONTAINER)}


def service_container(loaded: LoadedWorkspace, run: Run, repo: str) -> Registration:
    return containers(run)[f"{naming.prefix(loaded.model, run.environment)}-{repo}"]


def envs_of(container: Registration) -> tuple[dict[str, str], set[str]]:
    """(NAME -> value, names whose entry is a secret Output)."""
    values: dict[str, str] = {}
    secret: set[str] = set()
    for entry in container.inputs.get("envs", []):
        text = entry.value if isinstance(entry, Secret) else entry
        key, _, value = text.partition("=")
        values[key] = value
        if isinstance(entry, Secret):
            secret.add(key)
    return values, secret


def migrating(loaded: LoadedWorkspace) -> list[str]:
    """The repos whose migrate.command a Docker stack runs in a one-off container (those with a service image)."""
    return [r for r, repo in loaded.model.repos.items() if repo.service and repo.migrate and repo.migrate.command]


def secret_source(run: Run, loaded: LoadedWorkspace) -> dict[str, str]:
    source = {name: value for name, value in run.config_secrets.items()}
    source[CACHE_PASSWORD_SECRET] = run.passwords["redis-password"]
    for repo in loaded.model.repos:
        source[database_password_secret(repo)] = run.passwords[f"postgres-{repo}-password"]
    return source


def test_every_environment_of_both_workspaces_is_covered() -> None:
    assert ("real", "dev") in CASES and ("real", "staging") in CASES and ("real", "prod") in CASES
    assert {k for k, _ in CASES} == {"real", "example"}


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_one_container_per_repo_with_env_exactly_as_ws_env_resolves_it(runs: Any, case: tuple[str, str]) -> None:
    loaded, run = runs[case]
    ws = loaded.model
    prefix = naming.prefix(ws, run.environment)
    with_service = [r for r, repo in ws.repos.items() if repo.service is not None]
    expected_names = {f"{prefix}-{r}" for r in with_service} | {
        f"{prefix}-postgres",
        f"{prefix}-postgres-roles",
        f"{prefix}-redis",
    }
    expected_names |= {f"{prefix}-{r}-migrate" for r in migrating(loaded)}  # one-off migration containers
    assert set(containers(run)) == expected_names
    source = secret_source(run, loaded)
    for repo in with_service:
        values, secret = envs_of(service_container(loaded, run, repo))
        resolved = resolve(ws, run.environment, repo)
        assert values == {key: render(value, source.get) for key, value in resolved.items()}
        assert secret == {key for key, value in resolved.items() if is_secret(value)}
        # the container runtime's addresses: services by name on the network, the repo's own role
        assert values["DATABASE_URL"].startswith(f"postgresql://{repo.replace('-', '_')}:")
        assert "@postgres:5432/" in values["DATABASE_URL"]


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_dependency_edges_equal_the_workspace_dag(runs: Any, case: tuple[str, str]) -> None:
    loaded, run = runs[case]
    ws = loaded.model
    prefix = naming.prefix(ws, run.environment)
    service_names = {f"{prefix}-{r}": r for r, repo in ws.repos.items() if repo.service is not None}
    infrastructure = {f"{prefix}-postgres", f"{prefix}-postgres-roles", f"{prefix}-redis"}
    for repo, deps in edges_of(ws).items():
        if ws.repos[repo].service is None:
            continue
        container = service_container(loaded, run, repo)
        upstream = {run.by_urn(u).inputs.get("name") for u in container.dependencies if run.by_urn(u).type == CONTAINER}
        assert {service_names[n] for n in upstream if n in service_names} == set(deps)
        assert infrastructure <= upstream
    roles = containers(run)[f"{prefix}-postgres-roles"]
    assert f"{prefix}-postgres" in {run.by_urn(u).inputs.get("name") for u in roles.dependencies}


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_every_password_and_secret_is_a_secret_output_and_in_no_plain_input(runs: Any, case: tuple[str, str]) -> None:
    loaded, run = runs[case]
    assert run.passwords  # the generated passwords exist: superuser, one per repo role, redis
    assert set(run.passwords) == {
        "postgres-superuser-password",
        "redis-password",
        *(f"postgres-{r}-password" for r in loaded.model.repos),
    }
    assert run.config_secrets or case[0] == "example"  # the real workspace names external secrets
    secrets = run.secret_values()
    for resource in run.resources:
        for text in plain_strings(resource.inputs):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{resource.name} has a secret in a plain input"
    for resource in run.of_type(CONTAINER):
        for entry in resource.inputs.get("envs", []):
            if isinstance(entry, str):
                assert "PASSWORD" not in entry.split("=", 1)[0], entry
    # outputs: per-repo connection strings and the cache URL are secrets; URLs and host are not
    assert run.secret_outputs["database_urls"] and run.secret_outputs["cache_url"]
    assert run.secret_outputs["database_superuser_url"]
    assert not run.secret_outputs["service_urls"] and not run.secret_outputs["database_host"]
    assert run.outputs["database_roles"] == "applied"


def test_a_failing_roles_set_up_fails_the_update_naming_the_container() -> None:
    loaded = load_workspace(WORKSPACES["example"])
    with pytest.raises(pulumi.RunError, match=r"example-ecosystem-dev-postgres-roles\) exited with code 3"):
        run_program(loaded, "dev", roles_exit_code=3)


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_healthchecks_wait_restart_labels_and_unique_host_ports(runs: Any, case: tuple[str, str]) -> None:
    loaded, run = runs[case]
    ws = loaded.model
    prefix = naming.prefix(ws, run.environment)
    published: list[int] = []
    for name, container in containers(run).items():
        published += [p["external"] for p in container.inputs.get("ports", []) if "external" in p]
        labels = {item["label"]: item["value"] for item in container.inputs["labels"]}
        assert labels["ws.workspace"] == ws.name and labels["ws.environment"] == run.environment
        if name == f"{prefix}-postgres-roles" or name.endswith("-migrate"):
            assert container.inputs["attach"] is True and container.inputs["mustRun"] is False
            assert container.inputs["restart"] == "no"
            continue
        assert container.inputs["wait"] is True and container.inputs["waitTimeout"] >= 60
        assert container.inputs["restart"] == "unless-stopped"
        tests = " ".join(container.inputs["healthcheck"]["tests"])
        if name == f"{prefix}-postgres":
            assert "pg_isready" in tests
        elif name == f"{prefix}-redis":
            assert "redis-cli" in tests and "ping" in tests
        else:
            repo = labels["ws.repo"]
            service = ws.repos[repo].service
            assert service is not None
            assert f"http://127.0.0.1:{service.port}{service.health.path}" in tests
            assert container.inputs["healthcheck"]["retries"] == service.health.retries
    assert len(published) == len(set(published)) and published
    (volume,) = [r for r in run.of_type("docker:index/volume:Volume") if r.inputs["name"].endswith("-postgres-data")]
    assert volume.protect is ws.environments[run.environment].protected  # prod/staging data survives destroy


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_per_environment_settings_come_from_the_stack_file(runs: Any, case: tuple[str, str]) -> None:
    loaded, run = runs[case]
    ws = loaded.model
    path = loaded.root / stack_file_name(ws, run.environment)
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    images = {r.name: r.inputs["name"] for r in run.of_type(REMOTE_IMAGE)}
    for repo, settings in config[SERVICES_KEY].items():
        container = service_container(loaded, run, repo)
        assert images[f"{repo}-image"] == f"{service_image(ws, repo)}:{settings['image_tag']}"
        assert container.inputs["image"] == f"sha256:{repo}-image"
        assert [p["external"] for p in container.inputs["ports"]] == [settings["host_port"]]
        assert container.inputs["memory"] == settings["memory_mb"]
    assert images["postgres-image"] == f"docker.io/library/postgres:{config['ws:postgres']['version']}"
    assert images["redis-image"] == f"docker.io/library/redis:{config['ws:redis']['version']}"
    assert "ws:host" not in config  # generated stack files leave it to the Docker host
    host = docker_host_address(os.environ.get("DOCKER_HOST"))
    assert run.outputs["database_host"] == host
    assert run.outputs["database_port"] == config["ws:postgres"]["host_port"]
    for repo, settings in config[SERVICES_KEY].items():
        assert run.outputs["service_urls"][repo] == f"http://{host}:{settings['host_port']}"
    source = secret_source(run, loaded)
    for repo, url in run.outputs["database_urls"].items():
        role = repo.replace("-", "_")
        assert url.startswith(f"postgresql://{role}:{source[database_password_secret(repo)]}@{host}:")


@pytest.mark.parametrize(
    ("docker_host", "host"),
    [
        ("ssh://deploy@docker.staging.example.com", "docker.staging.example.com"),
        ("ssh://deploy@docker.staging.example.com:2222", "docker.staging.example.com"),
        ("tcp://10.20.0.5:2376", "10.20.0.5"),
        ("ssh://deploy@[2001:db8::1]:22", "2001:db8::1"),  # review: URLs need it in brackets
        ("unix:///var/run/docker.sock", "127.0.0.1"),
        (None, "127.0.0.1"),
    ],
)
def test_ws_host_unset_is_the_docker_host_the_containers_run_on(
    docker_host: str | None, host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committed stack file sets no ws:host: published ports are reached on the engine DOCKER_HOST names (the
    coordinated-deployment workflow exports it per environment), on 127.0.0.1 for a local engine."""
    loaded = load_workspace(WORKSPACES["real"])
    path = loaded.root / stack_file_name(loaded.model, "staging")
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    assert "ws:host" not in config
    if docker_host is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    run = run_program(loaded, "staging", config)
    assert run.outputs["database_host"] == host
    in_url = f"[{host}]" if ":" in host else host
    for repo, settings in config[SERVICES_KEY].items():
        url = run.outputs["service_urls"][repo]
        assert url == f"http://{in_url}:{settings['host_port']}"
        assert (urlsplit(url).hostname, urlsplit(url).port) == (host, settings["host_port"])
    for url in run.outputs["database_urls"].values():
        parts = conninfo_to_dict(url.split("?")[0])  # as libpq reads it (?schema= is Prisma's, not libpq's)
        assert (parts["host"], str(parts["port"])) == (host, str(config["ws:postgres"]["host_port"]))
    assert f"@{in_url}:{config['ws:redis']['host_port']}/" in run.outputs["cache_url"]


def test_ws_host_set_wins_and_the_providers_docker_host_config_comes_before_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = load_workspace(WORKSPACES["real"])
    path = loaded.root / stack_file_name(loaded.model, "staging")
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy@from-environment.example.com")
    run = run_program(loaded, "staging", {**config, "docker:host": "tcp://from-provider.example.com:2376"})
    assert run.outputs["database_host"] == "from-provider.example.com"
    run = run_program(loaded, "staging", {**config, "ws:host": "services.example.com"})
    assert run.outputs["database_host"] == "services.example.com"
    for bad in ("deploy@host", "ssh://", "tcp://host:port", "tcp://host name:2376"):
        with pytest.raises(UsageError, match=r"DOCKER_HOST: .* is not a Docker engine address. Fix: write ssh://"):
            settings_from_config(loaded.model, "staging", config, docker_host=bad)


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_each_migrate_command_is_a_one_off_container_of_the_repos_image_before_its_service(
    runs: Any, case: tuple[str, str]
) -> None:
    loaded, run = runs[case]
    ws = loaded.model
    prefix = naming.prefix(ws, run.environment)
    path = loaded.root / stack_file_name(ws, run.environment)
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    images = {r.name: r.inputs["name"] for r in run.of_type(REMOTE_IMAGE)}
    by_urn = {r.urn: r for r in run.resources}
    source = secret_source(run, loaded)
    assert migrating(loaded) or case[0] == "example"  # the real repos migrate by `npx prisma migrate deploy`
    for repo in migrating(loaded):
        spec = ws.repos[repo]
        assert spec.migrate is not None and spec.migrate.command
        job = containers(run)[f"{prefix}-{repo}-migrate"]
        # the repo's own image at the deployed tag (no migration_tag set yet)
        tag = config[SERVICES_KEY][repo]["image_tag"]
        assert images[f"{repo}-migrate-image"] == f"{service_image(ws, repo)}:{tag}"
        assert job.inputs["image"] == f"sha256:{repo}-migrate-image"
        assert job.inputs["command"] == ["sh", "-c", spec.migrate.command]
        assert (job.inputs["attach"], job.inputs["mustRun"], job.inputs["restart"]) == (True, False, "no")
        # on the stack's network, where the database is `postgres`; the repo's env exactly as ws env resolves it
        (network,) = job.inputs["networksAdvanced"]
        assert "aliases" not in network or not network["aliases"]
        values, secret = envs_of(job)
        resolved = resolve(ws, run.environment, repo)
        assert values == {key: render(value, source.get) for key, value in resolved.items()}
        assert "DATABASE_URL" in secret and "@postgres:5432/" in values["DATABASE_URL"]
        assert values["DATABASE_URL"].startswith(f"postgresql://{repo.replace('-', '_')}:")
        assert not any(source[database_password_secret(repo)] in part for part in plain_strings(job.inputs))
        # after the database roles, Redis and the migrations of the repos it depends on; before its own service
        upstream = {by_urn[u].inputs.get("name") for u in job.dependencies if by_urn[u].type == CONTAINER}
        infrastructure = {f"{prefix}-postgres", f"{prefix}-postgres-roles", f"{prefix}-redis"}
        assert upstream == infrastructure | {
            f"{prefix}-{dep}-migrate" for dep in edges_of(ws)[repo] if dep in migrating(loaded)
        }
        service = service_container(loaded, run, repo)
        assert job.urn in service.dependencies
        labels = {item["label"]: item["value"] for item in job.inputs["labels"]}
        assert (labels["ws.component"], labels["ws.repo"]) == ("migration", repo)
        assert run.outputs["migrations"][repo] == {
            "container": f"{prefix}-{repo}-migrate",
            "exit_code": 0,
            "log": f"{repo}-migrate-container: done",
        }
    assert run.secret_outputs["migrations"]  # the log tail may name anything: a secret output


def test_the_migration_tag_moves_the_migration_not_the_service_and_a_failure_is_reported_not_raised() -> None:
    """`ws`'s migrate step sets ws:services.<repo>.migration_tag before the services update: the migration then
    runs the new release's image while the service still runs the old one. A failing migration does not fail the
    program (a rollback's update must still run); its exit code is in the `migrations` output, which ws reads."""
    loaded = load_workspace(WORKSPACES["real"])
    path = loaded.root / stack_file_name(loaded.model, "staging")
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    config[SERVICES_KEY]["app-agents"]["image_tag"] = "1a2b3c4"
    config[SERVICES_KEY]["app-agents"]["migration_tag"] = "9f8e7d6"
    run = run_program(loaded, "staging", config, exit_codes={"app-agents-migrate-container": 1})
    images = {r.name: r.inputs["name"] for r in run.of_type(REMOTE_IMAGE)}
    assert images["app-agents-migrate-image"] == "ghcr.io/saas-ecosystem/app-agents:9f8e7d6"
    assert images["app-agents-image"] == "ghcr.io/saas-ecosystem/app-agents:1a2b3c4"
    assert run.outputs["migrations"]["app-agents"]["exit_code"] == 1
    assert run.outputs["migrations"]["saas-ecosystem-architecture"]["exit_code"] == 0
    config[SERVICES_KEY]["app-agents"]["migration_tag"] = "not a tag"
    with pytest.raises(UsageError, match=r"ws:services.app-agents.migration_tag: 'not a tag' is not an image tag"):
        settings_from_config(loaded.model, "staging", config)


def test_stack_file_values_change_the_resources() -> None:
    """The same environment with an edited stack config: the edit, and nothing but the edit, shows up."""
    loaded = load_workspace(WORKSPACES["real"])
    path = loaded.root / stack_file_name(loaded.model, "staging")
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    config[SERVICES_KEY]["app-agents"]["image_tag"] = "v9.9.9"
    config[SERVICES_KEY]["app-agents"]["host_port"] = None
    config["ws:postgres"]["version"] = "15.10"
    run = run_program(loaded, "staging", config)
    images = {r.name: r.inputs["name"] for r in run.of_type(REMOTE_IMAGE)}
    assert images["app-agents-image"] == "ghcr.io/saas-ecosystem/app-agents:v9.9.9"
    assert images["postgres-image"] == "docker.io/library/postgres:15.10"
    assert "ports" not in service_container(loaded, run, "app-agents").inputs
    assert run.outputs["service_urls"]["app-agents"] == "http://app-agents:3001"


def test_a_disabled_service_has_no_container_and_its_dependents_run_without_it() -> None:
    """`enabled: false` (what `ws` sets when a rollback takes a service back to "not deployed", as the text
    `pulumi config set --path` stores) declares no container, image or URL for the repo; the rest is unchanged."""
    loaded = load_workspace(WORKSPACES["real"])
    path = loaded.root / stack_file_name(loaded.model, "staging")
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    before = run_program(loaded, "staging", config)
    config[SERVICES_KEY]["app-agents"]["enabled"] = "false"
    run = run_program(loaded, "staging", config)
    names = {r.name for r in run.resources}
    assert {n for n in {r.name for r in before.resources} - names} == {
        r.name
        for r in before.resources
        if r.name.startswith("app-agents") and not r.name.startswith("app-agents-migrate")
    }
    # its migration stays declared: the next deploy migrates (in the migrate step) before enabling it again
    assert {"app-agents-migrate", "app-agents-migrate-container"} <= names
    assert (
        "app-agents" not in run.outputs["service_urls"]
        and "saas-spec-driven-development" in run.outputs["service_urls"]
    )
    config[SERVICES_KEY]["app-agents"]["enabled"] = "maybe"
    with pytest.raises(UsageError, match=r"ws:services.app-agents.enabled: 'maybe' is not true or false"):
        settings_from_config(loaded.model, "staging", config)


def test_a_stack_config_with_a_clash_or_a_missing_repo_is_one_clear_error() -> None:
    loaded = load_workspace(WORKSPACES["real"])
    path = loaded.root / stack_file_name(loaded.model, "dev")
    config = read_stack_config(path.read_text(encoding="utf-8"), str(path))
    clash = json.loads(json.dumps(config))
    clash[SERVICES_KEY]["app-agents"]["host_port"] = clash["ws:postgres"]["host_port"]
    with pytest.raises(UsageError, match=r"ws:services.app-agents.host_port: host port \d+ is already published"):
        settings_from_config(loaded.model, "dev", clash)
    missing = json.loads(json.dumps(config))
    del missing[SERVICES_KEY]["app-agents"]
    with pytest.raises(UsageError, match=r"ws:services.app-agents: missing. Fix: run `ws generate`"):
        settings_from_config(loaded.model, "dev", missing)
    with pytest.raises(UsageError, match="belongs to no `runtime: pulumi` environment"):
        from infra.stack.stackfiles import environment_of_stack

        environment_of_stack(loaded.model, "qa")


NEW_REPO = """
  billing:
    github: saas-ecosystem/billing
    role: secondary
    depends_on: [app-agents, saas-spec-driven-development]
    schema:
      prisma: prisma/schema.prisma
      namespace: billing
    service:
      port: 3003
      image: ghcr.io/saas-ecosystem/billing
      health: {path: /healthz}
    requires: [DATABASE_URL, STRIPE_API_KEY]
    env:
      STRIPE_API_KEY: {secret: STRIPE_API_KEY}
      AGENTS: ${services.app-agents.url}
"""


def test_adding_a_repo_adds_its_container_env_edges_and_stack_keys_with_no_other_edit(tmp_path: Path) -> None:
    text = (ROOT / "workspace.yaml").read_text(encoding="utf-8")
    (tmp_path / "workspace.yaml").write_text(text.rstrip("\n") + "\n" + NEW_REPO, encoding="utf-8")
    for environment in ("dev", "staging", "prod"):
        shutil.copy(ROOT / f"Pulumi.{environment}.yaml", tmp_path / f"Pulumi.{environment}.yaml")
    edited = (tmp_path / "Pulumi.staging.yaml").read_text().replace("image_tag: latest", "image_tag: v1.2.3", 1)
    (tmp_path / "Pulumi.staging.yaml").write_text(edited)
    loaded = load_workspace(tmp_path / "workspace.yaml")

    states = dict(generate_write(loaded))
    assert states["Pulumi.dev.yaml"] == states["Pulumi.staging.yaml"] == states["Pulumi.prod.yaml"] == "updated"
    for environment in ("dev", "staging", "prod"):
        before = read_stack_config((ROOT / f"Pulumi.{environment}.yaml").read_text(), "before")
        after = read_stack_config((tmp_path / f"Pulumi.{environment}.yaml").read_text(), "after")
        assert set(after[SERVICES_KEY]) == set(before[SERVICES_KEY]) | {"billing"}
        for key, value in before.items():  # every existing value kept
            if key != SERVICES_KEY:
                assert after[key] == value
        for repo in before[SERVICES_KEY]:
            if environment == "staging" and repo == "saas-ecosystem-architecture":
                assert after[SERVICES_KEY][repo]["image_tag"] == "v1.2.3"
            else:
                assert after[SERVICES_KEY][repo] == before[SERVICES_KEY][repo]
    assert dict(generate_write(loaded))["Pulumi.dev.yaml"] == "unchanged"

    run = run_program(loaded, "staging")
    container = service_container(loaded, run, "billing")
    values, secret = envs_of(container)
    resolved = resolve(loaded.model, "staging", "billing")
    assert values == {k: render(v, secret_source(run, loaded).get) for k, v in resolved.items()}
    assert values["AGENTS"] == "http://app-agents:3001" and values["PORT"] == "3003"
    assert {"STRIPE_API_KEY", "DATABASE_URL", "REDIS_URL"} <= secret
    assert "STRIPE_API_KEY" in run.config_secrets
    upstream = {run.by_urn(u).inputs.get("name") for u in container.dependencies}
    prefix = naming.prefix(loaded.model, "staging")
    assert {f"{prefix}-app-agents", f"{prefix}-saas-spec-driven-development"} <= upstream
    assert f"{prefix}-saas-ecosystem-architecture" not in upstream
    assert "postgres-billing-password" in run.passwords
    database = containers(run)[f"{prefix}-postgres"]
    (upload,) = database.inputs["uploads"]
    assert 'CREATE SCHEMA IF NOT EXISTS "billing" AUTHORIZATION "billing"' in upload["content"]
    assert 'GRANT USAGE ON SCHEMA "ecosystem" TO "billing"' in upload["content"]
    assert "WS_DB_PASSWORD_BILLING" in envs_of(database)[1]
    assert run.outputs["database_urls"]["billing"].endswith("/saas_ecosystem?schema=billing")
    assert container.inputs["healthcheck"]["tests"][1].count("/healthz") == 4
    staging_images = {r.name: r.inputs["name"] for r in run.of_type(REMOTE_IMAGE)}
    assert staging_images["saas-ecosystem-architecture-image"].endswith(":v1.2.3")


def run_entry(
    workspace: Path | None,
    stack: str,
    monkeypatch: pytest.MonkeyPatch,
    secrets: dict[str, str] | None = None,
) -> Run:
    """Run the program folder's __main__.py itself, as the Pulumi language host does (working directory: the
    folder Pulumi.yaml's `main:` names), under mocks.

    ``workspace`` goes to $WS_WORKSPACE; None leaves the program to find workspace.yaml on its own.
    """
    import runpy

    if workspace is None:
        monkeypatch.delenv("WS_WORKSPACE", raising=False)
    else:
        monkeypatch.setenv("WS_WORKSPACE", str(workspace))
    monkeypatch.chdir(PROGRAM)
    root = (workspace or ROOT / "workspace.yaml").parent
    run = Run(environment=stack)
    mocks = Mocks(run)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=Recorder(mocks, run))
    path = root / f"Pulumi.{stack}.yaml"
    config = read_stack_config(path.read_text(), str(path)) if path.is_file() else {}
    values = {key: json.dumps(value) if isinstance(value, dict) else str(value) for key, value in config.items()}
    values.update({f"{PROJECT}:{name}": value for name, value in (secrets or {}).items()})
    pulumi.runtime.set_all_config(values, [f"{PROJECT}:{name}" for name in secrets or {}])

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")

    program()
    return run


def test_the_entry_point_builds_the_stack_selected_by_pulumi(monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_entry(WORKSPACES["example"], "staging", monkeypatch)
    loaded = load_workspace(WORKSPACES["example"])
    assert {f"example-ecosystem-staging-{r}" for r in loaded.model.repos} <= set(containers(run))


def test_the_entry_point_finds_the_workspace_from_infra_and_needs_every_external_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = {"NEXTAUTH_SECRET": "n-" + token.token_hex(8), "OPENAI_API_KEY": "o-" + token.token_hex(8)}
    run = run_entry(None, "prod", monkeypatch, secrets)
    values, secret = envs_of(containers(run)["saas-ecosystem-prod-app-agents"])
    assert values["OPENAI_API_KEY"] == secrets["OPENAI_API_KEY"] and "OPENAI_API_KEY" in secret
    assert values["DB_MAX_CONNECTIONS"] == "50"  # prod's own value from workspace.yaml

    with pytest.raises(pulumi.ConfigMissingError, match="OPENAI_API_KEY"):
        run_entry(None, "prod", monkeypatch, {"NEXTAUTH_SECRET": "n"})


def test_the_entry_point_turns_a_bad_stack_into_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pulumi.RunError, match="stack 'qa' belongs to no `runtime: pulumi` environment"):
        run_entry(WORKSPACES["real"], "qa", monkeypatch)


def test_the_program_has_its_own_folder_named_by_both_projects_and_python_m_infra_runs_no_program() -> None:
    import importlib.util

    assert (PROGRAM / "__main__.py").is_file() and PROGRAM != ROOT / "infra"
    example = YAML(typ="safe").load((ROOT / "examples" / "Pulumi.yaml").read_text())
    assert (ROOT / "examples" / example["main"]).resolve() == PROGRAM.resolve()
    assert importlib.util.find_spec("infra.__main__") is None  # `python -m infra` runs no Pulumi program


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(not (shutil.which("redis-server") and shutil.which("redis-cli")), reason="needs redis-server")
def test_the_redis_healthcheck_authenticates_through_redis_cli_auth_never_the_command_line(
    runs: Any, tmp_path: Path
) -> None:
    """The container's own healthcheck, run by a shell with the container's env against a real password-protected
    Redis: it passes, and no redis-cli argument (what /proc/<pid>/cmdline shows) holds the password."""
    import os
    import subprocess
    import time

    loaded, run = runs[("example", "dev")]
    redis = containers(run)[f"{naming.prefix(loaded.model, 'dev')}-redis"]
    password = run.passwords["redis-password"]
    kind, command = redis.inputs["healthcheck"]["tests"]
    assert kind == "CMD-SHELL" and password not in command and " -a " not in command
    values, secret = envs_of(redis)
    assert values["REDISCLI_AUTH"] == password and "REDISCLI_AUTH" in secret

    port = _free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdin is not None
    server.stdin.write(f"port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave ''\nappendonly no\ndir {tmp_path}\n")
    server.stdin.close()
    try:
        shim = tmp_path / "bin"
        shim.mkdir()
        argv_log = tmp_path / "argv"
        # the image's redis-cli, pointed at this test's port; records every argument it was given
        (shim / "redis-cli").write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$@" >> {argv_log}\nexec {shutil.which("redis-cli")} -p {port} "$@"\n'
        )
        (shim / "redis-cli").chmod(0o755)
        env = {"PATH": f"{shim}:{os.environ['PATH']}", **values}
        for _ in range(100):
            done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=10)
            if done.returncode == 0:
                break
            time.sleep(0.1)
        assert done.returncode == 0, done.stderr
        assert password not in argv_log.read_text()
        wrong = subprocess.run(
            ["sh", "-c", command], env={**env, "REDISCLI_AUTH": "wrong"}, capture_output=True, timeout=10
        )
        assert wrong.returncode != 0  # the check really authenticates
    finally:
        server.terminate()
        server.wait(timeout=10)
