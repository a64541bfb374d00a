"""The pulumi runtime through its interface, with a fake stack object in place of pulumi.automation.Stack.

The Pulumi CLI and engine cannot run here, so `FakeStack` has the Stack methods the runtime uses (get/set/
remove_config, up, preview, outputs, export_stack) and plays the engine: `up` on a service's URNs makes that
service (a real HTTP server on 127.0.0.1) run the image tag from the stack config. Everything else is real:
the ledger and migrations on PostgreSQL, Redis, health probes over HTTP, the example integration tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import psycopg
import pytest
from pulumi import automation as auto

from infra.deploy import ledger
from infra.deploy.ledger import Trigger
from infra.deploy.pipeline import Pipeline
from infra.deploy.plan import StepKind
from infra.deploy.pulumi_runtime import PulumiRuntime, enabled_key, migration_key, tag_key
from infra.errors import CheckFailed, UsageError
from infra.health_checks import schema_checks
from infra.stack.stackfiles import default_config
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.background_http import BackgroundHTTPServer
from tests.fake_registry import FakeRegistry
from tests.test_deploy_pipeline import REPOS, write_example_workspace
from tests.test_stack_program import run_program

BAD_TAG = "broken"


class FakeService:
    """A real HTTP server standing for a container: /health reports the running tag (503 for BAD_TAG)."""

    def __init__(self) -> None:
        self.version = "none"
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body: Any
                if self.path == "/health":
                    ok = service.version != BAD_TAG
                    status, body = (
                        (200 if ok else 503),
                        {"status": "ok" if ok else "unhealthy", "version": service.version},
                    )
                else:
                    status, body = 200, []
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = BackgroundHTTPServer(Handler).start()
        self.url = f"http://127.0.0.1:{self.server.port}"


class FakeStack:
    def __init__(self, services: dict[str, FakeService], database: str, cache: str) -> None:
        self.services = services
        self.database = database
        self.cache = cache
        self.config: dict[str, str] = {}
        self.ups: list[list[str] | None] = []
        self.with_dependents: list[bool] = []  # target_dependents of each up
        self.updating = False
        self.overlapping_updates = 0
        self.previews = 0
        base = "urn:pulumi:dev::example::"
        self.urns = [f"{base}ws:stack:Network::network", f"{base}ws:stack:Database::postgres"]
        self.urns += [f"{base}ws:stack:Database$docker:index/container:Container::postgres-container"]
        self.urns += [f"{base}ws:stack:Cache::redis"]
        for repo in services:
            self.urns += [f"{base}ws:stack:Service::{repo}"]
            self.urns += [f"{base}ws:stack:Service$docker:index/container:Container::{repo}-container"]

    def get_config(self, key: str, path: bool = False) -> auto.ConfigValue:
        assert path
        if key not in self.config:
            # what the Automation API raises when `pulumi config get` exits non-zero
            raise auto.CommandError(
                auto.CommandResult(stdout="", stderr=f"configuration key '{key}' not found", code=255)
            )
        return auto.ConfigValue(value=self.config[key])

    def set_config(self, key: str, value: auto.ConfigValue, path: bool = False) -> None:
        assert path
        self.config[key] = value.value

    def remove_config(self, key: str, path: bool = False) -> None:
        self.config.pop(key, None)

    def export_stack(self) -> Any:
        return SimpleNamespace(deployment={"resources": [{"urn": urn} for urn in self.urns]})

    def up(
        self,
        target: list[str] | None = None,
        target_dependents: bool = False,
        on_output: Any = None,
        replace: list[str] | None = None,
    ) -> Any:
        if self.updating:  # the real engine refuses: "the stack is currently locked by 1 lock(s)"
            self.overlapping_updates += 1
        self.updating = True
        time.sleep(0.05)  # an update takes a while: parallel callers would overlap here
        self.updating = False
        self.ups.append(target)
        self.with_dependents.append(target_dependents)
        for repo, service in self.services.items():
            if target and any(urn.rsplit("::", 1)[-1] in (repo, f"{repo}-container") for urn in target):
                # the program declares no container for a disabled service: the update deletes it
                service.version = "none" if not self.enabled(repo) else self.config.get(tag_key(repo), "latest")
        return SimpleNamespace(
            summary=SimpleNamespace(result="succeeded", resource_changes={"update": len(target or [])})
        )

    def preview(self, on_output: Any = None) -> Any:
        self.previews += 1
        self.previewed_config = dict(self.config)
        return SimpleNamespace(change_summary={"update": 2})

    def enabled(self, repo: str) -> bool:
        return self.config.get(enabled_key(repo), "true") != "false"

    def outputs(self) -> dict[str, auto.OutputValue]:
        urls = {repo: service.url for repo, service in self.services.items() if self.enabled(repo)}
        return {
            "service_urls": auto.OutputValue(urls, False),
            "database_superuser_url": auto.OutputValue(self.database, True),
            "database_urls": auto.OutputValue({repo: self.database for repo in self.services}, True),
            "cache_url": auto.OutputValue(self.cache, True),
        }


BAD_MIGRATION = "bad-migration"  # a release whose migration fails
RELEASED = (
    "latest",
    "1.0.0",
    "1.1.0",
    "1.4.2",
    "2.0.0",
    BAD_TAG,
    BAD_MIGRATION,
)  # what the repos' release workflows pushed


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    """The registry the example's images live in: its repos' images with the RELEASED tags."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    with FakeRegistry() as fake:
        for name in ("admin-app", "app-agents", "spec-service"):
            fake.push(f"example-ecosystem/{name}", *RELEASED)
        yield fake


