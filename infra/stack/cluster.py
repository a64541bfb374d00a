"""Pure details of a `target: kubernetes` environment: namespace, labels, probes, images (no pulumi here).

Objects keep the Docker stack's names wherever the workspace's env refers to them: the database is reached as
``postgres``, Redis as ``redis`` and a repo's service as ``<repo>`` (Kubernetes Services of those names in the
environment's namespace), so :func:`infra.workspace.env.resolve` gives every pod the same env as a container.
"""

from __future__ import annotations

import math

from infra.workspace.graph import edges_of, stages
from infra.workspace.model import Health, Workspace

KUBERNETES_VERSION = "1.31"  # the API version the objects are written for and validated against (tests)
CNPG_API_VERSION = "postgresql.cnpg.io/v1"
CNPG_IMAGE = "ghcr.io/cloudnative-pg/postgresql"
POD_USER = 10001  # every pod runs as this non-root user (uid above the host's range)
MAX_SURGE = 1  # one extra pod per Deployment during a rolling update (maxUnavailable is 0)
POOLER_INSTANCES = 2
POOLER_MAX_CLIENT_CONN = 1000  # per PgBouncer instance
JOB_CONNECTIONS = 2  # a migration Job's connections (Prisma's migrate engine: its query plus its advisory lock)
RESERVED_CONNECTIONS = 5  # PostgreSQL's superuser_reserved_connections (3) + ws's own (ledger, health checks)
MIGRATION_DEADLINE = 600  # seconds a migration Job may run


def is_kubernetes(workspace: Workspace, environment: str) -> bool:
    env = workspace.environments[environment]
    return env.runtime == "pulumi" and env.target == "kubernetes"


def namespace(workspace: Workspace, environment: str) -> str:
    """The environment's namespace: `kubernetes.namespace`, else <workspace>-<environment> (at most 63 chars)."""
    settings = workspace.environments[environment].kubernetes
    if settings is not None and settings.namespace:
        return settings.namespace
    return f"{workspace.name}-{environment}"[:63].rstrip("-")


def selector(workspace: Workspace, environment: str, component: str) -> dict[str, str]:
    """The labels that select one component's pods (a repo's name, or postgres/redis)."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": f"{workspace.name}-{environment}"}


def labels(workspace: Workspace, environment: str, component: str, role: str) -> dict[str, str]:
    """Every object's labels: its selector plus what it is part of and who manages it."""
    return {
        **selector(workspace, environment, component),
        "app.kubernetes.io/component": role,
        "app.kubernetes.io/part-of": workspace.name,
        "app.kubernetes.io/managed-by": "ws",
        "ws.environment": environment,
    }


def migration_labels(workspace: Workspace, environment: str, repo: str) -> dict[str, str]:
    """A repo's migration Job pods: their own name label, so the repo's Service never selects them."""
    return labels(workspace, environment, f"{repo}-migrate", "migration")


def seconds(value: float) -> int:
    """Kubernetes probe durations are whole seconds (at least 1)."""
    return max(1, math.ceil(value))


def startup_failures(health: Health) -> int:
    """Probes the startup probe allows: the start period plus the usual retries."""
    return math.ceil(health.start_period / seconds(health.interval)) + max(1, health.retries)


def stage_of(workspace: Workspace) -> dict[str, int]:
    """Each repo's stage index (the deploy order: dependencies first)."""
    return {repo: index for index, stage in enumerate(stages(edges_of(workspace))) for repo in stage}


def dependents_of(workspace: Workspace, repo: str) -> list[str]:
    """The repos that declare `depends_on: [repo]` (the only ones that may reach its service)."""
    return sorted(name for name, deps in edges_of(workspace).items() if repo in deps)


def cnpg_image(version: str) -> str:
    return f"{CNPG_IMAGE}:{version}"
