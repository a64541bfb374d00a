"""A local Prometheus Pushgateway for `ws up`, where the services' trackCrossRepositoryMetric pushes land.

Started only when workspace.yaml declares ``monitoring.pushgateway`` and the environment is local; it listens on
127.0.0.1:<port> only, keeps its metrics in ``.ws/<env>/pushgateway/`` across restarts, logs to
``.ws/<env>/logs/pushgateway.log`` and is recorded in ``.ws/<env>/state/pushgateway.json`` so that `ws down`
(another process) stops it. The binary is Debian's ``prometheus-pushgateway`` (or ``pushgateway`` on PATH,
or ``$WS_PUSHGATEWAY_BINARY``); when it is missing, `ws up` says so and goes on without one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from infra.deploy.local import state_root
from infra.deploy.servers import answers, pid_alive, private_folder, write_private
from infra.workspace.env import LOCAL_HOST
from infra.workspace.located import LoadedWorkspace

BINARIES = ("prometheus-pushgateway", "pushgateway")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def find_binary() -> str | None:
    override = os.environ.get("WS_PUSHGATEWAY_BINARY")
    if override is not None:
        return shutil.which(override)
    return next((found for name in BINARIES if (found := shutil.which(name))), None)


def _state_file(loaded: LoadedWorkspace, environment: str) -> Path:
    return state_root(loaded, environment) / "state" / "pushgateway.json"


def _port(loaded: LoadedWorkspace, environment: str) -> int | None:
    gateway = loaded.model.monitoring.pushgateway
    env = loaded.model.environments.get(environment)
    if gateway is None or env is None or env.runtime != "local":
        return None
    return gateway.port


def start_local(loaded: LoadedWorkspace, environment: str) -> str | None:
    """Start the environment's Pushgateway unless one answers already; what happened (None: none is declared)."""
    port = _port(loaded, environment)
    if port is None:
        return None
    url = f"http://{LOCAL_HOST}:{port}"
    if answers(LOCAL_HOST, port):
        return f"Pushgateway: {url} answers already; the services push there (WS_PUSHGATEWAY_URL)"
    binary = find_binary()
    if binary is None:
        return (
            f"Pushgateway not started: prometheus-pushgateway is not installed (Debian package "
            f"prometheus-pushgateway); the services' trackCrossRepositoryMetric pushes to {url} fail until one runs"
        )
    root = state_root(loaded, environment)
    data = root / "pushgateway"
    logs = root / "logs"
    private_folder(data)
    private_folder(logs)
    with os.fdopen(os.open(logs / "pushgateway.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--web.listen-address={LOCAL_HOST}:{port}",
                f"--persistence.file={data / 'metrics'}",
                "--persistence.interval=1m",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # it outlives this `ws up`; `ws down` stops it
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(LOCAL_HOST, port, 0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            return f"Pushgateway did not start on {url}; see {logs / 'pushgateway.log'}"
        time.sleep(0.05)
    state = _state_file(loaded, environment)
    private_folder(state.parent)
    write_private(state, json.dumps({"pid": process.pid, "port": port, "url": url, "binary": binary}))
    return f"Pushgateway started on {url} (pid {process.pid}); the services push there (WS_PUSHGATEWAY_URL)"


def _is_pushgateway(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pushgateway" in command


def stop_local(loaded: LoadedWorkspace, environment: str) -> list[str]:
    """Stop the Pushgateway `ws up` started for the environment; what was stopped."""
    state = _state_file(loaded, environment)
    if not state.exists():
        return []
    try:
        recorded = json.loads(state.read_text())
        pid = int(recorded["pid"])
    except (ValueError, KeyError, TypeError):
        state.unlink()
        return []
    stopped = []
    if pid_alive(pid) and _is_pushgateway(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid_alive(pid) and _is_pushgateway(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if pid_alive(pid) and _is_pushgateway(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
        stopped.append(f"Pushgateway (pid {pid})")
    state.unlink()
    return stopped


def _reap(pid: int) -> None:
    """Collect the exit status when this process started it (`ws up --attach`), so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