def in_registry(path: Path, registry: FakeRegistry) -> Path:
    """The workspace at ``path`` with its images in ``registry`` instead of ghcr.io."""
    text = path.read_text()
    assert text.count("image: ghcr.io/example-ecosystem/") == 3
    path.write_text(text.replace("image: ghcr.io/example-ecosystem/", f"image: {registry.host}/example-ecosystem/"))
    return path


@pytest.fixture
def stack_env(
    tmp_path: Path, fresh_database: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, registry: FakeRegistry
) -> Iterator[tuple[Pipeline, FakeStack]]:
    ports = {repo: 4100 + i for i, repo in enumerate(REPOS)}
    workspace = write_example_workspace(tmp_path, "example_ecosystem", ports, start_period=0.3)
    loaded = load_workspace(in_registry(workspace, registry))
    yield from fake_pipeline(
        loaded, lambda services: FakeStack(services, fresh_database, redis_url), fresh_database, monkeypatch
    )


S = TypeVar("S", bound=FakeStack)


def fake_pipeline(
    loaded: LoadedWorkspace,
    make_stack: Callable[[dict[str, FakeService]], S],
    ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Pipeline, S]]:
    """A Pipeline on `dev` whose Pulumi runtime drives the fake stack ``make_stack`` builds over fake services;
    the services stop afterwards."""
    monkeypatch.setenv("WS_LEDGER_URL", ledger_url)
    for repo in REPOS:  # the container env's secret references, as CI secrets would provide them
        monkeypatch.setenv(f"WS_DB_PASSWORD_{repo.upper().replace('-', '_')}", "not-used-by-the-fakes")
    monkeypatch.setenv("WS_CACHE_PASSWORD", "not-used-by-the-fakes")
    services = {repo: FakeService() for repo in REPOS}
    stack = make_stack(services)
    runtime = PulumiRuntime(loaded, "dev", stack_factory=lambda: stack)
    yield Pipeline(loaded, "dev", schema_checks=schema_checks, runtime=runtime), stack
    for service in services.values():
        service.server.shutdown()


