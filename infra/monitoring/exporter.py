"""`ws monitor`: probe an environment on an interval, record every round, serve ``/metrics`` (prometheus_client).

Each round runs the checks of `ws health` (database, migrations, Redis and every service concurrently, each
probe bounded by its declared timeout) and records them in ``ws.health_probes`` (rounds that cannot be written
while the database is down are kept, up to :data:`BUFFER`, and written when it answers again). The slower
figures - schema alignment and drift, migration completion, DORA, deploy durations - and the uptime windows
are refreshed every ``checks_every`` seconds, not every round.

The exported series (every one carries ``environment``):

===============================================  =========================================================
``ws_component_up{component,kind}``               1 up, 0 down; absent while the component is not checked
``ws_integration_up``                             1 while every checked component is up (the SLI)
``ws_probe_latency_seconds{component,kind}``      histogram of probe latencies
``ws_probe_rounds_total``                          rounds probed; ``ws_probe_record_errors_total`` unwritten
``ws_uptime_ratio{component,window}``             up / known time of the stored probes (component
                                                  ``integration`` for the whole), windows 1h, 1d, 7d, 30d
``ws_uptime_coverage_ratio{window}``              known / window time (gaps in probing are unknown)
``ws_error_budget_remaining_ratio{component,window}``  1 - down time / ((1 - target) x window)
``ws_schema_alignment_ratio``                      shared models and enums aligned with the primary
``ws_schema_drift_objects``                        database objects that differ from the declared schemas
``ws_migration_completion_ratio``                  agents' SQLite files migrated and validated
``ws_dora_*``                                      the five DORA figures over 30 days (see infra.deploy.dora)
``ws_deployment_duration_seconds{status}``         the last finished deployment, start to end
``ws_deployment_step_duration_seconds{step,repo}``  each step of the last finished deployment
``ws_dependency_info{repo,depends_on,edge}``       1 per edge of the dependency graph
``ws_repo_up{repo}``                               1 while the repo's service and migrations are up
``ws_monitor_info{interval_seconds,target}``       the monitor's settings
===============================================  =========================================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from infra import metrics as figures
from infra.deploy import dora
from infra.deploy.health import HealthReport, check
from infra.deploy.ledger import holder_name
from infra.deploy.runtime import Infra
from infra.deploy.runtimes import runtime_for
from infra.deploy.schema_gate import SchemaResult
from infra.errors import CheckFailed, UsageError
from infra.monitoring import ledger_view, probes
from infra.monitoring.slo import GRACE, TARGET
from infra.monitoring.uptime import INTEGRATION, Tally
from infra.workspace.graph import edges_of
from infra.workspace.located import LoadedWorkspace

WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
BUFFER = 10_000  # rounds kept in memory while the ledger database cannot be written
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DORA_WINDOW = timedelta(days=30)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``); one clear error otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen: {text!r} is not HOST:PORT; write e.g. 127.0.0.1:9464")
    return host, int(port)


@dataclass
class Figures:
    """The slow figures, refreshed every ``checks_every`` seconds; None while unknown."""

    alignment: float | None = None
    drift_objects: int | None = None
    migration: float | None = None
    dora: dora.EnvironmentFigures | None = None
    last_deployment: ledger_view.DeploymentView | None = None
    uptime: dict[str, list[Tally]] = field(default_factory=dict)  # window -> integration and components
    schema_results: list[SchemaResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Monitor:
    """The monitor of one environment: ``tick()`` probes once; ``serve()`` exposes ``/metrics``."""

    def __init__(
        self,
        loaded: LoadedWorkspace,
        environment: str,
        *,
        interval: float,
        checks_every: float = 300.0,
        record: bool = True,
        retention: timedelta | None = probes.DEFAULT_RETENTION,
        target: float = TARGET,
        schema_checks: Callable[[LoadedWorkspace, str | None, Sequence[str] | None], list[SchemaResult]] | None = None,
        database_url: str | None = None,
        progress: Callable[[str], None] = lambda message: None,
    ) -> None:
        if interval <= 0:
            raise UsageError("--interval must be positive")
        self.loaded = loaded
        self.environment = environment
        self.interval = interval
        self.checks_every = checks_every
        self.record = record
        self.retention = retention
        self.target = target
        self.database_url = database_url
        self.progress = progress
        self.runtime = runtime_for(loaded, environment)
        self._schema_checks = schema_checks
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "ws_probe_latency_seconds",
            "Latency of the health probes of a component.",
            ["environment", "component", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rounds_total = Counter(
            "ws_probe_rounds", "Probe rounds run by this monitor.", ["environment"], registry=self.registry
        )
        self.record_errors = Counter(
            "ws_probe_record_errors",
            "Rounds that could not be written to the ledger database when probed.",
            ["environment"],
            registry=self.registry,
        )
        self.rounds_total.labels(environment)
        self.record_errors.labels(environment)
        self.registry.register(_StateCollector(self))
        self.last: HealthReport | None = None
        self.figures = Figures()
        self._figures_at = float("-inf")
        self._uptime_at = float("-inf")
        self._pending: list[tuple[HealthReport, datetime]] = []
        self._lock = threading.Lock()
        self.rounds_done = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ---- probing -------------------------------------------------------------------------------------------
    def _ledger(self, infra: Infra | None) -> str | None:
        if self.database_url:
            return self.database_url
        if self.runtime.name == "local":
            return infra.database_url if infra is not None else None
        try:
            return self.runtime.ledger_url()
        except (CheckFailed, UsageError):
            return None

    def _cached_schema_checks(
        self, loaded: LoadedWorkspace, database_url: str | None, repos: Sequence[str] | None
    ) -> list[SchemaResult]:
        return list(self.figures.schema_results)

    def tick(self) -> HealthReport:
        """One round: probe, record (or keep for later), refresh the slow figures when due."""
        started = time.monotonic()
        try:
            infra = self.runtime.locate()
        except Exception as exc:  # a stack that cannot be read is an outage of the monitor's view, not a crash
            self.progress(f"cannot locate {self.environment}: {exc}")
            infra = None
        url = self._ledger(infra)
        if started - self._figures_at >= self.checks_every:
            self._refresh_figures(url)
            self._figures_at = started
        probed_at = datetime.now(UTC)  # when the probes start (after the slow figures, which may take seconds)
        report = check(self.loaded, self.environment, self.runtime, infra, schema_checks=self._cached_schema_checks)
        with self._lock:
            self.last = report
            for component in report.components:
                if component.latency_ms is not None:
                    self.latency.labels(self.environment, component.name, component.kind).observe(
                        component.latency_ms / 1000
                    )
            self.rounds_total.labels(self.environment).inc()
        if self.record:
            self._record(url, report, probed_at)
        if url is not None and started - self._uptime_at >= min(self.checks_every, 60.0):
            self._refresh_uptime(url)
            self._uptime_at = started
        return report

    def _record(self, url: str | None, report: HealthReport, probed_at: datetime) -> None:
        self._pending.append((report, probed_at))
        del self._pending[:-BUFFER]
        if url is None:
            self.record_errors.labels(self.environment).inc()
            return
        try:
            with probes.connect(url) as conn:
                while self._pending:
                    pending, at = self._pending[0]
                    probes.record(
                        conn,
                        self.environment,
                        pending.components,
                        interval_s=self.interval,
                        source=f"monitor {holder_name()}",
                        probed_at=at,
                        retention=self.retention,
                    )
                    self._pending.pop(0)
        except Exception as exc:  # the database being down is what the probes just recorded; keep them
            self.record_errors.labels(self.environment).inc()
            self.progress(f"probes not recorded yet ({len(self._pending)} rounds kept): {exc}")

    def _refresh_uptime(self, url: str) -> None:
        """Each window's up and down seconds, counted in the database (probes.tallies), as uptime tallies."""
        try:
            with probes.connect(url) as conn:
                row = conn.execute("SELECT clock_timestamp() AS now").fetchone()
                assert row is not None
                now: datetime = row["now"]
                windows = {}
                for name, span in WINDOWS.items():
                    counted = probes.tallies(conn, self.environment, now - span, now, GRACE, INTEGRATION)
                    window_s = span.total_seconds()
                    windows[name] = [
                        Tally(component, window_s, self.target, up, down) for component, (up, down) in counted.items()
                    ]
            with self._lock:
                self.figures.uptime = windows
        except Exception as exc:
            self.progress(f"uptime not refreshed: {exc}")

    def _refresh_figures(self, url: str | None) -> None:
        found = Figures(uptime=self.figures.uptime)
        schema_checks = self._schema_checks
        if schema_checks is None:
            # imported here: the schema checks live one layer up from infra.deploy, beside this package
            from infra.health_checks import schema_checks as default_checks

            schema_checks = default_checks
        try:
            found.schema_results = schema_checks(self.loaded, url, None)
        except Exception as exc:
            found.problems.append(f"schema checks: {exc}")
        alignment = figures.schema_alignment(self.loaded)
        found.alignment = alignment.value
        if alignment.value is None:
            found.problems.append(f"schema alignment: {alignment.detail}")
        if url is not None:
            found.drift_objects = _drift_objects(self.loaded, url, found.problems)
            migration = figures.migration_completion(self.loaded, url)
            found.migration = migration.value
            if migration.value is None:
                found.problems.append(f"migration completion: {migration.detail}")
            try:
                rows = dora.read_ledger(url, self.environment)
                until = datetime.now(UTC)
                found.dora = dora.compute(self.environment, rows, until - DORA_WINDOW, until)
                with psycopg.connect(url, connect_timeout=10) as conn:
                    recent = ledger_view.recent_deployments(conn, self.environment, 20)
                found.last_deployment = next((d for d in recent if d.finished_at is not None), None)
            except Exception as exc:
                found.problems.append(f"deploy ledger: {exc}")
        with self._lock:
            self.figures = found
        for problem in found.problems:
            self.progress(problem)

    # ---- serving -------------------------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` in a background thread; the bound port."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise UsageError(f"--listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return int(self._server.server_port)

    def run(self, stop: threading.Event, rounds: int | None = None) -> int:
        """Tick every ``interval`` until ``stop`` is set (or ``rounds`` rounds ran); how many ran."""
        done = 0
        while not stop.is_set() and (rounds is None or done < rounds):
            started = time.monotonic()
            report = self.tick()
            done += 1
            self.rounds_done += 1
            failed = ", ".join(c.name for c in report.failed)
            self.progress(f"round {done}: {'ok' if report.ok else 'DOWN: ' + failed}")
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        return done

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _drift_objects(loaded: LoadedWorkspace, url: str, problems: list[str]) -> int | None:
    try:
        from infra.schema.drift import drift  # imported here: reading every schema is only needed when refreshing

        return len(drift(loaded, url).items)
    except Exception as exc:
        problems.append(f"schema drift: {exc}")
        return None


