"""`ws deploy` on a `target: kubernetes` environment, through the existing pulumi runtime (issue 15).

The example workspace's `dev` becomes a Kubernetes environment, and one repo migrates by `migrate.command`, so
its migration is a Job. The engine is the fake stack of tests/test_deploy_pulumi.py with the URNs the real
program declares for that environment (built under pulumi.runtime.set_mocks): `up` targeted at a repo reaches
its Job and Deployment, and an image whose migration Job fails makes the update fail the way Pulumi's await
logic does (the Deployment, which waits for the Job, keeps running the previous release). Everything else is
real, as in the Docker tests: the ledger and migrations on PostgreSQL, Redis, HTTP health probes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from infra.deploy import ledger
from infra.deploy.pipeline import Pipeline
from infra.deploy.pulumi_runtime import PulumiRuntime, tag_key
from infra.health_checks import schema_checks
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.test_deploy_pipeline import REPOS, write_example_workspace
from tests.test_deploy_pulumi import FakeService, FakeStack
from tests.test_kubernetes import run_program

BAD_MIGRATION = "bad-migration"  # an image whose migration Job fails
JOB_REPO = "saas-spec-driven-development"  # migrates by migrate.command: a Kubernetes Job


def kubernetes_example(root: Path, ports: dict[str, int]) -> LoadedWorkspace:
    """The example workspace with `dev` on Kubernetes; JOB_REPO's migrate.command applies its Prisma migrations
    (ws's applier, run as a command so the Pulumi program declares a Job for it)."""
    path = write_example_workspace(root, "example_ecosystem", ports, start_period=0.3)
    text = path.read_text()
    assert text.count("  dev:\n    runtime: pulumi\n") == 1
    text = text.replace("  dev:\n    runtime: pulumi\n", "  dev:\n    runtime: pulumi\n    target: kubernetes\n")
    script = root / "migrate_specs.py"
    script.write_text(
        "import os, pathlib\n"
        "from infra.deploy.migrations import apply\n"
        "from infra.workspace.loader import load_workspace\n"
        f"apply(os.environ['DATABASE_URL'], load_workspace(pathlib.Path({str(path)!r})), {JOB_REPO!r})\n"
    )
    block = text.split(f"  {JOB_REPO}:\n", 1)[1]
    assert "    migrate:\n      builtin: true\n" in block
    block = block.replace(
        "    migrate:\n      builtin: true\n", f"    migrate:\n      command: {sys.executable} {script}\n", 1
    )
    path.write_text(text.split(f"  {JOB_REPO}:\n", 1)[0] + f"  {JOB_REPO}:\n" + block)
    return load_workspace(path)


class ClusterStack(FakeStack):
    """The fake engine with the URNs of the Kubernetes program; a failing migration Job fails the update."""

    def __init__(self, loaded: LoadedWorkspace, services: dict[str, FakeService], database: str, cache: str):
        super().__init__(services, database, cache)
        run = run_program(loaded, "dev")
        self.urns = [resource.urn for resource in run.resources]
        self.kinds = {resource.urn: resource.inputs.get("kind", resource.type) for resource in run.resources}
        self.failed_jobs: list[str] = []

    def up(
        self,
        target: list[str] | None = None,
        target_dependents: bool = False,
        on_output: Any = None,
        replace: list[str] | None = None,
    ) -> Any:
        names = {urn.rsplit("::", 1)[-1] for urn in target or []}
        for repo in self.services:
            if f"{repo}-migrate" in names and self.config.get(tag_key(repo)) == BAD_MIGRATION:
                self.ups.append(target)
                self.failed_jobs.append(repo)
                # what the Automation API raises when `pulumi up` fails: the Job failed, its Deployment waited
                raise auto.CommandError(
                    auto.CommandResult(
                        stdout="",
                        stderr=f"kubernetes:batch/v1:Job ({repo}-migrate) error: Job has failed: BackoffLimitExceeded",
                        code=255,
                    )
                )
        return super().up(target, target_dependents, on_output, replace)


@pytest.fixture
def cluster_env(
    tmp_path: Path, fresh_database: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Pipeline, ClusterStack]]:
    from infra.deploy.servers import free_port

    loaded = kubernetes_example(tmp_path, {repo: free_port() for repo in REPOS})
    monkeypatch.setenv("WS_LEDGER_URL", fresh_database)
    for repo in REPOS:
        monkeypatch.setenv(f"WS_DB_PASSWORD_{repo.upper().replace('-', '_')}", "not-used-by-the-fakes")
    monkeypatch.setenv("WS_CACHE_PASSWORD", "not-used-by-the-fakes")
    services = {repo: FakeService() for repo in REPOS}
    stack = ClusterStack(loaded, services, fresh_database, redis_url)
    runtime = PulumiRuntime(loaded, "dev", stack_factory=lambda: stack)
    yield Pipeline(loaded, "dev", schema_checks=schema_checks, runtime=runtime), stack
    for service in services.values():
        service.server.shutdown()


