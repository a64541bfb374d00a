"""The deploy plan: what a deployment does, step by step, as pure data.

:func:`select` and :func:`build_plan` turn the workspace, the repos and versions asked for and a
:class:`RuntimeSnapshot` (what runs now, where the database is, which migrations are pending; gathered by the
pipeline before anything changes) into a :class:`DeployPlan`, with no I/O of their own. ``ws deploy --dry-run``
prints that plan; ``ws deploy`` executes exactly its steps, and each ``ws pipeline <step>`` job executes the steps
of one phase of the plan rebuilt from the ledger's record of the deployment (:mod:`infra.deploy.pipeline`).

:data:`PHASES` is the one table of the deploy's steps, in order: the planner, the executor, the dry run and the
``ws pipeline`` commands all read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from infra.errors import UsageError
from infra.workspace.graph import edges_of, selected_stages, stages
from infra.workspace.model import Workspace

SCHEMA_NOTE = "rollback restores service versions only; database migrations stay applied (schema is never reverted)"


class StepKind(StrEnum):
    """A ledger step's name (``ws.deployment_steps.step``)."""

    INFRA = "infra"
    MIGRATE = "migrate"
    VALIDATE = "validate"
    DEPLOY = "deploy"
    INTEGRATION = "integration"
    HEALTH = "health"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Phase:
    """One phase of the deploy: its step kind and what it does (the help of ``ws pipeline <kind>``)."""

    kind: StepKind
    summary: str
    per_repo: bool  # one step (and ledger row) per selected repo that has something to do
    needs_repo: bool = False  # `ws pipeline <kind>` acts on one repo: --repo R


PHASES: tuple[Phase, ...] = (
    Phase(
        StepKind.INFRA,
        "Provision PostgreSQL (with the workspace database) and Redis for the deployment's environment.",
        False,
    ),
    Phase(
        StepKind.MIGRATE,
        "Apply each selected repo's migrations in stage order (built-in applier or its command).",
        True,
    ),
    Phase(
        StepKind.VALIDATE,
        "Check schema alignment and drift of the selected repos against the migrated database.",
        False,
    ),
    Phase(
        StepKind.DEPLOY,
        "Deploy one repo at the deployment's version, gated by its health check.",
        True,
        needs_repo=True,
    ),
    Phase(
        StepKind.INTEGRATION, "Run the selected repos' test.integration commands against the running environment.", True
    ),
    Phase(
        StepKind.HEALTH, "Check the health of the environment (database, migrations, Redis, services, schema).", False
    ),
)
PHASE_BY_NAME = {phase.kind.value: phase for phase in PHASES}


@dataclass(frozen=True)
class MigrationState:
    """A repo's migrations as the snapshot saw them (``note`` when the database could not be asked)."""

    pending: tuple[str, ...]
    failed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    note: str | None = None

    def describe(self) -> str:
        parts = [f"apply {len(self.pending)}: {', '.join(self.pending)}" if self.pending else "up to date"]
        if self.failed:
            parts.append(f"FAILED (blocks migrate, P3009): {', '.join(self.failed)}")
        if self.modified:
            parts.append(f"EDITED after applying (refused): {', '.join(self.modified)}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"apply": list(self.pending)}
        if self.note is not None:
            data["note"] = self.note
        else:
            data.update(failed=list(self.failed), modified=list(self.modified))
        return data


@dataclass(frozen=True)
class RuntimeSnapshot:
    """What the runtime reported before the deployment: the input of the plan besides the workspace."""

    runtime: str
    infra: Mapping[str, str] | None  # Infra.describe() of the located servers; None: not running yet
    versions_before: Mapping[str, str | None]  # per repo the version running now
    default_versions: Mapping[str, str]  # per repo the version deployed when none is asked for
    migrations: Mapping[str, MigrationState] = field(default_factory=dict)  # repos using the built-in applier


@dataclass(frozen=True)
class Selection:
    """The repos a deployment deploys (in stage order) and their versions before and after it."""

    environment: str
    repos: tuple[str, ...]
    versions_before: Mapping[str, str | None]
    versions_after: Mapping[str, str]
    subset: bool  # only some of the workspace's repos: gates cover those (and every running service)
    versions_asked: Mapping[str, str] = field(default_factory=dict)  # named by --versions (not the defaults)


@dataclass(frozen=True)
class PlannedStep:
    kind: StepKind
    action: str  # what the step does, one line: the dry run's text and the ledger's "dry run: would ..."
    repo: str | None = None
    stage: int | None = None  # the repo's stage in the workspace's dependency graph
    command: str | None = None  # the repo's migrate.command / test.integration, run from its checkout
    version_before: str | None = None
    version_after: str | None = None
    detail: str | None = None  # what the snapshot adds (pending migrations, health probe settings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.kind.value,
            "repo": self.repo,
            "stage": self.stage,
            "action": self.action,
            **({"command": self.command} if self.command else {}),
            **({"detail": self.detail} if self.detail else {}),
        }


