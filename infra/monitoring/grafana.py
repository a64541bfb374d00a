"""The Grafana dashboard of the workspace (``monitoring/grafana/ws.json``), reading the series of `ws monitor`.

Import it in Grafana (Dashboards > New > Import, or file provisioning); it asks for a Prometheus data source and
offers the environments the monitors report. Rows: health and uptime per component, latency, error budget and
burn rates (the recording rules of ``monitoring/prometheus/rules.yml``), schema drift and alignment, migration
progress, DORA figures, deploy durations, and the dependency graph with each repo's health (a node graph).
"""

from __future__ import annotations

import json
from typing import Any

from infra.monitoring.slo import TARGET
from infra.workspace.located import LoadedWorkspace

DASHBOARD_FILE = "monitoring/grafana/ws.json"
ENV = 'environment="$environment"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def target(
    expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "refId": ref, "legendFormat": legend}
    if instant:
        result["instant"] = True
        result["range"] = False
    if table:
        result["format"] = "table"
    return result


class Panels:
    """Panels laid out left to right, wrapping at Grafana's 24 columns."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.items.append(
            {
                "type": "row",
                "title": title,
                "id": len(self.items) + 1,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(
        self,
        kind: str,
        title: str,
        targets: list[dict[str, Any]],
        *,
        width: int = 8,
        height: int = 7,
        unit: str | None = None,
        description: str = "",
        thresholds: list[tuple[float | None, str]] | None = None,
        options: dict[str, Any] | None = None,
        transformations: list[dict[str, Any]] | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> None:
        if self.x + width > 24:
            self._newline()
        defaults: dict[str, Any] = {}
        if unit:
            defaults["unit"] = unit
        if minimum is not None:
            defaults["min"] = minimum
        if maximum is not None:
            defaults["max"] = maximum
        if thresholds:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"value": value, "color": color} for value, color in thresholds],
            }
        panel: dict[str, Any] = {
            "type": kind,
            "title": title,
            "id": len(self.items) + 1,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"h": height, "w": width, "x": self.x, "y": self.y},
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self.items.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)


GOOD = [(None, "red"), (TARGET, "green")]


def dashboard(loaded: LoadedWorkspace) -> dict[str, Any]:
    name = loaded.model.name
    p = Panels()
    p.row("Health and uptime")
    p.add(
        "stat",
        "Integration up (every component at once)",
        [target(f"ws_integration_up{{{ENV}}}", "up", instant=True)],
        width=6,
        thresholds=[(None, "red"), (1, "green")],
        options={"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
    )
    p.add(
        "stat",
        "Integration uptime (30 days)",
        [target(f'ws_uptime_ratio{{{ENV},component="integration",window="30d"}}', "30d", instant=True)],
        width=6,
        unit="percentunit",
        thresholds=GOOD,
        description=f"Up over known time of the stored probes; the target is {TARGET:.1%}.",
    )
    p.add(
        "stat",
        "Error budget left (30 days)",
        [
            target(
                f'ws_error_budget_remaining_ratio{{{ENV},component="integration",window="30d"}}', "left", instant=True
            )
        ],
        width=6,
        unit="percentunit",
        thresholds=[(None, "red"), (0.25, "orange"), (0.5, "green")],
    )
    p.add(
        "stat",
        "Probed time (30 days)",
        [target(f'ws_uptime_coverage_ratio{{{ENV},window="30d"}}', "coverage", instant=True)],
        width=6,
        unit="percentunit",
        description="Share of the window covered by probes; gaps are unknown, never counted as up.",
    )
    p.add(
        "state-timeline",
        "Health per component",
        [target(f"ws_component_up{{{ENV}}}", "{{component}}")],
        width=24,
        height=9,
        thresholds=[(None, "red"), (1, "green")],
        options={"mergeValues": True, "showValue": "never"},
    )
    p.add(
        "bargauge",
        "Uptime per component and window",
        [target(f"ws_uptime_ratio{{{ENV}}}", "{{component}} {{window}}", instant=True)],
        width=12,
        height=9,
        unit="percentunit",
        thresholds=GOOD,
        minimum=0.99,
        maximum=1,
        options={"displayMode": "lcd", "orientation": "horizontal"},
    )
    p.add(
        "bargauge",
        "Error budget left per component (30 days)",
        [target(f'ws_error_budget_remaining_ratio{{{ENV},window="30d"}}', "{{component}}", instant=True)],
        width=12,
        height=9,
        unit="percentunit",
        thresholds=[(None, "red"), (0.25, "orange"), (0.5, "green")],
        minimum=0,
        maximum=1,
        options={"displayMode": "gradient", "orientation": "horizontal"},
    )
    p.row("Latency and burn rate")
    p.add(
        "timeseries",
        "Probe latency p90",
        [
            target(
                "histogram_quantile(0.9, sum by (component, le) "
                f"(rate(ws_probe_latency_seconds_bucket{{{ENV}}}[$__rate_interval])))",
                "{{component}}",
            )
        ],
        width=12,
        height=8,
        unit="s",
    )
    p.add(
        "timeseries",
        "Error budget burn rate (1 = spending exactly the 30-day budget)",
        [
            target(f"ws:integration_error:ratio_rate5m{{{ENV}}} / {1 - TARGET:g}", "5m", "A"),
            target(f"ws:integration_error:ratio_rate1h{{{ENV}}} / {1 - TARGET:g}", "1h", "B"),
            target(f"ws:integration_error:ratio_rate6h{{{ENV}}} / {1 - TARGET:g}", "6h", "C"),
            target(f"ws:integration_error:ratio_rate3d{{{ENV}}} / {1 - TARGET:g}", "3d", "D"),
        ],
        width=12,
        height=8,
        thresholds=[(None, "green"), (1, "orange"), (14.4, "red")],
        description="From the recording rules of monitoring/prometheus/rules.yml; pages above 14.4 (1h and 5m).",
    )
    p.row("Schema and migration")
    p.add(
        "stat",
        "Schema drift (objects)",
        [target(f"ws_schema_drift_objects{{{ENV}}}", "drift", instant=True)],
        width=6,
        thresholds=[(None, "green"), (1, "red")],
    )
    p.add(
        "stat",
        "Schema alignment",
        [target(f"ws_schema_alignment_ratio{{{ENV}}}", "aligned", instant=True)],
        width=6,
        unit="percentunit",
        thresholds=[(None, "red"), (1, "green")],
    )
    p.add(
        "timeseries",
        "SQLite migration progress",
        [target(f"ws_migration_completion_ratio{{{ENV}}}", "migrated and validated")],
        width=12,
        unit="percentunit",
        minimum=0,
        maximum=1,
    )
    p.row("Delivery (DORA, 30 days) and deploy durations")
    for metric, title, unit in (
        ("ws_dora_deployment_frequency_per_day", "Deployment frequency (per day)", "none"),
        ("ws_dora_change_lead_time_hours", "Change lead time (median)", "h"),
        ("ws_dora_change_fail_rate", "Change fail rate", "percentunit"),
        ("ws_dora_failed_deployment_recovery_time_hours", "Failed deployment recovery (median)", "h"),
        ("ws_dora_deployment_rework_rate", "Deployment rework rate", "percentunit"),
    ):
        p.add("stat", title, [target(f"{metric}{{{ENV}}}", "", instant=True)], width=4, height=5, unit=unit)
    p.add(
        "stat",
        "Last deployment",
        [target(f"ws_deployment_duration_seconds{{{ENV}}}", "{{status}}", instant=True)],
        width=4,
        height=5,
        unit="s",
    )
    p.add(
        "barchart",
        "Steps of the last deployment",
        [target(f"ws_deployment_step_duration_seconds{{{ENV}}}", "{{step}} {{repo}}", instant=True, table=True)],
        width=24,
        height=8,
        unit="s",
        transformations=[
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True, "__name__": True, "environment": True, "job": True}},
            }
        ],
    )
    p.row("Dependency graph")
    p.add(
        "nodeGraph",
        "Repos (deploy order: dependency -> dependent) and their health",
        [
            target(f"ws_repo_up{{{ENV}}}", "", "nodes", instant=True, table=True),
            target(f"ws_dependency_info{{{ENV}}}", "", "edges", instant=True, table=True),
        ],
        width=24,
        height=12,
        transformations=[
            {
                "id": "organize",
                "options": {
                    "renameByName": {
                        "repo": "id",
                        "Value #nodes": "mainstat",
                        "edge": "id",
                        "depends_on": "source",
                    },
                },
            }
        ],
        description="Nodes: ws_repo_up (1 up, 0 down); edges: ws_dependency_info.",
    )
    return {
        "title": f"{name}: workspace health, uptime and delivery",
        "uid": f"ws-{name}"[:40],
        "tags": ["ws", name],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                {
                    "name": "environment",
                    "label": "Environment",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(ws_monitor_info, environment)", "refId": "environments"},
                    "definition": "label_values(ws_monitor_info, environment)",
                    "refresh": 2,
                    "sort": 1,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": p.items,
    }


def generate_dashboard(loaded: LoadedWorkspace) -> dict[str, str]:
    return {DASHBOARD_FILE: json.dumps(dashboard(loaded), indent=2) + "\n"}


def expressions(document: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [t["expr"] for panel in document["panels"] for t in panel.get("targets", [])]
