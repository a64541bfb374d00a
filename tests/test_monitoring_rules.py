"""The generated Prometheus rules (checked and unit-tested by the real promtool) and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from infra.monitoring import exporter, grafana, rules
from infra.workspace.loader import load_workspace
from tests.helpers import EXAMPLES, ROOT
from tests.monitoring_support import require

WORKSPACES = (ROOT, EXAMPLES)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = require("promtool", "prometheus")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("root", WORKSPACES, ids=["workspace", "examples"])
def test_promtool_checks_and_unit_tests_the_committed_rules(root: Path) -> None:
    folder = root / "monitoring" / "prometheus"
    checked = promtool("check", "rules", "rules.yml", cwd=folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 13 rules found" in checked.stdout
    tested = promtool("test", "rules", "rules.test.yml", cwd=folder)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_the_rule_tests_catch_a_wrong_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a component-down alert that waits 5 minutes, a fast-burn alert with the
    wrong threshold or a stalled-migration alert that ignores progress fails the test written for it."""
    loaded = load_workspace(ROOT / "workspace.yaml")
    text = rules.generate_rules(loaded)[rules.RULES_FILE]
    cases = rules.tests_document(loaded)
    for original, planted, test_name in (
        ("expr: ws_component_up == 0\n        for: 2m", "expr: ws_component_up == 0\n        for: 5m", "a component"),
        ("ratio_rate1h > (14.4 * 0.001)", "ratio_rate1h > (144 * 0.001)", "a full outage"),
        ("changes(ws_migration_completion_ratio[1h]) == 0", "changes(ws_migration_completion_ratio[1h]) >= 0", "a mig"),
    ):
        assert original in text
        (tmp_path / "rules.yml").write_text(text.replace(original, planted))
        only = {**cases, "tests": [t for t in cases["tests"] if t["name"].startswith(test_name)]}
        assert len(only["tests"]) == 1
        (tmp_path / "rules.test.yml").write_text(rules.dump(only, "test"))
        tested = promtool("test", "rules", "rules.test.yml", cwd=tmp_path)
        assert tested.returncode != 0 and "FAILED" in tested.stdout + tested.stderr, planted
        (tmp_path / "rules.yml").write_text(text)
        unchanged = promtool("test", "rules", "rules.test.yml", cwd=tmp_path)
        assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr


def test_burn_rate_alerts_follow_the_sre_workbook() -> None:
    document = rules.rules_document(load_workspace(ROOT / "workspace.yaml"))
    alerts = {r["alert"]: r for r in document["groups"][1]["rules"]}
    fast, slow = str(alerts["WsErrorBudgetBurnFast"]["expr"]), str(alerts["WsErrorBudgetBurnSlow"]["expr"])
    pairs = re.findall(r"ratio_rate(\w+) > \(([\d.]+) \* 0.001\)", fast + slow)
    assert pairs == [
        ("1h", "14.4"), ("5m", "14.4"), ("6h", "6"), ("30m", "6"),
        ("1d", "3"), ("2h", "3"), ("3d", "1"), ("6h", "1"),
    ]  # fmt: skip
    assert alerts["WsErrorBudgetBurnFast"]["labels"]["severity"] == "page"
    assert alerts["WsErrorBudgetBurnSlow"]["labels"]["severity"] == "ticket"
    assert alerts["WsComponentDown"]["for"] == "2m"


def metric_names(expr: str) -> set[str]:
    """The ws series an expression reads (label matchers removed)."""
    return set(re.findall(r"\bws[a-zA-Z0-9_:]*", re.sub(r"\{[^}]*\}", "", expr)))


def test_the_dashboard_reads_only_series_the_monitor_exports_or_the_rules_record() -> None:
    loaded = load_workspace(ROOT / "workspace.yaml")
    document = json.loads(grafana.generate_dashboard(loaded)[grafana.DASHBOARD_FILE])
    documented = set(re.findall(r"``(ws_[a-z_]+)", exporter.__doc__ or "")) | {"ws_dora_"}
    recorded = {r["record"] for r in rules.recording_rules()}
    for expr in grafana.expressions(document):
        for name in metric_names(expr):
            base = re.sub(r"_bucket$", "", name)
            assert base in recorded or any(base.startswith(d) for d in documented), (name, expr)
    panels = [p for p in document["panels"] if p["type"] != "row"]
    titles = " ".join(p["title"] for p in panels)
    for topic in ("Health per component", "uptime", "latency", "budget", "drift", "migration", "Deployment frequency"):
        assert topic.lower() in titles.lower(), topic
    assert any(p["type"] == "nodeGraph" for p in panels)
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in document["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_the_committed_monitoring_files_are_current() -> None:
    from infra.monitoring.files import generate_monitoring

    for root in WORKSPACES:
        loaded = load_workspace(root / "workspace.yaml")
        for relative, content in generate_monitoring(loaded).items():
            assert (root / relative).read_text() == content, f"{root / relative} is stale: run ws generate"
