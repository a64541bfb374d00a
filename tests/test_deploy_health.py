"""Health probes against real HTTP servers: retries on fast failures, none after a timeout, the start period."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from infra.deploy.health import Component, HealthReport, check_endpoint, wait_healthy
from infra.workspace.model import Health
from tests.background_http import BackgroundHTTPServer


class Counting:
    """A server answering /health with the statuses given, in order (the last one repeats); counts requests."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status = owner.statuses[min(owner.requests, len(owner.statuses) - 1)]
                owner.requests += 1
                body = b'{"status": "ok"}' if status == 200 else b'{"status": "unhealthy", "error": "db down"}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = BackgroundHTTPServer(Handler).start()
        self.url = f"http://127.0.0.1:{self.server.port}/health"


@pytest.fixture
def hanging() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts connections and never answers; the accepted sockets, to count probes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/health", accepted
    stop.set()
    thread.join()
    for sock in accepted:
        sock.close()
    listener.close()


def test_a_hanging_endpoint_is_probed_once_and_reported_as_timed_out(hanging: tuple[str, list[socket.socket]]) -> None:
    url, accepted = hanging
    result = check_endpoint(url, Health(timeout=0.3, retries=3, interval=0.05))
    assert not result.ok and result.timed_out
    assert result.detail == "timed out after 0.3s"
    assert len(accepted) == 1  # no retry after a timeout: it costs one timeout, not four


def test_fast_failures_are_retried_then_recover() -> None:
    server = Counting([503, 503, 200])
    result = check_endpoint(server.url, Health(timeout=2, retries=3, interval=0.01))
    assert result.ok and server.requests == 3
    failing = Counting([503])
    result = check_endpoint(failing.url, Health(timeout=2, retries=2, interval=0.01))
    assert not result.ok and failing.requests == 3
    assert result.detail == "HTTP 503: unhealthy; db down (after 3 probes)"
    server.server.shutdown()
    failing.server.shutdown()


def test_the_gate_ignores_failures_during_the_start_period_and_fails_a_dead_service() -> None:
    server = Counting([503] * 8 + [200])
    assert wait_healthy(server.url, Health(timeout=2, retries=0, interval=0.01, start_period=30)).ok
    assert server.requests == 9  # eight failures inside the start period did not count
    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    port = gone.getsockname()[1]
    gone.close()
    result = wait_healthy(
        f"http://127.0.0.1:{port}/health", Health(timeout=1, retries=50, start_period=30), lambda: False
    )
    assert not result.ok and result.detail.startswith("the service exited")
    server.server.shutdown()


def test_prometheus_exposition() -> None:
    report = HealthReport(
        "local",
        [
            Component("postgres", "database", True, "connected", 2.5),
            Component('service:"odd"', "service", False, "HTTP 503", 10.0),
            Component("schema:drift", "schema", None, "not available"),
        ],
    )
    text = report.prometheus()
    assert 'ws_health_up{environment="local",component="postgres",kind="database"} 1' in text
    assert 'ws_health_up{environment="local",component="service:\\"odd\\"",kind="service"} 0' in text
    assert 'ws_health_latency_seconds{environment="local",component="postgres",kind="database"} 0.002500' in text
    assert "schema:drift" not in text  # not checked: no sample rather than a false 0
    assert 'ws_environment_healthy{environment="local"} 0' in text
    assert not report.ok and [c.name for c in report.failed] == ['service:"odd"']


def test_urls_are_printed_without_their_passwords() -> None:
    from infra.deploy.runtime import Infra, redact

    assert redact("postgresql://app:s3cret@db:5432/ws") == "postgresql://app:***@db:5432/ws"
    assert redact("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert "s3cret" not in redact("host=db user=app password=s3cret dbname=ws")
    assert redact("postgresql://postgres@127.0.0.1:5432/ws") == "postgresql://postgres@127.0.0.1:5432/ws"
    described = Infra("postgresql://a:s3cret@h/ws", "redis://:s3cret@h:6379/0", "DATABASE_URL", "REDIS_URL").describe()
    assert "s3cret" not in str(described)