def test_runtime_sets_image_tags_and_targets_one_repo(stack_env: tuple[Pipeline, FakeStack]) -> None:
    pipeline, stack = stack_env
    runtime = pipeline.runtime
    assert isinstance(runtime, PulumiRuntime)
    infra = runtime.provision()
    assert [urn.rsplit("::", 1)[-1] for urn in stack.ups[-1] or []] == [
        "network",
        "postgres",
        "postgres-container",
        "redis",
    ]
    assert infra.cache_url == stack.cache
    assert runtime.current_version("app-agents") is None and runtime.default_version("app-agents") == "latest"
    detail = runtime.deploy("app-agents", "1.4.2")
    assert stack.config == {'ws:services["app-agents"].image_tag': "1.4.2"}
    assert [urn.rsplit("::", 1)[-1] for urn in stack.ups[-1] or []] == ["app-agents", "app-agents-container"]
    assert "app-agents=1.4.2" in detail and runtime.current_version("app-agents") == "1.4.2"
    assert stack.services["app-agents"].version == "1.4.2"
    assert runtime.endpoint("app-agents") == stack.services["app-agents"].url
    env = runtime.command_env("saas-spec-driven-development", infra)
    assert env["AGENT_REGISTRY_URL"] == stack.services["app-agents"].url + "/api/agents"  # published, not internal
    assert env["REDIS_URL"] == stack.cache
    # a dry run previews with the planned tags and leaves the stack config as it was
    plan = pipeline.plan(None, {"app-agents": "2.0.0"}, preview=True)
    assert plan.preview == "update 2" and stack.previews == 1
    assert stack.config == {'ws:services["app-agents"].image_tag': "1.4.2"}


def test_pipeline_on_a_pulumi_stack_deploys_then_rolls_back_a_bad_tag(stack_env: tuple[Pipeline, FakeStack]) -> None:
    pipeline, stack = stack_env
    first = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert first.status == "succeeded", first.error
    assert {s.version for s in stack.services.values()} == {"1.0.0"}

    assert stack.overlapping_updates == 0  # stage 2's two repos deployed in parallel threads, one update at a time

    second = pipeline.run(None, {"saas-ecosystem-architecture": "1.1.0", "app-agents": BAD_TAG})
    assert second.status == "rolled_back"
    assert [s.repo for s in second.steps if s.step == "rollback"] == ["app-agents", "saas-ecosystem-architecture"]
    assert {repo: s.version for repo, s in stack.services.items()} == {repo: "1.0.0" for repo in REPOS}
    assert stack.config[tag_key("app-agents")] == "1.0.0"
    with ledger.connect(pipeline.runtime.ledger_url()) as conn:
        row = ledger.deployment(conn, second.deployment_id or 0)
        assert row is not None and row.status == "rolled_back" and row.environment == "dev"
        assert row.versions_before["app-agents"] == "1.0.0"
    with psycopg.connect(stack.database) as conn:  # the migrate step ran with the built-in applier
        assert conn.execute("SELECT count(*) FROM ecosystem._prisma_migrations").fetchone() == (2,)


def test_rolling_back_a_first_deployment_stops_the_service(stack_env: tuple[Pipeline, FakeStack]) -> None:
    """A repo deployed for the first time with a bad tag is rolled back to "not deployed": the stack setting
    disables its container and an update targeted at it deletes it; the next deploy brings it back."""
    pipeline, stack = stack_env
    first = pipeline.run(None, {"saas-ecosystem-architecture": "1.0.0", "app-agents": BAD_TAG, REPOS[2]: "1.0.0"})
    assert first.status == "rolled_back", first.error
    rollback = {s.repo: s for s in first.steps if s.step == "rollback"}
    assert rollback["app-agents"].ok and "was not running before: stopped" in rollback["app-agents"].detail
    assert first.steps[-1].step == "health" and first.steps[-1].ok, first.steps[-1].detail
    # every repo this first deployment started is stopped again, each by an update targeted at its resources
    assert set(rollback) == set(REPOS) and all(r.ok for r in rollback.values())
    assert {stack.config[enabled_key(repo)] for repo in REPOS} == {"false"}
    assert {s.version for s in stack.services.values()} == {"none"}
    stopped_targets = [{urn.rsplit("::", 1)[-1] for urn in up or []} for up in stack.ups[-3:]]
    assert sorted(sorted(t) for t in stopped_targets) == sorted(sorted({r, f"{r}-container"}) for r in REPOS)
    assert stack.with_dependents[-3:] == [True] * 3  # a container still depending on the deleted one follows
    runtime = pipeline.runtime
    assert all(runtime.current_version(r) is None and runtime.endpoint(r) is None for r in REPOS)
    # a dry run previews the stopped services enabled again with the planned tags, then restores the settings
    stopped = dict(stack.config)
    assert pipeline.plan(None, {"app-agents": "2.0.0"}, preview=True).preview == "update 2"
    assert stack.previewed_config[tag_key("app-agents")] == "2.0.0"
    assert stack.previewed_config[enabled_key("app-agents")] == "true"
    assert stack.config == stopped and stack.config[tag_key("app-agents")] == BAD_TAG

    again = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert again.status == "succeeded", again.error
    assert {stack.config[enabled_key(repo)] for repo in REPOS} == {"true"}
    assert {s.version for s in stack.services.values()} == {"1.0.0"}
    assert runtime.current_version("app-agents") == "1.0.0"


