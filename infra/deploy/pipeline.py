"""The staged, health-gated deploy with rollback: one implementation, two entry points.

``ws deploy`` runs every step in one process while holding the environment's advisory lock; the
``ws pipeline <step> --deployment ID`` commands run the same steps one per process (one GitHub job each),
each taking the lock for its own duration. Steps, in order:

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from infra.deploy import health, ledger, migrations, schema_checks
from infra.deploy.events import DeployObserver, RepoState
from infra.deploy.runtime import Infra, Runtime
from infra.deploy.runtimes import runtime_for
from infra.deploy.versions import check_versions
from infra.errors import CheckFailed, UsageError
from infra.workspace.graph import selected_stages
from infra.workspace.located import LoadedWorkspace

Progress = Callable[[str], None]
SCHEMA_NOTE = "rollback restores service versions only; database migrations stay applied (schema is never reverted)"
COMMAND_TIMEOUT = 600


@dataclass
class StepResult:
    step: str
    ok: bool
    detail: str
    repo: str | None = None
    skipped: bool = False


@dataclass
class Outcome:
    deployment_id: int | None
    environment: str
    status: str
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    plan: dict[str, Any] | None = None
    succeeded: bool | None = None  # set when success means something else than status succeeded (ws rollback)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded" if self.succeeded is None else self.succeeded

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "environment": self.environment,
            "status": self.status,
            "error": self.error,
            "steps": [s.__dict__ for s in self.steps],
            "plan": self.plan,
            "note": SCHEMA_NOTE,
        }


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class Pipeline:
    def __init__(
        self,
        loaded: LoadedWorkspace,
        environment: str,
        *,
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
        self.progress = progress
        self.observer = observer
        self._infra: Infra | None = None
        self._started = time.monotonic()

    # ---- helpers -----------------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.progress(f"[{time.monotonic() - self._started:6.1f}s] {message}")

    def notify(self, method: str, *args: Any) -> None:
        """Tell the observer; its errors are logged and never fail the deployment."""
        if self.observer is None:
            return
        try:
            getattr(self.observer, method)(*args)
        except Exception as exc:
            self.say(f"warning: deploy observer {method} failed: {exc}")

    def infra(self) -> Infra:
        if self._infra is None:
            self._infra = self.runtime.provision()
        return self._infra

    def stages(self, repos: Sequence[str] | None) -> list[list[str]]:
        return selected_stages(self.model, list(repos) if repos else None)

    def _subset(self, dep: dict[str, Any]) -> bool:
        """Whether the deployment selects only some of the workspace's repos."""
        return set(dep["repos"]) != set(self.model.repos)

    def stage_of(self, repo: str) -> int:
        for index, stage in enumerate(self.stages(None), start=1):
            if repo in stage:
                return index
        return 0

    def ledger_url(self) -> str:
        return self.runtime.ledger_url()

    # ---- planning ----------------------------------------------------------------------------------------
    def resolve_selection(
        self, repos: Sequence[str] | None, versions: Mapping[str, str] | None
    ) -> tuple[list[str], dict[str, str | None], dict[str, str]]:
        selected = [r for stage in self.stages(repos) for r in stage]
        versions = check_versions(self.loaded, versions or {})
        stray = [r for r in versions if r not in selected]
        if stray:
            raise UsageError(f"--versions names {', '.join(stray)}, which --repos does not select")
        before = {r: self.runtime.current_version(r) for r in selected}
        after = {r: versions.get(r) or self.runtime.default_version(r) for r in selected}
        return selected, before, after

    def plan(self, repos: Sequence[str] | None, versions: Mapping[str, str] | None) -> dict[str, Any]:
        """The exact plan of a deploy, touching nothing (servers are located, never started)."""
        selected, before, after = self.resolve_selection(repos, versions)
        located = self.runtime.locate()
        pending: dict[str, Any] = {}
        for repo in selected:
            spec = self.model.repos[repo]
            if spec.migrate is None:
                pending[repo] = "no migrate step declared"
            elif spec.migrate.command:
                pending[repo] = f"run `{spec.migrate.command}`"
            elif located is None:
                names = [m.name for m in migrations.migration_files(self.loaded, repo)]
                pending[repo] = {"apply": names, "note": "database not running yet: every migration is pending"}
            else:
                try:
                    with psycopg.connect(located.database_url, connect_timeout=5, autocommit=True) as conn:
                        state = migrations.status(conn, self.loaded, repo)
                    pending[repo] = {"apply": state.pending, "failed": state.failed, "modified": state.modified}
                except psycopg.OperationalError:
                    names = [m.name for m in migrations.migration_files(self.loaded, repo)]
                    pending[repo] = {"apply": names, "note": "workspace database does not exist yet"}
        stages = []
        for index, stage in enumerate(self.stages(repos), start=1):
            entries = []
            for repo in stage:
                service = self.model.repos[repo].service
                entries.append(
                    {
                        "repo": repo,
                        "version_before": before[repo],
                        "version_after": after[repo],
                        "action": "keep (already running)" if before[repo] == after[repo] else "deploy",
                        "health": (
                            f"{service.health.path} timeout {service.health.timeout}s retries {service.health.retries} "
                            f"start period {service.health.start_period}s"
                            if service
                            else "no service"
                        ),
                    }
                )
            stages.append({"stage": index, "repos": entries})
        preview = getattr(self.runtime, "preview", None)
        previewed: str | None = None
        if callable(preview):
            try:
                previewed = str(preview(after))
            except Exception as exc:  # the Pulumi CLI may be missing; the plan says so
                previewed = f"not available: {exc}"
        return {
            "environment": self.environment,
            "runtime": self.runtime.name,
            **({"preview": previewed} if previewed is not None else {}),
            "infra": located.describe() if located else "not running: would be provisioned",
            "migrate": pending,
            "validate": "schema alignment and drift (when infra.schema provides them)",
            "stages": stages,
            "integration": {
                r: self.model.repos[r].test.integration for r in selected if self.model.repos[r].test.integration
            },
            "health": "database, migrations, Redis, every service, schema",
            "on_failure": f"roll back services deployed by this run in reverse stage order; {SCHEMA_NOTE}",
        }

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
        self,
        conn: psycopg.Connection[Any],
        repos: Sequence[str] | None,
        versions: Mapping[str, str] | None,
        *,
        dry_run: bool,
        trigger: str,
        run_url: str | None,
    ) -> int:
        open_ones = ledger.open_pipeline_deployments(conn, self.environment)
        if open_ones:
            first = open_ones[0]
            raise CheckFailed(
                f"environment {self.environment} has deployment {first['id']} in progress (begun by {first['holder']} "
                f"via {first['trigger']} at {first['started_at']:%Y-%m-%d %H:%M:%S%z}); finish it with "
                f"`ws pipeline finish --deployment {first['id']}` or `ws rollback --deployment {first['id']}`"
            )
        selected, before, after = self.resolve_selection(repos, versions)
        commits = {}
        for repo in selected:
            # the checkout's commit when deploying the checkout, else the version when it names a commit here
            found = commit_of(self.loaded.repo_dir(repo), (versions or {}).get(repo) or "HEAD")
            if found:
                commits[repo] = found
        deployment_id = ledger.create_deployment(
            conn,
            environment=self.environment,
            repos=selected,
            versions_before=before,
            versions_after=after,
            holder=ledger.holder_name(),
            trigger=trigger,
            run_url=run_url,
            dry_run=dry_run,
            commits=commits,
        )
        ledger.note_lock_deployment(conn, self.environment, deployment_id)
        self.say(f"deployment {deployment_id} of {', '.join(selected)} to {self.environment} begun")
        self.notify("deployment_started", deployment_id, self.environment, selected)
        return deployment_id

    def load(self, conn: psycopg.Connection[Any], deployment_id: int) -> dict[str, Any]:
        row = ledger.deployment(conn, deployment_id)
        if row is None:
            raise UsageError(f"--deployment: no deployment {deployment_id} in the ledger")
        if row["environment"] != self.environment:
            raise UsageError(
                f"deployment {deployment_id} is for environment {row['environment']}, not {self.environment}"
            )
        return row

    def _step(
        self,
        conn: psycopg.Connection[Any],
        dep: dict[str, Any],
        step: str,
        action: Callable[[int], StepResult],
        *,
        repo: str | None = None,
        stage: int | None = None,
        version_before: str | None = None,
        version_after: str | None = None,
        dry_detail: str = "",
    ) -> StepResult:
        """Run ``action`` as one ledger row (``stage`` defaults to the repo's stage in the workspace)."""
        if stage is None and repo is not None:
            stage = self.stage_of(repo)
        step_id = ledger.start_step(
            conn, dep["id"], step, repo=repo, stage=stage, version_before=version_before, version_after=version_after
        )
        if dep["dry_run"]:
            ledger.finish_step(conn, step_id, "skipped", f"dry run: would {dry_detail}")
            self.say(f"{step}{' ' + repo if repo else ''}: dry run: would {dry_detail}")
            return StepResult(step, True, f"dry run: would {dry_detail}", repo, skipped=True)
        try:
            result = action(step_id)
        except (CheckFailed, UsageError) as exc:
            result = StepResult(step, False, str(exc), repo)
        except Exception as exc:  # record the unexpected, then let it surface
            ledger.finish_step(conn, step_id, "failed", f"internal error: {exc!r}")
            raise
        status = "skipped" if result.skipped else ("succeeded" if result.ok else "failed")
        ledger.finish_step(conn, step_id, status, result.detail)
        mark = "ok" if result.ok else "FAILED"
        self.say(
            f"{step}{' ' + repo if repo else ''}: {mark}: {result.detail.splitlines()[0] if result.detail else ''}"
        )
        return result

    # ---- steps -------------------------------------------------------------------------------------------
    def step_infra(self, conn: psycopg.Connection[Any], dep: dict[str, Any]) -> StepResult:
        def action(_: int) -> StepResult:
            infra = self.infra()
            described = infra.describe()
            return StepResult(
                "infra", True, f"PostgreSQL: {described['database_source']}; Redis: {described['cache_source']}"
            )

        return self._step(
            conn, dep, "infra", action, dry_detail="provision PostgreSQL, the workspace database and Redis"
        )

    def step_migrate(self, conn: psycopg.Connection[Any], dep: dict[str, Any]) -> list[StepResult]:
        def plan(repo: str) -> tuple[Callable[[int], StepResult], str] | None:
            spec = self.model.repos[repo]
            if spec.migrate is None:
                return None
            command = spec.migrate.command
            if command:
                return self._command_action(conn, "migrate", repo, command), f"run `{command}`"

            def apply(_: int) -> StepResult:
                applied = migrations.apply(self.infra().database_url, self.loaded, repo, progress=self.say)
                detail = f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "up to date"
                namespace = migrations.namespace_of(self.loaded, repo)
                return StepResult("migrate", True, f"{detail} (namespace {namespace})", repo)

            return apply, "apply pending Prisma migrations with the built-in applier"

        return self._repo_steps(conn, dep, "migrate", plan)

    def step_integration(self, conn: psycopg.Connection[Any], dep: dict[str, Any]) -> list[StepResult]:
        def plan(repo: str) -> tuple[Callable[[int], StepResult], str] | None:
            command = self.model.repos[repo].test.integration
            if not command:
                return None
            return self._command_action(conn, "integration", repo, command), f"run `{command}`"

        return self._repo_steps(conn, dep, "integration", plan)

    def _repo_steps(
        self,
        conn: psycopg.Connection[Any],
        dep: dict[str, Any],
        step: str,
        plan: Callable[[str], tuple[Callable[[int], StepResult], str] | None],
    ) -> list[StepResult]:
        """``step`` for each selected repo in stage order, one ledger row each, stopping at the first failure.
        ``plan(repo)`` gives the repo's action and its dry-run description, or None when it has nothing to do."""
        results = []
        for stage_index, stage in enumerate(self.stages(dep["repos"]), start=1):
            for repo in stage:
                planned = plan(repo)
                if planned is None:
                    continue
                action, dry = planned
                result = self._step(conn, dep, step, action, repo=repo, stage=stage_index, dry_detail=dry)
                results.append(result)
                if not result.ok:
                    return results
        return results

    def _command_action(
        self, conn: psycopg.Connection[Any], step: str, repo: str, command: str
    ) -> Callable[[int], StepResult]:
        return lambda step_id: self._run_command(conn, step_id, step, repo, command)

    def _run_command(
        self, conn: psycopg.Connection[Any], step_id: int, step: str, repo: str, command: str
    ) -> StepResult:
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
            return StepResult(step, False, f"`{command}` did not finish within {COMMAND_TIMEOUT}s", repo)
        output = tail((done.stdout or "") + "\n" + (done.stderr or ""))
        ledger.set_log_excerpt(conn, step_id, output)  # kept whether the command passes or fails
        if done.returncode != 0:
            last = output.splitlines()[-1] if output else ""
            return StepResult(step, False, f"`{command}` exited with {done.returncode}: {last}", repo)
        return StepResult(step, True, f"`{command}` passed", repo)

    def step_validate(self, conn: psycopg.Connection[Any], dep: dict[str, Any]) -> StepResult:
        def action(_: int) -> StepResult:
            results = schema_checks.run(self.loaded, self.infra(), dep["repos"] if self._subset(dep) else None)
            detail = "; ".join(f"{r.name}: {r.detail}" for r in results)
            if any(r.ok is False for r in results):
                return StepResult("validate", False, detail)
            if all(r.ok is None for r in results):
                return StepResult("validate", True, detail, skipped=True)
            return StepResult("validate", True, detail)

        return self._step(conn, dep, "validate", action, dry_detail="check schema alignment and drift")

    def step_deploy_repo(self, conn: psycopg.Connection[Any], dep: dict[str, Any], repo: str) -> StepResult:
        if repo not in dep["repos"]:
            raise UsageError(
                f"--repo: deployment {dep['id']} does not include {repo} (it deploys {', '.join(dep['repos'])})"
            )
        target = dep["versions_after"][repo]
        before = self.runtime.current_version(repo)
        service = self.model.repos[repo].service

        def action(step_id: int) -> StepResult:
            if before == target and (service is None or self._healthy_now(repo)):
                return StepResult("deploy", True, f"{repo} {target} already running and healthy", repo, skipped=True)
            self.notify("repo_state", dep["id"], self.environment, repo, target, "in_progress", "deploying")
            detail = self.runtime.deploy(repo, target)
            result = self._gate(repo, detail)
            ledger.set_log_excerpt(conn, step_id, self.runtime.logs(repo))
            state: RepoState = "success" if result.ok else "failure"
            self.notify("repo_state", dep["id"], self.environment, repo, target, state, result.detail)
            return result

        dry = f"deploy {repo} {before or '(none)'} -> {target}, health-gated"
        return self._step(
            conn, dep, "deploy", action, repo=repo, version_before=before, version_after=target, dry_detail=dry
        )

    def _healthy_now(self, repo: str) -> bool:
        service = self.model.repos[repo].service
        url = self.runtime.endpoint(repo)
        if service is None or url is None:
            return True
        return health.probe(url + service.health.path, service.health.timeout).ok

    def _gate(self, repo: str, detail: str) -> StepResult:
        service = self.model.repos[repo].service
        url = self.runtime.endpoint(repo)
        if service is None or url is None:
            return StepResult("deploy", True, detail, repo)
        self.say(f"deploy {repo}: waiting for {url}{service.health.path}")
        probe = health.wait_healthy(url + service.health.path, service.health, lambda: self.runtime.alive(repo))
        if probe.ok:
            return StepResult("deploy", True, f"{detail}; healthy in {probe.latency_ms:.0f} ms probe", repo)
        return StepResult("deploy", False, f"{detail}; health check failed: {probe.detail}", repo)

    def step_stage(self, conn: psycopg.Connection[Any], dep: dict[str, Any], stage: Sequence[str]) -> list[StepResult]:
        if len(stage) == 1:
            return [self.step_deploy_repo(conn, dep, stage[0])]
        with ThreadPoolExecutor(max_workers=len(stage)) as pool:
            return list(pool.map(lambda repo: self.step_deploy_repo(conn, dep, repo), stage))

    def step_health(
        self, conn: psycopg.Connection[Any], dep: dict[str, Any], label: str = "", *, deployed_only: bool = False
    ) -> StepResult:
        def action(_: int) -> StepResult:
            # a subset deploy is gated on its own repos (and on every service that runs): the others' migrations
            # did not run in it
            scope = dep["repos"] if self._subset(dep) else None
            report = health.check(
                self.loaded, self.environment, self.runtime, self.infra(), deployed_only=deployed_only, repos=scope
            )
            outside = (
                f" (not checked: {', '.join(report.unchecked)}: not part of this deployment)"
                if report.unchecked
                else ""
            )
            if report.ok:
                return StepResult("health", True, f"{label}all {len(report.components)} components healthy{outside}")
            failed = "; ".join(f"{c.name}: {c.detail}" for c in report.failed)
            return StepResult("health", False, f"{label}unhealthy: {failed}{outside}")

        return self._step(conn, dep, "health", action, dry_detail="check the health of the environment")

    def rollback(self, conn: psycopg.Connection[Any], dep: dict[str, Any]) -> list[StepResult]:
        """Take every repo this deployment touched back to its version before, in reverse stage order."""
        touched = {
            s["repo"]
            for s in ledger.steps(conn, dep["id"])
            if s["step"] == "deploy" and s["status"] in ("succeeded", "failed", "interrupted", "running")
        }
        before = dep["versions_before"]
        results = []
        self.say(f"rolling back deployment {dep['id']}: {SCHEMA_NOTE}")
        for stage in reversed(self.stages(dep["repos"])):
            for repo in stage:
                if repo not in touched:
                    continue
                previous = before.get(repo)
                current = self.runtime.current_version(repo)

                def action(
                    _: int, repo: str = repo, previous: str | None = previous, current: str | None = current
                ) -> StepResult:
                    if previous is not None and current == previous and self._healthy_now(repo):
                        return StepResult("rollback", True, f"{repo} already runs {previous}", repo, skipped=True)
                    if previous is None:
                        self.runtime.stop(repo)
                        return StepResult("rollback", True, f"{repo} was not running before: stopped", repo)
                    detail = self.runtime.deploy(repo, previous)
                    result = self._gate(repo, detail)
                    result.step = "rollback"
                    if result.ok:
                        version = dep["versions_after"].get(repo, "")
                        self.notify(
                            "repo_state",
                            dep["id"],
                            self.environment,
                            repo,
                            version,
                            "inactive",
                            f"rolled back to {previous}",
                        )
                    return result

                dry = f"roll {repo} back to {previous}"
                results.append(
                    self._step(
                        conn,
                        dep,
                        "rollback",
                        action,
                        repo=repo,
                        version_before=current,
                        version_after=previous,
                        dry_detail=dry,
                    )
                )
        return results

    def finish(
        self, conn: psycopg.Connection[Any], dep: dict[str, Any], rollback_steps: Sequence[StepResult] | None = None
    ) -> str:
        """Mark the deployment from its steps: succeeded, rolled_back or failed.

        ``rollback_steps``: the rollback this process just ran (its rollback steps and the health check after it);
        the deployment is rolled_back exactly when every one of them passed. Without them (``ws pipeline finish``)
        the ledger decides the same way from the last rollback attempt it records.
        """
        rows = ledger.steps(conn, dep["id"])
        bad = [s for s in rows if s["step"] != "rollback" and s["status"] in ("failed", "interrupted", "running")]
        error = None
        if rollback_steps is not None:
            failing = [s for s in rollback_steps if not s.ok]
            status = "failed" if failing else "rolled_back"
            if failing:
                first_failing = failing[0]
                error = f"rollback did not restore a healthy environment: {first_failing.step}"
                error += f"{' ' + first_failing.repo if first_failing.repo else ''}: {first_failing.detail}"
        else:
            status = ledger_outcome(rows)
        if bad:
            first = bad[0]
            cause = (
                f"{first['step']}{' ' + first['repo'] if first['repo'] else ''}: {first['detail'] or first['status']}"
            )
            error = f"{cause}; {error}" if error else cause
        if dep["status"] == "interrupted" and status != "succeeded":
            error = f"interrupted, then {status.replace('_', ' ')}: {error}"
        ledger.finish_deployment(conn, dep["id"], status, error)
        self.notify("deployment_finished", dep["id"], self.environment, status)
        self.say(f"deployment {dep['id']}: {status}")
        return status

    # ---- the whole pipeline in one process (ws deploy, ws up) -------------------------------------------
    def run(
        self,
        repos: Sequence[str] | None,
        versions: Mapping[str, str] | None,
        *,
        trigger: str = "cli",
        run_url: str | None = None,
    ) -> Outcome:
        with self.locked() as conn:
            deployment_id = self.begin(conn, repos, versions, dry_run=False, trigger=trigger, run_url=run_url)
            dep = self.load(conn, deployment_id)
            steps: list[StepResult] = []
            ok = self._forward(conn, dep, steps)
            undo: list[StepResult] | None = None
            if not ok:
                undo = self._rollback_and_check(conn, self.load(conn, deployment_id))
                steps += undo
            status = self.finish(conn, self.load(conn, deployment_id), undo)
            row = self.load(conn, deployment_id)
            return Outcome(deployment_id, self.environment, status, steps, row["error"])

    def _forward(self, conn: psycopg.Connection[Any], dep: dict[str, Any], steps: list[StepResult]) -> bool:
        steps.append(self.step_infra(conn, dep))
        if not steps[-1].ok:
            return False
        for result in self.step_migrate(conn, dep):
            steps.append(result)
            if not result.ok:
                return False
        steps.append(self.step_validate(conn, dep))
        if not steps[-1].ok:
            return False
        for index, stage in enumerate(self.stages(dep["repos"]), start=1):
            self.say(f"stage {index}: {', '.join(stage)}")
            results = self.step_stage(conn, dep, stage)
            steps += results
            if not all(r.ok for r in results):
                return False
        for result in self.step_integration(conn, dep):
            steps.append(result)
            if not result.ok:
                return False
        steps.append(self.step_health(conn, dep))
        return steps[-1].ok

    def rollback_deployment(self, deployment_id: int) -> Outcome:
        """`ws rollback --deployment ID`: works on failed, interrupted and still-open deployments."""
        with self.locked() as conn:
            dep = self.load(conn, deployment_id)
            if dep["status"] == "running" and dep["trigger"] in ledger.ATTACHED_TRIGGERS:
                raise CheckFailed(f"deployment {deployment_id} is still running")  # cannot happen under the lock
            ledger.interrupt_running_steps(conn, [deployment_id])
            steps = self._rollback_and_check(conn, dep)
            if not [s for s in steps if s.step == "rollback"]:
                self.say(f"deployment {deployment_id} deployed no service: nothing to roll back")
            status = self.finish(conn, self.load(conn, deployment_id), steps)
            row = self.load(conn, deployment_id)
            # `ws rollback` succeeds exactly when every rollback step and the health check after them passed
            held = all(s.ok for s in steps)
            return Outcome(deployment_id, self.environment, status, steps, row["error"], succeeded=held)

    def _rollback_and_check(self, conn: psycopg.Connection[Any], dep: dict[str, Any]) -> list[StepResult]:
        """Roll back, then check health: the steps that decide whether the rollback held."""
        steps = self.rollback(conn, dep)
        # A first deployment rolls back to "nothing running": those services are checked as not deployed.
        steps.append(self.step_health(conn, dep, "after rollback: ", deployed_only=True))
        return steps


