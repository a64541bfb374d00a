"""The Pulumi components of a Docker stack: Network, PostgresDatabase, RedisCache, one ServiceContainer per repo.

The class names differ from the workspace model's (Database, Cache, Service); the Pulumi type tokens keep their
first names (``ws:stack:Database``, ``ws:stack:Cache``, ``ws:stack:Service``), because a component's type is part
of every child's URN: a new token would make `pulumi up` replace the containers and the data volumes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from infra.stack import naming
from infra.stack.roles import JOB_SCRIPT_PATH, SCRIPT_PATH, roles_script
from infra.stack.stackfiles import ServerSettings, ServiceSettings
from infra.workspace import images
from infra.workspace.env import CACHE_HOST, DATABASE_HOST, Value, database_password_secret
from infra.workspace.model import SecretRef, Workspace

EnvInput = pulumi.Input[str]
SecretLookup = Callable[[str], pulumi.Output[str]]

POSTGRES_PORT = 5432
REDIS_PORT = 6379


def _child(parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))


def container_labels(labels: Mapping[str, str]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=key, value=value) for key, value in sorted(labels.items())]


def env_entry(name: str, value: Value, secrets: SecretLookup) -> EnvInput:
    """``NAME=value`` for a container; any value with a secret part becomes a secret Output."""
    if not any(isinstance(part, SecretRef) for part in value):
        return name + "=" + "".join(str(part) for part in value)
    pieces: list[pulumi.Input[str]] = [f"{name}="]
    for part in value:
        pieces.append(secrets(part.secret) if isinstance(part, SecretRef) else part)
    return pulumi.Output.secret(pulumi.Output.concat(*pieces))


def secret_entry(name: str, value: pulumi.Output[str]) -> EnvInput:
    return pulumi.Output.secret(pulumi.Output.concat(f"{name}=", value))


def _password(name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """A generated password (letters and digits only, so it is safe inside URLs) as a secret Output."""
    generated = random.RandomPassword(name, length=32, special=False, opts=pulumi.ResourceOptions(parent=parent))
    return pulumi.Output.secret(generated.result)


def _ports(internal: int, external: int | None, bind_ip: str) -> list[docker.ContainerPortArgs] | None:
    if external is None:
        return None  # not published: reachable on the stack's network only
    return [docker.ContainerPortArgs(internal=internal, external=external, ip=bind_ip)]


class Network(pulumi.ComponentResource):
    """The stack's private bridge network; containers reach each other by their aliases on it."""

    def __init__(
        self, name: str, *, network_name: str, labels: Mapping[str, str], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("ws:stack:Network", name, None, opts)
        self.network = docker.Network(
            name,
            name=network_name,
            driver="bridge",
            labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name: pulumi.Output[str] = self.network.name
        self.register_outputs({"name": self.name})

    def attach(self, *aliases: str) -> list[docker.ContainerNetworksAdvancedArgs]:
        return [docker.ContainerNetworksAdvancedArgs(name=self.name, aliases=list(aliases))]


def roles_outcome(exit_code: int | None, container: str | None) -> str:
    """'applied' when the roles set-up container exited 0; a RunError naming the container otherwise."""
    if exit_code is None:
        return "pending"
    if exit_code != 0:
        raise pulumi.RunError(
            f"the database roles set-up ({container}) exited with code {exit_code}; "
            f"read `docker logs {container}`, fix the cause and run `pulumi up` again"
        )
    return "applied"


@dataclass(frozen=True)
class PostgresDatabaseArgs:
    workspace: Workspace
    environment: str
    settings: ServerSettings
    bind_ip: str


class PostgresDatabase(pulumi.ComponentResource):
    """PostgreSQL: pinned image, data volume, generated passwords, one namespace + login role per repo.

    The roles script runs at first start (docker-entrypoint-initdb.d) and again in a one-shot set-up
    container whenever it or the database container changes, so a repo added later gets its role too.
    """

    def __init__(
        self, name: str, args: PostgresDatabaseArgs, network: Network, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("ws:stack:Database", name, None, opts)
        ws, settings = args.workspace, args.settings
        prefix = naming.prefix(ws, args.environment)
        labels = naming.labels(ws, args.environment, "database")
        database = ws.database.name
        self.superuser_password = _password(f"{name}-superuser-password", self)
        self.role_passwords: dict[str, pulumi.Output[str]] = {
            repo: _password(f"{name}-{repo}-password", self) for repo in ws.repos
        }
        self.image = docker.RemoteImage(
            f"{name}-image",
            name=naming.server_image(naming.POSTGRES_IMAGE, settings.version),
            keep_locally=True,
            opts=_child(self),
        )
        self.volume = docker.Volume(
            f"{name}-data",
            name=f"{prefix}-postgres-data",
            labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
            # the data of a protected environment survives `pulumi destroy` unless unprotected on purpose
            opts=pulumi.ResourceOptions(parent=self, protect=ws.environments[args.environment].protected),
        )
        script = roles_script(ws)
        credentials: list[EnvInput] = [
            f"POSTGRES_USER={naming.POSTGRES_SUPERUSER}",
            f"POSTGRES_DB={database}",
            secret_entry("POSTGRES_PASSWORD", self.superuser_password),
            *(secret_entry(database_password_secret(repo), pw) for repo, pw in self.role_passwords.items()),
        ]
        self.container = docker.Container(
            f"{name}-container",
            name=f"{prefix}-postgres",
            image=self.image.image_id,
            command=["postgres", "-c", f"max_connections={ws.database.max_connections}"],
            envs=credentials,
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=self.volume.name, container_path=naming.postgres_data_dir(settings.version)
                )
            ],
            uploads=[docker.ContainerUploadArgs(file=SCRIPT_PATH, content=script, executable=True)],
            networks_advanced=network.attach(DATABASE_HOST),
            ports=_ports(POSTGRES_PORT, settings.host_port, args.bind_ip),
            healthcheck=docker.ContainerHealthcheckArgs(
                # -h 127.0.0.1: the temporary server of first start listens on the socket only, so the
                # container turns healthy once the real server (with every role) accepts TCP connections.
                tests=["CMD", "pg_isready", "-h", "127.0.0.1", "-U", naming.POSTGRES_SUPERUSER, "-d", database],
                interval="2s",
                timeout="5s",
                retries=15,
                start_period="10s",
            ),
            memory=settings.memory_mb,
            restart=naming.RESTART_POLICY,
            wait=True,
            wait_timeout=180,
            labels=container_labels(labels),
            opts=_child(self),
        )
        self.roles_job = docker.Container(
            f"{name}-roles",
            name=f"{prefix}-postgres-roles",
            image=self.image.image_id,
            command=["sh", JOB_SCRIPT_PATH],
            envs=[
                f"PGHOST={DATABASE_HOST}",
                f"PGPORT={POSTGRES_PORT}",
                secret_entry("PGPASSWORD", self.superuser_password),
                pulumi.Output.concat("WS_DATABASE_CONTAINER=", self.container.id),  # re-run on a new server
                *credentials,
            ],
            uploads=[docker.ContainerUploadArgs(file=JOB_SCRIPT_PATH, content=script, executable=True)],
            networks_advanced=network.attach(),
            attach=True,
            logs=True,
            must_run=False,
            restart="no",
            labels=container_labels({**labels, "ws.component": "database-roles"}),
            opts=_child(self, [self.container]),
        )
        self.host = DATABASE_HOST
        # attach=True waits for the set-up container, but a failing one does not fail `pulumi up` by
        # itself; this output (exported by the program) does, with the container to read logs from.
        self.roles_status: pulumi.Output[str] = pulumi.Output.all(self.roles_job.exit_code, self.roles_job.name).apply(
            lambda pair: roles_outcome(pair[0], pair[1])
        )
        self.register_outputs({"container": self.container.name, "roles": self.roles_status})


@dataclass(frozen=True)
class RedisCacheArgs:
    workspace: Workspace
    environment: str
    settings: ServerSettings
    bind_ip: str


class RedisCache(pulumi.ComponentResource):
    """Redis: pinned image, append-only data volume, generated password, `redis-cli ping` healthcheck."""

    def __init__(self, name: str, args: RedisCacheArgs, network: Network, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ws:stack:Cache", name, None, opts)
        ws, settings = args.workspace, args.settings
        prefix = naming.prefix(ws, args.environment)
        labels = naming.labels(ws, args.environment, "cache")
        self.password = _password(f"{name}-password", self)
        self.image = docker.RemoteImage(
            f"{name}-image",
            name=naming.server_image(naming.REDIS_IMAGE, settings.version),
            keep_locally=True,
            opts=_child(self),
        )
        self.volume = docker.Volume(
            f"{name}-data",
            name=f"{prefix}-redis-data",
            labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
            opts=_child(self),
        )
        self.container = docker.Container(
            f"{name}-container",
            name=f"{prefix}-redis",
            image=self.image.image_id,
            # The password reaches redis through the environment, never through a plain argument.
            command=["sh", "-c", 'exec redis-server --requirepass "$REDIS_PASSWORD" --appendonly yes'],
            # REDISCLI_AUTH: redis-cli reads the password from its environment, so the healthcheck's command
            # line (visible in /proc/<pid>/cmdline inside the container) never holds it
            envs=[secret_entry("REDIS_PASSWORD", self.password), secret_entry("REDISCLI_AUTH", self.password)],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path="/data")],
            networks_advanced=network.attach(CACHE_HOST),
            ports=_ports(REDIS_PORT, settings.host_port, args.bind_ip),
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD-SHELL", "redis-cli ping | grep -q PONG"],
                interval="2s",
                timeout="5s",
                retries=15,
                start_period="5s",
            ),
            memory=settings.memory_mb,
            restart=naming.RESTART_POLICY,
            wait=True,
            wait_timeout=120,
            labels=container_labels(labels),
            opts=_child(self),
        )
        self.register_outputs({"container": self.container.name})


