"""Pure details of the provisioned containers: names, labels, health probes, durations (no pulumi here)."""

from __future__ import annotations

import shlex

from infra.workspace.model import Health, Workspace

POSTGRES_IMAGE = "docker.io/library/postgres"
REDIS_IMAGE = "docker.io/library/redis"
POSTGRES_SUPERUSER = "postgres"
RESTART_POLICY = "unless-stopped"


def prefix(workspace: Workspace, environment: str) -> str:
    """Docker object names of one stack start with this, so several stacks can share one Docker host."""
    return f"{workspace.name}-{workspace.stack_of(environment)}"


def server_image(repository: str, version: str) -> str:
    """The pinned Postgres/Redis image: ``repository:version`` (a version may carry ``@sha256:...``)."""
    return f"{repository}:{version}"


def postgres_data_dir(version: str) -> str:
    """Where the postgres image keeps its data: 18+ moved PGDATA below /var/lib/postgresql/<major>."""
    major = version.split(".")[0].split("-")[0]
    return "/var/lib/postgresql" if major.isdigit() and int(major) >= 18 else "/var/lib/postgresql/data"


def duration(seconds: float) -> str:
    """A Docker duration (Go syntax) in whole milliseconds: 0.2 -> '200ms', 5 -> '5000ms'."""
    return f"{round(seconds * 1000)}ms"


def health_command(port: int, health: Health) -> list[str]:
    """A CMD-SHELL probe of the service's health path that works in images with curl, wget, python or node."""
    url = f"http://127.0.0.1:{port}{health.path}"
    seconds = max(1, round(health.timeout))
    quoted = shlex.quote(url)
    python = f"import sys, urllib.request; urllib.request.urlopen({url!r}, timeout={health.timeout}); sys.exit(0)"
    node = f"fetch({url!r}).then(r => process.exit(r.ok ? 0 : 1)).catch(() => process.exit(1))"
    probe = " || ".join(
        [
            f"curl -fsS -m {seconds} -o /dev/null {quoted}",
            f"wget -q -T {seconds} -O /dev/null {quoted}",
            f"python3 -c {shlex.quote(python)}",
            f"node -e {shlex.quote(node)}",
        ]
    )
    return ["CMD-SHELL", probe]


def wait_timeout(health: Health) -> int:
    """Seconds `pulumi up` waits for a service to turn healthy: its start period plus every allowed probe."""
    budget = health.start_period + (health.interval + health.timeout) * (health.retries + 1)
    return max(60, int(budget) + 30)


def labels(workspace: Workspace, environment: str, component: str, repo: str | None = None) -> dict[str, str]:
    """Docker labels naming the workspace, stack, component and (for services) the repo."""
    result = {
        "ws.workspace": workspace.name,
        "ws.environment": environment,
        "ws.stack": workspace.stack_of(environment),
        "ws.component": component,
    }
    if repo is not None:
        result["ws.repo"] = repo
        result["ws.github"] = workspace.repos[repo].github
    return result
