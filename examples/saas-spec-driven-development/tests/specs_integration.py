"""Integration test of the spec service against the running workspace."""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def main() -> int:
    status, specs = get(os.environ["SPEC_SERVICE_URL"])
    assert status == 200 and isinstance(specs, list), specs
    status, agents = get(os.environ["AGENT_REGISTRY_URL"])
    assert status == 200 and isinstance(agents, list), agents
    print(f"spec-service integration ok: {len(specs)} specifications")
    return 0


if __name__ == "__main__":
    sys.exit(main())
