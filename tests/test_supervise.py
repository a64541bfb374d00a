"""The local supervisor never leaves its service behind when it is told to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra.deploy.local import SUPERVISOR


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_sigterm_to_the_supervisor_alone_stops_a_shell_command_service(tmp_path: Path) -> None:
    supervisor = subprocess.Popen(
        [sys.executable, str(SUPERVISOR), "--name", "sleeper", "--cwd", str(tmp_path), "--", "sleep 60"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not (children := _children(supervisor.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children) == 1, "the supervisor started no service"
        service = children[0]
        # The service is the command itself (the shell exec'd it), not a shell in between; on a busy machine the
        # child may be seen just before its exec, so look until the deadline.
        deadline = time.monotonic() + 10
        while (program := Path(f"/proc/{service}/cmdline").read_bytes().split(b"\0")[0]) != b"sleep":
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert program == b"sleep"
        assert _children(supervisor.pid) == [service]
        os.kill(supervisor.pid, signal.SIGTERM)  # not the process group: only the supervisor
        assert supervisor.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while _alive(service) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(service), "the service outlived its supervisor"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
