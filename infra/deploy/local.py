"""The local runtime: shared servers on this machine and each service a supervised, detached subprocess.

State lives under ``.ws/<env>/`` beside workspace.yaml: ``state/servers.json`` (the servers in use, embedded
ones with their pids), ``state/services.json`` (per repo: supervisor pid = process group, version, port,
start time), ``logs/<repo>.log`` (the supervisor's and the service's output). Services outlive the `ws` process
that started them, so each `ws pipeline ...` job, `ws up` and `ws down` can be separate processes.

A version, locally, is a label handed to the service as ``WS_VERSION``; the service decides what it means
(the example services read their repo's ``releases.json``, see README). The default version of a repo is the
short commit of its checkout (``-dirty`` when it has local changes), or ``dev`` outside git.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from infra.deploy import servers
from infra.deploy.processes import ProcessIdentity, identity_of, mismatch
from infra.deploy.runtime import Infra, MigrationRun, process_env, rendered_env
from infra.errors import CheckFailed, UsageError
from infra.workspace.env import MAINTENANCE_DATABASE, workspace_database_url
from infra.workspace.located import LoadedWorkspace

SUPERVISOR = Path(__file__).with_name("supervise.py")
STOP_TIMEOUT = 10.0


def state_root(loaded: LoadedWorkspace, environment: str) -> Path:
    return loaded.root / ".ws" / environment


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def stop_group(pgid: int, timeout: float = STOP_TIMEOUT, reap: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM a process group, wait for it to be gone, SIGKILL what is left after ``timeout``."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reap is not None:
            reap.poll()
        if not group_alive(pgid):
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while group_alive(pgid):
        if reap is not None:
            reap.poll()
        time.sleep(0.02)


def _start_pipe() -> tuple[int, int]:
    """A pipe for the supervisor's start handshake whose ends are not 0, 1 or 2: with ws's own stdin or stdout
    closed, the pipe would get that number, and the child's /dev/null stdin or log stdout would replace it."""
    read, write = os.pipe()
    ends = []
    for fd in (read, write):
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) if fd < 3 else fd
        if moved != fd:
            os.close(fd)
        ends.append(moved)
    return ends[0], ends[1]


def supervisor_identity(pid: int, timeout: float = 5.0) -> ProcessIdentity | None:
    """The identity of a supervisor just started. Popen returns once the exec began, possibly before the kernel
    set the new command line up: look until it shows the supervisor."""
    deadline = time.monotonic() + timeout
    while True:
        found = identity_of(pid)
        if found is None or SUPERVISOR.name in found.command or time.monotonic() > deadline:
            return found
        time.sleep(0.005)


def _foreign(entry: Mapping[str, Any]) -> str | None:
    """Why a services.json entry's supervisor pid is not (or no longer) the supervisor ws started; None when it is."""
    return mismatch(int(entry["pgid"]), ProcessIdentity.from_dict(entry.get("identity")), SUPERVISOR.name)