def test_a_version_whose_image_does_not_exist_is_refused_before_anything_changes(
    stack_env: tuple[Pipeline, FakeStack], registry: FakeRegistry
) -> None:
    pipeline, stack = stack_env
    with pytest.raises(UsageError) as refused:
        pipeline.run(None, {"saas-ecosystem-architecture": "1.0.0", "app-agents": "9f8e7d6"})
    image = f"{registry.host}/example-ecosystem/app-agents:9f8e7d6"
    assert str(refused.value) == (
        f"app-agents: version 9f8e7d6 has no image {image} (registry {registry.host} has no manifest 9f8e7d6 of "
        "example-ecosystem/app-agents). Fix: deploy a version whose image app-agents's release workflow pushed "
        "(the commit SHA of a push to its default branch, once that run finished), or build and push this one"
    )
    assert stack.ups == [] and stack.config == {}  # nothing provisioned, configured or deployed
    with ledger.connect(pipeline.runtime.ledger_url()) as conn:
        assert ledger.recent(conn, "dev", 5) == []  # and no deployment recorded
    # the registry was asked the way `docker pull` asks: a manifest HEAD per changing repo's image
    asked = {r.path for r in registry.calls("HEAD")}
    assert asked == {
        f"/v2/example-ecosystem/{n}/manifests/{t}"
        for n, t in [("admin-app", "1.0.0"), ("app-agents", "9f8e7d6"), ("spec-service", "latest")]
    }
    # a dry run (`ws deploy --dry-run`, `ws pipeline begin --dry-run`) refuses it the same way
    with pytest.raises(UsageError, match="app-agents: version 9f8e7d6 has no image"):
        pipeline.plan(None, {"app-agents": "9f8e7d6"}, preview=True)
    assert stack.previews == 0


def test_the_validate_step_refuses_an_image_that_is_gone_since_the_deployment_began(
    stack_env: tuple[Pipeline, FakeStack], registry: FakeRegistry
) -> None:
    """`ws pipeline validate` runs in its own job, maybe long after `ws pipeline begin`: it asks the registry again
    and fails, so the deploy jobs never start and `ws rollback` has nothing to undo."""
    pipeline, stack = stack_env
    plan = pipeline.plan(None, {repo: "1.0.0" for repo in REPOS})
    with pipeline.locked() as conn:
        dep = pipeline.begin(conn, plan, dry_run=False, trigger=Trigger.PIPELINE, run_url=None)
    registry.delete("example-ecosystem/spec-service", "1.0.0")
    job = Pipeline(pipeline.loaded, "dev", schema_checks=schema_checks, runtime=pipeline.runtime)  # a new job
    with job.locked(shared=True) as conn:
        (validate,) = plan.of(StepKind.VALIDATE)
        outcome = job.execute(conn, job.load(conn, dep.id), validate)
        assert not outcome.ok
        assert outcome.detail.startswith(
            "saas-spec-driven-development: version 1.0.0 has no image "
            f"{registry.host}/example-ecosystem/spec-service:1.0.0"
        )
        (row,) = [s for s in ledger.steps(conn, dep.id) if s.step == StepKind.VALIDATE]
        assert row.status == "failed" and row.detail == outcome.detail
    assert stack.ups == []  # nothing deployed
    ok = pipeline.plan(None, {"app-agents": "1.1.0"})  # an image that exists passes, its check shown at validate
    assert ok.selection.versions_after["app-agents"] == "1.1.0"


