"""The connection budget: the shared database's first scaling wall, checked per environment by `ws check`.

Every replica of a repo's service opens up to its pool size: the ``DB_MAX_CONNECTIONS`` its resolved env sets
(the variable the services size their pool with), else ``service.pool_size``. On Kubernetes a Deployment runs
up to ``replicas.max`` pods, plus one surge pod during a rolling update; the migration Jobs of one stage run at
the same time; PostgreSQL keeps connections for superusers and ws needs its own. Without a pooler the sum has
to fit ``database.max_connections``. With ``database.pooler: true`` the clients connect to PgBouncer instead
(its ``max_client_conn`` per instance), and the pooler's server connections (``default_pool_size`` per role
and instance) have to fit ``max_connections``. Nothing here imports pulumi.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from infra.errors import CheckResult
from infra.stack.cluster import (
    JOB_CONNECTIONS,
    MAX_SURGE,
    POOLER_INSTANCES,
    POOLER_MAX_CLIENT_CONN,
    RESERVED_CONNECTIONS,
    is_kubernetes,
    stage_of,
)
from infra.workspace.env import declared_layers
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Workspace

POOL_VARIABLE = "DB_MAX_CONNECTIONS"  # what the services read to size their connection pool


@dataclass(frozen=True)
class RepoDemand:
    repo: str
    pool_size: int
    pods: int  # most replicas + surge
    pool_source: str = "service.pool_size"

    @property
    def connections(self) -> int:
        return self.pool_size * self.pods


@dataclass(frozen=True)
class Budget:
    environment: str
    repos: tuple[RepoDemand, ...]
    jobs: int  # connections of the migration Jobs that run at once (the largest stage)
    reserve: int
    limit: int  # what the clients connect to: max_connections, or the pooler's client connections
    limit_name: str
    pooler_pool_size: int | None = None  # PgBouncer default_pool_size (pooler only)

    @property
    def clients(self) -> int:
        return sum(d.connections for d in self.repos)

    @property
    def needed(self) -> int:
        return self.clients + self.jobs + (0 if self.pooler_pool_size is not None else self.reserve)

    @property
    def fits(self) -> bool:
        return self.needed <= self.limit and (self.pooler_pool_size is None or self.pooler_pool_size >= 1)


def uses_pooler(workspace: Workspace, environment: str) -> bool:
    db = workspace.database
    return is_kubernetes(workspace, environment) and db.provider == "cloudnative-pg" and db.pooler


def pooler_pool_size(workspace: Workspace) -> int:
    """PgBouncer's default_pool_size: the server connections per role and instance that fit max_connections."""
    roles = len(workspace.repos)
    return (workspace.database.max_connections - RESERVED_CONNECTIONS) // (POOLER_INSTANCES * roles)


def pool_size(workspace: Workspace, environment: str, repo: str) -> tuple[int, str]:
    """The connections one replica of ``repo`` opens in ``environment``, and where that number comes from."""
    declared: dict[str, object] = {}
    for _, layer in declared_layers(workspace, environment, repo):
        declared.update(layer)
    value = declared.get(POOL_VARIABLE)
    if isinstance(value, int) and not isinstance(value, bool):
        return value, POOL_VARIABLE
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip()), POOL_VARIABLE
    service = workspace.repos[repo].service
    return (service.pool_size if service is not None else 0), "service.pool_size"


def budget(workspace: Workspace, environment: str) -> Budget:
    kubernetes = is_kubernetes(workspace, environment)
    demands = []
    for name, repo in workspace.repos.items():
        if repo.service is None:
            continue
        pods = (repo.service.replicas.most + MAX_SURGE) if kubernetes else 1
        size, source = pool_size(workspace, environment, name)
        demands.append(RepoDemand(name, size, pods, source))
    jobs = 0
    if kubernetes:
        per_stage: dict[int, int] = {}
        for name, index in stage_of(workspace).items():
            migrate = workspace.repos[name].migrate
            if migrate is not None and migrate.command:
                per_stage[index] = per_stage.get(index, 0) + JOB_CONNECTIONS
        jobs = max(per_stage.values(), default=0)
    if uses_pooler(workspace, environment):
        return Budget(
            environment,
            tuple(demands),
            jobs,
            RESERVED_CONNECTIONS,
            POOLER_INSTANCES * POOLER_MAX_CLIENT_CONN,
            f"the pooler's client connections ({POOLER_INSTANCES} x {POOLER_MAX_CLIENT_CONN})",
            pooler_pool_size(workspace),
        )
    limit = workspace.database.max_connections
    return Budget(environment, tuple(demands), jobs, RESERVED_CONNECTIONS, limit, f"max_connections ({limit})")


SHOWN = 6  # repos named one by one in the sum; the rest are added up


def describe(result: Budget) -> str:
    parts = [
        f"{d.repo} {d.pool_size} x {d.pods}" + (f" ({d.pool_source})" if d.pool_source == POOL_VARIABLE else "")
        for d in result.repos[:SHOWN]
    ]
    if len(result.repos) > SHOWN:
        rest = result.repos[SHOWN:]
        parts.append(f"{len(rest)} more repos {sum(d.connections for d in rest)}")
    text = f"{' + '.join(parts) or 'no services'} = {result.clients}"
    if result.jobs:
        text += f" + migration Jobs {result.jobs}"
    if result.pooler_pool_size is None:
        text += f" + reserve {result.reserve}"
    return f"{text} = {result.needed} of {result.limit_name}"


def check_connection_budget(loaded: LoadedWorkspace) -> Iterator[CheckResult]:
    """`ws check`: per provisioned environment, the services' connections fit the database (or its pooler)."""
    ws = loaded.model
    for environment, env in ws.environments.items():
        if env.runtime != "pulumi":
            continue
        label = f"connection budget {environment}"
        result = budget(ws, environment)
        if result.pooler_pool_size is not None and result.pooler_pool_size < 1:
            yield CheckResult(
                label,
                "fail",
                f"{environment}: database.max_connections {ws.database.max_connections} leaves no server connection "
                f"for {len(ws.repos)} roles x {POOLER_INSTANCES} pooler instances after the reserve of "
                f"{RESERVED_CONNECTIONS}. Fix: raise database.max_connections",
            )
            continue
        if result.fits:
            extra = f"; pooler default_pool_size {result.pooler_pool_size}" if result.pooler_pool_size else ""
            yield CheckResult(label, "ok", f"{environment}: {describe(result)}{extra}")
            continue
        worst = sorted(result.repos, key=lambda d: -d.connections)
        names = ", ".join(f"{d.repo} ({d.connections})" for d in worst[:3])
        yield CheckResult(
            label,
            "fail",
            f"{environment}: {describe(result)}: over by {result.needed - result.limit}; the most go to {names}. "
            "Fix: lower service.pool_size or service.replicas.max of those repos, raise database.max_connections, "
            "or put a pooler in front (database.pooler: true)",
        )