@dataclass(frozen=True)
class ServiceContainerArgs:
    workspace: Workspace
    environment: str
    repo: str
    settings: ServiceSettings
    env: Mapping[str, Value]  # exactly infra.workspace.env.resolve(workspace, environment, repo)
    bind_ip: str


class ServiceContainer(pulumi.ComponentResource):
    """One repo's service: its image at the stack's tag, its resolved env (secrets as secret Outputs),
    its port, a healthcheck on its health path, and ``depends_on`` = PostgresDatabase + RedisCache + its dependencies."""

    def __init__(
        self,
        name: str,
        args: ServiceContainerArgs,
        network: Network,
        secrets: SecretLookup,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ws:stack:Service", name, None, opts)
        ws, repo = args.workspace, args.repo
        service = ws.repos[repo].service
        assert service is not None, f"{repo} has no service"
        self.image = docker.RemoteImage(
            f"{name}-image",
            name=images.service_image_reference(ws, repo, args.settings.image_tag),
            keep_locally=True,
            opts=_child(self),
        )
        command = service.run.container
        self.container = docker.Container(
            f"{name}-container",
            name=f"{naming.prefix(ws, args.environment)}-{repo}",
            image=self.image.image_id,
            command=["sh", "-c", command] if command else None,
            envs=[env_entry(key, value, secrets) for key, value in args.env.items()],
            networks_advanced=network.attach(repo),
            ports=_ports(service.port, args.settings.host_port, args.bind_ip),
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=naming.health_command(service.port, service.health),
                interval=naming.duration(service.health.interval),
                timeout=naming.duration(service.health.timeout),
                retries=service.health.retries,
                start_period=naming.duration(service.health.start_period),
            ),
            memory=args.settings.memory_mb,
            cpus=None if args.settings.cpus is None else f"{args.settings.cpus:g}",
            restart=naming.RESTART_POLICY,
            wait=True,
            wait_timeout=naming.wait_timeout(service.health),
            labels=container_labels(naming.labels(ws, args.environment, "service", repo)),
            opts=_child(self, depends_on),
        )
        self.internal_url = f"http://{repo}:{service.port}"
        self.register_outputs({"container": self.container.name, "url": self.internal_url})


