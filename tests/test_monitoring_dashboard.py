"""`ws dashboard`: the self-contained page, rendered from a seeded ledger and looked at in a real headless Chromium.

Chromium is Debian's (package `chromium`), driven by Playwright's Python package (no browser download). The
screenshot and the page are kept under .ws/test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from infra.deploy.health import Component
from infra.deploy.ledger import ensure_schema
from infra.deploy.servers import free_port
from infra.monitoring import page, probes
from infra.workspace.loader import load_workspace
from tests.helpers import EXAMPLES, ROOT, run_ws
from tests.monitoring_support import ARTIFACTS, http_get, require, wait_for

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
AGENTS = "service:app-agents"
REPOS = ("saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development")


def components(agents_down: bool) -> list[Component]:
    result = [
        Component("postgres", "database", True, "connected (DATABASE_URL)", 1.0),
        Component("redis", "redis", True, "PING ok", 0.5),
    ]
    for repo in REPOS:
        result.append(Component(f"migrations:{repo}", "migrations", True, "3/3 applied"))
        down = agents_down and repo == "app-agents"
        detail = "http://127.0.0.1:4101/health unreachable: Connection refused" if down else "HTTP 200, version 1.2.0"
        result.append(Component(f"service:{repo}", "service", not down, detail, 4.0))
    result.append(Component("schema:alignment", "schema", True, "5/5 shared models aligned"))
    result.append(Component("schema:drift", "schema", True, "no drift in 14 tables"))
    return result


def seed(url: str, now: datetime = NOW) -> None:
    """Two hours of probes each minute (app-agents down in minutes 30-39, nothing probed in minutes 60-79) and
    three deployments: succeeded, failed and rolled back, succeeded."""
    with probes.connect(url) as conn:
        for minute in range(120):
            if 60 <= minute < 80:
                continue
            probes.record(
                conn,
                "staging",
                components(30 <= minute < 40),
                interval_s=60,
                source="test",
                probed_at=now - timedelta(minutes=120 - minute),
                retention=None,
            )
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        for number, (status, day) in enumerate((("succeeded", 10), ("rolled_back", 20), ("succeeded", 21)), 1):
            started = now - timedelta(days=30 - day)
            row = conn.execute(
                "INSERT INTO ws.deployments (environment, status, repos, holder, started_at, finished_at, "
                "versions_after) VALUES ('staging', %s, %s, 'test:1', %s, %s, %s) RETURNING id",
                (status, list(REPOS), started, started + timedelta(minutes=4 + number), Jsonb({"app-agents": "1.2.0"})),
            ).fetchone()
            assert row is not None
            steps: list[tuple[str, str | None, int | None, str]] = [("infra", None, None, "succeeded")]
            steps += [("migrate", None, None, "succeeded")]
            steps += [("deploy", "saas-ecosystem-architecture", 1, "succeeded")]
            failed = status == "rolled_back"
            steps += [("deploy", "app-agents", 2, "failed" if failed else "succeeded")]
            steps += [("deploy", "saas-spec-driven-development", 2, "succeeded")]
            steps += [("rollback", "app-agents", 2, "succeeded")] if failed else [("health", None, None, "succeeded")]
            for index, (step, repo, stage, step_status) in enumerate(steps):
                conn.execute(
                    "INSERT INTO ws.deployment_steps (deployment_id, step, repo, stage, status, started_at, "
                    "finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (row[0], step, repo, stage, step_status, started + timedelta(seconds=30 * index),
                     started + timedelta(seconds=30 * index + 20)),
                )  # fmt: skip


@pytest.fixture
def seeded(fresh_database: str) -> str:
    seed(fresh_database)
    return fresh_database


@pytest.fixture
def seeded_now(fresh_database: str) -> str:
    """Seeded relative to now: `ws dashboard` reads the window ending at the database's clock."""
    seed(fresh_database, datetime.now(UTC))
    return fresh_database


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def look_at(browser: Any, url: str, screenshot: Path | None = None) -> tuple[Any, list[str], list[str]]:
    """Open ``url``; (page, console errors and page errors, every URL the page requested)."""
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("request", lambda request: requests.append(request.url))
    tab.goto(url)
    tab.wait_for_load_state("load")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(screenshot), full_page=True)
    return tab, errors, requests


def metric(tab: Any, key: str) -> str:
    return str(tab.locator(f'[data-metric="{key}"]').inner_text()).strip()