def targeted(stack: ClusterStack, up: list[str] | None) -> set[str]:
    return {urn.rsplit("::", 1)[-1] for urn in up or []}


def test_a_deploy_runs_stage_by_stage_each_repo_with_its_migration_job(
    cluster_env: tuple[Pipeline, ClusterStack],
) -> None:
    pipeline, stack = cluster_env
    first = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert first.status == "succeeded", first.error
    assert {s.version for s in stack.services.values()} == {"1.0.0"}
    infra, *deploys = [targeted(stack, up) for up in stack.ups]
    assert {"network-namespace", "network-default-deny", "postgres-cluster", "postgres-roles", "redis"} <= infra
    assert not any(name.startswith(REPOS) for name in infra)
    order = [next(repo for repo in REPOS if repo in names) for names in deploys]
    assert order[0] == "saas-ecosystem-architecture" and set(order[1:]) == set(REPOS[1:])  # stage by stage
    job_up = next(names for names in deploys if JOB_REPO in names)
    assert {JOB_REPO, f"{JOB_REPO}-migrate", f"{JOB_REPO}-service", f"{JOB_REPO}-env"} <= job_up
    kinds = {stack.kinds[urn] for urn in stack.ups[deploys.index(job_up) + 1] or []}
    assert {"Job", "Deployment", "Service", "ConfigMap", "Secret", "NetworkPolicy"} <= kinds


def test_a_failing_migration_job_fails_the_deploy_and_rolls_the_stage_back(
    cluster_env: tuple[Pipeline, ClusterStack],
) -> None:
    pipeline, stack = cluster_env
    first = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert first.status == "succeeded", first.error

    second = pipeline.run(None, {"saas-ecosystem-architecture": "1.1.0", JOB_REPO: BAD_MIGRATION})
    assert second.status == "rolled_back", second.error
    assert stack.failed_jobs == [JOB_REPO]
    failed = [s for s in second.steps if s.repo == JOB_REPO and not s.ok]
    assert failed and "Job has failed" in failed[0].detail
    rolled = [s.repo for s in second.steps if s.step == "rollback"]
    assert "saas-ecosystem-architecture" in rolled and all(s.ok for s in second.steps if s.step == "rollback")
    # every service runs the previous release again, and the stack config says so
    assert {repo: s.version for repo, s in stack.services.items()} == {repo: "1.0.0" for repo in REPOS}
    assert stack.config[tag_key("saas-ecosystem-architecture")] == "1.0.0"
    assert stack.config[tag_key(JOB_REPO)] == "1.0.0"
    with ledger.connect(pipeline.runtime.ledger_url()) as conn:
        row = ledger.deployment(conn, second.deployment_id or 0)
        assert row is not None and row.status == "rolled_back"
        assert row.versions_before[JOB_REPO] == "1.0.0"
