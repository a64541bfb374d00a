"""Third-party actions used by the generated workflows, pinned to full commit SHAs.

A tag can be moved to other code; a 40-hex commit SHA cannot. Each pin keeps the release it was taken from
as the version comment written beside ``uses:``. The SHAs were taken from public workflows that pin these
releases (and agree with each other); update a pin by replacing both the SHA and its version together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Pin:
    action: str  # owner/repo
    sha: str  # the full commit SHA of the release
    version: str  # the release tag the SHA belongs to, written as a comment

    @property
    def uses(self) -> str:
        return f"{self.action}@{self.sha}"


CHECKOUT = Pin("actions/checkout", "11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2")
SETUP_PYTHON = Pin("actions/setup-python", "a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0")
CACHE = Pin("actions/cache", "5a3ec84eff668545956fd18022155c47e93e2684", "v4.2.3")

# The repos' release workflows (infra.github.repofiles): build and push the image of each commit.
LOGIN = Pin("docker/login-action", "74a5d142397b4f367a81961eba4e8cd7edddf772", "v3.4.0")
SETUP_BUILDX = Pin("docker/setup-buildx-action", "b5ca514318bd6ebac0fb2aedd5d36ec1b5c232a2", "v3.10.0")
BUILD_PUSH = Pin("docker/build-push-action", "263435318d21b8e681c14492fe198d362a7d2c83", "v6.18.0")

# Jobs of `runtime: pulumi` environments install the Pulumi CLI with it (no `command:`: install only).
PULUMI_ACTIONS = Pin("pulumi/actions", "8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0")

PINS: dict[str, Pin] = {
    pin.action: pin for pin in (CHECKOUT, SETUP_PYTHON, CACHE, LOGIN, SETUP_BUILDX, BUILD_PUSH, PULUMI_ACTIONS)
}


def check_pins() -> None:
    """Every pin is a full lowercase commit SHA with a version tag (guards hand edits of this module)."""
    for pin in PINS.values():
        if not SHA.fullmatch(pin.sha):
            raise ValueError(f"{pin.action}: {pin.sha!r} is not a 40-hex commit SHA")
        if not re.fullmatch(r"v\d+(\.\d+)*", pin.version):
            raise ValueError(f"{pin.action}: version comment {pin.version!r} is not a release tag like v4.2.2")
