"""`ws deploy` on a `target: kubernetes` environment, through the existing pulumi runtime (issue 15).

The example workspace's `dev` becomes a Kubernetes environment, and one repo migrates by `migrate.command`, so
its migration is a Job. The engine is the fake stack of tests/test_deploy_pulumi.py with the URNs the real
program declares for that environment (built under pulumi.runtime.set_mocks): `up` targeted at a repo reaches
its Job and Deployment; an update that reaches a Job at a release it has not run runs the repo's migrate.command
(as the new Job would), and an image whose migration Job fails makes the update fail the way Pulumi's await
logic does. Everything else is
real, as in the Docker tests: the ledger and migrations on PostgreSQL, Redis, HTTP health probes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from infra.deploy import ledger
from infra.deploy.pipeline import Pipeline
from infra.deploy.pulumi_runtime import PulumiRuntime, migration_key, tag_key
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.test_deploy_pipeline import REPOS, write_example_workspace
from tests.test_deploy_pulumi import FakeService, FakeStack, fake_pipeline, names_of
from tests.test_kubernetes import run_program

BAD_MIGRATION = "bad-migration"  # an image whose migration Job fails
JOB_REPO = "saas-spec-driven-development"  # migrates by migrate.command: a Kubernetes Job
RUNS = "migration-runs.log"  # one line per run of JOB_REPO's migrate.command (where it ran)


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
        f"with open({str(root / RUNS)!r}, 'a') as runs:\n"
        "    runs.write(os.getcwd() + '\\n')\n"
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
    """The fake engine with the URNs of the Kubernetes program. An update that reaches a repo's migration Job at a
    release it has not run yet (the program's Job image: migration_tag, else image_tag; a new tag is a new Job)
    runs the Job: the repo's migrate.command from its image, faked as the command in the repo's folder with the
    repo's DATABASE_URL; a Job at an unchanged release is left alone, as Pulumi leaves an unchanged Job. A failing
    migration Job fails the update."""

    def __init__(self, loaded: LoadedWorkspace, services: dict[str, FakeService], database: str, cache: str):
        super().__init__(services, database, cache)
        self.loaded = loaded
        run = run_program(loaded, "dev")
        self.urns = [resource.urn for resource in run.resources]
        self.kinds = {resource.urn: resource.inputs.get("kind", resource.type) for resource in run.resources}
        self.failed_jobs: list[str] = []
        self.job_releases: dict[str, str] = {}  # repo -> the release its Job last ran

    def job_release(self, repo: str) -> str | None:
        return self.config.get(migration_key(repo)) or self.config.get(tag_key(repo))

    def up(
        self,
        target: list[str] | None = None,
        target_dependents: bool = False,
        on_output: Any = None,
        replace: list[str] | None = None,
    ) -> Any:
        names = {urn.rsplit("::", 1)[-1] for urn in target or []}
        for repo in self.services:
            release = self.job_release(repo)
            if f"{repo}-migrate" not in names or release is None or self.job_releases.get(repo) == release:
                continue
            if release != BAD_MIGRATION:
                command = self.loaded.model.repos[repo].migrate
                if command is not None and command.command:
                    env = {**os.environ, "DATABASE_URL": self.database}
                    subprocess.run(command.command, shell=True, cwd=self.loaded.repo_dir(repo), env=env, check=True)
                self.job_releases[repo] = release
            else:
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
    yield from fake_pipeline(
        loaded, lambda services: ClusterStack(loaded, services, fresh_database, redis_url), fresh_database, monkeypatch
    )


def test_a_deploy_runs_stage_by_stage_each_repo_with_its_migration_job(
    cluster_env: tuple[Pipeline, ClusterStack], tmp_path: Path
) -> None:
    """The migrate step runs JOB_REPO's migration Job (an update targeted at it and the env it reads) before the
    validation; its deploy update then reaches the unchanged Job, so the migration runs once, in the cluster, and
    never from the checkout."""
    pipeline, stack = cluster_env
    first = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert first.status == "succeeded", first.error
    assert {s.version for s in stack.services.values()} == {"1.0.0"}
    infra, migration, *deploys = [names_of(up) for up in stack.ups]
    assert {"network-namespace", "network-default-deny", "postgres-cluster", "postgres-roles", "redis"} <= infra
    assert not any(name.startswith(REPOS) for name in infra)
    assert migration == {
        f"{JOB_REPO}-migrate",
        f"{JOB_REPO}-migrate-network",
        f"{JOB_REPO}-env",
        f"{JOB_REPO}-secret-env",
    }
    assert stack.config[migration_key(JOB_REPO)] == "1.0.0"
    migrated = next(s for s in first.steps if s.step == "migrate" and s.repo == JOB_REPO)
    assert migrated.ok and f"migration Job {JOB_REPO}-migrate (ghcr.io/" in migrated.detail
    order = [next(repo for repo in REPOS if repo in names) for names in deploys]
    assert order[0] == "saas-ecosystem-architecture" and set(order[1:]) == set(REPOS[1:])  # stage by stage
    job_up = next(names for names in deploys if JOB_REPO in names)
    assert {JOB_REPO, f"{JOB_REPO}-migrate", f"{JOB_REPO}-service", f"{JOB_REPO}-env"} <= job_up
    kinds = {stack.kinds[urn] for urn in stack.ups[deploys.index(job_up) + 2] or []}
    assert {"Job", "Deployment", "Service", "ConfigMap", "Secret", "NetworkPolicy"} <= kinds
    # once: by the Job (the fake runs it in the repo's folder), not again in the deploy update, not from the checkout
    assert (tmp_path / RUNS).read_text().splitlines() == [str(pipeline.loaded.repo_dir(JOB_REPO))]
    # a later deploy of the same release runs nothing again; a new release runs its migration once
    again = pipeline.run(None, {JOB_REPO: "1.1.0"})
    assert again.status == "succeeded", again.error
    assert len((tmp_path / RUNS).read_text().splitlines()) == 2


def test_a_failing_migration_job_fails_the_deploy_and_rolls_the_stage_back(
    cluster_env: tuple[Pipeline, ClusterStack],
) -> None:
    pipeline, stack = cluster_env
    first = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert first.status == "succeeded", first.error

    second = pipeline.run(None, {"saas-ecosystem-architecture": "1.1.0", JOB_REPO: BAD_MIGRATION})
    assert second.status == "rolled_back", second.error
    assert stack.failed_jobs == [JOB_REPO]
    # the migrate step fails before the validation and before any Deployment changes
    failed = [s for s in second.steps if not s.ok]
    assert [(s.step, s.repo) for s in failed] == [("migrate", JOB_REPO)]
    assert "Job has failed" in failed[0].detail and "kubectl logs" in failed[0].detail
    assert not [s for s in second.steps if s.step in ("validate", "deploy", "integration")]
    # every service runs the previous release, and the stack config says so
    assert {repo: s.version for repo, s in stack.services.items()} == {repo: "1.0.0" for repo in REPOS}
    assert stack.config[tag_key("saas-ecosystem-architecture")] == "1.0.0"
    assert stack.config[tag_key(JOB_REPO)] == "1.0.0"
    with ledger.connect(pipeline.runtime.ledger_url()) as conn:
        row = ledger.deployment(conn, second.deployment_id or 0)
        assert row is not None and row.status == "rolled_back"
        assert row.versions_before[JOB_REPO] == "1.0.0"


def test_migration_job_urns_are_the_programs_even_before_the_state_has_them(tmp_path: Path) -> None:
    """A first migration targets objects the stack's state does not hold yet: the URNs of the Job, its
    NetworkPolicy and the ConfigMap and Secret it reads its env from, built from Pulumi.yaml's project and the stack,
    are exactly the ones the program registers; those already in the state are taken from it."""
    from infra.deploy.servers import free_port
    from tests.test_stack_program import PROJECT

    loaded = kubernetes_example(tmp_path, {repo: free_port() for repo in REPOS})
    (loaded.root / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n")
    run = run_program(loaded, "dev")
    # the mock monitor qualifies a top-level type with the root stack's (pulumi:pulumi:Stack$); the engine does not
    names = {f"{JOB_REPO}-migrate", f"{JOB_REPO}-migrate-network", f"{JOB_REPO}-env", f"{JOB_REPO}-secret-env"}
    registered = sorted(r.urn.replace("::pulumi:pulumi:Stack$", "::") for r in run.resources if r.name in names)
    assert len(registered) == 4
    empty = FakeStack({}, "", "")
    empty.urns = []
    assert sorted(PulumiRuntime(loaded, "dev", stack_factory=lambda: empty).kubernetes_migration_urns(JOB_REPO)) == (
        registered
    )
    half = FakeStack({}, "", "")
    half.urns = [urn for urn in registered if urn.endswith("-env")]  # a stack whose Job was never declared
    assert sorted(PulumiRuntime(loaded, "dev", stack_factory=lambda: half).kubernetes_migration_urns(JOB_REPO)) == (
        registered
    )