def test_a_registry_that_cannot_tell_leaves_begin_and_validate_going_with_a_note(
    stack_env: tuple[Pipeline, FakeStack], registry: FakeRegistry
) -> None:
    """A token service answering JSON that is no object (as a broken proxy might) is "not checked", never a
    traceback out of `ws pipeline begin` or `ws pipeline validate`."""
    pipeline, stack = stack_env
    registry.token_body = b'["not", "an object"]'
    plan = pipeline.plan(None, {"app-agents": "1.1.0"})
    with pipeline.locked() as conn:
        dep = pipeline.begin(conn, plan, dry_run=False, trigger=Trigger.PIPELINE, run_url=None)
        (validate,) = plan.of(StepKind.VALIDATE)
        outcome = pipeline.execute(conn, pipeline.load(conn, dep.id), validate)
    image = f"{registry.host}/example-ecosystem/app-agents:1.1.0"
    # the images are notes before the schema checks (which fail here: nothing was migrated), not a refusal
    assert outcome.detail.startswith(
        f"images: app-agents: image {image} not checked: registry {registry.host}: its token service "
        f'http://{registry.host}/token answered without a token (no JSON object with a "token"); '
    )
    assert all(not (names_of(up) & set(REPOS)) for up in stack.ups)  # the infra at most: no service updated


JOB_REPO = "saas-spec-driven-development"  # migrates by migrate.command: a one-off container on a Docker stack


def with_migrate_command(path: Path) -> Path:
    """JOB_REPO applies its Prisma migrations by a command (ws's applier, run as a command, so the program declares a
    one-off migration container for it), reading DATABASE_URL from its env."""
    script = path.parent / "migrate_specs.py"
    script.write_text(
        "import os, pathlib, sys\n"
        "from infra.deploy.migrations import apply\n"
        "from infra.workspace.loader import load_workspace\n"
        "assert os.environ['DATABASE_URL'] not in ' '.join(sys.argv)\n"
        f"print('applied', apply(os.environ['DATABASE_URL'], load_workspace(pathlib.Path({str(path)!r})), {JOB_REPO!r}))\n"
    )
    text = path.read_text()
    head, block = text.split(f"  {JOB_REPO}:\n", 1)
    assert "    migrate:\n      builtin: true\n" in block
    block = block.replace(
        "    migrate:\n      builtin: true\n", f"    migrate:\n      command: {sys.executable} {script}\n", 1
    )
    path.write_text(head + f"  {JOB_REPO}:\n" + block)
    return path


UNFINISHED = "unfinished"  # a migration container Docker reports no exit code for


