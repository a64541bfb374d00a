"""Health of an environment: database, migrations, Redis, every service's health endpoint, schema alignment.

Service probes run concurrently, each bounded by its declared timeout. A probe that fails fast (refused,
5xx) is retried up to ``retries`` times, ``interval`` apart; a probe that times out is not retried, so a
hanging endpoint costs at most its timeout. The deploy pipeline's health gate (:func:`wait_healthy`) uses the
same probe with the declared start period.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg

from infra.deploy import migrations
from infra.deploy.runtime import Infra, Runtime
from infra.deploy.schema_gate import SchemaChecks
from infra.workspace.graph import edges_of, stages
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Health

START_POLL = 0.02  # seconds between probes during the start period


@dataclass
class Probe:
    ok: bool
    status: int | None
    latency_ms: float
    detail: str
    timed_out: bool = False
    body: dict[str, Any] | None = None


def probe(url: str, timeout: float) -> Probe:
    """One GET of ``url``; healthy when it answers 2xx within ``timeout`` seconds."""
    parts = urlsplit(url)
    started = time.perf_counter()
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"User-Agent": "ws-health"})
        response = conn.getresponse()
        raw = response.read(65536)
        latency = (time.perf_counter() - started) * 1000
        body: dict[str, Any] | None = None
        try:
            parsed = json.loads(raw)
            body = parsed if isinstance(parsed, dict) else None
        except ValueError:
            pass
        ok = 200 <= response.status < 300
        detail = f"HTTP {response.status}"
        if body and not ok:
            reasons = [str(body.get(k)) for k in ("status", "error", "reason") if body.get(k)]
            detail += ": " + "; ".join(reasons) if reasons else ""
        return Probe(ok, response.status, round(latency, 2), detail, body=body)
    except TimeoutError:
        return Probe(False, None, round((time.perf_counter() - started) * 1000, 2), f"timed out after {timeout}s", True)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return Probe(False, None, round((time.perf_counter() - started) * 1000, 2), f"unreachable: {reason}")
    except http.client.HTTPException as exc:
        return Probe(False, None, round((time.perf_counter() - started) * 1000, 2), f"bad HTTP answer: {exc!r}")
    finally:
        conn.close()


def check_endpoint(url: str, health: Health) -> Probe:
    """Probe with the declared retries; a timeout ends the check (it already cost the whole timeout)."""
    result = probe(url, health.timeout)
    attempts = 1
    while not result.ok and not result.timed_out and attempts <= health.retries:
        time.sleep(health.interval)
        result = probe(url, health.timeout)
        attempts += 1
    if not result.ok and attempts > 1:
        result.detail += f" (after {attempts} probes)"
    return result


def wait_healthy(url: str, health: Health, alive: Callable[[], bool] = lambda: True) -> Probe:
    """The deploy health gate: probe every ``interval`` until healthy; failures during ``start_period`` don't
    count, after it more than ``retries`` failures fail the gate. A dead service fails it at once."""
    started = time.monotonic()
    failures = 0
    while True:
        result = probe(url, health.timeout)
        if result.ok:
            return result
        if not alive():
            result.detail = f"the service exited ({result.detail})"
            return result
        starting = time.monotonic() - started < health.start_period
        if not starting:
            failures += 1
            if failures > health.retries:
                result.detail += f" ({failures} failed probes after the {health.start_period}s start period)"
                return result
        # while the service starts, look often so that the gate opens as soon as it answers
        time.sleep(min(health.interval, START_POLL) if starting else health.interval)


@dataclass
class Component:
    name: str
    kind: str  # database | migrations | redis | service | schema
    ok: bool | None  # None: not checked (not available / not applicable)
    detail: str
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
        }


@dataclass
class HealthReport:
    environment: str
    components: list[Component] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # repos outside a subset deploy with nothing running

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.components)

    @property
    def failed(self) -> list[Component]:
        return [c for c in self.components if c.ok is False]

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"environment": self.environment, "ok": self.ok}
        data["components"] = [c.as_dict() for c in self.components]
        if self.unchecked:
            data["unchecked"] = self.unchecked
        return data

    def prometheus(self) -> str:
        up = [(c, str(int(c.ok))) for c in self.components if c.ok is not None]
        latency = [(c, f"{c.latency_ms / 1000:.6f}") for c in self.components if c.latency_ms is not None]
        lines = _gauge("ws_health_up", "Whether a component of the environment is healthy (1), unhealthy (0).")
        lines += [f"ws_health_up{{{_labels(self.environment, c)}}} {value}" for c, value in up]
        lines += _gauge("ws_health_latency_seconds", "Latency of the component's last health probe.")
        lines += [f"ws_health_latency_seconds{{{_labels(self.environment, c)}}} {value}" for c, value in latency]
        lines += _gauge("ws_environment_healthy", "Whether every checked component of the environment is healthy.")
        lines.append(f'ws_environment_healthy{{environment="{_escape(self.environment)}"}} {int(self.ok)}')
        return "\n".join(lines) + "\n"


def _gauge(name: str, help_text: str) -> list[str]:
    """The HELP and TYPE lines of a Prometheus gauge."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(environment: str, c: Component) -> str:
    return f'environment="{_escape(environment)}",component="{_escape(c.name)}",kind="{c.kind}"'