class _StateCollector(Collector):
    """The gauges of the monitor's last round and figures, read at each scrape."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        m = self.monitor
        env = m.environment
        with m._lock:
            report, found = m.last, m.figures
        info = GaugeMetricFamily(
            "ws_monitor_info", "The monitor's settings.", labels=["environment", "interval_seconds", "target"]
        )
        info.add_metric([env, f"{m.interval:g}", f"{m.target:g}"], 1)
        yield info
        up = GaugeMetricFamily(
            "ws_component_up",
            "Whether a component is healthy (1) or not (0).",
            labels=["environment", "component", "kind"],
        )
        whole = GaugeMetricFamily("ws_integration_up", "Whether every checked component is up.", labels=["environment"])
        if report is not None:
            for c in report.components:
                if c.ok is not None:
                    up.add_metric([env, c.name, c.kind], 1.0 if c.ok else 0.0)
            whole.add_metric([env], 1.0 if report.ok else 0.0)
        yield up
        yield whole
        ratio = GaugeMetricFamily(
            "ws_uptime_ratio",
            "Up time over known time of the stored probes in the window.",
            labels=["environment", "component", "window"],
        )
        coverage = GaugeMetricFamily(
            "ws_uptime_coverage_ratio", "Known (probed) time over the window.", labels=["environment", "window"]
        )
        budget = GaugeMetricFamily(
            "ws_error_budget_remaining_ratio",
            "Share of the window's error budget (1 - target) not yet spent by down time.",
            labels=["environment", "component", "window"],
        )
        for window, counted in found.uptime.items():
            for tally in counted:
                if tally.uptime is not None:
                    ratio.add_metric([env, tally.name, window], tally.uptime)
                budget.add_metric([env, tally.name, window], tally.budget_remaining)
                if tally.name == INTEGRATION:
                    known = tally.up_s + tally.down_s
                    coverage.add_metric([env, window], known / tally.window_s if tally.window_s else 0.0)
        yield ratio
        yield coverage
        yield budget
        for name, value, help_text in (
            ("ws_schema_alignment_ratio", found.alignment, "Shared models and enums aligned with the primary."),
            ("ws_schema_drift_objects", found.drift_objects, "Database objects that differ from the schemas."),
            ("ws_migration_completion_ratio", found.migration, "Agents' SQLite files migrated and validated."),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["environment"])
            if value is not None:
                family.add_metric([env], float(value))
            yield family
        for key, (metric, help_text) in dora.PROMETHEUS.items():
            family = GaugeMetricFamily(metric, help_text, labels=["environment"])
            figure = found.dora.figures()[key] if found.dora is not None else None
            if figure is not None and figure.value is not None:
                family.add_metric([env], figure.value)
            yield family
        duration = GaugeMetricFamily(
            "ws_deployment_duration_seconds",
            "Start to end of the last finished deployment.",
            labels=["environment", "status"],
        )
        steps = GaugeMetricFamily(
            "ws_deployment_step_duration_seconds",
            "Each step of the last finished deployment.",
            labels=["environment", "step", "repo"],
        )
        last = found.last_deployment
        if last is not None and last.seconds is not None:
            duration.add_metric([env, last.status], last.seconds)
            for step in last.steps:
                if step.seconds is not None:
                    steps.add_metric([env, step.step, step.repo or ""], step.seconds)
        yield duration
        yield steps
        edges = GaugeMetricFamily(
            "ws_dependency_info",
            "An edge of the dependency graph: repo depends on depends_on (edge: its id for graph panels).",
            labels=["environment", "repo", "depends_on", "edge"],
        )
        for repo, dependencies in edges_of(m.loaded.model).items():
            for dependency in sorted(dependencies):
                edges.add_metric([env, repo, dependency, f"{dependency}->{repo}"], 1.0)
        yield edges
        repos = GaugeMetricFamily(
            "ws_repo_up",
            "Whether every checked component of a repo (its service, its migrations) is up.",
            labels=["environment", "repo"],
        )
        if report is not None:
            for repo in m.loaded.model.repos:
                states = [c.ok for c in report.components if c.name.split(":", 1)[-1] == repo and c.ok is not None]
                if states:
                    repos.add_metric([env, repo], 1.0 if all(states) else 0.0)
        yield repos
