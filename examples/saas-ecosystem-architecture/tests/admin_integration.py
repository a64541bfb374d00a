"""Integration test of the admin app against the running workspace: its own API and its neighbours'."""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def main() -> int:
    base = os.environ["ADMIN_APP_URL"]
    status, health = get(f"{base}/health")
    assert status == 200 and isinstance(health, dict) and health["status"] == "ok", health
    status, orgs = get(f"{base}/api/organizations")
    assert status == 200 and isinstance(orgs, list), orgs
    for neighbour in ("AGENT_REGISTRY_URL", "SPEC_SERVICE_URL"):
        status, body = get(os.environ[neighbour])
        assert status == 200 and isinstance(body, list), (neighbour, body)
    print(f"admin-app integration ok: {len(orgs)} organizations, neighbours reachable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