def database_components(
    loaded: LoadedWorkspace, infra: Infra | None, repos: Collection[str] | None = None
) -> list[Component]:
    """The database connection and the migrations of ``repos`` (all when None)."""
    if infra is None:
        return [Component("postgres", "database", False, "no PostgreSQL found (run `ws up` or set DATABASE_URL)")]
    started = time.perf_counter()
    try:
        with psycopg.connect(infra.database_url, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
            latency = round((time.perf_counter() - started) * 1000, 2)
            result = [Component("postgres", "database", True, f"connected ({infra.database_source})", latency)]
            for stage in stages(edges_of(loaded.model)):
                for repo in stage:
                    if loaded.model.repos[repo].schema_ is None or (repos is not None and repo not in repos):
                        continue
                    checkout = loaded.repo_dir(repo)
                    if not checkout.is_dir():  # its migrations cannot be known: not ok, not failed
                        detail = f"skipped: not checked out ({checkout}); its migrations cannot be compared"
                        result.append(Component(f"migrations:{repo}", "migrations", None, detail))
                        continue
                    state = migrations.status(conn, loaded, repo)
                    if state.ok:
                        detail = f"{len(state.applied)}/{len(state.local)} applied in {state.namespace}"
                    else:
                        parts = []
                        if state.failed:
                            parts.append(f"failed: {', '.join(state.failed)}")
                        if state.modified:
                            parts.append(f"modified after applying: {', '.join(state.modified)}")
                        if state.pending:
                            parts.append(f"{len(state.pending)} pending: {', '.join(state.pending)}")
                        detail = "; ".join(parts)
                    result.append(Component(f"migrations:{repo}", "migrations", state.ok, detail))
            return result
    except psycopg.Error as exc:
        return [Component("postgres", "database", False, str(exc).strip().splitlines()[0])]


def redis_component(infra: Infra | None) -> Component:
    if infra is None:
        return Component("redis", "redis", False, "no Redis found (run `ws up` or set REDIS_URL)")
    import redis  # imported here: it is slow to import and only this check needs it

    started = time.perf_counter()
    try:
        client = redis.Redis.from_url(infra.cache_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
        return Component(
            "redis", "redis", True, f"PING ok ({infra.cache_source})", round((time.perf_counter() - started) * 1000, 2)
        )
    except redis.RedisError as exc:
        return Component("redis", "redis", False, f"PING failed: {exc}")


def service_components(
    loaded: LoadedWorkspace, runtime: Runtime, *, deployed_only: bool = False, repos: Collection[str] | None = None
) -> list[Component]:
    """Probe every service concurrently. With ``deployed_only`` a service with no version running (one that a
    rollback took back to "not deployed") is reported as such instead of probed: that is its previous state.
    With ``repos``, a service outside them is probed only when it runs (it shares the database the deployment
    migrated); one that does not run is left out (:func:`check` names it in ``unchecked``)."""
    targets = []
    absent = []
    for name, repo in loaded.model.repos.items():
        url = runtime.endpoint(name)
        if repo.service is None or not url:
            continue
        if repos is not None and name not in repos and runtime.current_version(name) is None:
            continue
        if deployed_only and runtime.current_version(name) is None:
            absent.append(
                Component(f"service:{name}", "service", True, "not deployed (none was before this deployment)")
            )
        else:
            targets.append((name, url + repo.service.health.path, repo.service.health))
    if not targets:
        return absent
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        results = list(pool.map(lambda t: check_endpoint(t[1], t[2]), targets))
    components = []
    for (name, url, _), result in zip(targets, results, strict=True):
        version = (result.body or {}).get("version")
        detail = f"{url} {result.detail}" + (f", version {version}" if version else "")
        components.append(Component(f"service:{name}", "service", result.ok, detail, result.latency_ms))
    return components + absent


def schema_components(
    loaded: LoadedWorkspace, infra: Infra | None, schema_checks: SchemaChecks, repos: Collection[str] | None = None
) -> list[Component]:
    """Schema alignment and drift of ``repos`` (all when None), by the schema checks the caller hands in."""
    database_url = infra.database_url if infra is not None else None
    results = schema_checks(loaded, database_url, list(repos) if repos is not None else None)
    return [Component(f"schema:{r.name}", "schema", r.ok, r.detail) for r in results]


def check(
    loaded: LoadedWorkspace,
    environment: str,
    runtime: Runtime,
    infra: Infra | None,
    *,
    schema_checks: SchemaChecks,
    deployed_only: bool = False,
    repos: Collection[str] | None = None,
) -> HealthReport:
    """The environment's health; with ``repos`` (a subset deploy's gate) the migrations, service and schema of
    those repos, plus every other service that runs. A repo outside them that runs nothing is named in
    ``unchecked``: its migrations did not run in this deployment, so its tables may not exist yet."""
    report = HealthReport(environment)
    if repos is not None:
        report.unchecked = [
            name
            for name in loaded.model.repos
            if name not in repos and (runtime.endpoint(name) is None or runtime.current_version(name) is None)
        ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        db = pool.submit(database_components, loaded, infra, repos)
        cache = pool.submit(redis_component, infra)
        services = pool.submit(service_components, loaded, runtime, deployed_only=deployed_only, repos=repos)
        report.components += db.result()
        report.components.append(cache.result())
        report.components += services.result()
    report.components += schema_components(loaded, infra, schema_checks, repos)
    return report
