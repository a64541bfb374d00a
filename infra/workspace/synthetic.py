"""Valid workspace.yaml texts of any size, for the tests and scripts/bench_workspace.py."""

from __future__ import annotations


def chain_workspace(repos: int, *, padding: int = 0) -> str:
    """A valid workspace of ``repos`` repos whose depends_on chain runs in sorted order (repo-00002 on
    repo-00001, ...), each with a service, a schema and env; ``padding`` adds that many description
    characters to every repo, to reach a file size.
    """
    lines = [
        "version: 1",
        "name: synthetic",
        "github:",
        "  owner: acme",
        "environments:",
        "  local:",
        "    runtime: local",
        "  prod:",
        "    runtime: pulumi",
        "    protected: true",
        "database:",
        "  name: synthetic",
        "env:",
        "  LOG_LEVEL: info",
        "repos:",
    ]
    for index in range(1, repos + 1):
        name = f"repo-{index:05d}"
        lines += [
            f"  {name}:",
            f"    github: acme/{name}",
            f"    path: {name}",
            f"    role: {'primary' if index == 1 else 'secondary'}",
            f"    description: {'x' * padding or 'a repo'}",
        ]
        if index > 1:
            lines.append(f"    depends_on: [repo-{index - 1:05d}]")
        lines += [
            "    schema:",
            "      prisma: prisma/schema.prisma",
            f"      namespace: ns_{index:05d}",
        ]
        lines += [
            "    service:",
            f"      port: {10000 + index}",
            "    env:",
            "      DATABASE_URL: ${database.url}",
            f"      FEATURE_{index}: 'on'",
        ]
    return "\n".join(lines) + "\n"


def fleet_repos(repos: int) -> str:
    """The ``repos:`` block of a fleet of ``repos`` repos (r000, r001, ...) in chains of five, each depending on
    the one before; every repo a service with 2..4 replicas and a pool of 5, and a migration command. For the
    Kubernetes tests and scripts/bench_kubernetes.py, which put their own environments above it.
    """
    lines = ["repos:\n"]
    for index in range(repos):
        name = f"r{index:03d}"
        lines.append(f"  {name}:\n    github: fleet-org/{name}\n    role: {'primary' if index == 0 else 'secondary'}\n")
        if index % 5:
            lines.append(f"    depends_on: [r{index - 1:03d}]\n")
        lines.append(f"    service: {{port: {3000 + index}, replicas: {{min: 2, max: 4}}, pool_size: 5}}\n")
        lines.append("    migrate: {command: ./migrate}\n")
    return "".join(lines)
