"""`ws monitor` against the running example workspace, scraped by a real Prometheus; a killed service is an incident.

The example is deployed for real (services, PostgreSQL, Redis); the monitor runs as its own process, as a user
runs it; Prometheus (Debian package `prometheus`) scrapes it on a free loopback port.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.deploy.servers import free_port
from infra.monitoring import grafana, rules
from infra.workspace.loader import load_workspace
from tests import test_deploy_pipeline
from tests.monitoring_support import http_get, prometheus, wait_for
from tests.test_deploy_pipeline import ExampleEnv, deploy_json

make_example = test_deploy_pipeline.make_example  # the fixture that writes a copy of the example workspace

pytestmark = pytest.mark.slow

AGENTS = "app-agents"


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Metric family -> its samples (name, labels, value) from the exposition text."""
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


@pytest.fixture
def example(make_example: Callable[[float], ExampleEnv]) -> ExampleEnv:
    return make_example(10.0)  # a start period long enough on a busy machine


def metrics_when(url: str, condition: Callable[[str], bool]) -> Callable[[], str | None]:
    """A probe for wait_for: the /metrics text once ``condition`` holds for it."""

    def probe() -> str | None:
        text = http_get(url)
        return text if condition(text) else None

    return probe


def kill_service(example: ExampleEnv, repo: str) -> None:
    state = json.loads((example.root / ".ws" / "local" / "state" / "services.json").read_text())
    os.killpg(int(state[repo]["pgid"]), signal.SIGKILL)  # the supervisor and the service: nothing restarts it


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"ws monitor did not stop on Ctrl-C: {err}") from None
    return process.returncode, err


