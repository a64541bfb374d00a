"""`ws generate`'s monitoring files: the scheduled health-probe workflow, the Prometheus rules with their
``promtool test rules`` tests, and the Grafana dashboard."""

from __future__ import annotations

from infra.monitoring.grafana import generate_dashboard
from infra.monitoring.rules import generate_rules
from infra.monitoring.workflow import generate_workflow
from infra.workspace.located import LoadedWorkspace


def generate_monitoring(loaded: LoadedWorkspace) -> dict[str, str]:
    """{path relative to workspace.yaml's folder: content} of every monitoring file."""
    return {**generate_workflow(loaded), **generate_rules(loaded), **generate_dashboard(loaded)}
