"""Integration test of the agent registry against the running workspace."""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def main() -> int:
    status, agents = get(os.environ["AGENT_REGISTRY_URL"])
    assert status == 200 and isinstance(agents, list), agents
    status, health = get(f"{os.environ['ADMIN_APP_URL']}/health")
    assert status == 200 and isinstance(health, dict) and health["status"] == "ok", health
    print(f"app-agents integration ok: {len(agents)} agents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
