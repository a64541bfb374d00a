"""Whether a version's container image exists, asked of its registry before anything is deployed.

The Docker Registry HTTP API v2 (the OCI distribution spec), as ``docker pull`` resolves a reference:
``HEAD /v2/<name>/manifests/<tag>`` accepting the manifest and index media types of OCI and Docker. A registry that
wants a token answers 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; the token service
(GHCR: ``https://ghcr.io/token``, Docker Hub: ``auth.docker.io``) issues a pull token, anonymously or with the
registry's credentials from Docker's ``config.json`` (what ``docker login`` and docker/login-action write; no
credential helpers). Registries on loopback addresses are spoken to over HTTP, as Docker treats 127.0.0.0/8 as
insecure by default; every other over HTTPS.

Credentials and tokens go only where they belong, as with Docker's Go client: the token service must be HTTPS
(HTTP only on a loopback address), its request follows no redirect, and a redirect of the manifest request keeps
the Authorization header only on the same scheme, host and port, and is never followed from HTTPS to HTTP.

Only a definite "no such manifest" (404) counts as missing. A registry that cannot be reached, does not answer
HTTP, would need a request refused above or does not let this machine read (401/403) leaves the answer open
(``exists`` None): the deploy goes on and says so, since the Docker engine may hold credentials this machine lacks
(``docker:registryAuth``).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlencode, urlsplit

from infra.workspace.images import DOCKER_HUB, DOCKER_HUB_API, ImageReference, is_loopback

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
TIMEOUT = 10.0
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


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


class NotChecked(Exception):
    """Why the registry could not tell: a request this check does not send or a redirect it does not follow (so
    that the registry's credentials and pull tokens go only where they belong), or a token service's odd answer."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects as Docker's Go client takes them: the Authorization header goes only to the same scheme, host and
    port (a registry may send a pull to blob storage elsewhere, which gets no credentials); never from HTTPS to
    HTTP, never to a scheme other than HTTP(S). ``follow`` False (the token request, which carries the registry's
    credentials): no redirect at all."""

    def __init__(self, follow: bool) -> None:
        super().__init__()
        self.follow = follow

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        refusal = ""
        if not self.follow:
            refusal = "the token service redirects its token request"
        elif new.scheme not in ("http", "https"):
            refusal = "it redirects to a URL that is not HTTP(S)"
        elif old.scheme == "https" and new.scheme == "http":
            refusal = "it redirects from HTTPS to plain HTTP"
        if refusal:
            fp.close()
            raise NotChecked(f"{refusal} ({req.full_url} -> HTTP {code} {newurl}): not followed")
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        if redirected is not None:
            redirected.method = req.get_method()  # a HEAD stays a HEAD
            try:
                same = _origin(req.full_url) == _origin(newurl)
            except ValueError:  # a port that is no number
                same = False
            if not same:
                redirected.remove_header("Authorization")
        return redirected


def _open(request: urllib.request.Request, timeout: float, *, follow: bool) -> http.client.HTTPResponse:
    response: http.client.HTTPResponse = urllib.request.build_opener(_Redirects(follow)).open(request, timeout=timeout)
    return response


def _head(url: str, authorization: str | None, timeout: float) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": ACCEPT})
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with _open(request, timeout, follow=True) as response:
            return response.status, dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()) if exc.headers else {}


def _realm(challenge: dict[str, str]) -> str:
    """The token service's URL: HTTPS, or HTTP on this machine only (credentials and tokens never travel in clear)."""
    realm = challenge.get("realm", "")
    try:
        parts = urlsplit(realm)
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme not in ("http", "https") or not host:
        raise NotChecked(f"its token service {realm!r} is not an HTTP(S) URL: not asked")
    if parts.scheme == "http" and not is_loopback(host):
        raise NotChecked(
            f"its token service {realm} is plain HTTP on another machine: not asked, so neither credentials nor a "
            "pull token travel in clear (a registry's token service is HTTPS)"
        )
    return realm


def _token(challenge: str, ref: ImageReference, credentials: tuple[str, str] | None, timeout: float) -> str:
    """A pull token from the Bearer challenge's token service (anonymous without credentials)."""
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = _realm(params)
    query = {"service": params["service"]} if "service" in params else {}
    query["scope"] = params.get("scope") or f"repository:{ref.repository}:pull"
    request = urllib.request.Request(f"{realm}?{urlencode(query)}")
    if credentials:
        request.add_header("Authorization", _basic(credentials))
    with _open(request, timeout, follow=False) as response:
        text = response.read()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise NotChecked(f'its token service {realm} answered without a token (no JSON object with a "token")')
    return token


def _header(headers: dict[str, str], name: str) -> str:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), "")


def check_image(image: str, *, credentials: tuple[str, str] | None = None, timeout: float = TIMEOUT) -> ImageCheck:
    """Whether ``image`` (``registry/repository:tag``) exists in its registry. ``credentials`` default to
    Docker's config.json entry for the registry."""
    ref = ImageReference.parse(image)
    found = credentials or docker_credentials(ref.registry)
    url = f"the manifest URL of {image}"
    try:
        url = ref.manifest_url
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
    except NotChecked as exc:
        return ImageCheck(image, None, f"registry {ref.registry}: {exc}")
    except http.client.HTTPException as exc:  # not HTTP on that port (BadStatusLine), a URL http.client refuses
        return ImageCheck(image, None, f"registry {ref.registry} did not answer as an HTTP registry at {url}: {exc!r}")
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
