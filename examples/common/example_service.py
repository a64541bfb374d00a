"""A tiny HTTP service used by the three example repos: /health plus the routes each repo adds.

It is real: /health connects to PostgreSQL (DATABASE_URL, Prisma form with ?schema=<namespace>) and pings
Redis (REDIS_URL) on every call and reports both, with latencies; routes run real SQL. Standard library
HTTP server plus psycopg and redis, nothing else.

Versions. The running version is ``WS_VERSION`` (set by `ws` when it deploys a version). A repo may describe
its releases in ``releases.json`` at its root (the service's working directory): for each version,
``requires_tables`` (tables that version reads; /health answers 503 naming any that is missing, as a release
deployed before its migration would) and ``removed_routes`` (API routes that version no longer serves). Versions
not listed behave as the code in the checkout. The deploy tests use these to ship a release that fails its
health check and one that breaks a neighbour's integration test.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import redis

Route = Callable[[psycopg.Connection[Any]], Any]


def libpq_url(prisma_url: str) -> tuple[str, str | None]:
    """Split a Prisma URL into a libpq URL and its ?schema= namespace (libpq does not know `schema`)."""
    parts = urlsplit(prisma_url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    kept = [(k, v) for k, v in query if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(kept))), schema


def connect() -> psycopg.Connection[Any]:
    url, schema = libpq_url(os.environ["DATABASE_URL"])
    options = f"-c search_path={schema},public" if schema else None
    return psycopg.connect(url, connect_timeout=3, options=options or "", autocommit=True)


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connect() as conn:
            conn.execute("SELECT 1")
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except psycopg.Error as exc:
        return {"ok": False, "error": str(exc).strip().splitlines()[0]}


def check_redis() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except redis.RedisError as exc:
        return {"ok": False, "error": str(exc)}


def release(version: str) -> dict[str, Any]:
    """What ``releases.json`` (in the working directory) says about ``version``; {} when nothing."""
    try:
        with open("releases.json", encoding="utf-8") as handle:
            releases = json.load(handle)
    except FileNotFoundError:
        return {}
    entry = releases.get(version, {}) if isinstance(releases, dict) else {}
    return entry if isinstance(entry, dict) else {}


def check_tables(tables: list[str]) -> dict[str, Any]:
    """Whether the tables a release reads exist (to_regclass, schema-qualified names)."""
    if not tables:
        return {"ok": True}
    try:
        with connect() as conn:
            missing = [t for t in tables if conn.execute("SELECT to_regclass(%s)", [t]).fetchone() == (None,)]
    except psycopg.Error as exc:
        return {"ok": False, "error": str(exc).strip().splitlines()[0]}
    if missing:
        return {"ok": False, "error": f"missing table(s) {', '.join(missing)}: this release needs a migration"}
    return {"ok": True}


def serve(name: str, routes: dict[str, Route]) -> None:
    """Serve until SIGTERM/SIGINT on PORT (127.0.0.1 unless HOST is set)."""
    version = os.environ.get("WS_VERSION", "dev")
    behaviour = release(version)
    routes = {path: route for path, route in routes.items() if path not in behaviour.get("removed_routes", [])}
    required_tables = list(behaviour.get("requires_tables", []))

    class Handler(BaseHTTPRequestHandler):
        server_version = f"{name}/{version}"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/health":
                database, cache, tables = check_database(), check_redis(), check_tables(required_tables)
                healthy = database["ok"] and cache["ok"] and tables["ok"]
                body = {
                    "status": "ok" if healthy else "unhealthy",
                    "service": name,
                    "version": version,
                    "database": database,
                    "redis": cache,
                    "tables": tables,
                }
                if not tables["ok"]:
                    body["error"] = tables["error"]
                self._send(200 if healthy else 503, body)
                return
            route = routes.get(path)
            if route is None:
                self._send(404, {"error": f"no route {path}"})
                return
            try:
                with connect() as conn:
                    self._send(200, route(conn))
            except psycopg.Error as exc:
                self._send(500, {"error": str(exc).strip().splitlines()[0]})

    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"{name} {version} listening on {server.server_address}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