class DockerStack(FakeStack):
    """The fake engine with the URNs the real program declares for a Docker stack (built under
    pulumi.runtime.set_mocks). It runs a repo's one-off migration container when an update replaces it or its
    image changed (what the Docker provider does): the declared command, with the declared env translated to this
    machine (the container reaches the database as `postgres`, this machine as the test's PostgreSQL); a
    BAD_MIGRATION image exits 1 the way a failing `prisma migrate deploy` does."""

    def __init__(self, loaded: Any, services: dict[str, FakeService], database: str, cache: str) -> None:
        super().__init__(services, database, cache)
        run = run_program(loaded, "dev", default_config(loaded.model, "dev"))
        self.urns = [resource.urn for resource in run.resources]
        self.declared = {resource.name: resource for resource in run.resources}
        self.replaced: list[list[str]] = []
        self.migration_runs: list[tuple[str, str]] = []  # (repo, image tag) of each container run
        self.migrations: dict[str, dict[str, Any]] = {}

    def up(
        self,
        target: list[str] | None = None,
        target_dependents: bool = False,
        on_output: Any = None,
        replace: list[str] | None = None,
    ) -> Any:
        self.replaced.append(list(replace or []))
        names = {urn.rsplit("::", 1)[-1] for urn in target or []}
        for repo in self.services:
            container = f"{repo}-migrate-container"
            if container not in names:
                continue
            tag = self.config.get(migration_key(repo)) or self.config.get(tag_key(repo), "latest")
            ran_before = self.migrations.get(repo, {}).get("tag")
            if tag == ran_before and not any(u.endswith(f"::{container}") for u in replace or []):
                continue  # nothing changed: Pulumi leaves the exited container as it is
            self.migration_runs.append((repo, tag))
            command = self.declared[container].inputs["command"]
            if tag == UNFINISHED:
                code, log = None, ""
            elif tag == BAD_MIGRATION:
                code, log = 1, 'Error: P3018\nA migration failed to apply: relation "specs" already exists'
            else:
                done = subprocess.run(
                    command,
                    env={**os.environ, "DATABASE_URL": self.database},
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                code, log = done.returncode, done.stdout + done.stderr
            self.migrations[repo] = {
                "container": f"example-ecosystem-dev-{repo}-migrate",
                "exit_code": code,
                "log": log,
                "tag": tag,
            }
        return super().up(target, target_dependents, on_output)

    def outputs(self) -> dict[str, auto.OutputValue]:
        shown = {repo: {k: v for k, v in run.items() if k != "tag"} for repo, run in self.migrations.items()}
        return {**super().outputs(), "migrations": auto.OutputValue(shown, True)}


@pytest.fixture
def docker_env(
    tmp_path: Path, fresh_database: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, registry: FakeRegistry
) -> Iterator[tuple[Pipeline, DockerStack]]:
    from infra.deploy.servers import free_port

    workspace = write_example_workspace(
        tmp_path, "example_ecosystem", {r: free_port() for r in REPOS}, start_period=0.3
    )
    loaded = load_workspace(with_migrate_command(in_registry(workspace, registry)))
    yield from fake_pipeline(
        loaded, lambda services: DockerStack(loaded, services, fresh_database, redis_url), fresh_database, monkeypatch
    )


def names_of(up: list[str] | None) -> set[str]:
    return {urn.rsplit("::", 1)[-1] for urn in up or []}


def test_a_migrate_command_runs_in_a_one_off_container_before_the_services_update(
    docker_env: tuple[Pipeline, DockerStack],
) -> None:
    pipeline, stack = docker_env
    first = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert first.status == "succeeded", first.error
    infra, migrate, *deploys = [names_of(up) for up in stack.ups]
    # the migrate step: one update targeted at the repo's migration (component, image, container), which it replaces
    assert migrate == {f"{JOB_REPO}-migrate", f"{JOB_REPO}-migrate-image", f"{JOB_REPO}-migrate-container"}
    assert [names_of(r) for r in stack.replaced][1] == {f"{JOB_REPO}-migrate-container"}
    assert stack.config[migration_key(JOB_REPO)] == "1.0.0"
    # it ran once, with the release's image, before any service was updated; the repo's own deploy left it alone
    assert stack.migration_runs == [(JOB_REPO, "1.0.0")]
    assert all(not (names & set(REPOS)) for names in (infra, migrate)) and len(deploys) == 3
    step = next(s for s in first.steps if s.step == "migrate" and s.repo == JOB_REPO)
    assert step.ok and f"in one-off container example-ecosystem-dev-{JOB_REPO}-migrate" in step.detail
    assert "/example-ecosystem/spec-service:1.0.0) on the stack's network: exited 0" in step.detail
    with psycopg.connect(stack.database) as conn:  # the container's command applied the repo's migrations
        assert conn.execute("SELECT count(*) FROM specs._prisma_migrations").fetchone() != (0,)
    with ledger.connect(pipeline.runtime.ledger_url()) as conn:
        (row,) = [s for s in ledger.steps(conn, first.deployment_id or 0) if s.step == "migrate" and s.repo == JOB_REPO]
        assert "applied" in (row.log_excerpt or "")  # the container's log tail
    again = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})  # a deploy migrates every time, even unchanged
    assert again.status == "succeeded", again.error
    assert stack.migration_runs == [(JOB_REPO, "1.0.0")] * 2
    # a dry run previews the release's migration with its services, then restores the settings
    before = dict(stack.config)
    assert pipeline.plan(None, {JOB_REPO: "1.1.0"}, preview=True).preview == "update 2"
    assert stack.previewed_config[migration_key(JOB_REPO)] == stack.previewed_config[tag_key(JOB_REPO)] == "1.1.0"
    assert stack.config == before and stack.migration_runs == [(JOB_REPO, "1.0.0")] * 2


