"""The staged, health-gated deploy with rollback: one plan, one executor, two entry points.

:meth:`Pipeline.plan` snapshots the runtime and builds the :class:`~infra.deploy.plan.DeployPlan` (pure data, see
:mod:`infra.deploy.plan`); ``ws deploy --dry-run`` prints it. ``ws deploy`` executes every step of that plan in one
process while holding the environment's advisory lock; the ``ws pipeline <step> --deployment ID`` commands execute
the steps of one phase each (one GitHub job each) from the plan rebuilt from the ledger, each taking the lock for
its own duration. Phases, in order (:data:`~infra.deploy.plan.PHASES`):

    infra -> migrate (stage order) -> validate (schema alignment/drift) -> deploy stage 1..n (repos of a stage in
    parallel, each health-gated) -> integration (each repo's test.integration) -> health

On any failure ``ws deploy`` rolls every service deployed in this run back to its previous version in reverse
stage order and checks health again. Rollback never reverts schema: migrations stay applied (they must be
backward compatible with the previous versions), and the output says so. Every step is a ledger row.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from infra.deploy import health, images, ledger, migrations
from infra.deploy.events import DeployObserver, RepoState
from infra.deploy.ledger import Deployment, DeploymentStatus, StepRecord, StepStatus, Trigger
from infra.deploy.plan import (
    PHASE_BY_NAME,
    SCHEMA_NOTE,
    DeployPlan,
    MigrationState,
    PlannedStep,
    RuntimeSnapshot,
    StepKind,
    build_plan,
    select,
    selected_repos,
    selection_of,
)
from infra.deploy.runtime import Infra, Runtime
from infra.deploy.runtimes import runtime_for
from infra.deploy.schema_gate import SchemaChecks
from infra.deploy.versions import check_versions
from infra.errors import CheckFailed, UsageError
from infra.workspace.located import LoadedWorkspace

__all__ = ["SCHEMA_NOTE", "Outcome", "Pipeline", "StepOutcome"]

Progress = Callable[[str], None]
COMMAND_TIMEOUT = 600
Connection = psycopg.Connection[Any]


@dataclass
class StepOutcome:
    """What one executed (or dry-run) step of a deployment came to; recorded as its ledger row."""

    step: StepKind
    ok: bool
    detail: str
    repo: str | None = None
    skipped: bool = False

    @property
    def status(self) -> StepStatus:
        return StepStatus.SKIPPED if self.skipped else (StepStatus.SUCCEEDED if self.ok else StepStatus.FAILED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "ok": self.ok,
            "detail": self.detail,
            "repo": self.repo,
            "skipped": self.skipped,
        }


@dataclass
class Outcome:
    deployment_id: int | None
    environment: str
    status: DeploymentStatus
    steps: list[StepOutcome] = field(default_factory=list)
    error: str | None = None
    plan: DeployPlan | None = None  # the plan this run executed
    succeeded: bool | None = None  # set when success means something else than status succeeded (ws rollback)

    @property
    def ok(self) -> bool:
        return self.status == DeploymentStatus.SUCCEEDED if self.succeeded is None else self.succeeded

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "environment": self.environment,
            "status": self.status.value,
            "error": self.error,
            "steps": [s.as_dict() for s in self.steps],
            "plan": self.plan.as_dict() if self.plan else None,
            "note": SCHEMA_NOTE,
        }


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


Executor = Callable[[Connection, Deployment, PlannedStep, int], StepOutcome]


class Pipeline:
    def __init__(
        self,
        loaded: LoadedWorkspace,
        environment: str,
        *,
        schema_checks: SchemaChecks,
        runtime: Runtime | None = None,
        progress: Progress = lambda _: None,
        observer: DeployObserver | None = None,
    ) -> None:
        if environment not in loaded.model.environments:
            raise UsageError(
                f"unknown environment {environment!r}; workspace.yaml declares {', '.join(loaded.model.environments)}"
            )
        self.loaded = loaded
        self.model = loaded.model
        self.environment = environment
        self.runtime = runtime or runtime_for(loaded, environment)
        self.schema_checks = schema_checks
        self.progress = progress
        self.observer = observer
        self._infra: Infra | None = None
        self._images: dict[str, images.ImageCheck] = {}  # image -> what its registry said, asked once per run
        self._started = time.monotonic()
        # the one table of executors: how each planned step runs (the dry run prints the same steps)
        self.executors: dict[StepKind, Executor] = {
            StepKind.INFRA: self._run_infra,
            StepKind.MIGRATE: self._run_migrate,
            StepKind.VALIDATE: self._run_validate,
            StepKind.DEPLOY: self._run_deploy,
            StepKind.INTEGRATION: self._run_command,
            StepKind.HEALTH: self._run_health,
        }

    # ---- helpers -----------------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.progress(f"[{time.monotonic() - self._started:6.1f}s] {message}")

    def tell(self, what: str, call: Callable[[DeployObserver], None]) -> None:
        """Tell the observer; its errors are logged and never fail the deployment."""
        if self.observer is None:
            return
        try:
            call(self.observer)
        except Exception as exc:
            self.say(f"warning: deploy observer {what} failed: {exc}")

    def infra(self) -> Infra:
        if self._infra is None:
            self._infra = self.runtime.provision()
        return self._infra

    def ledger_url(self) -> str:
        return self.runtime.ledger_url()

    # ---- planning ----------------------------------------------------------------------------------------
    def missing_checkouts(self, repos: Sequence[str]) -> str | None:
        """One message naming each of ``repos`` whose checkout does not exist; None when every one exists."""
        checkouts = [(repo, self.loaded.repo_dir(repo)) for repo in repos]
        missing = [
            f"{repo}: checkout {path} does not exist; clone the repo there or fix repos.{repo}.path in workspace.yaml"
            for repo, path in checkouts
            if not path.is_dir()
        ]
        return "; ".join(missing) or None

    def preflight(
        self, repos: Sequence[str] | None, versions: Mapping[str, str] | None
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """The repos a new deployment selects (stage order) and the versions asked for, refused before anything
        starts when a version is unsafe, names a repo outside the selection, or a selected repo is not checked out."""
        asked = check_versions(self.loaded, versions or {})
        selected = selected_repos(self.model, repos, asked)
        problem = self.missing_checkouts(selected)
        if problem:
            raise UsageError(problem)
        return selected, asked

    def check_images(
        self, versions_after: Mapping[str, str], versions_before: Mapping[str, str | None]
    ) -> tuple[list[str], list[str]]:
        """Ask each changing repo's registry whether the image of its new version exists (a repo kept at what runs
        now is not asked). Returns (problems: one message per missing image, naming repo, version and the fix;
        notes: what could not be told, and what was found)."""
        problems: list[str] = []
        notes: list[str] = []
        for repo, version in versions_after.items():
            image = self.runtime.image(repo, version)
            if image is None or versions_before.get(repo) == version:
                continue
            if image not in self._images:
                self._images[image] = images.check_image(image)
            found = self._images[image]
            if found.exists is False:
                problems.append(
                    f"{repo}: version {version} has no image {image} ({found.detail}). Fix: deploy a version "
                    f"whose image {repo}'s release workflow pushed (the commit SHA of a push to its default branch, "
                    "once that run finished), or build and push this one"
                )
            elif found.exists is None:
                notes.append(f"{repo}: image {image} not checked: {found.detail}")
            else:
                notes.append(f"{repo}: {found.detail}")
        return problems, notes

    def snapshot(self, repos: Sequence[str]) -> RuntimeSnapshot:
        """What the runtime reports now about ``repos``, touching nothing (servers are located, never started)."""
        located = self.runtime.locate()
        states: dict[str, MigrationState] = {}
        for repo in repos:
            spec = self.model.repos[repo].migrate
            if spec is None or spec.command:
                continue
            names = tuple(m.name for m in migrations.migration_files(self.loaded, repo))
            if located is None:
                states[repo] = MigrationState(names, note="database not running yet: every migration is pending")
                continue
            try:
                with psycopg.connect(located.database_url, connect_timeout=5, autocommit=True) as conn:
                    state = migrations.status(conn, self.loaded, repo)
                states[repo] = MigrationState(tuple(state.pending), tuple(state.failed), tuple(state.modified))
            except psycopg.OperationalError:
                states[repo] = MigrationState(names, note="workspace database does not exist yet")
        return RuntimeSnapshot(
            self.runtime.name,
            located.describe() if located else None,
            {r: self.runtime.current_version(r) for r in repos},
            {r: self.runtime.default_version(r) for r in repos},
            states,
        )

    def plan(
        self, repos: Sequence[str] | None, versions: Mapping[str, str] | None, *, preview: bool = False
    ) -> DeployPlan:
        """The plan of a new deployment of ``repos`` (all when None) at ``versions`` (the defaults otherwise).
        ``preview``: add the runtime's forecast of its changes (`pulumi preview`), as a dry run shows it."""
        selected, asked = self.preflight(repos, versions)
        snapshot = self.snapshot(selected)
        plan = build_plan(self.model, select(self.model, self.environment, selected, asked, snapshot), snapshot)
        # a version whose image does not exist is refused here, before anything is recorded or changed
        missing, _ = self.check_images(plan.selection.versions_after, plan.selection.versions_before)
        if missing:
            raise UsageError("; ".join(missing))
        if preview:
            forecast: str | None
            try:
                forecast = self.runtime.preview(dict(plan.selection.versions_after))
            except Exception as exc:  # the Pulumi CLI may be missing; the plan says so
                forecast = f"not available: {exc}"
            plan = replace(plan, preview=forecast)
        return plan

    def plan_of(self, dep: Deployment) -> DeployPlan:
        """The plan a recorded deployment executes, rebuilt from its ledger row (each `ws pipeline` job)."""
        selection = selection_of(self.model, self.environment, dep.repos, dep.versions_before, dep.versions_after)
        return build_plan(self.model, selection)

    # ---- ledger sessions ---------------------------------------------------------------------------------
    @contextmanager
    def locked(self, shared: bool = False) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with ledger.environment_lock(self.ledger_url(), self.environment, shared=shared) as conn:
            recovered = ledger.recover_interrupted(conn, self.environment)
            for deployment_id in recovered:
                self.say(
                    f"deployment {deployment_id} was left running by a deployer that stopped: marked interrupted "
                    f"(`ws rollback --deployment {deployment_id}` restores its previous versions)"
                )
            yield conn

    def begin(
        self, conn: Connection, plan: DeployPlan, *, dry_run: bool, trigger: Trigger, run_url: str | None
    ) -> Deployment:
        """Record a new deployment of ``plan``'s selection (refused while a pipeline deployment is open)."""
        open_ones = ledger.open_pipeline_deployments(conn, self.environment)
        if open_ones:
            first = open_ones[0]
            raise CheckFailed(
                f"environment {self.environment} has deployment {first.id} in progress (begun by {first.holder} "
                f"via {first.trigger} at {first.started_at:%Y-%m-%d %H:%M:%S%z}); finish it with "
                f"`ws pipeline finish --deployment {first.id}` or `ws rollback --deployment {first.id}`"
            )
        selection = plan.selection
        commits = {}
        for repo in selection.repos:
            # the checkout's commit when deploying the checkout, else the version when it names a commit here
            found = commit_of(self.loaded.repo_dir(repo), selection.versions_asked.get(repo) or "HEAD")
            if found:
                commits[repo] = found
        deployment_id = ledger.create_deployment(
            conn,
            environment=self.environment,
            repos=selection.repos,
            versions_before=selection.versions_before,
            versions_after=selection.versions_after,
            holder=ledger.holder_name(),
            trigger=trigger,
            run_url=run_url,
            dry_run=dry_run,
            commits=commits,
        )
        ledger.note_lock_deployment(conn, self.environment, deployment_id)
        self.say(f"deployment {deployment_id} of {', '.join(selection.repos)} to {self.environment} begun")
        repos = list(selection.repos)
        self.tell("deployment_started", lambda o: o.deployment_started(deployment_id, self.environment, repos))
        return self.load(conn, deployment_id)

    def load(self, conn: Connection, deployment_id: int) -> Deployment:
        found = ledger.deployment(conn, deployment_id)
        if found is None:
            raise UsageError(f"--deployment: no deployment {deployment_id} in the ledger")
        if found.environment != self.environment:
            raise UsageError(
                f"deployment {deployment_id} is for environment {found.environment}, not {self.environment}"
            )
        return found

    # ---- the executor ------------------------------------------------------------------------------------
    def execute(
        self,
        conn: Connection,
        dep: Deployment,
        step: PlannedStep,
        action: Callable[[int], StepOutcome] | None = None,
    ) -> StepOutcome:
        """Run one planned step as one ledger row: by its executor (or ``action``), or, in a dry-run deployment,
        record what it would do."""
        if step.kind == StepKind.DEPLOY and step.repo is not None:
            # what runs now, as the row records it and the executor compares with the target
            step = replace(step, version_before=self.runtime.current_version(step.repo))
        step_id = ledger.start_step(
            conn,
            dep.id,
            step.kind,
            repo=step.repo,
            stage=step.stage,
            version_before=step.version_before,
            version_after=step.version_after,
        )
        where = f"{step.kind}{' ' + step.repo if step.repo else ''}"
        if dep.dry_run:
            ledger.finish_step(conn, step_id, StepStatus.SKIPPED, f"dry run: would {step.action}")
            self.say(f"{where}: dry run: would {step.action}")
            return StepOutcome(step.kind, True, f"dry run: would {step.action}", step.repo, skipped=True)
        run = action or (lambda step_id: self.executors[step.kind](conn, dep, step, step_id))
        try:
            result = run(step_id)
        except (CheckFailed, UsageError) as exc:
            result = StepOutcome(step.kind, False, str(exc), step.repo)
        except Exception as exc:  # record the unexpected, then let it surface
            ledger.finish_step(conn, step_id, StepStatus.FAILED, f"internal error: {exc!r}")
            raise
        ledger.finish_step(conn, step_id, result.status, result.detail)
        mark = "ok" if result.ok else "FAILED"
        self.say(f"{where}: {mark}: {result.detail.splitlines()[0] if result.detail else ''}")
        return result

    def execute_batch(self, conn: Connection, dep: Deployment, batch: Sequence[PlannedStep]) -> list[StepOutcome]:
        """One batch of :meth:`DeployPlan.batches`: a stage's deploy steps in parallel, any other step alone."""
        if len(batch) == 1:
            return [self.execute(conn, dep, batch[0])]
        self.say(f"stage {batch[0].stage}: {', '.join(s.repo or '' for s in batch)}")
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            return list(pool.map(lambda step: self.execute(conn, dep, step), batch))

    def execute_all(
        self, conn: Connection, dep: Deployment, batches: Sequence[Sequence[PlannedStep]], results: list[StepOutcome]
    ) -> bool:
        """Execute ``batches`` in order, stopping after the first that fails; whether all passed."""
        for batch in batches:
            outcomes = self.execute_batch(conn, dep, batch)
            results += outcomes
            if not all(o.ok for o in outcomes):
                return False
        return True

    # ---- the executors of the steps ----------------------------------------------------------------------
    def _run_infra(self, conn: Connection, dep: Deployment, step: PlannedStep, step_id: int) -> StepOutcome:
        described = self.infra().describe()
        return StepOutcome(
            step.kind, True, f"PostgreSQL: {described['database_source']}; Redis: {described['cache_source']}"
        )

    def _run_migrate(self, conn: Connection, dep: Deployment, step: PlannedStep, step_id: int) -> StepOutcome:
        if step.command:
            assert step.repo is not None
            # where the database is reachable: a Docker stack runs it in a one-off container from the repo's image
            ran = self.runtime.migrate(step.repo, dep.versions_after[step.repo])
            if ran is None:  # else from the repo's checkout on this machine
                return self._run_command(conn, dep, step, step_id)
            ledger.set_log_excerpt(conn, step_id, ran.log)
            return StepOutcome(step.kind, ran.ok, ran.detail, step.repo)
        assert step.repo is not None
        applied = migrations.apply(self.infra().database_url, self.loaded, step.repo, progress=self.say)
        detail = f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "up to date"
        namespace = migrations.namespace_of(self.loaded, step.repo)
        return StepOutcome(step.kind, True, f"{detail} (namespace {namespace})", step.repo)

    def _run_command(self, conn: Connection, dep: Deployment, step: PlannedStep, step_id: int) -> StepOutcome:
        """A repo's migrate.command or test.integration, from its checkout, with its env."""
        repo, command = step.repo, step.command
        assert repo is not None and command is not None
        env = self.runtime.command_env(repo, self.infra())
        try:
            done = subprocess.run(
                command,
                shell=True,
                cwd=self.loaded.repo_dir(repo),
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return StepOutcome(step.kind, False, f"`{command}` did not finish within {COMMAND_TIMEOUT}s", repo)
        output = tail((done.stdout or "") + "\n" + (done.stderr or ""))
        ledger.set_log_excerpt(conn, step_id, output)  # kept whether the command passes or fails
        if done.returncode != 0:
            last = output.splitlines()[-1] if output else ""
            return StepOutcome(step.kind, False, f"`{command}` exited with {done.returncode}: {last}", repo)
        return StepOutcome(step.kind, True, f"`{command}` passed", repo)

    def _run_validate(self, conn: Connection, dep: Deployment, step: PlannedStep, step_id: int) -> StepOutcome:
        # the images of the versions to deploy (a `ws pipeline validate` job asks again: begin ran in another job)
        missing, notes = self.check_images(dep.versions_after, dep.versions_before)
        if missing:
            return StepOutcome(step.kind, False, "; ".join(missing))
        images_detail = f"images: {'; '.join(notes)}; " if notes else ""
        subset = self.plan_of(dep).selection.subset
        results = self.schema_checks(self.loaded, self.infra().database_url, dep.repos if subset else None)
        detail = images_detail + "; ".join(f"{r.name}: {r.detail}" for r in results)
        if any(r.ok is False for r in results):
            return StepOutcome(step.kind, False, detail)
        if all(r.ok is None for r in results):
            return StepOutcome(step.kind, True, detail, skipped=True)
        return StepOutcome(step.kind, True, detail)

    def _run_deploy(self, conn: Connection, dep: Deployment, step: PlannedStep, step_id: int) -> StepOutcome:
        repo, target = step.repo, step.version_after
        assert repo is not None and target is not None
        service = self.model.repos[repo].service
        if step.version_before == target and (service is None or self._healthy_now(repo)):
            return StepOutcome(step.kind, True, f"{repo} {target} already running and healthy", repo, skipped=True)
        self.tell(
            "repo_state",
            lambda o: o.repo_state(dep.id, self.environment, repo, target, "in_progress", "deploying"),
        )
        detail = self.runtime.deploy(repo, target)
        result = self._gate(repo, detail)
        ledger.set_log_excerpt(conn, step_id, self.runtime.logs(repo))
        state: RepoState = "success" if result.ok else "failure"
        self.tell("repo_state", lambda o: o.repo_state(dep.id, self.environment, repo, target, state, result.detail))
        return result

    def _healthy_now(self, repo: str) -> bool:
        service = self.model.repos[repo].service
        url = self.runtime.endpoint(repo)
        if service is None or url is None:
            return True
        return health.probe(url + service.health.path, service.health.timeout).ok

    def _gate(self, repo: str, detail: str, kind: StepKind = StepKind.DEPLOY) -> StepOutcome:
        service = self.model.repos[repo].service
        url = self.runtime.endpoint(repo)
        if service is None or url is None:
            return StepOutcome(kind, True, detail, repo)
        self.say(f"{kind} {repo}: waiting for {url}{service.health.path}")
        probe = health.wait_healthy(url + service.health.path, service.health, lambda: self.runtime.alive(repo))
        if probe.ok:
            return StepOutcome(kind, True, f"{detail}; healthy in {probe.latency_ms:.0f} ms probe", repo)
        return StepOutcome(kind, False, f"{detail}; health check failed: {probe.detail}", repo)

    def _run_health(self, conn: Connection, dep: Deployment, step: PlannedStep, step_id: int) -> StepOutcome:
        return self._health(dep, "")

    def _health(self, dep: Deployment, label: str, *, deployed_only: bool = False) -> StepOutcome:
        # a subset deploy is gated on its own repos (and on every service that runs): the others' migrations
        # did not run in it
        scope = dep.repos if self.plan_of(dep).selection.subset else None
        report = health.check(
            self.loaded,
            self.environment,
            self.runtime,
            self.infra(),
            schema_checks=self.schema_checks,
            deployed_only=deployed_only,
            repos=scope,
        )
        outside = (
            f" (not checked: {', '.join(report.unchecked)}: not part of this deployment)" if report.unchecked else ""
        )
        if report.ok:
            return StepOutcome(
                StepKind.HEALTH, True, f"{label}all {len(report.components)} components healthy{outside}"
            )
        failed = "; ".join(f"{c.name}: {c.detail}" for c in report.failed)
        return StepOutcome(StepKind.HEALTH, False, f"{label}unhealthy: {failed}{outside}")

    # ---- rollback and the end of a deployment ------------------------------------------------------------
    def rollback(self, conn: Connection, dep: Deployment) -> list[StepOutcome]:
        """Take every repo this deployment touched back to its version before, in reverse stage order."""
        touched = {
            s.repo for s in ledger.steps(conn, dep.id) if s.step == StepKind.DEPLOY and s.status != StepStatus.SKIPPED
        }
        results = []
        self.say(f"rolling back deployment {dep.id}: {SCHEMA_NOTE}")
        for stage in reversed(self.plan_of(dep).stages):
            for repo in stage.repos:
                if repo not in touched:
                    continue
                previous = dep.versions_before.get(repo)
                current = self.runtime.current_version(repo)
                planned = PlannedStep(
                    StepKind.ROLLBACK,
                    f"roll {repo} back to {previous}",
                    repo,
                    stage.number,
                    version_before=current,
                    version_after=previous,
                )

                def action(
                    _: int, repo: str = repo, previous: str | None = previous, current: str | None = current
                ) -> StepOutcome:
                    if previous is not None and current == previous and self._healthy_now(repo):
                        return StepOutcome(
                            StepKind.ROLLBACK, True, f"{repo} already runs {previous}", repo, skipped=True
                        )
                    if previous is None:
                        self.runtime.stop(repo)
                        return StepOutcome(StepKind.ROLLBACK, True, f"{repo} was not running before: stopped", repo)
                    detail = self.runtime.deploy(repo, previous)
                    result = self._gate(repo, detail, StepKind.ROLLBACK)
                    if result.ok:
                        version = dep.versions_after.get(repo, "")
                        self.tell(
                            "repo_state",
                            lambda o: o.repo_state(
                                dep.id, self.environment, repo, version, "inactive", f"rolled back to {previous}"
                            ),
                        )
                    return result

                results.append(self.execute(conn, dep, planned, action))
        return results

    def finish(
        self, conn: Connection, dep: Deployment, rollback_steps: Sequence[StepOutcome] | None = None
    ) -> DeploymentStatus:
        """Mark the deployment from its steps: succeeded, rolled_back or failed.

        ``rollback_steps``: the rollback this process just ran (its rollback steps and the health check after it);
        the deployment is rolled_back exactly when every one of them passed. Without them (``ws pipeline finish``)
        the ledger decides the same way from the last rollback attempt it records.
        """
        rows = ledger.steps(conn, dep.id)
        bad = [s for s in rows if s.step != StepKind.ROLLBACK and s.status in ledger.UNFINISHED_OR_FAILED]
        error = None
        status: DeploymentStatus
        if rollback_steps is not None:
            failing = [s for s in rollback_steps if not s.ok]
            status = DeploymentStatus.FAILED if failing else DeploymentStatus.ROLLED_BACK
            if failing:
                first_failing = failing[0]
                error = f"rollback did not restore a healthy environment: {first_failing.step}"
                error += f"{' ' + first_failing.repo if first_failing.repo else ''}: {first_failing.detail}"
        else:
            status = ledger_outcome(rows)
        if bad:
            first = bad[0]
            cause = f"{first.step}{' ' + first.repo if first.repo else ''}: {first.detail or first.status}"
            error = f"{cause}; {error}" if error else cause
        if dep.status == DeploymentStatus.INTERRUPTED and status != DeploymentStatus.SUCCEEDED:
            error = f"interrupted, then {status.replace('_', ' ')}: {error}"
        ledger.finish_deployment(conn, dep.id, status, error)
        self.tell("deployment_finished", lambda o: o.deployment_finished(dep.id, self.environment, status))
        self.say(f"deployment {dep.id}: {status}")
        return status

    # ---- the whole pipeline in one process (ws deploy, ws up) -------------------------------------------
    def run(
        self,
        repos: Sequence[str] | None,
        versions: Mapping[str, str] | None,
        *,
        trigger: Trigger = Trigger.CLI,
        run_url: str | None = None,
    ) -> Outcome:
        """Plan and execute a deployment under the environment lock; roll back on any failure."""
        self.preflight(repos, versions)  # refuse bad input before the lock (which provisions the ledger's database)
        with self.locked() as conn:
            plan = self.plan(repos, versions)
            return self.run_plan(conn, plan, trigger=trigger, run_url=run_url)

    def run_plan(self, conn: Connection, plan: DeployPlan, *, trigger: Trigger, run_url: str | None) -> Outcome:
        """Execute every step of ``plan`` (the plan `ws deploy --dry-run` prints) as a new deployment."""
        dep = self.begin(conn, plan, dry_run=False, trigger=trigger, run_url=run_url)
        steps: list[StepOutcome] = []
        undo: list[StepOutcome] | None = None
        if not self.execute_all(conn, dep, plan.batches(), steps):
            undo = self._rollback_and_check(conn, self.load(conn, dep.id))
            steps += undo
        status = self.finish(conn, self.load(conn, dep.id), undo)
        return Outcome(dep.id, self.environment, status, steps, self.load(conn, dep.id).error, plan)

    def rollback_deployment(self, deployment_id: int) -> Outcome:
        """`ws rollback --deployment ID`: works on failed, interrupted and still-open deployments."""
        with self.locked() as conn:
            dep = self.load(conn, deployment_id)
            if dep.status == DeploymentStatus.RUNNING and dep.attached:
                raise CheckFailed(f"deployment {deployment_id} is still running")  # cannot happen under the lock
            ledger.interrupt_running_steps(conn, [deployment_id])
            steps = self._rollback_and_check(conn, dep)
            if not [s for s in steps if s.step == StepKind.ROLLBACK]:
                self.say(f"deployment {deployment_id} deployed no service: nothing to roll back")
            status = self.finish(conn, self.load(conn, deployment_id), steps)
            error = self.load(conn, deployment_id).error
            # `ws rollback` succeeds exactly when every rollback step and the health check after them passed
            held = all(s.ok for s in steps)
            return Outcome(deployment_id, self.environment, status, steps, error, succeeded=held)

    def _rollback_and_check(self, conn: Connection, dep: Deployment) -> list[StepOutcome]:
        """Roll back, then check health: the steps that decide whether the rollback held."""
        steps = self.rollback(conn, dep)
        # A first deployment rolls back to "nothing running": those services are checked as not deployed.
        check = PlannedStep(StepKind.HEALTH, "check the health of the environment")
        steps.append(
            self.execute(conn, dep, check, lambda _: self._health(dep, "after rollback: ", deployed_only=True))
        )
        return steps


def ledger_outcome(rows: Sequence[StepRecord]) -> DeploymentStatus:
    """A deployment's status from its ledger steps (ordered by id): succeeded when nothing failed and nothing was
    rolled back; rolled_back when the last rollback attempt (each repo's latest rollback step and the health checks
    after the last one) passed; failed otherwise."""
    rollback_at = [i for i, s in enumerate(rows) if s.step == StepKind.ROLLBACK]
    if not rollback_at:
        bad = [s for s in rows if s.status in ledger.UNFINISHED_OR_FAILED]
        return DeploymentStatus.FAILED if bad else DeploymentStatus.SUCCEEDED
    latest = {s.repo: s.status for s in rows if s.step == StepKind.ROLLBACK}
    after = [s.status for s in rows[rollback_at[-1] + 1 :] if s.step == StepKind.HEALTH]
    passed = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
    held = all(status in passed for status in [*latest.values(), *after])
    return DeploymentStatus.ROLLED_BACK if held else DeploymentStatus.FAILED


def environment_of(loaded: LoadedWorkspace, deployment_id: int) -> str:
    """Find a deployment's environment: look in each local/located ledger (the id alone names no environment)."""
    errors = []
    ordered = sorted(loaded.model.environments, key=lambda e: loaded.model.environments[e].runtime != "local")
    for environment in ordered:
        runtime = runtime_for(loaded, environment)
        try:
            infra = runtime.locate()
        except (CheckFailed, UsageError) as exc:
            errors.append(str(exc))
            continue
        if infra is None:
            continue
        try:
            with psycopg.connect(infra.database_url, connect_timeout=5, autocommit=True) as conn:
                row = conn.execute("SELECT environment FROM ws.deployments WHERE id = %s", [deployment_id]).fetchone()
        except psycopg.Error:
            continue
        if row:
            return str(row[0])
    raise UsageError(
        f"--deployment: no deployment {deployment_id} found in the ledger of any environment"
        + (f" ({'; '.join(errors)})" if errors else "")
    )


def commit_of(directory: Path, ref: str) -> dict[str, str] | None:
    """{"sha", "committed_at"} of the last commit touching ``directory`` at ``ref`` (None outside git or unknown ref);
    the ledger's ``commits`` feed the change lead time of `ws metrics`."""
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%H%n%cI", ref, "--", "."],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2:
        return None
    return {"sha": lines[0], "committed_at": lines[1]}


def run_url_from_environment() -> str | None:
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


def pipeline_begin(
    loaded: LoadedWorkspace,
    environment: str,
    repos: Sequence[str] | None,
    versions: Mapping[str, str] | None,
    *,
    dry_run: bool,
    schema_checks: SchemaChecks,
    progress: Progress,
    observer: DeployObserver | None = None,
) -> int:
    """`ws pipeline begin`: record a deployment that the following `ws pipeline` jobs carry out."""
    pipeline = Pipeline(loaded, environment, schema_checks=schema_checks, progress=progress, observer=observer)
    trigger = Trigger.WORKFLOW if os.environ.get("GITHUB_ACTIONS") == "true" else Trigger.PIPELINE
    pipeline.preflight(repos, versions)  # refuse bad input before the lock (which provisions the ledger's database)
    with pipeline.locked() as conn:
        plan = pipeline.plan(repos, versions)
        return pipeline.begin(conn, plan, dry_run=dry_run, trigger=trigger, run_url=run_url_from_environment()).id


FINISH = "finish"  # `ws pipeline finish`: the end of a deployment, after the phases of the plan


def pipeline_step(
    loaded: LoadedWorkspace,
    deployment_id: int,
    step: str,
    *,
    repo: str | None = None,
    schema_checks: SchemaChecks,
    progress: Progress,
    observer: DeployObserver | None = None,
) -> Outcome:
    """One `ws pipeline <step> --deployment ID` job: the planned steps of one phase (or `finish`) under the
    environment lock, recorded in the ledger."""
    phase = PHASE_BY_NAME.get(step)
    if phase is None and step != FINISH:
        raise UsageError(f"unknown pipeline step {step!r}; one of {', '.join([*PHASE_BY_NAME, FINISH])}")
    environment = environment_of(loaded, deployment_id)
    pipeline = Pipeline(loaded, environment, schema_checks=schema_checks, progress=progress, observer=observer)
    with pipeline.locked(shared=phase is not None) as conn:
        dep = pipeline.load(conn, deployment_id)
        if dep.status != DeploymentStatus.RUNNING:
            raise CheckFailed(
                f"deployment {deployment_id} is already {dep.status}; begin a new one with `ws pipeline begin`"
            )
        ledger.note_lock_deployment(conn, environment, deployment_id)
        stray = ledger.interrupt_running_steps(conn, [deployment_id])
        if stray:
            pipeline.say(
                f"{stray} step(s) of deployment {deployment_id} were left running by a stopped job: interrupted"
            )
        problem = pipeline.missing_checkouts(dep.repos) if phase is not None else None
        if problem:  # a job cannot carry out its part without the checkouts: the deployment ends here
            ledger.finish_deployment(conn, dep.id, DeploymentStatus.FAILED, problem)
            pipeline.tell(
                "deployment_finished",
                lambda o: o.deployment_finished(dep.id, environment, DeploymentStatus.FAILED),
            )
            raise UsageError(f"{problem} (deployment {dep.id} ended failed)")
        if phase is None:
            status = pipeline.finish(conn, dep)
            return Outcome(deployment_id, environment, status, [], pipeline.load(conn, deployment_id).error)
        plan = pipeline.plan_of(dep)
        if phase.needs_repo:
            if not repo:
                raise UsageError(f"ws pipeline {step} needs --repo R")
            if repo not in dep.repos:
                raise UsageError(
                    f"--repo: deployment {dep.id} does not include {repo} (it deploys {', '.join(dep.repos)})"
                )
        steps = plan.of(phase.kind, repo if phase.needs_repo else None)
        results: list[StepOutcome] = []
        ok = pipeline.execute_all(conn, dep, [[s] for s in steps], results)
        status = DeploymentStatus.SUCCEEDED if ok else DeploymentStatus.FAILED
        return Outcome(deployment_id, environment, status, results, plan=plan)


def rollback(
    loaded: LoadedWorkspace,
    deployment_id: int,
    *,
    schema_checks: SchemaChecks,
    progress: Progress,
    observer: DeployObserver | None = None,
) -> Outcome:
    environment = environment_of(loaded, deployment_id)
    pipeline = Pipeline(loaded, environment, schema_checks=schema_checks, progress=progress, observer=observer)
    return pipeline.rollback_deployment(deployment_id)
