"""The local runtime's supervision: a service killed under it comes back; stopping leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
from psycopg import sql

from infra.deploy.health import probe, wait_healthy
from infra.deploy.local import LocalRuntime, group_alive
from infra.deploy.processes import identity_of
from infra.deploy.servers import free_port, pid_alive
from infra.workspace.loader import load_workspace
from infra.workspace.model import Health
from tests.helpers import run_ws
from tests.test_deploy_pipeline import REPOS, write_example_workspace

PRIMARY = REPOS[0]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def service_pid(supervisor: int) -> int:
    """The service process under the supervisor (through the `sh -c` when the shell did not exec)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in children_of(supervisor):
            grandchildren = children_of(child)
            if grandchildren:
                return grandchildren[0]
            if "python" in Path(f"/proc/{child}/cmdline").read_text(errors="replace"):
                return child
        time.sleep(0.02)
    raise AssertionError("no service process under the supervisor")


def test_supervisor_restarts_a_killed_service_and_stop_ends_the_group(
    tmp_path: Path, postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"ws_local_{uuid.uuid4().hex[:10]}"
    ports = {repo: free_port() for repo in REPOS}
    loaded = load_workspace(write_example_workspace(tmp_path, name, ports))
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    runtime = LocalRuntime(loaded, "local")
    url = f"http://127.0.0.1:{ports[PRIMARY]}/health"
    gate = Health(timeout=2, retries=0, interval=0.05, start_period=60)
    try:
        detail = runtime.deploy(PRIMARY, "v1")
        assert "started saas-ecosystem-architecture v1" in detail
        assert wait_healthy(url, gate, lambda: runtime.alive(PRIMARY)).ok
        supervisor = int(runtime.services()[PRIMARY]["pgid"])
        first = service_pid(supervisor)
        os.kill(first, signal.SIGKILL)  # the service dies; its supervisor brings it back
        deadline = time.monotonic() + 30
        while pid_alive(first) and time.monotonic() < deadline:
            time.sleep(0.02)
        second = service_pid(supervisor)
        assert second != first
        result = wait_healthy(url, gate, lambda: runtime.alive(PRIMARY))
        assert result.ok and result.body and result.body["version"] == "v1"
        assert runtime.current_version(PRIMARY) == "v1"
        log = runtime.logs(PRIMARY, 50)
        assert re.search(r"exited with code (-9|137); restarting", log), log  # 137: the shell reports SIGKILL
    finally:
        try:
            runtime.stop(PRIMARY)
        finally:  # the database goes even when stopping fails
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert not group_alive(supervisor)
    assert not probe(url, 0.5).ok
    assert runtime.current_version(PRIMARY) is None


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_services_and_repo_commands_get_their_env_and_no_other_secret(
    tmp_path: Path, postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14 item 3: a service (supervisor and service process) and a repo's migrate/test command get the repo's
    resolved env plus a short allow-list of ws's own environment: never ws's tokens nor another repo's secret."""
    spec = REPOS[2]
    name = f"ws_local_{uuid.uuid4().hex[:10]}"
    ports = {repo: free_port() for repo in REPOS}
    path = write_example_workspace(tmp_path, name, ports)
    text = path.read_text()
    declared = f"  {spec}:\n    github:"
    assert declared in text
    path.write_text(
        text.replace(declared, f"  {spec}:\n    env:\n      SPEC_API_KEY: {{secret: SPEC_API_KEY}}\n    github:")
    )
    loaded = load_workspace(path)
    for variable, value in {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "GITHUB_TOKEN": "ghp_not_for_services",
        "PULUMI_ACCESS_TOKEN": "pul-not-for-services",
        "SPEC_API_KEY": "spec-only-secret",
        "SOME_OTHER_VARIABLE": "not-on-the-allow-list",
        "LC_ALL": "C.UTF-8",
    }.items():
        monkeypatch.setenv(variable, value)
    runtime = LocalRuntime(loaded, "local")
    try:
        infra = runtime.provision()
        for repo in (PRIMARY, spec):
            runtime.deploy(repo, "v1")
            supervisor = int(runtime.services()[repo]["pgid"])
            for pid in (supervisor, service_pid(supervisor)):
                env = environ_of(pid)
                assert {"GITHUB_TOKEN", "PULUMI_ACCESS_TOKEN", "SOME_OTHER_VARIABLE"}.isdisjoint(env), (repo, env)
                assert env["LC_ALL"] == "C.UTF-8" and env["HOME"] and env["PATH"]
                namespace = {PRIMARY: "ecosystem", spec: "specs"}[repo]
                assert env["DATABASE_URL"].endswith(f"/{name}?schema={namespace}")
                assert ("SPEC_API_KEY" in env) == (repo == spec), (repo, sorted(env))
            command = runtime.command_env(repo, infra)
            assert {"GITHUB_TOKEN", "PULUMI_ACCESS_TOKEN", "SOME_OTHER_VARIABLE"}.isdisjoint(command)
            assert ("SPEC_API_KEY" in command) == (repo == spec)
    finally:
        try:
            runtime.down()
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_down_signals_only_the_processes_ws_started(tmp_path: Path) -> None:
    """Issue 14 item 6: state left from before a reboot (or a crash) names pids that other processes hold now;
    `ws down` checks each recorded pid's boot, start time and command before signalling it, and reports and
    forgets the ones that are not what it started instead of killing them."""
    path = write_example_workspace(tmp_path, "ws_down_stale", {repo: free_port() for repo in REPOS})
    bystanders = [
        subprocess.Popen(["sleep", "300"], start_new_session=True, stdin=subprocess.DEVNULL) for _ in range(3)
    ]
    try:
        now = identity_of(bystanders[0].pid)
        assert now is not None
        stale = {"boot_id": now.boot_id, "start_ticks": now.start_ticks - 1, "command": f"{sys.executable} -S x"}
        state = tmp_path / ".ws" / "local" / "state"
        state.mkdir(parents=True)
        services = {
            # recorded with an identity: same boot, another start time and command
            PRIMARY: {"pgid": bystanders[0].pid, "version": "v1", "identity": stale},
            # recorded by an older ws, without identity: its command is not a ws supervisor
            REPOS[1]: {"pgid": bystanders[1].pid, "version": "v1"},
        }
        (state / "services.json").write_text(json.dumps(services))
        before_reboot = {**stale, "boot_id": "another-boot", "command": "postgres -D data"}
        record = {"kind": "postgres", "url": "postgresql://x@127.0.0.1:1/postgres", "port": 1, "data_dir": "/nowhere"}
        (state / "servers.json").write_text(
            json.dumps({"postgres": {**record, "pid": bystanders[2].pid, "identity": before_reboot}})
        )
        done = run_ws("-w", str(path), "down", "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["stopped"] == []
        skipped = "\n".join(out["skipped"])
        assert all(b.poll() is None for b in bystanders), skipped  # nobody was signalled
        assert f"service {PRIMARY}: pid {bystanders[0].pid} is now another process (sleep 300)" in skipped
        assert f"service {REPOS[1]}: pid {bystanders[1].pid} is now another process (sleep 300)" in skipped
        assert f"embedded postgres: pid {bystanders[2].pid} was recorded before the machine restarted" in skipped
        again = run_ws("-w", str(path), "down", cwd=tmp_path)  # the stale entries are forgotten
        assert again.returncode == 0 and "nothing running" in again.stdout, again.stdout
    finally:
        for bystander in bystanders:
            bystander.kill()
            bystander.wait()


KILLED_AFTER_SPAWN = """
import os, signal, sys
from pathlib import Path
from infra.deploy.local import LocalRuntime
from infra.workspace.loader import load_workspace

repo = sys.argv[2]
write = LocalRuntime._write

def write_then_die(self, name, data):
    if name == "services.json" and "identity" in data.get(repo, {}):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between starting the supervisor and recording it
    write(self, name, data)

LocalRuntime._write = write_then_die
LocalRuntime(load_workspace(Path(sys.argv[1])), "local").deploy(repo, "v1")
"""


def supervisors_on(port: int) -> list[int]:
    """Live supervisor processes of a service given ``port`` (its PORT variable)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                variables = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if state != "Z" and b"supervise.py" in command and f"PORT={port}".encode() in variables:
                found.append(int(entry))
    return found


class Example(NamedTuple):
    path: Path  # workspace.yaml
    ports: dict[str, int]
    env: dict[str, str]  # this process's environment with the servers' URLs


@pytest.fixture
def example(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[Example]:
    """The example workspace on free ports with a database of its own; afterwards no supervisor of its primary is
    left (whatever the test did) and the database is gone."""
    name = f"ws_local_{uuid.uuid4().hex[:10]}"
    ports = {repo: free_port() for repo in REPOS}
    env = {**os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": redis_url}
    try:
        yield Example(write_example_workspace(tmp_path, name, ports), ports, env)
    finally:
        for pid in supervisors_on(ports[PRIMARY]):
            os.killpg(pid, signal.SIGKILL)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_deployer_killed_before_it_recorded_its_supervisor_leaves_no_service_behind(example: Example) -> None:
    """kill -9 of `ws deploy` right after it started a service's supervisor, before services.json names it: the
    supervisor must not start an unrecorded service that holds the port (the next deploy or rollback would find the
    port "in use by a process ws does not manage")."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_SPAWN, str(example.path), PRIMARY],
        env=example.env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    port = example.ports[PRIMARY]
    deadline = time.monotonic() + 10
    while supervisors_on(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert supervisors_on(port) == []
    assert not probe(f"http://127.0.0.1:{port}/health", 0.5).ok


STDIN_CLOSED = """
import os, sys
from pathlib import Path
from infra.deploy.health import wait_healthy
from infra.deploy.local import LocalRuntime
from infra.workspace.loader import load_workspace
from infra.workspace.model import Health

repo, port = sys.argv[2], sys.argv[3]
runtime = LocalRuntime(load_workspace(Path(sys.argv[1])), "local")
runtime.deploy(repo, "v1")
gate = Health(timeout=2, retries=0, interval=0.05, start_period=60)
result = wait_healthy(f"http://127.0.0.1:{port}/health", gate, lambda: runtime.alive(repo))
runtime.stop(repo)
print("healthy" if result.ok else "not healthy: " + runtime.logs(repo, 5))
"""


def test_a_service_starts_when_ws_runs_with_stdin_closed(example: Example) -> None:
    """With fd 0 closed, the start pipe's read end would be fd 0, which the supervisor's /dev/null stdin replaces."""
    done = subprocess.run(
        [sys.executable, "-c", STDIN_CLOSED, str(example.path), PRIMARY, str(example.ports[PRIMARY])],
        env=example.env,
        capture_output=True,
        preexec_fn=lambda: os.close(0),  # the child closes its own stdin before it runs python
        timeout=120,
    )
    assert done.stdout.decode().strip() == "healthy", done.stdout.decode() + done.stderr.decode()[-2000:]


def test_a_supervisor_that_cannot_be_started_leaves_no_open_pipe(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.setenv(variable, example.env[variable])
    runtime = LocalRuntime(load_workspace(example.path), "local")

    def cannot_start(*args: object) -> subprocess.Popen[bytes]:
        raise OSError(24, "Too many open files")  # what Popen raises when the machine is out of descriptors

    monkeypatch.setattr(runtime, "_spawn_supervisor", cannot_start)
    runtime.infra()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(OSError, match="Too many open files"):
            runtime.deploy(PRIMARY, "v1")
    assert len(os.listdir("/proc/self/fd")) == before
