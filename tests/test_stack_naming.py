"""Container details computed without pulumi: the health probe (run for real against an HTTP server, with
each fallback tool alone on PATH), durations, images and data directories."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import naming
from infra.workspace.loader import load_workspace
from infra.workspace.model import Health
from tests.helpers import ROOT


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 503)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def only_on_path(tmp_path: Path, *tools: str) -> str:
    """A PATH holding sh and just ``tools`` (as an image that has only those would)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in ("sh", *tools):
        found = sys.executable if tool == "python3" else shutil.which(tool)  # (pyenv's python3 is a shim)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (folder / tool).symlink_to(os.path.realpath(found))
    return str(folder)


@pytest.mark.parametrize("tool", ["curl", "wget", "python3", "node"])
def test_health_probe_passes_on_a_healthy_service_with_any_one_tool(server: int, tmp_path: Path, tool: str) -> None:
    path = only_on_path(tmp_path, tool)
    healthy = naming.health_command(server, Health(path="/api/health", timeout=3))
    sick = naming.health_command(server, Health(path="/broken", timeout=3))
    assert healthy[0] == "CMD-SHELL" and sick[0] == "CMD-SHELL"
    assert subprocess.run(["sh", "-c", healthy[1]], env={"PATH": path}, timeout=60).returncode == 0
    done = subprocess.run(["sh", "-c", sick[1]], env={"PATH": path}, capture_output=True, timeout=60)
    assert done.returncode != 0


def test_health_probe_fails_when_nothing_listens(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = naming.health_command(port, Health(path="/health", timeout=1))[1]
    assert subprocess.run(["sh", "-c", probe], capture_output=True, timeout=60).returncode != 0


def test_durations_labels_and_data_dirs() -> None:
    assert naming.duration(0.2) == "200ms" and naming.duration(5) == "5000ms"
    assert naming.wait_timeout(Health(start_period=20, interval=3, timeout=5, retries=5)) == 98
    assert naming.wait_timeout(Health()) == 60
    assert naming.postgres_data_dir("15") == "/var/lib/postgresql/data"
    assert naming.postgres_data_dir("18.1") == "/var/lib/postgresql"
    ws = load_workspace(ROOT / "workspace.yaml").model
    assert naming.prefix(ws, "prod") == "saas-ecosystem-prod"
    labels = naming.labels(ws, "dev", "service", "app-agents")
    assert labels["ws.repo"] == "app-agents" and labels["ws.workspace"] == "saas-ecosystem"
