"""The schema gate: what the deploy's validate step, its health checks and `ws status` need from a schema checker.

The deploy does not read Prisma schemas itself (``infra.schema`` does, and the two packages are independent of
each other): whoever runs a deploy hands the pipeline and the health check a :class:`SchemaChecks` function,
composed above both packages (:mod:`infra.health_checks`). Its results are shown in the validate step, `ws health`
and `ws status`; ``ok = None`` means not checked, with the reason in ``detail``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from infra.workspace.located import LoadedWorkspace


@dataclass(frozen=True)
class SchemaResult:
    name: str  # alignment | drift
    ok: bool | None  # None: not checked (detail says why)
    detail: str


class SchemaChecks(Protocol):
    def __call__(
        self, loaded: LoadedWorkspace, database_url: str | None, repos: Sequence[str] | None
    ) -> list[SchemaResult]:
        """Alignment of the repos' shared models with the primary and drift of the database at ``database_url``
        (None: no database, drift not checked) from their schemas; ``repos`` None means every repo."""
        ...