def ledger_outcome(rows: Sequence[Mapping[str, Any]]) -> str:
    """A deployment's status from its ledger steps (ordered by id): succeeded when nothing failed and nothing was
    rolled back; rolled_back when the last rollback attempt (each repo's latest rollback step and the health checks
    after the last one) passed; failed otherwise."""
    rollback_at = [i for i, s in enumerate(rows) if s["step"] == "rollback"]
    if not rollback_at:
        bad = [s for s in rows if s["status"] in ("failed", "interrupted", "running")]
        return "failed" if bad else "succeeded"
    latest = {s["repo"]: s["status"] for s in rows if s["step"] == "rollback"}
    after = [s["status"] for s in rows[rollback_at[-1] + 1 :] if s["step"] == "health"]
    held = all(status in ("succeeded", "skipped") for status in [*latest.values(), *after])
    return "rolled_back" if held else "failed"


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
    progress: Progress,
    observer: DeployObserver | None = None,
) -> int:
    """`ws pipeline begin`: record a deployment that the following `ws pipeline` jobs carry out."""
    pipeline = Pipeline(loaded, environment, progress=progress, observer=observer)
    trigger = "workflow" if os.environ.get("GITHUB_ACTIONS") == "true" else "pipeline"
    with pipeline.locked() as conn:
        return pipeline.begin(
            conn, repos, versions, dry_run=dry_run, trigger=trigger, run_url=run_url_from_environment()
        )


