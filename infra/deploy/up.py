"""`ws up` / `ws down`: the whole workspace on this machine, end to end, and stopping all of it again."""

from __future__ import annotations

from dataclasses import dataclass

from infra.deploy import health
from infra.deploy.events import DeployObserver
from infra.deploy.ledger import Trigger
from infra.deploy.local import LocalRuntime, Stopped
from infra.deploy.pipeline import Outcome, Pipeline, Progress
from infra.deploy.schema_gate import SchemaChecks
from infra.errors import UsageError
from infra.workspace.located import LoadedWorkspace


@dataclass
class UpResult:
    outcome: Outcome
    report: health.HealthReport
    urls: dict[str, str]


def local_runtime(loaded: LoadedWorkspace, environment: str) -> LocalRuntime:
    if environment not in loaded.model.environments:
        raise UsageError(
            f"--env: unknown environment {environment!r}; workspace.yaml declares {', '.join(loaded.model.environments)}"
        )
    if loaded.model.environments[environment].runtime != "local":
        raise UsageError(
            f"ws up/down run local environments; {environment} uses the pulumi runtime: use `ws deploy --env {environment}`"
        )
    return LocalRuntime(loaded, environment)


def up(
    loaded: LoadedWorkspace,
    environment: str,
    *,
    schema_checks: SchemaChecks,
    progress: Progress,
    observer: DeployObserver | None = None,
) -> UpResult:
    """Infra, migrations, stages and health, exactly as `ws deploy` (trigger `up`); services keep running."""
    runtime = local_runtime(loaded, environment)
    pipeline = Pipeline(
        loaded, environment, schema_checks=schema_checks, runtime=runtime, progress=progress, observer=observer
    )
    outcome = pipeline.run(None, None, trigger=Trigger.UP)
    report = health.check(loaded, environment, runtime, runtime.locate(), schema_checks=schema_checks)
    urls = {repo: url for repo in loaded.model.repos if (url := runtime.endpoint(repo))}
    return UpResult(outcome, report, urls)


def down(loaded: LoadedWorkspace, environment: str) -> Stopped:
    """Stop every service of the environment, then the embedded servers `ws up` started."""
    return local_runtime(loaded, environment).down()
