"""The Pulumi program of one environment: workspace.yaml + the stack's settings -> resources and outputs.

:func:`build` is what ``infra/pulumi_program/__main__.py`` runs and what the tests drive under ``pulumi.runtime.set_mocks``.
Every service's env is exactly :func:`infra.workspace.env.resolve` for the environment; its secret parts
become secret Outputs: generated ones (each repo's database role password, the Redis password) from
``random.RandomPassword`` resources, every other named secret from ``pulumi.Config().require_secret(NAME)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from infra.errors import UsageError
from infra.stack import naming
from infra.stack.components import (
    POSTGRES_PORT,
    REDIS_PORT,
    MigrationContainer,
    MigrationContainerArgs,
    Network,
    PostgresDatabase,
    PostgresDatabaseArgs,
    RedisCache,
    RedisCacheArgs,
    ServiceContainer,
    ServiceContainerArgs,
)
from infra.stack.kubernetes import KubernetesStack, build_kubernetes
from infra.stack.roles import namespace_of
from infra.stack.stackfiles import (
    BIND_IP_KEY,
    HOST_KEY,
    MANAGED_KEYS,
    NAMESPACE,
    StackSettings,
    environment_of_stack,
    settings_from_config,
)
from infra.workspace.env import CACHE_PASSWORD_SECRET, database_password_secret, resolve, role_name
from infra.workspace.graph import edges_of, stages
from infra.workspace.loader import DEFAULT_FILE
from infra.workspace.located import LoadedWorkspace


@dataclass
class Stack:
    """What :func:`build` created, for ``__main__`` and the tests."""

    network: Network
    database: PostgresDatabase
    cache: RedisCache
    services: dict[str, ServiceContainer]
    migrations: dict[str, MigrationContainer] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


class Secrets:
    """Secret Outputs by name: generated passwords first, then the stack's secret config (asked once each)."""

    def __init__(self, generated: Mapping[str, pulumi.Output[str]]):
        self._generated = dict(generated)
        self._config = pulumi.Config()
        self._asked: dict[str, pulumi.Output[str]] = {}

    def __call__(self, name: str) -> pulumi.Output[str]:
        if name in self._generated:
            return self._generated[name]
        if name not in self._asked:
            self._asked[name] = pulumi.Output.secret(self._config.require_secret(name))
        return self._asked[name]


def read_settings(loaded: LoadedWorkspace, environment: str) -> StackSettings:
    """The ws:* stack config of the current stack, validated (needs the Pulumi runtime)."""
    config = pulumi.Config(NAMESPACE)
    source = f"Pulumi.{pulumi.get_stack()}.yaml"
    raw: dict[str, Any] = {}
    for key in MANAGED_KEYS:
        name = key.split(":", 1)[1]
        if key in (HOST_KEY, BIND_IP_KEY):
            raw[key] = config.get(name)
            continue
        try:
            raw[key] = config.get_object(name)
        except pulumi.ConfigTypeError:
            raise UsageError(f"{source}: {key}: is not a mapping. Fix: run `ws generate` to restore its keys") from None
    # the engine the containers run on, as the Docker provider picks it: its `docker:host` config, else DOCKER_HOST
    docker_host = pulumi.Config("docker").get("host") or os.environ.get("DOCKER_HOST")
    return settings_from_config(loaded.model, environment, raw, source=source, docker_host=docker_host)


def locate_workspace() -> Path | None:
    """workspace.yaml for the program: $WS_WORKSPACE, else the one beside Pulumi.yaml, else (None) the nearest
    one from the working directory up (Pulumi runs the program inside its folder, below the project)."""
    declared = os.environ.get("WS_WORKSPACE")
    if declared:
        return Path(declared)
    root = pulumi.runtime.get_root_directory()
    if root and (Path(root) / DEFAULT_FILE).is_file():
        return Path(root) / DEFAULT_FILE
    return None


def current_environment(loaded: LoadedWorkspace) -> str:
    return environment_of_stack(loaded.model, pulumi.get_stack())