def test_a_failing_migration_container_stops_the_deploy_and_rolls_back(
    docker_env: tuple[Pipeline, DockerStack],
) -> None:
    pipeline, stack = docker_env
    first = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert first.status == "succeeded", first.error
    ups = len(stack.ups)
    second = pipeline.run(None, {"saas-ecosystem-architecture": "1.1.0", JOB_REPO: BAD_MIGRATION})
    assert second.status == "rolled_back", second.error
    failed = [s for s in second.steps if not s.ok]
    assert [(s.step, s.repo) for s in failed] == [("migrate", JOB_REPO)]
    assert "exited with 1: A migration failed to apply" in failed[0].detail
    assert f"`docker logs example-ecosystem-dev-{JOB_REPO}-migrate`" in failed[0].detail
    # nothing after it ran: no validate, no service update; the rollback found nothing deployed, health held
    assert not [s for s in second.steps if s.step in ("validate", "deploy", "integration")]
    assert second.steps[-1].step == "health" and second.steps[-1].ok
    assert [names_of(up) for up in stack.ups[ups:]] == [names_of(stack.ups[1])]  # the migration's update alone
    assert {repo: s.version for repo, s in stack.services.items()} == {repo: "1.0.0" for repo in REPOS}
    assert {stack.config[tag_key(repo)] for repo in REPOS} == {"1.0.0"}
    with ledger.connect(pipeline.runtime.ledger_url()) as conn:
        row = ledger.deployment(conn, second.deployment_id or 0)
        assert (
            row is not None
            and row.status == "rolled_back"
            and "migrate saas-spec-driven-development" in (row.error or "")
        )


def test_a_migration_container_without_an_exit_code_fails(docker_env: tuple[Pipeline, DockerStack]) -> None:
    pipeline, stack = docker_env
    ran = pipeline.runtime.migrate(JOB_REPO, UNFINISHED)
    assert ran is not None and not ran.ok
    assert "reported no exit code (it did not finish): no output; read `docker logs" in ran.detail
    assert pipeline.runtime.migrate("saas-ecosystem-architecture", "1.0.0") is None  # builtin: ws's own applier


