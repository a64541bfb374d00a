"""Where an environment's probe history lives, recording a health report there, and reading uptime back."""

from __future__ import annotations

from datetime import datetime, timedelta

from infra.deploy.health import HealthReport
from infra.deploy.ledger import holder_name
from infra.deploy.runtime import Runtime
from infra.deploy.runtimes import runtime_for
from infra.errors import CheckFailed
from infra.monitoring import probes, uptime
from infra.workspace.located import LoadedWorkspace


def ledger_url(loaded: LoadedWorkspace, environment: str, runtime: Runtime | None = None) -> str:
    """The environment's ledger database (the deploy ledger's; WS_LEDGER_URL/DATABASE_URL for Pulumi stacks)."""
    runtime = runtime or runtime_for(loaded, environment)
    if runtime.name == "local":
        infra = runtime.locate()  # never starts anything
        if infra is None:
            raise CheckFailed(
                f"{environment} is not running (no database found): `ws up --env {environment}` starts it, "
                "or pass --database-url"
            )
        return infra.database_url
    return runtime.ledger_url()


def record_report(
    url: str,
    report: HealthReport,
    *,
    interval_s: float = probes.DEFAULT_INTERVAL,
    retention: timedelta | None = probes.DEFAULT_RETENTION,
    source: str = "health",
    probed_at: datetime | None = None,
) -> int:
    """Store a health report as one round of probes; the round's id."""
    with probes.connect(url) as conn:
        return probes.record(
            conn,
            report.environment,
            report.components,
            interval_s=interval_s,
            source=f"{source} {holder_name()}",
            probed_at=probed_at,
            retention=retention,
        )


def read_uptime(
    url: str,
    environment: str,
    window: timedelta,
    *,
    now: datetime | None = None,
    target: float = uptime.TARGET,
) -> uptime.UptimeReport:
    """The uptime report of the window ending ``now`` (default: the database's clock)."""
    with probes.connect(url) as conn:
        if now is None:
            row = conn.execute("SELECT clock_timestamp() AS now").fetchone()
            assert row is not None
            now = row["now"]
        assert now is not None
        since = now - window
        return uptime.compute(environment, probes.rounds(conn, environment, since, now), since, now, target)