@dataclass
class Stopped:
    """What `ws down` stopped, and the recorded pids it left alone because they are other processes now."""

    stopped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class LocalRuntime:
    name = "local"

    def __init__(self, loaded: LoadedWorkspace, environment: str) -> None:
        self.loaded = loaded
        self.environment = environment
        self.root = state_root(loaded, environment)
        self.state_dir = self.root / "state"
        self.logs_dir = self.root / "logs"
        self._thread_lock = threading.Lock()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._infra: Infra | None = None

    # ---- state files -------------------------------------------------------------------------------------
    @contextmanager
    def _state_lock(self) -> Iterator[None]:
        """Serialise read-modify-write of the state files across threads and processes (parallel CI jobs)."""
        servers.private_folder(self.state_dir)
        with self._thread_lock, open(self.state_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self, name: str) -> dict[str, Any]:
        path = self.state_dir / name
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise CheckFailed(f"{path}: corrupt state file ({exc}); run `ws down` to reset it") from exc
        return data if isinstance(data, dict) else {}

    def _write(self, name: str, data: dict[str, Any]) -> None:
        # 0600 in a 0700 folder: servers.json holds the embedded servers' URLs, passwords included
        servers.write_private(servers.private_folder(self.state_dir) / name, json.dumps(data, indent=2, sort_keys=True))

    def services(self) -> dict[str, dict[str, Any]]:
        """repo -> recorded state of its running service (entries whose supervisor is gone, or whose pid now
        belongs to another process, are dropped)."""
        with self._state_lock():
            data = self._read("services.json")
        return {repo: entry for repo, entry in data.items() if entry.get("pgid") and _foreign(entry) is None}

    # ---- infrastructure ----------------------------------------------------------------------------------
    def _server_urls(self, start: bool) -> tuple[str, str, str, str] | None:
        model = self.loaded.model
        recorded = self._read("servers.json")
        database = self._server_url(
            recorded,
            "postgres",
            "PostgreSQL",
            model.database.port,
            f"postgresql://postgres@127.0.0.1:{model.database.port}/postgres",
            lambda: servers.start_embedded_postgres(self.root / "embedded-postgres", model.database.port),
            lambda server: server.url,
            start,
        )
        if database is None:
            return None
        cache = self._server_url(
            recorded,
            "redis",
            "Valkey",
            model.cache.port,
            f"redis://127.0.0.1:{model.cache.port}/{model.cache.db}",
            lambda: servers.start_embedded_redis(self.root / "embedded-valkey", model.cache.port),
            lambda server: f"{server.url.rsplit('/', 1)[0]}/{model.cache.db}",
            start,
        )
        if cache is None:
            return None
        if start:
            self._write("servers.json", recorded)
        return (*database, *cache)

    @staticmethod
    def _server_url(
        recorded: dict[str, Any],
        key: str,
        label: str,
        port: int,
        local_url: str,
        start_embedded: Callable[[], servers.EmbeddedServer],
        started_url: Callable[[servers.EmbeddedServer], str],
        start: bool,
    ) -> tuple[str, str] | None:
        """(url, source) of one server: its environment variable (DATABASE_URL/REDIS_URL), the embedded server
        recorded in ``recorded`` when it still answers, a local server on its port, else (``start``) a new embedded
        one, recorded in ``recorded``; None when none is found and ``start`` is false."""
        variable = "DATABASE_URL" if key == "postgres" else "REDIS_URL"
        url = os.environ.get(variable)
        if url:
            return url, variable
        rec = recorded.get(key)
        if rec and servers.pid_alive(int(rec["pid"])) and servers.answers("127.0.0.1", int(rec["port"])):
            return rec["url"], f"embedded {label} (pid {rec['pid']})"
        if servers.answers("127.0.0.1", port):
            return local_url, f"local server on 127.0.0.1:{port}"
        if not start:
            return None
        server = start_embedded()
        started = identity_of(server.pid)  # `ws down` signals the pid only while it is still this process
        recorded[key] = {**server.__dict__, "identity": started.as_dict() if started else None}
        return started_url(server), f"embedded {label} (pid {server.pid}, started now)"

    def _infra_from(self, found: tuple[str, str, str, str]) -> Infra:
        db_url, db_source, cache_url, cache_source = found
        parts = urlsplit(db_url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise UsageError(
                f"{db_source} must be a postgresql://user@host:port/db URL naming a TCP host "
                "(the services receive it with ?schema=<namespace> appended)"
            )
        workspace_url = workspace_database_url(self.loaded.model, db_url)
        return Infra(workspace_url, cache_url, db_source, cache_source)

    def locate(self) -> Infra | None:
        found = self._server_urls(start=False)
        return self._infra_from(found) if found else None

    def provision(self) -> Infra:
        found = self._server_urls(start=True)
        assert found is not None
        infra = self._infra_from(found)
        name = unquote(urlsplit(infra.database_url).path.lstrip("/"))
        server_url = urlunsplit(urlsplit(found[0])._replace(path=f"/{MAINTENANCE_DATABASE}"))
        try:
            with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                if not exists:
                    try:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    except psycopg.errors.DuplicateDatabase:
                        pass
        except psycopg.OperationalError as exc:
            raise CheckFailed(
                f"PostgreSQL ({infra.database_source}) is not reachable: {str(exc).strip().splitlines()[0]}; "
                "start it, or unset DATABASE_URL to use an embedded server"
            ) from exc
        self._infra = infra
        return infra

    def ledger_url(self) -> str:
        return self.infra().database_url

    def infra(self) -> Infra:
        if self._infra is None:
            self._infra = self.provision()
        return self._infra

    # ---- services ----------------------------------------------------------------------------------------
    def default_version(self, repo: str) -> str:
        directory = self.loaded.repo_dir(repo)
        try:
            commit = subprocess.run(
                ["git", "log", "-1", "--format=%h", "--", "."],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if commit.returncode != 0 or not commit.stdout.strip():
                return "dev"
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--", "."], cwd=directory, capture_output=True, text=True, timeout=10
            )
            return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
        except (OSError, subprocess.TimeoutExpired):
            return "dev"

    def current_version(self, repo: str) -> str | None:
        entry = self.services().get(repo)
        if entry:
            return str(entry["version"])
        with self._state_lock():
            recorded = self._read("services.json").get(repo)
        if recorded and not recorded.get("pgid"):
            return str(recorded["version"])  # a repo without a service: its version is what was last deployed
        return None

    def endpoint(self, repo: str) -> str | None:
        service = self.loaded.model.repos[repo].service
        return f"http://127.0.0.1:{service.port}" if service else None

    def service_env(self, repo: str, infra: Infra, version: str | None = None) -> dict[str, str]:
        env = rendered_env(
            self.loaded, self.environment, repo, {"database": infra.database_url, "cache": infra.cache_url}
        )
        if version is not None:
            env["WS_VERSION"] = version
        return process_env(env)

    def command_env(self, repo: str, infra: Infra) -> dict[str, str]:
        return self.service_env(repo, infra, self.current_version(repo))

    def deploy(self, repo: str, version: str) -> str:
        spec = self.loaded.model.repos[repo]
        infra = self.infra()
        self.stop(repo)
        if spec.service is None or not spec.service.run.local:
            with self._state_lock():
                data = self._read("services.json")
                data[repo] = {"version": version, "pgid": 0, "started_at": time.time()}
                self._write("services.json", data)
            return f"{repo} has no local service; recorded version {version}"
        port = spec.service.port
        deadline = time.monotonic() + 5
        while servers.answers("127.0.0.1", port, 0.2):
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"{repo}: port {port} is in use by a process ws does not manage; stop it or change "
                    f"repos.{repo}.service.port in workspace.yaml"
                )
            time.sleep(0.05)
        env = self.service_env(repo, infra, version)
        directory = self.loaded.repo_dir(repo)
        if not directory.is_dir():
            raise UsageError(f"{repo}: checkout {directory} does not exist; fix repos.{repo}.path in workspace.yaml")
        log_path = servers.private_folder(self.logs_dir) / f"{repo}.log"
        # The supervisor starts the service once it reads "start" from this pipe, written after services.json
        # records it: killed in between, ws closes the pipe unread and the supervisor exits instead of leaving an
        # unrecorded service on the port.
        start_read, start_write = _start_pipe()
        try:
            try:
                child = self._spawn_supervisor(
                    repo, version, spec.service.run.local, directory, env, log_path, start_read
                )
            finally:
                os.close(start_read)
            self._children[child.pid] = child
            started = supervisor_identity(child.pid)
            with self._state_lock():
                data = self._read("services.json")
                data[repo] = {
                    "identity": started.as_dict() if started else None,
                    "pgid": child.pid,
                    "version": version,
                    "port": port,
                    "started_at": time.time(),
                    "log": str(log_path),
                    "command": spec.service.run.local,
                }
                self._write("services.json", data)
            with contextlib.suppress(BrokenPipeError):  # it died already: the health gate reports the dead service
                os.write(start_write, b"start")
        finally:
            os.close(start_write)
        return f"started {repo} {version} (supervisor pid {child.pid}) on 127.0.0.1:{port}"

    def _spawn_supervisor(
        self, repo: str, version: str, command: str, directory: Path, env: dict[str, str], log_path: Path, start_fd: int
    ) -> subprocess.Popen[bytes]:
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            log.write(f"\n=== ws: starting {repo} version {version} ===\n".encode())
            log.flush()
            return subprocess.Popen(
                [
                    sys.executable,
                    "-S",  # the supervisor needs the standard library only: skip site for a faster start
                    str(SUPERVISOR),
                    "--name",
                    repo,
                    "--cwd",
                    str(directory),
                    "--start-fd",
                    str(start_fd),
                    "--",
                    command,
                ],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(start_fd,),
            )

    def alive(self, repo: str) -> bool:
        with self._state_lock():
            entry = self._read("services.json").get(repo)
        if not entry or not entry.get("pgid"):
            return False
        child = self._children.get(int(entry["pgid"]))
        if child is not None:
            child.poll()
        return _foreign(entry) is None

    def stop(self, repo: str) -> None:
        self._stop(repo)

    def _stop(self, repo: str) -> str | None:
        """Stop the repo's service and forget it; why its recorded pid was not signalled, when it was not."""
        with self._state_lock():
            data = self._read("services.json")
        entry = data.get(repo)
        reason = None
        if entry and entry.get("pgid"):
            pgid = int(entry["pgid"])
            reason = _foreign(entry)
            if reason is None:
                stop_group(pgid, reap=self._children.pop(pgid, None))
        if entry:
            with self._state_lock():
                data = self._read("services.json")
                data.pop(repo, None)
                self._write("services.json", data)
        return reason

    def image(self, repo: str, version: str) -> str | None:
        return None  # a local version is a checkout, run from its folder

    def migrate(self, repo: str, version: str) -> MigrationRun | None:
        return None  # the command runs from the repo's checkout, against the local servers

    def preview(self, versions: Mapping[str, str]) -> str | None:
        return None  # a local deploy starts processes: the plan itself says everything

    def logs(self, repo: str, lines: int = 20) -> str:
        path = self.logs_dir / f"{repo}.log"
        if not path.exists():
            return ""
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # ---- whole environment -------------------------------------------------------------------------------
    def down(self) -> Stopped:
        """Stop every service, then the embedded servers this runtime started. A recorded pid is signalled only
        when it is still the process ws started (boot, start time, command); the others are reported, not
        touched, and forgotten."""
        result = Stopped()
        with self._state_lock():
            data = self._read("services.json")
        groups = [int(e["pgid"]) for e in data.values() if e.get("pgid") and _foreign(e) is None]
        for pgid in groups:  # signal every service first, so that they stop in parallel
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for repo in list(data):
            reason = self._stop(repo)
            if reason is None:
                result.stopped.append(f"service {repo}")
            elif not reason.endswith(" is gone"):
                result.skipped.append(f"service {repo}: {reason}; not signalled")
        recorded = self._read("servers.json")
        for kind in ("postgres", "redis"):
            rec = recorded.pop(kind, None)
            if not rec:
                continue
            identity = ProcessIdentity.from_dict(rec.pop("identity", None))
            server = servers.EmbeddedServer(**rec)
            reason = mismatch(server.pid, identity, "postgres" if kind == "postgres" else "valkey")
            if reason is None:
                servers.stop_embedded(server)
                result.stopped.append(f"embedded {kind} (pid {server.pid})")
            elif not reason.endswith(" is gone"):
                result.skipped.append(f"embedded {kind}: {reason}; not signalled")
        self._write("servers.json", recorded)
        return result