PIPELINE_STEPS = ("infra", "migrate", "validate", "deploy", "integration", "health", "finish")


def pipeline_step(
    loaded: LoadedWorkspace,
    deployment_id: int,
    step: str,
    *,
    repo: str | None = None,
    progress: Progress,
    observer: DeployObserver | None = None,
) -> Outcome:
    """One `ws pipeline <step> --deployment ID` job: the step under the environment lock, recorded in the ledger."""
    if step not in PIPELINE_STEPS:
        raise UsageError(f"unknown pipeline step {step!r}; one of {', '.join(PIPELINE_STEPS)}")
    environment = environment_of(loaded, deployment_id)
    pipeline = Pipeline(loaded, environment, progress=progress, observer=observer)
    with pipeline.locked(shared=step != "finish") as conn:
        dep = pipeline.load(conn, deployment_id)
        if dep["status"] != "running":
            raise CheckFailed(
                f"deployment {deployment_id} is already {dep['status']}; begin a new one with `ws pipeline begin`"
            )
        ledger.note_lock_deployment(conn, environment, deployment_id)
        stray = ledger.interrupt_running_steps(conn, [deployment_id])
        if stray:
            pipeline.say(
                f"{stray} step(s) of deployment {deployment_id} were left running by a stopped job: interrupted"
            )
        results: list[StepResult]
        if step == "infra":
            results = [pipeline.step_infra(conn, dep)]
        elif step == "migrate":
            results = pipeline.step_migrate(conn, dep)
        elif step == "validate":
            results = [pipeline.step_validate(conn, dep)]
        elif step == "deploy":
            if not repo:
                raise UsageError("ws pipeline deploy needs --repo R")
            results = [pipeline.step_deploy_repo(conn, dep, repo)]
        elif step == "integration":
            results = pipeline.step_integration(conn, dep)
        elif step == "health":
            results = [pipeline.step_health(conn, dep)]
        else:
            status = pipeline.finish(conn, dep)
            row = pipeline.load(conn, deployment_id)
            return Outcome(deployment_id, environment, status, [], row["error"])
        ok = all(r.ok for r in results)
        return Outcome(deployment_id, environment, "succeeded" if ok else "failed", results)


def rollback(
    loaded: LoadedWorkspace, deployment_id: int, *, progress: Progress, observer: DeployObserver | None = None
) -> Outcome:
    environment = environment_of(loaded, deployment_id)
    return Pipeline(loaded, environment, progress=progress, observer=observer).rollback_deployment(deployment_id)
