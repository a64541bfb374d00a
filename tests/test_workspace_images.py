"""Image names shared by the stack (what the program runs), deploy (what the registry is asked) and github (the
registry a release workflow logs in to): one rule in infra.workspace.images for all three."""

from __future__ import annotations

import pytest

from infra.workspace.images import (
    ImageReference,
    image_reference,
    is_loopback,
    registry_of,
    service_image,
    service_image_reference,
)
from infra.workspace.loader import load_workspace
from tests.helpers import ROOT


def test_a_service_image_is_its_image_or_the_repos_ghcr_package_at_a_tag_or_digest() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    assert service_image(ws, "app-agents") == "ghcr.io/saas-ecosystem/app-agents"
    assert image_reference("ghcr.io/a/b", "v1") == "ghcr.io/a/b:v1"
    digest = "sha256:" + "a" * 64
    assert image_reference("ghcr.io/a/b", digest) == f"ghcr.io/a/b@{digest}"
    assert service_image_reference(ws, "app-agents", digest) == f"ghcr.io/saas-ecosystem/app-agents@{digest}"


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("ghcr.io/acme/app", "ghcr.io"),
        ("registry.example.com:5000/team/app:v1", "registry.example.com:5000"),
        ("localhost/app", "localhost"),
        ("127.0.0.1:5000/a/b@sha256:ab", "127.0.0.1:5000"),
        ("acme/app", "docker.io"),  # no host in the first part: Docker Hub
        ("redis", "docker.io"),
        ("redis:7", "docker.io"),
    ],
)
def test_the_registry_of_an_image_is_dockers(image: str, registry: str) -> None:
    assert registry_of(image) == registry == ImageReference.parse(image).registry


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("LOCALHOST", True), ("127.0.0.2", True), ("::1", True), ("10.0.0.7", False)]
    + [("ghcr.io", False), ("localhost.example.com", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
