"""The embedded servers trust nobody: another local user cannot reach them, ws changes no permission outside its
own state folder, and the PostgreSQL server holds no root group (issue 14, items 1 and 2)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from infra.deploy import servers

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser to act as another user"
)

# what another local user sends: a bare PING over TCP (bash's /dev/tcp), no password
NOBODY_PINGS = 'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "PING\\r\\n" >&3; read -r -t 5 line <&3; echo "$line"'


def run_as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *command], capture_output=True, text=True, timeout=60, cwd="/"
    )


def psql() -> str:
    found = servers._pg_commands().POSTGRES_BIN_PATH / "psql"
    return str(found) if found.exists() else str(shutil.which("psql"))


@pytest.fixture(autouse=True)
def no_cluster_left(tmp_path: Path) -> Iterator[None]:
    """As root the clusters live outside the test's folder: remove the ones this test made."""
    yield
    for data_dir in (
        tmp_path / "embedded-postgres",
        tmp_path / "home" / "project" / ".ws" / "local" / "embedded-postgres",
    ):
        shutil.rmtree(system_cluster(data_dir), ignore_errors=True)


@pytest.fixture
def private_home(tmp_path: Path) -> Iterator[Path]:
    """A workspace state folder below a 0700 folder, like a workspace under /root."""
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o700)
    yield home / "project" / ".ws" / "local"


def modes_above(path: Path) -> dict[Path, int]:
    return {folder: stat.S_IMODE(os.stat(folder).st_mode) for folder in path.parents if folder.exists()}


def test_embedded_postgres_needs_its_password_and_holds_no_root_group(private_home: Path) -> None:
    data_dir = private_home / "embedded-postgres"
    data_dir.mkdir(parents=True)
    before = modes_above(data_dir)
    server = servers.start_embedded_postgres(data_dir, servers.free_port())
    try:
        # the returned URL carries the generated password and works
        with psycopg.connect(server.url, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        # another local user, without the password, is refused (it used to be let in as superuser)
        plain = f"postgresql://postgres@127.0.0.1:{server.port}/postgres?connect_timeout=5"
        refused = run_as_nobody(psql(), plain, "-w", "-c", "SELECT 1")
        assert refused.returncode != 0
        assert "password" in refused.stderr
        # the server process runs as the server user with that user's own group only
        status = Path(f"/proc/{server.pid}/status").read_text()
        fields = {line.split(":")[0]: line.split(":")[1].split() for line in status.splitlines() if ":" in line}
        assert "0" not in fields["Uid"] and "0" not in fields["Gid"]
        assert "0" not in fields["Groups"]
        # no folder above the state folder changed its permissions; the state is private
        assert modes_above(data_dir) == before
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
        for name in ("password", "ws-server.json"):
            assert stat.S_IMODE(os.stat(data_dir / name).st_mode) == 0o600
        assert (data_dir / "password").read_text().strip() in server.url
    finally:
        servers.stop_embedded(server)
    assert not server.alive()


def test_a_trust_cluster_of_an_earlier_ws_is_closed_on_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "embedded-postgres"
    data_dir.mkdir()
    user = servers._server_user()
    root = servers._cluster_root(data_dir.resolve(), user)
    bin_dir = servers._pg_commands().POSTGRES_BIN_PATH
    servers._run_pg(
        [str(bin_dir / "initdb"), "-D", str(root / "data"), "--auth=trust", "-U", "postgres"], user, "initdb"
    )
    assert servers._trusts_anyone(root / "data")
    server = servers.start_embedded_postgres(data_dir, servers.free_port())
    try:
        assert not servers._trusts_anyone(root / "data")
        with psycopg.connect(server.url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        plain = f"postgresql://postgres@127.0.0.1:{server.port}/postgres?connect_timeout=5"
        assert run_as_nobody(psql(), plain, "-w", "-c", "SELECT 1").returncode != 0
    finally:
        servers.stop_embedded(server)


def test_embedded_valkey_needs_its_password_which_no_command_line_shows(private_home: Path) -> None:
    data_dir = private_home / "embedded-valkey"
    server = servers.start_embedded_redis(data_dir, servers.free_port())
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        assert client.ping() is True
        client.close()
        answer = run_as_nobody("bash", "-c", NOBODY_PINGS, str(server.port))
        assert answer.stdout.startswith("-NOAUTH"), answer
        password = (data_dir / "password").read_text().strip()
        assert password.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        for name in ("password", "valkey.conf", "ws-server.json", "valkey.log"):
            assert stat.S_IMODE(os.stat(data_dir / name).st_mode) == 0o600, name
        assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    finally:
        servers.stop_embedded(server)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def system_cluster(data_dir: Path) -> Path:
    return servers.SYSTEM_CLUSTERS / hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]


def test_a_deleted_state_folder_leaves_the_cluster_usable_with_a_new_password(private_home: Path) -> None:
    data_dir = private_home / "embedded-postgres"
    try:
        first = servers.start_embedded_postgres(data_dir, servers.free_port())
        servers.stop_embedded(first)
        shutil.rmtree(private_home)  # `rm -rf .ws`, the natural reset; the cluster outlives it
        second = servers.start_embedded_postgres(data_dir, servers.free_port())
        try:
            assert second.url != first.url
            with psycopg.connect(second.url, connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            servers.stop_embedded(second)
    finally:
        shutil.rmtree(system_cluster(data_dir), ignore_errors=True)


def test_a_cluster_of_an_earlier_ws_in_the_old_place_is_moved_and_closed() -> None:
    base = Path(tempfile.mkdtemp(prefix="ws-legacy-"))
    os.chmod(base, 0o755)  # the earlier ws opened the folders above its data to the server user
    data_dir = base / "embedded-postgres"
    user = servers._server_user()
    try:
        data_dir.mkdir()
        os.chown(data_dir, user.pw_uid, user.pw_gid)
        bin_dir = servers._pg_commands().POSTGRES_BIN_PATH
        initdb = [str(bin_dir / "initdb"), "-D", str(data_dir / "data"), "--auth=trust", "-U", "postgres"]
        servers._run_pg(initdb, user, "initdb")
        server = servers.start_embedded_postgres(data_dir, servers.free_port())
        try:
            assert not (data_dir / "data").exists()
            with psycopg.connect(server.url, connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            plain = f"postgresql://postgres@127.0.0.1:{server.port}/postgres?connect_timeout=5"
            assert run_as_nobody(psql(), plain, "-w", "-c", "SELECT 1").returncode != 0
        finally:
            servers.stop_embedded(server)
    finally:
        shutil.rmtree(system_cluster(data_dir), ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