def test_migration_urns_are_the_programs_even_before_the_state_has_them(tmp_path: Path) -> None:
    """A first migration targets resources the stack's state does not hold yet: their URNs, built from Pulumi.yaml's
    project and the stack, are exactly the ones the program registers."""
    from tests.test_stack_program import PROJECT

    workspace = with_migrate_command(
        write_example_workspace(tmp_path, "example_ecosystem", {r: 4100 + i for i, r in enumerate(REPOS)})
    )
    (tmp_path / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n")
    loaded = load_workspace(workspace)
    empty = FakeStack({}, "", "")
    empty.urns = []
    runtime = PulumiRuntime(loaded, "dev", stack_factory=lambda: empty)
    run = run_program(loaded, "dev", default_config(loaded.model, "dev"))
    # the mock monitor qualifies a top-level type with the root stack's (pulumi:pulumi:Stack$); the engine does not
    registered = [
        r.urn.replace("::pulumi:pulumi:Stack$", "::") for r in run.resources if r.name.startswith(f"{JOB_REPO}-migrate")
    ]
    assert len(registered) == 3 and runtime.migration_urns(JOB_REPO) == registered


def test_a_migration_it_cannot_target_updates_nothing(docker_env: tuple[Pipeline, DockerStack]) -> None:
    """No Pulumi.yaml project to build the migration's URNs from and none in the state: an update targeted at
    nothing would be an untargeted `pulumi up` of the whole stack before validate. It is refused instead."""
    pipeline, stack = docker_env
    assert not (pipeline.loaded.root / "Pulumi.yaml").exists()
    stack.urns = [urn for urn in stack.urns if "-migrate" not in urn]  # a stack made before migration containers
    with pytest.raises(CheckFailed) as refused:
        pipeline.runtime.migrate(JOB_REPO, "1.0.0")
    assert str(refused.value) == (
        f"pulumi: cannot target {JOB_REPO}'s one-off migration container ({JOB_REPO}-migrate-container): stack dev's "
        f"state has none yet and {pipeline.loaded.root / 'Pulumi.yaml'} is unreadable or names no project (`name:`) "
        "to build its URN from; give Pulumi.yaml the `name:` of the stack's Pulumi project and deploy again. "
        "Nothing was updated"
    )
    assert stack.ups == [] and stack.config == {} and stack.migration_runs == []
    # the same through a deploy: its migrate step fails, and no update of the whole stack ran before it
    outcome = pipeline.run(None, {repo: "1.0.0" for repo in REPOS})
    assert outcome.status != "succeeded"
    failed = next(s for s in outcome.steps if not s.ok)
    assert (failed.step, failed.repo) == ("migrate", JOB_REPO) and "cannot target" in failed.detail
    assert not [s for s in outcome.steps if s.step in ("validate", "deploy")]
    assert None not in stack.ups and stack.migration_runs == []  # every update was targeted


class StackWithRoleUrls(FakeStack):
    """Outputs as the real program exports them: each repo's URL carries its generated role password, and the Redis
    URL the generated cache password."""

    def outputs(self) -> dict[str, auto.OutputValue]:
        found = super().outputs()
        found["database_urls"] = auto.OutputValue(
            {
                repo: f"postgresql://{repo.replace('-', '_')}:pw%2F{i}@127.0.0.1:5432/example"
                for i, repo in enumerate(REPOS)
            },
            True,
        )
        return found


def test_a_repo_command_on_a_stack_needs_no_ci_secret_for_the_passwords_the_stack_generated(
    tmp_path: Path, fresh_database: str, monkeypatch: pytest.MonkeyPatch, registry: FakeRegistry
) -> None:
    """Migrations from the checkout and integration tests run with the repo's env; its DATABASE_URL and REDIS_URL
    reference WS_DB_PASSWORD_<REPO> and WS_CACHE_PASSWORD, which the stack generates and no CI job is given
    (workflows.repo_secrets_in leaves them out): their values come from the stack's outputs."""
    ports = {repo: 4100 + i for i, repo in enumerate(REPOS)}
    loaded = load_workspace(in_registry(write_example_workspace(tmp_path, "example_ecosystem", ports), registry))
    cache = "redis://:cache%40pw@127.0.0.1:6379/0"
    running = fake_pipeline(
        loaded, lambda services: StackWithRoleUrls(services, fresh_database, cache), fresh_database, monkeypatch
    )
    pipeline, _ = next(running)
    for name in [*(f"WS_DB_PASSWORD_{r.upper().replace('-', '_')}" for r in REPOS), "WS_CACHE_PASSWORD"]:
        monkeypatch.delenv(name)  # as in the generated workflow's jobs
    runtime = pipeline.runtime
    assert isinstance(runtime, PulumiRuntime)
    try:
        env = runtime.command_env("app-agents", runtime.provision())
        assert env["DATABASE_URL"] == "postgresql://app_agents:pw%2F1@127.0.0.1:5432/example"
        assert env["REDIS_URL"] == cache
        assert not any("${secret:" in value for value in env.values()), env
    finally:
        next(running, None)  # the fixture's own clean-up: the fake services stop


def test_generated_secrets_read_outputs_and_leave_a_users_own_password_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.deploy.pulumi_runtime import generated_secrets

    monkeypatch.delenv("WS_CACHE_PASSWORD", raising=False)
    monkeypatch.delenv("WS_DB_PASSWORD_CORE", raising=False)
    outputs = {"database_urls": {"core": "postgresql://core:s3cret@db:5432/x", "api": "postgresql://api@db/x"}}
    lookup = generated_secrets(outputs, "redis://:cachepw@redis:6379/0")
    assert lookup("WS_DB_PASSWORD_CORE") == "s3cret" and lookup("WS_CACHE_PASSWORD") == "cachepw"
    assert lookup("WS_DB_PASSWORD_API") is None  # no password in the URL: missing, not empty
    assert generated_secrets({}, "redis://:ab[cd@redis:6379/0")("WS_CACHE_PASSWORD") is None  # no traceback
    monkeypatch.setenv("WS_CACHE_PASSWORD", "the-users-own")  # an external Redis: the user's password wins
    assert generated_secrets(outputs, "redis://:cachepw@redis:6379/0")("WS_CACHE_PASSWORD") == "the-users-own"
