"""Whether a version's container image exists, asked of its registry before anything is deployed.

The Docker Registry HTTP API v2 (the OCI distribution spec), as ``docker pull`` resolves a reference:
``HEAD /v2/<name>/manifests/<tag>`` accepting the manifest and index media types of OCI and Docker. A registry that
wants a token answers 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; the token service
(GHCR: ``https://ghcr.io/token``, Docker Hub: ``auth.docker.io``) issues a pull token, anonymously or with the
registry's credentials from Docker's ``config.json`` (what ``docker login`` and docker/login-action write; no
credential helpers). Registries on loopback addresses are spoken to over HTTP, as Docker treats 127.0.0.0/8 as
insecure by default; every other over HTTPS.

Only a definite "no such manifest" (404) counts as missing. A registry that cannot be reached or that does not let
this machine read (401/403) leaves the answer open (``exists`` None): the deploy goes on and says so, since the
Docker engine may hold credentials this machine lacks (``docker:registryAuth``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
TIMEOUT = 10.0
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class ImageReference:
    """``registry/repository:tag`` (or ``@sha256:...``), split as Docker splits it."""

    registry: str  # host[:port] as written (docker.io for Docker Hub)
    repository: str  # e.g. saas-ecosystem/app-agents (library/redis on Docker Hub)
    reference: str  # the tag or the digest

    @classmethod
    def parse(cls, image: str) -> ImageReference:
        name, digest = image.split("@", 1) if "@" in image else (image, "")
        tag = ""
        if not digest:
            last = name.rsplit("/", 1)[-1]
            if ":" in last:
                name, tag = name.rsplit(":", 1)
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        return cls(registry, repository, digest or tag or "latest")

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def scheme(self) -> str:
        host = urlsplit(f"//{self.api_host}").hostname or ""
        if host == "localhost":
            return "http"
        try:
            return "http" if ipaddress.ip_address(host).is_loopback else "https"
        except ValueError:
            return "https"

    @property
    def manifest_url(self) -> str:
        return f"{self.scheme}://{self.api_host}/v2/{self.repository}/manifests/{self.reference}"


@dataclass(frozen=True)
class ImageCheck:
    image: str
    exists: bool | None  # None: the registry could not tell (unreachable, or not readable from here)
    detail: str


def docker_credentials(registry: str, config_dir: str | None = None) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from Docker's config.json ``auths`` (``$DOCKER_CONFIG`` or ~/.docker)."""
    folder = Path(config_dir or os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        auths = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io", DOCKER_HUB_API]
    for key in keys:
        entry = auths.get(key) if isinstance(auths, dict) else None
        encoded = entry.get("auth") if isinstance(entry, dict) else None
        if not isinstance(encoded, str):
            continue
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            continue
        if user and password:
            return user, password
    return None


def _basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()


def _head(url: str, authorization: str | None, timeout: float) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": ACCEPT})
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()) if exc.headers else {}


def _token(challenge: str, ref: ImageReference, credentials: tuple[str, str] | None, timeout: float) -> str:
    """A pull token from the Bearer challenge's token service (anonymous without credentials)."""
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.pop("realm", "")
    if not realm.startswith(("https://", "http://")):
        raise ValueError(f"the registry's token service {realm!r} is not an HTTP URL")
    query = {"service": params["service"]} if "service" in params else {}
    query["scope"] = params.get("scope") or f"repository:{ref.repository}:pull"
    request = urllib.request.Request(f"{realm}?{urlencode(query)}")
    if credentials:
        request.add_header("Authorization", _basic(credentials))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.loads(response.read())
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the registry's token service answered without a token")
    return token


def _header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), "")


def check_image(image: str, *, credentials: tuple[str, str] | None = None, timeout: float = TIMEOUT) -> ImageCheck:
    """Whether ``image`` (``registry/repository:tag``) exists in its registry. ``credentials`` default to
    Docker's config.json entry for the registry."""
    ref = ImageReference.parse(image)
    found = credentials or docker_credentials(ref.registry)
    url = ref.manifest_url
    try:
        status, headers = _head(url, None, timeout)
        if status == 401:
            challenge = _header(headers, "WWW-Authenticate")
            if challenge.lower().startswith("bearer"):
                status, headers = _head(url, "Bearer " + _token(challenge, ref, found, timeout), timeout)
            elif challenge.lower().startswith("basic") and found:
                status, headers = _head(url, _basic(found), timeout)
    except urllib.error.HTTPError as exc:  # only the token service raises: _head returns the status it got
        return ImageCheck(
            image,
            None,
            f"registry {ref.registry} refused a pull token (HTTP {exc.code}); check the credentials of "
            f"`docker login {ref.registry}`",
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return ImageCheck(image, None, f"registry {ref.registry} not reachable: {reason}")
    if 200 <= status < 300:
        digest = _header(headers, "Docker-Content-Digest")
        return ImageCheck(image, True, f"{image} exists" + (f" ({digest})" if digest else ""))
    if status == 404:
        return ImageCheck(image, False, f"registry {ref.registry} has no manifest {ref.reference} of {ref.repository}")
    if status in (401, 403):
        login = "with" if found else "without"
        return ImageCheck(
            image,
            None,
            f"registry {ref.registry} does not let this machine read {ref.repository} ({login} credentials, "
            f"HTTP {status}); `docker login {ref.registry}` to check it before deploying",
        )
    return ImageCheck(image, None, f"registry {ref.registry} answered HTTP {status} for {url}")