def test_the_page_shows_the_seeded_figures_in_a_real_browser(seeded: str, browser: Any) -> None:
    loaded = load_workspace(EXAMPLES / "workspace.yaml")
    data = page.collect(loaded, "staging", seeded, timedelta(days=30), now=NOW)
    html = page.render(data)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / "dashboard.html"
    target.write_text(html, encoding="utf-8")
    tab, errors, requests = look_at(browser, target.as_uri(), ARTIFACTS / "dashboard.png")
    try:
        assert errors == []
        assert requests == [target.as_uri()]  # nothing else is loaded: no CDN, no font, no script
        # 120 minutes, 20 rounds missing (the round before the gap stands for 2 minutes): 19 minutes unknown,
        # 101 known, 10 of them down; the 30-day budget is 43.2 minutes
        assert metric(tab, "integration-uptime") == "90.099%"  # 91 / 101 minutes
        assert metric(tab, "uptime:integration") == "90.099%"
        assert metric(tab, "integration-budget") == "76.9%"  # 1 - 10 / 43.2
        assert metric(tab, "incidents") == "1"
        assert metric(tab, "integration-now") == "up"
        assert metric(tab, f"uptime:{AGENTS}") == "90.099%"
        assert metric(tab, "uptime:postgres") == "100.000%"
        assert metric(tab, f"down:{AGENTS}") == "10m"
        assert metric(tab, "incident-duration:0") == "10m"
        assert metric(tab, "schema-drift") == "none"
        assert metric(tab, "schema-alignment") == "100.0%"
        assert metric(tab, "dora:change_fail_rate") == "33.3%"
        assert metric(tab, "dora:deployment_frequency") == "0.0667 per day"
        statuses = tab.locator('[data-table="deployments"] tbody tr').all_inner_texts()
        assert [line.split("\t")[1] for line in statuses] == ["succeeded", "rolled_back", "succeeded"]
        rolled_back = tab.locator('[data-table="deployments"] tbody tr').nth(1)
        assert "rollback app-agents (stage 2)" in rolled_back.inner_text()
        # the graph: three repos, two edges from the primary, every node with its health and uptime
        nodes = tab.locator("svg.graph g.node")
        assert nodes.count() == 3
        agents = tab.locator('svg.graph g.node[data-repo="app-agents"]')
        text = agents.text_content() or ""
        assert "uptime 90.099%" in text and "error budget left 76.9%" in text
        assert agents.get_attribute("class") == "node up"
        assert tab.locator("svg.graph path.edge").count() == 2
        assert tab.locator('path.edge[data-from="saas-ecosystem-architecture"][data-to="app-agents"]').count() == 1
        incident = tab.locator('[data-table="incidents"] tbody tr').inner_text()
        assert AGENTS in incident and "unreachable: Connection refused" in incident
    finally:
        tab.close()


def test_a_down_service_shows_red_and_markup_in_data_is_escaped(fresh_database: str, browser: Any) -> None:
    hostile = Component("service:app-agents", "service", False, '<img src="http://example.invalid/x"> 503', 1.0)
    with probes.connect(fresh_database) as conn:
        probes.record(conn, "staging", [hostile], interval_s=60, source="t", probed_at=NOW - timedelta(minutes=1))
    loaded = load_workspace(EXAMPLES / "workspace.yaml")
    html = page.render(page.collect(loaded, "staging", fresh_database, timedelta(hours=1), now=NOW))
    target = ARTIFACTS / "dashboard-down.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    tab, errors, requests = look_at(browser, target.as_uri())
    try:
        assert errors == [] and requests == [target.as_uri()]
        assert metric(tab, "integration-now") == "DOWN"
        assert tab.locator('svg.graph g.node[data-repo="app-agents"]').get_attribute("class") == "node down"
        assert '<img src="http://example.invalid/x"> 503' in tab.locator('[data-table="components"]').inner_text()
        assert tab.locator("img").count() == 0
    finally:
        tab.close()


def test_ws_dashboard_writes_and_serves_the_page(seeded_now: str, browser: Any, tmp_path: Path) -> None:
    seeded = seeded_now
    workspace = str(EXAMPLES / "workspace.yaml")
    out = tmp_path / "page.html"
    written = run_ws("-w", workspace, "dashboard", "--env", "staging", "-o", str(out), "--database-url", seeded)
    assert written.returncode == 0, written.stderr
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in text
    assert not re.search(r"""(src|href)=["']?https?:""", text)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WS_LEDGER_URL": seeded}
    server = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "-w", workspace, "dashboard", "--env", "staging",
         "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for("the dashboard server", lambda: "<!DOCTYPE html>" in http_get(url) or None, timeout=60)
        tab, errors, requests = look_at(browser, url)
        try:
            assert errors == [] and requests == [url]
            assert metric(tab, "incidents") == "1"
            assert tab.locator("svg.graph g.node").count() == 3
        finally:
            tab.close()
        with pytest.raises(urllib.error.HTTPError) as missing:
            http_get(url + "other")
        assert missing.value.code == 404
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_ws_dashboard_bad_input_is_one_clear_message(seeded: str, tmp_path: Path) -> None:
    workspace = str(EXAMPLES / "workspace.yaml")
    folder = run_ws("-w", workspace, "dashboard", "--env", "staging", "-o", str(tmp_path), "--database-url", seeded)
    assert folder.returncode == 2 and "is a folder; name the HTML file to write" in folder.stderr
    window = run_ws("-w", workspace, "dashboard", "--env", "staging", "--window", "x", "--database-url", seeded)
    assert window.returncode == 2 and "--window: 'x' is not a duration" in window.stderr
    for done in (folder, window):
        assert "Traceback" not in done.stderr
