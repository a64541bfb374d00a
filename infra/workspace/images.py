"""Container image names, shared by the layers that name or read images: infra.stack (the images the program runs),
infra.deploy (the registry check before a deploy) and infra.github (the registry a release workflow logs in to),
and where a repo's migrate.command runs: from its image in the stack, or from its checkout on the deployer.

A reference is split as Docker splits it: the first path part is a registry host when it has a dot or a port or is
``localhost`` (else the image is on Docker Hub, ``docker.io``, and a one-part name is in ``library/``); the tag
follows the last ``:`` of the last part, a digest the ``@``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from infra.workspace.model import Workspace
from infra.workspace.rules import is_loopback

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


def service_image(workspace: Workspace, repo: str) -> str:
    """The image repository of a repo's service: ``service.image`` or ghcr.io/<owner>/<name>."""
    service = workspace.repos[repo].service
    if service is not None and service.image:
        return service.image
    return f"ghcr.io/{workspace.repos[repo].github.lower()}"


def image_reference(repository: str, tag: str) -> str:
    """``repository:tag``, or ``repository@sha256:...`` when the tag is a digest."""
    return f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"


def service_image_reference(workspace: Workspace, repo: str, tag: str) -> str:
    """The image a repo's service runs at ``tag``: its :func:`service_image` at that tag (or digest)."""
    return image_reference(service_image(workspace, repo), tag)


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
        """http for a registry on a loopback address (Docker treats 127.0.0.0/8 as insecure by default), else https."""
        return "http" if is_loopback(urlsplit(f"//{self.api_host}").hostname or "") else "https"

    @property
    def manifest_url(self) -> str:
        return f"{self.scheme}://{self.api_host}/v2/{self.repository}/manifests/{self.reference}"


def registry_of(image: str) -> str:
    """The registry host[:port] of an image reference (``docker.io`` when the first part is no host)."""
    return ImageReference.parse(image).registry


def stack_runs_migration(workspace: Workspace, environment: str, repo: str) -> bool:
    """Whether ``environment``'s Pulumi stack runs ``repo``'s migrate.command itself, from the repo's image where
    the database is reachable: a Kubernetes stack in the repo's migration Job (every repo with a command), a
    Docker stack in a one-off migration container (repos with a service image). Otherwise, and in a local
    environment, the deployer runs it from the repo's checkout."""
    spec = workspace.repos[repo]
    env = workspace.environments[environment]
    if spec.migrate is None or not spec.migrate.command or env.runtime != "pulumi":
        return False
    return env.target == "kubernetes" or spec.service is not None
