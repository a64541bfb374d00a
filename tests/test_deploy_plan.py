"""The deploy plan is pure data built from the workspace and a runtime snapshot: no database, no processes."""

from __future__ import annotations

import pytest

from infra.deploy.pipeline import Pipeline
from infra.deploy.plan import (
    PHASES,
    MigrationState,
    RuntimeSnapshot,
    StepKind,
    build_plan,
    select,
    selected_repos,
    selection_of,
)
from infra.errors import UsageError
from infra.health_checks import schema_checks
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.helpers import EXAMPLES

PRIMARY, AGENTS, SPEC = "saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development"


@pytest.fixture(scope="module")
def loaded() -> LoadedWorkspace:
    return load_workspace(EXAMPLES / "workspace.yaml")


def snapshot(running: str | None = None) -> RuntimeSnapshot:
    repos = (PRIMARY, AGENTS, SPEC)
    return RuntimeSnapshot(
        "local",
        None,
        {r: running for r in repos},
        {r: "abc1234" for r in repos},
        {r: MigrationState(("0001_init",), note="database not running yet: every migration is pending") for r in repos},
    )


def test_the_plan_lists_every_phase_in_order_with_stage_numbers(loaded: LoadedWorkspace) -> None:
    seen = snapshot()
    selection = select(
        loaded.model, "local", selected_repos(loaded.model, None, {AGENTS: "2.0.0"}), {AGENTS: "2.0.0"}, seen
    )
    plan = build_plan(loaded.model, selection, seen)
    kinds = [s.kind for s in plan.steps]
    assert [k for i, k in enumerate(kinds) if k not in kinds[:i]] == [p.kind for p in PHASES]
    assert [(s.repo, s.stage) for s in plan.of(StepKind.DEPLOY)] == [(PRIMARY, 1), (AGENTS, 2), (SPEC, 2)]
    assert [[s.repo for s in batch] for batch in plan.batches() if batch[0].kind == StepKind.DEPLOY] == [
        [PRIMARY],
        [AGENTS, SPEC],
    ]
    [agents] = plan.of(StepKind.DEPLOY, AGENTS)
    assert agents.version_after == "2.0.0" and agents.action == f"deploy {AGENTS} (none) -> 2.0.0, health-gated"
    assert plan.as_dict()["migrate"][AGENTS] == {
        "apply": ["0001_init"],
        "note": "database not running yet: every migration is pending",
    }


def test_a_pipeline_job_rebuilds_the_same_steps_from_the_ledger_record(loaded: LoadedWorkspace) -> None:
    """`ws pipeline <step>` rebuilds the plan from what `ws pipeline begin` recorded: the same steps as the plan."""
    seen = snapshot("old")
    chosen = selected_repos(loaded.model, [SPEC], {})
    selection = select(loaded.model, "local", chosen, {}, seen)
    fresh = build_plan(loaded.model, selection, seen)
    recorded = selection_of(
        loaded.model, "local", list(selection.repos), selection.versions_before, selection.versions_after
    )
    rebuilt = build_plan(loaded.model, recorded)
    assert [(s.kind, s.repo, s.stage, s.action) for s in rebuilt.steps] == [
        (s.kind, s.repo, s.stage, s.action) for s in fresh.steps
    ]
    assert recorded.subset and [s.repo for s in fresh.of(StepKind.DEPLOY)] == [SPEC]
    assert fresh.of(StepKind.DEPLOY)[0].stage == 2  # its stage in the workspace, also in a subset


def test_versions_outside_the_selection_are_refused(loaded: LoadedWorkspace) -> None:
    with pytest.raises(UsageError, match=f"--versions names {PRIMARY}, which --repos does not select"):
        selected_repos(loaded.model, [AGENTS], {PRIMARY: "1.0.0"})


def test_every_phase_of_the_table_has_an_executor(loaded: LoadedWorkspace) -> None:
    pipeline = Pipeline(loaded, "local", schema_checks=schema_checks)
    assert set(pipeline.executors) == {phase.kind for phase in PHASES}