def test_monitor_is_scraped_by_prometheus_and_a_killed_service_is_an_incident(example: ExampleEnv) -> None:
    code, out, err = deploy_json(example)
    assert code == 0, err
    # one `ws health --record` round first, as the scheduled workflow records them
    recorded = example.ws("health", "--env", "local", "--record", "--interval", "1s")
    assert recorded.returncode == 0, recorded.stderr
    assert "recorded round" in recorded.stderr
    rows = example.query("SELECT component, ok, interval_s, source FROM ws.health_probes ORDER BY id")
    assert {r["component"] for r in rows} >= {"postgres", "redis", "service:app-agents", "schema:drift"}
    assert all(r["interval_s"] == 1.0 and r["source"].startswith("health ") for r in rows)
    assert all(r["ok"] is not False for r in rows)
    port = free_port()
    monitor = example.popen(
        "monitor", "--env", "local", "--interval", "1s", "--checks-every", "1s", "--listen", f"127.0.0.1:{port}"
    )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        text = wait_for(
            "the monitor's first healthy round",
            metrics_when(metrics_url, lambda t: sample(t, "ws_integration_up") == 1.0),
        )
        agents = f"service:{AGENTS}"
        assert sample(text, "ws_component_up", component=agents, kind="service", environment="local") == 1.0
        loaded = load_workspace(example.workspace)
        rules_file = example.root / "rules.yml"
        rules_file.write_text(rules.generate_rules(loaded)[rules.RULES_FILE])
        with prometheus({"ws-monitor": [f"127.0.0.1:{port}"]}, rules=[rules_file]) as server:
            # every series the monitor exports (with a value now) answers a PromQL query in Prometheus
            text = wait_for("the uptime figures", metrics_when(metrics_url, lambda t: "ws_uptime_ratio{" in t))
            exported = {name for name, samples in families(text).items() if samples}
            for required in (
                "ws_component_up",
                "ws_integration_up",
                "ws_probe_latency_seconds",
                "ws_uptime_ratio",
                "ws_uptime_coverage_ratio",
                "ws_error_budget_remaining_ratio",
                "ws_schema_alignment_ratio",
                "ws_schema_drift_objects",
                "ws_dora_deployment_frequency_per_day",
                "ws_dora_change_fail_rate",
                "ws_deployment_duration_seconds",
                "ws_deployment_step_duration_seconds",
                "ws_dependency_info",
                "ws_probe_rounds",
                "ws_monitor_info",
            ):
                assert required in exported, f"{required} not exported: {sorted(exported)}"
            for name in sorted(exported):
                metric = {"ws_probe_latency_seconds": "ws_probe_latency_seconds_bucket"}.get(name, name)
                metric = {"ws_probe_rounds": "ws_probe_rounds_total"}.get(metric, metric)
                metric = {"ws_probe_record_errors": "ws_probe_record_errors_total"}.get(metric, metric)
                found = server.wait_query(f'{metric}{{job="ws-monitor",environment="local"}}')
                assert found, name
            [drift] = server.query('ws_schema_drift_objects{environment="local"}')
            assert drift["value"][1] == "0"
            edges = server.query("ws_dependency_info")
            assert {(e["metric"]["repo"], e["metric"]["depends_on"]) for e in edges} == {
                (AGENTS, "saas-ecosystem-architecture"),
                ("saas-spec-driven-development", "saas-ecosystem-architecture"),
            }
            # the recording rules run on the real series, and every panel of the dashboard is valid PromQL
            server.wait_query('ws:integration_error:ratio_rate5m{environment="local"}')
            document = grafana.dashboard(loaded)
            for expr in grafana.expressions(document):
                query = expr.replace("$environment", "local").replace("$__rate_interval", "1m")
                server.query(query)  # a parse or evaluation error fails the test with Prometheus's message
            for expr in (
                'ws_repo_up{environment="local"}',
                'ws_error_budget_remaining_ratio{environment="local",component="integration",window="30d"}',
                'ws_uptime_coverage_ratio{environment="local",window="1h"}',
            ):
                assert server.query(expr), expr
            # NaN until two scrapes 30 s apart saw new probes (a loaded machine scrapes late): wait for a number
            latency = f'histogram_quantile(0.9, rate(ws_probe_latency_seconds_bucket{{component="{agents}"}}[30s]))'

            def p90() -> float | None:
                found = server.query(latency)
                value = float(found[0]["value"][1]) if found else math.nan
                return None if math.isnan(value) else value

            assert wait_for("the p90 probe latency of app-agents", p90, timeout=90, every=0.5) > 0

            # kill app-agents for a while
            killed_at = datetime.now(UTC)
            kill_service(example, AGENTS)
            wait_for(
                "the monitor to see app-agents down",
                lambda: sample(http_get(metrics_url), "ws_component_up", component=agents) == 0.0 or None,
            )
            seen_down_at = datetime.now(UTC)
            server.wait_query(f'ws_component_up{{component="{agents}"}} == 0')
            restarting_at = datetime.now(UTC)
            redeploy = example.ws("deploy", "--env", "local", "--repos", AGENTS)
            assert redeploy.returncode == 0, redeploy.stderr
            wait_for(
                "the monitor to see the integration up again",
                lambda: sample(http_get(metrics_url), "ws_integration_up") == 1.0 or None,
            )
            seen_up_at = datetime.now(UTC)
            server.wait_query('ws_integration_up{environment="local"} == 1')
            budget = server.wait_query(
                'ws_error_budget_remaining_ratio{component="integration",window="1h"} < 1', timeout=30
            )
            assert float(budget[0]["value"][1]) < 1
    finally:
        code, err = stop(monitor)
    assert code == 0, err
    assert "stopped after" in err and "Traceback" not in err

    done = example.ws("uptime", "--env", "local", "--window", "1h", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [incident] = report["incidents"]
    assert agents in incident["components"]
    assert incident["first_failing"].startswith(agents + ": ")
    start = datetime.fromisoformat(incident["start"])
    end = datetime.fromisoformat(incident["end"])
    # the first failing round was probed after the kill and before the test saw it failing; the first passing
    # round after the service answered again (it was redeployed after restarting_at) and before the test saw it.
    # A round is stamped when its probes start; they run concurrently right after, so a round stamped a moment
    # before the kill may be the first to see it: the start lies within one round (1 s) before the kill.
    assert killed_at - timedelta(seconds=1) <= start <= seen_down_at
    assert restarting_at <= end <= seen_up_at
    assert incident["duration_seconds"] == pytest.approx((end - start).total_seconds(), abs=0.01)
    whole = report["integration"]
    assert whole["down_seconds"] == pytest.approx(incident["down_seconds"], abs=0.01)
    assert 0 < whole["down_seconds"] <= incident["duration_seconds"] + 0.01
    assert whole["error_budget_spent_seconds"] == whole["down_seconds"]
    assert whole["error_budget_remaining"] < 1
    agents_tally = next(c for c in report["components"] if c["name"] == agents)
    assert agents_tally["down_seconds"] > 0
    postgres = next(c for c in report["components"] if c["name"] == "postgres")
    assert postgres["down_seconds"] == 0 and postgres["uptime"] == 1.0


def test_monitor_bad_options_are_one_clear_message(example: ExampleEnv, tmp_path: Path) -> None:
    # nothing was deployed: the workspace database does not exist, so the round cannot be stored
    unstored = example.ws("health", "--env", "local", "--record")
    assert unstored.returncode == 1 and "probes not recorded: probe history: cannot connect" in unstored.stderr
    assert "Traceback" not in unstored.stderr
    bad = example.ws("monitor", "--env", "local", "--listen", "nowhere")
    assert bad.returncode == 2 and "--listen: 'nowhere' is not HOST:PORT" in bad.stderr
    interval = example.ws("monitor", "--env", "local", "--interval", "often")
    assert interval.returncode == 2 and "--interval: 'often' is not a duration" in interval.stderr
    for done in (bad, interval):
        assert "Traceback" not in done.stderr