@dataclass(frozen=True)
class MigrationContainerArgs:
    workspace: Workspace
    environment: str
    repo: str
    image_tag: str  # the release whose migrate.command runs (ws:services.<repo>.migration_tag, else image_tag)
    env: Mapping[str, Value]  # exactly infra.workspace.env.resolve(workspace, environment, repo)


def migration_outcome(exit_code: int | None, container: str | None, logs: str | None) -> dict[str, object]:
    """The ``migrations`` output of one repo: its container, exit code (None before it ran) and last log lines."""
    tail = "\n".join((logs or "").strip().splitlines()[-30:])
    return {"container": container, "exit_code": exit_code, "log": tail}


class MigrationContainer(pulumi.ComponentResource):
    """One repo's ``migrate.command`` as a one-off container on the stack's network, where the database is reached
    as ``postgres`` (the deployer's machine need not reach it): the repo's image at its migration tag, its resolved
    env (DATABASE_URL with the repo's own role, a secret Output: in the container's env, never on a command line),
    ``attach`` (the update waits for it to exit), ``must_run: false``, ``restart: no``. It waits for the database
    roles and Redis, and for the migrations of the repos it depends on (stage order); the repo's service waits for it.
    A failing migration does not fail the update by itself (Docker reports its exit code): the ``migrations`` output
    carries the exit code and the log tail, which `ws`'s migrate step reads and fails on."""

    def __init__(
        self,
        name: str,
        args: MigrationContainerArgs,
        network: Network,
        secrets: SecretLookup,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ws:stack:Migration", name, None, opts)
        ws, repo = args.workspace, args.repo
        migrate = ws.repos[repo].migrate
        assert migrate is not None and migrate.command, f"{repo} has no migrate.command"
        self.image = docker.RemoteImage(
            f"{name}-image",
            name=images.service_image_reference(ws, repo, args.image_tag),
            keep_locally=True,
            opts=_child(self),
        )
        self.container = docker.Container(
            f"{name}-container",
            name=f"{naming.prefix(ws, args.environment)}-{repo}-migrate",
            image=self.image.image_id,
            command=["sh", "-c", migrate.command],
            envs=[env_entry(key, value, secrets) for key, value in args.env.items()],
            networks_advanced=network.attach(),
            attach=True,
            logs=True,
            must_run=False,
            restart="no",
            labels=container_labels(naming.labels(ws, args.environment, "migration", repo)),
            # one name per repo: the exited container of the last run goes before the next run starts
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on), delete_before_replace=True),
        )
        self.outcome: pulumi.Output[dict[str, object]] = pulumi.Output.secret(
            pulumi.Output.all(self.container.exit_code, self.container.name, self.container.container_logs).apply(
                lambda parts: migration_outcome(parts[0], parts[1], parts[2])
            )
        )
        self.register_outputs({"container": self.container.name})
