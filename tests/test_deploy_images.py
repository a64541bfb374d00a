"""Whether a version's image exists, asked of a registry speaking the Docker Registry HTTP API v2 with GHCR's token
flow (tests/fake_registry.py: no registry can be reached from here)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.deploy.images import MANIFEST_TYPES, ImageReference, check_image, docker_credentials
from infra.deploy.servers import free_port
from tests.fake_registry import FakeRegistry


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no credentials of this machine's
    with FakeRegistry(users={"release-bot": "ghp_pat"}, private={"acme/private-app"}) as fake:
        fake.push("acme/app", "1a2b3c4")
        fake.push("acme/private-app", "1a2b3c4")
        yield fake


def test_an_existing_tag_is_found_through_the_token_flow_with_the_manifest_types(registry: FakeRegistry) -> None:
    found = check_image(f"{registry.host}/acme/app:1a2b3c4")
    assert found.exists is True and "sha256:" in found.detail
    first, token, second = registry.requests
    assert (first.method, first.path, "Authorization" in first.headers) == (
        "HEAD",
        "/v2/acme/app/manifests/1a2b3c4",
        False,
    )
    assert (token.method, token.path) == ("GET", "/token")
    assert token.query == {"service": "fake-registry", "scope": "repository:acme/app:pull"}
    assert "Authorization" not in token.headers  # a public image: an anonymous token
    assert second.method == "HEAD" and second.headers["Authorization"].startswith("Bearer ")
    assert set(MANIFEST_TYPES) <= {part.strip() for part in second.headers["Accept"].split(",")}


def test_a_tag_never_pushed_is_missing(registry: FakeRegistry) -> None:
    found = check_image(f"{registry.host}/acme/app:deadbee")
    assert found.exists is False
    assert found.detail == f"registry {registry.host} has no manifest deadbee of acme/app"


def test_a_private_image_needs_the_docker_login_credentials(registry: FakeRegistry, tmp_path: Path) -> None:
    image = f"{registry.host}/acme/private-app:1a2b3c4"
    anonymous = check_image(image)
    assert anonymous.exists is None  # not readable from here: cannot tell, never reported missing
    assert "does not let this machine read acme/private-app (without credentials, HTTP 403)" in anonymous.detail
    assert f"`docker login {registry.host}`" in anonymous.detail
    # what `docker login` / docker/login-action write
    (tmp_path / "docker-config").mkdir()
    auth = base64.b64encode(b"release-bot:ghp_pat").decode()
    (tmp_path / "docker-config" / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    assert docker_credentials(registry.host) == ("release-bot", "ghp_pat")
    assert check_image(image).exists is True
    token = registry.calls("GET")[-1]
    assert token.headers["Authorization"] == "Basic " + auth
    assert check_image(f"{registry.host}/acme/private-app:0000000").exists is False
    wrong = check_image(image, credentials=("release-bot", "wrong"))
    assert wrong.exists is None and "refused a pull token (HTTP 401)" in wrong.detail


def test_an_unreachable_registry_cannot_tell() -> None:
    found = check_image(f"127.0.0.1:{free_port()}/acme/app:1a2b3c4", timeout=2)
    assert found.exists is None and "not reachable" in found.detail


@pytest.mark.parametrize(
    ("image", "registry", "repository", "reference", "url"),
    [
        ("ghcr.io/acme/app:1a2b3c4", "ghcr.io", "acme/app", "1a2b3c4", "https://ghcr.io/v2/acme/app/manifests/1a2b3c4"),
        ("redis:7", "docker.io", "library/redis", "7", "https://registry-1.docker.io/v2/library/redis/manifests/7"),
        ("acme/app", "docker.io", "acme/app", "latest", "https://registry-1.docker.io/v2/acme/app/manifests/latest"),
        (
            "localhost:5000/a/b@sha256:ab",
            "localhost:5000",
            "a/b",
            "sha256:ab",
            "http://localhost:5000/v2/a/b/manifests/sha256:ab",
        ),
        ("10.0.0.7:5000/a/b:v1", "10.0.0.7:5000", "a/b", "v1", "https://10.0.0.7:5000/v2/a/b/manifests/v1"),
    ],
)
def test_references_split_as_docker_splits_them(
    image: str, registry: str, repository: str, reference: str, url: str
) -> None:
    ref = ImageReference.parse(image)
    assert (ref.registry, ref.repository, ref.reference, ref.manifest_url) == (registry, repository, reference, url)