def build(loaded: LoadedWorkspace, environment: str, settings: StackSettings) -> Stack | KubernetesStack:
    """Declare every resource of ``environment`` and export the stack outputs."""
    ws = loaded.model
    if ws.environments[environment].runtime != "pulumi":
        raise UsageError(f"environment {environment!r} has runtime local; only `runtime: pulumi` ones have stacks")
    if ws.environments[environment].target == "kubernetes":
        cluster_stack = build_kubernetes(loaded, environment, settings, Secrets({}))
        for name, value in cluster_stack.outputs.items():
            pulumi.export(name, value)
        return cluster_stack
    prefix = naming.prefix(ws, environment)
    network = Network("network", network_name=prefix, labels=naming.labels(ws, environment, "network"))
    database = PostgresDatabase(
        "postgres", PostgresDatabaseArgs(ws, environment, settings.postgres, settings.bind_ip), network
    )
    cache = RedisCache("redis", RedisCacheArgs(ws, environment, settings.redis, settings.bind_ip), network)
    secrets = Secrets(
        {
            CACHE_PASSWORD_SECRET: cache.password,
            **{database_password_secret(repo): pw for repo, pw in database.role_passwords.items()},
        }
    )
    edges = edges_of(ws)
    services: dict[str, ServiceContainer] = {}
    migrations: dict[str, MigrationContainer] = {}
    data = [database.container, database.roles_job, cache.container]
    for stage in stages(edges):  # dependencies are declared before their dependents
        for repo in stage:
            spec = ws.repos[repo]
            if spec.service is not None and spec.migrate is not None and spec.migrate.command:
                # declared even for a disabled service: schema stays, and the next deploy migrates before enabling
                own = settings.services[repo]
                migrations[repo] = MigrationContainer(
                    f"{repo}-migrate",
                    MigrationContainerArgs(
                        ws, environment, repo, own.migration_tag or own.image_tag, resolve(ws, environment, repo)
                    ),
                    network,
                    secrets,
                    depends_on=[*data, *(migrations[dep].container for dep in edges[repo] if dep in migrations)],
                )
            if spec.service is None or not settings.services[repo].enabled:
                continue  # disabled: a rollback took it back to "not deployed" (its dependents run without it)
            upstream = [services[dep].container for dep in edges[repo] if dep in services]
            migrated = [migrations[repo].container] if repo in migrations else []
            services[repo] = ServiceContainer(
                repo,
                ServiceContainerArgs(
                    ws, environment, repo, settings.services[repo], resolve(ws, environment, repo), settings.bind_ip
                ),
                network,
                secrets,
                depends_on=[*data, *upstream, *migrated],
            )
    stack = Stack(network, database, cache, services, migrations)
    stack.outputs = outputs(loaded, environment, settings, stack)
    for name, value in stack.outputs.items():
        pulumi.export(name, value)
    return stack


def url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets (``http://[2001:db8::1]:3000``)."""
    return f"[{host}]" if ":" in host else host


def outputs(loaded: LoadedWorkspace, environment: str, settings: StackSettings, stack: Stack) -> dict[str, Any]:
    """Stack outputs as reached from the machine running ws: service URLs, database host and per-repo URLs.

    Published ports are used where the stack file publishes them; otherwise the addresses inside the network.
    """
    ws = loaded.model
    host = settings.host
    db_host, db_port = (
        (host, settings.postgres.host_port) if settings.postgres.host_port else ("postgres", POSTGRES_PORT)
    )
    cache_host, cache_port = (host, settings.redis.host_port) if settings.redis.host_port else ("redis", REDIS_PORT)
    service_urls: dict[str, str] = {}
    for repo, service in stack.services.items():
        port = settings.services[repo].host_port
        service_urls[repo] = f"http://{url_host(host)}:{port}" if port else service.internal_url
    database_urls: dict[str, pulumi.Output[str]] = {}
    for repo, password in stack.database.role_passwords.items():
        namespace = namespace_of(ws, repo) or "public"
        database_urls[repo] = pulumi.Output.secret(
            pulumi.Output.concat(
                f"postgresql://{role_name(repo)}:",
                password,
                f"@{url_host(db_host)}:{db_port}/{ws.database.name}?schema={namespace}",
            )
        )
    return {
        "workspace": ws.name,
        "environment": environment,
        "service_urls": service_urls,
        "internal_service_urls": {repo: service.internal_url for repo, service in stack.services.items()},
        "database_host": db_host,
        "database_port": db_port,
        "database_name": ws.database.name,
        "database_urls": database_urls,
        "database_superuser_url": pulumi.Output.secret(
            pulumi.Output.concat(
                f"postgresql://{naming.POSTGRES_SUPERUSER}:",
                stack.database.superuser_password,
                f"@{url_host(db_host)}:{db_port}/{ws.database.name}",
            )
        ),
        "cache_url": pulumi.Output.secret(
            pulumi.Output.concat(
                "redis://:", stack.cache.password, f"@{url_host(cache_host)}:{cache_port}/{ws.cache.db}"
            )
        ),
        "database_roles": stack.database.roles_status,
        # per repo migrating by migrate.command: its one-off container, exit code and log tail (secret: logs)
        "migrations": pulumi.Output.secret({repo: migration.outcome for repo, migration in stack.migrations.items()}),
        "stages": stages(edges_of(ws)),
    }