@dataclass(frozen=True)
class PlannedStage:
    number: int  # the stage's number in the workspace's dependency graph
    repos: tuple[str, ...]


@dataclass(frozen=True)
class DeployPlan:
    selection: Selection
    stages: tuple[PlannedStage, ...]
    steps: tuple[PlannedStep, ...]
    snapshot: RuntimeSnapshot | None = None  # None when rebuilt from the ledger (`ws pipeline <step>`)
    preview: str | None = None  # the runtime's forecast of its changes (`pulumi preview`), dry runs only

    @property
    def environment(self) -> str:
        return self.selection.environment

    def of(self, kind: StepKind, repo: str | None = None) -> list[PlannedStep]:
        return [s for s in self.steps if s.kind == kind and (repo is None or s.repo == repo)]

    def batches(self) -> list[list[PlannedStep]]:
        """The steps in execution order; the deploy steps of one stage form one batch (they run in parallel)."""
        batches: list[list[PlannedStep]] = []
        for step in self.steps:
            previous = batches[-1][-1] if batches else None
            if (
                previous is not None
                and step.kind == StepKind.DEPLOY
                and previous.kind == StepKind.DEPLOY
                and previous.stage == step.stage
            ):
                batches[-1].append(step)
            else:
                batches.append([step])
        return batches

    def as_dict(self) -> dict[str, Any]:
        """The plan as `ws deploy --dry-run --json` prints it."""
        selection, snapshot = self.selection, self.snapshot
        data: dict[str, Any] = {"environment": self.environment}
        if snapshot is not None:
            data["runtime"] = snapshot.runtime
        if self.preview is not None:
            data["preview"] = self.preview
        if snapshot is not None:
            data["infra"] = dict(snapshot.infra) if snapshot.infra else "not running: would be provisioned"
        migrating = {s.repo: _migrate_entry(s, snapshot) for s in self.of(StepKind.MIGRATE)}
        data["migrate"] = {r: migrating.get(r, "no migrate step declared") for r in selection.repos}
        data["validate"] = "schema alignment and drift"
        deploys = {s.repo: s for s in self.of(StepKind.DEPLOY)}
        data["stages"] = [
            {
                "stage": stage.number,
                "repos": [
                    {
                        "repo": repo,
                        "version_before": selection.versions_before[repo],
                        "version_after": selection.versions_after[repo],
                        "action": (
                            "keep (already running)"
                            if selection.versions_before[repo] == selection.versions_after[repo]
                            else "deploy"
                        ),
                        "health": deploys[repo].detail,
                    }
                    for repo in stage.repos
                ],
            }
            for stage in self.stages
        ]
        data["integration"] = {s.repo: s.command for s in self.of(StepKind.INTEGRATION)}
        data["health"] = "database, migrations, Redis, every service, schema"
        data["on_failure"] = f"roll back services deployed by this run in reverse stage order; {SCHEMA_NOTE}"
        data["steps"] = [s.as_dict() for s in self.steps]
        return data


def _migrate_entry(step: PlannedStep, snapshot: RuntimeSnapshot | None) -> Any:
    if step.command:
        return f"run `{step.command}`"
    state = snapshot.migrations.get(step.repo or "") if snapshot else None
    return state.as_dict() if state else step.action


