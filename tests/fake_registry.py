"""A local HTTP server that answers like a container registry (Docker Registry HTTP API v2 / OCI distribution), for
the deploy tests: no registry can be reached from here.

It speaks the token flow GHCR and Docker Hub use: ``HEAD``/``GET /v2/<name>/manifests/<reference>`` without a token
answers 401 with ``WWW-Authenticate: Bearer realm="<url>/token",service="fake-registry",scope="repository:<name>:pull"``;
``GET /token?service=...&scope=...`` issues a token, anonymously or for a user given by HTTP Basic auth; a private
repository is readable only with a user's token (403 DENIED otherwise, as GHCR answers). A manifest is served only
to a client whose ``Accept`` header names its media type (an OCI image index, as docker/build-push-action pushes);
an unknown one is 404 ``MANIFEST_UNKNOWN``. Every request is recorded (method, path, query, headers).

Misbehaviour on demand: ``redirects`` answers a path (``/token``, or a manifest's, once its token is valid) with a
307 to another URL, as a moved token service or a registry sending pulls to blob storage does; ``realm`` replaces
the challenge's token service URL; ``token_body`` replaces the token service's JSON answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.background_http import BackgroundHTTPServer

SERVICE = "fake-registry"
INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeRegistry:
    """Start with ``with FakeRegistry() as registry:``; images are ``f"{registry.host}/<name>:<tag>"``."""

    users: dict[str, str] = field(default_factory=dict)  # user -> password (a token, e.g. a GitHub PAT)
    private: set[str] = field(default_factory=set)  # repositories only a user may read
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repository, tag) -> manifest
    requests: list[Request] = field(default_factory=list)
    tokens: dict[str, str | None] = field(default_factory=dict)  # token -> user (None: anonymous)
    address: str = "127.0.0.1"  # another loopback address (127.0.0.2) stands for another host
    redirects: dict[str, str] = field(default_factory=dict)  # path -> URL answered with a 307
    realm: str | None = None  # the challenge's token service (default: this server's /token)
    token_body: bytes | None = None  # the token service's answer (default: a JSON object with a new token)
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = BackgroundHTTPServer(_handler_for(self), self.address)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)

    def __enter__(self) -> FakeRegistry:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def host(self) -> str:
        return f"{self.address}:{self.server.server_address[1]}"

    def push(self, repository: str, *tags: str) -> None:
        """What a release workflow's push leaves: an OCI image index per tag."""
        for tag in tags:
            body = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [], "annotations": {"tag": tag}}
            self.manifests[(repository, tag)] = json.dumps(body).encode()

    def delete(self, repository: str, tag: str) -> None:
        self.manifests.pop((repository, tag), None)

    def calls(self, method: str | None = None) -> list[Request]:
        return [r for r in self.requests if method is None or r.method == method]


def _handler_for(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"errors": [{"code": code, "message": message}]}, headers)

        def _record(self) -> tuple[str, dict[str, str]]:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            with registry.lock:
                registry.requests.append(Request(self.command, parts.path, query, dict(self.headers.items())))
            return parts.path, query

        def _token(self, query: dict[str, str]) -> None:
            if "/token" in registry.redirects:
                self._send(307, headers={"Location": registry.redirects["/token"]})
                return
            user: str | None = None
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                if registry.users.get(name) != password:
                    self._error(401, "UNAUTHORIZED", "authentication required")
                    return
                user = name
            if query.get("service") != SERVICE or not query.get("scope", "").startswith("repository:"):
                self._error(400, "UNSUPPORTED", "service and scope required")
                return
            token = secrets.token_hex(16)
            registry.tokens[token] = user
            if registry.token_body is not None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(registry.token_body)))
                self.end_headers()
                self.wfile.write(registry.token_body)
                return
            self._send(200, {"token": token, "access_token": token, "expires_in": 300})

        def _manifest(self, path: str) -> None:
            repository, _, reference = path[len("/v2/") :].rpartition("/manifests/")
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else None
            if token is None or token not in registry.tokens:
                realm = registry.realm or f"http://{registry.host}/token"
                challenge = f'Bearer realm="{realm}",service="{SERVICE}",scope="repository:{repository}:pull"'
                self._error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
                return
            if repository in registry.private and registry.tokens[token] is None:
                self._error(403, "DENIED", "requested access to the resource is denied")
                return
            if path in registry.redirects:
                self._send(307, headers={"Location": registry.redirects[path]})
                return
            manifest = registry.manifests.get((repository, reference))
            accepted = {part.split(";")[0].strip() for part in self.headers.get("Accept", "").split(",")}
            if manifest is None or INDEX not in accepted:
                self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                return
            digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            self.send_response(200)
            self.send_header("Content-Type", INDEX)
            self.send_header("Docker-Content-Digest", digest)
            self.send_header("Content-Length", str(len(manifest)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(manifest)

        def do_GET(self) -> None:
            path, query = self._record()
            if path == "/token":
                self._token(query)
            elif path.startswith("/v2/") and "/manifests/" in path:
                self._manifest(path)
            else:
                self._error(404, "NAME_UNKNOWN", "not found")

        def do_HEAD(self) -> None:
            path, _ = self._record()
            if path.startswith("/v2/") and "/manifests/" in path:
                self._manifest(path)
            else:
                self._error(404, "NAME_UNKNOWN", "not found")

    return Handler
