"""`ws status`: per environment, the last deployments, how long the last one took against the 5-minute target,
migration progress, schema alignment and health."""

from __future__ import annotations

from typing import Any

import psycopg

from infra.deploy import durations, health, ledger
from infra.deploy.runtimes import runtime_for
from infra.deploy.schema_gate import SchemaChecks
from infra.errors import CheckFailed, UsageError
from infra.workspace.located import LoadedWorkspace


def environment_status(
    loaded: LoadedWorkspace, environment: str, schema_checks: SchemaChecks, deployments: int = 5
) -> dict[str, Any]:
    runtime = runtime_for(loaded, environment)
    result: dict[str, Any] = {"environment": environment, "runtime": runtime.name}
    try:
        infra = runtime.locate()
    except (CheckFailed, UsageError) as exc:
        result.update(reachable=False, detail=str(exc), deployments=[], health=None)
        return result
    except Exception as exc:  # e.g. the Pulumi CLI is missing on this machine
        result.update(reachable=False, detail=f"cannot locate the environment: {exc}", deployments=[], health=None)
        return result
    if infra is None:
        result.update(reachable=False, detail="not running (no database found); `ws up` starts it", deployments=[])
        result["health"] = None
        return result
    result["reachable"] = True
    result["infra"] = infra.describe()
    rows: list[dict[str, Any]] = []
    result["deploy_time"] = None  # no ledger yet: no deployment to time
    try:
        with psycopg.connect(infra.database_url, connect_timeout=5, autocommit=True) as probe:
            has_ledger = probe.execute("SELECT to_regclass('ws.deployments')").fetchone() != (None,)
        if has_ledger:
            conn = ledger.connect(infra.database_url)
            with conn:
                for deployment in ledger.recent(conn, environment, deployments):
                    steps = [s.as_dict() for s in ledger.steps(conn, deployment.id)]
                    rows.append({**deployment.as_dict(), "steps": steps})
                timed = durations.deploy_time(conn, environment)
                result["deploy_time"] = {**timed.as_dict(), "summary": timed.describe()}
    except psycopg.Error as exc:
        result["detail"] = f"ledger not readable: {str(exc).strip().splitlines()[0]}"
    result["deployments"] = rows
    report = health.check(loaded, environment, runtime, infra, schema_checks=schema_checks)
    result["health"] = report.as_dict()
    result["migrations"] = [c.as_dict() for c in report.components if c.kind == "migrations"]
    result["schema"] = [c.as_dict() for c in report.components if c.kind == "schema"]
    return result


def status(
    loaded: LoadedWorkspace, schema_checks: SchemaChecks, environment: str | None = None
) -> list[dict[str, Any]]:
    names = [environment] if environment else list(loaded.model.environments)
    return [environment_status(loaded, name, schema_checks) for name in names]