def selected_repos(model: Workspace, repos: Sequence[str] | None, versions: Mapping[str, str]) -> tuple[str, ...]:
    """The repos a new deployment of ``repos`` (all when None) deploys, in stage order; every repo named by
    ``versions`` must be one of them."""
    selected = tuple(r for stage in selected_stages(model, list(repos) if repos else None) for r in stage)
    stray = [r for r in versions if r not in selected]
    if stray:
        raise UsageError(f"--versions names {', '.join(stray)}, which --repos does not select")
    return selected


def select(
    model: Workspace,
    environment: str,
    selected: Sequence[str],
    versions: Mapping[str, str],
    snapshot: RuntimeSnapshot,
) -> Selection:
    """The selection of a new deployment of ``selected`` (from :func:`selected_repos`): the versions asked for,
    else the runtime's defaults."""
    return Selection(
        environment,
        tuple(selected),
        {r: snapshot.versions_before.get(r) for r in selected},
        {r: versions.get(r) or snapshot.default_versions[r] for r in selected},
        set(selected) != set(model.repos),
        dict(versions),
    )


def selection_of(
    model: Workspace,
    environment: str,
    repos: Sequence[str],
    versions_before: Mapping[str, str | None],
    versions_after: Mapping[str, str],
) -> Selection:
    """The selection a recorded deployment made (rebuilt from the ledger by each `ws pipeline` job)."""
    ordered = tuple(r for stage in selected_stages(model, list(repos)) for r in stage)
    return Selection(
        environment,
        ordered,
        {r: versions_before.get(r) for r in ordered},
        {r: versions_after[r] for r in ordered},
        set(ordered) != set(model.repos),
    )


def stage_numbers(model: Workspace) -> dict[str, int]:
    """Each repo's stage number (1-based) in the whole workspace's dependency graph."""
    return {repo: index for index, layer in enumerate(stages(edges_of(model)), start=1) for repo in layer}


def build_plan(model: Workspace, selection: Selection, snapshot: RuntimeSnapshot | None = None) -> DeployPlan:
    """Every step of the deployment, in the order of :data:`PHASES`; repos in stage order within a phase."""
    number = stage_numbers(model)
    planned_stages = tuple(
        PlannedStage(number[layer[0]], tuple(layer)) for layer in selected_stages(model, list(selection.repos))
    )
    steps: list[PlannedStep] = [PlannedStep(StepKind.INFRA, "provision PostgreSQL, the workspace database and Redis")]
    for repo in selection.repos:
        migrate = model.repos[repo].migrate
        if migrate is None:
            continue
        if migrate.command:
            steps.append(PlannedStep(StepKind.MIGRATE, f"run `{migrate.command}`", repo, number[repo], migrate.command))
        else:
            state = snapshot.migrations.get(repo) if snapshot else None
            steps.append(
                PlannedStep(
                    StepKind.MIGRATE,
                    "apply pending Prisma migrations with the built-in applier",
                    repo,
                    number[repo],
                    detail=state.describe() if state else None,
                )
            )
    steps.append(PlannedStep(StepKind.VALIDATE, "check schema alignment and drift"))
    for stage in planned_stages:
        for repo in stage.repos:
            before, after = selection.versions_before[repo], selection.versions_after[repo]
            service = model.repos[repo].service
            probe = (
                f"{service.health.path} timeout {service.health.timeout}s retries {service.health.retries} "
                f"start period {service.health.start_period}s"
                if service
                else "no service"
            )
            steps.append(
                PlannedStep(
                    StepKind.DEPLOY,
                    f"deploy {repo} {before or '(none)'} -> {after}, health-gated",
                    repo,
                    stage.number,
                    version_before=before,
                    version_after=after,
                    detail=probe,
                )
            )
    for repo in selection.repos:
        command = model.repos[repo].test.integration
        if command:
            steps.append(PlannedStep(StepKind.INTEGRATION, f"run `{command}`", repo, number[repo], command))
    steps.append(PlannedStep(StepKind.HEALTH, "check the health of the environment"))
    return DeployPlan(selection, planned_stages, tuple(steps), snapshot)
