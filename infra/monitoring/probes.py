"""Probe history: every health probe of an environment, stored in its ledger database (``ws.health_probes``).

One *round* is one `ws health --record` run or one tick of `ws monitor`: every component checked at once. Its
rows share a ``round_id`` and a ``probed_at`` time, and carry the recorder's cadence (``interval_s``): a round
stands for the state of the environment from ``probed_at`` until the next round, but never longer than
:data:`infra.monitoring.slo.GRACE` intervals - after that, the time is *unknown* (a gap in probing), never assumed up.

Rows older than the retention (default :data:`DEFAULT_RETENTION`) are deleted each time a round is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from infra.deploy import ledger
from infra.deploy.health import Component
from infra.errors import CheckFailed, UsageError

TABLE = "health_probes"
ROUNDS = "health_probe_rounds"  # the sequence numbering rounds
DEFAULT_RETENTION = timedelta(days=90)
DEFAULT_INTERVAL = 300.0  # `ws health --record` from the scheduled workflow runs every 5 minutes

DDL = """
CREATE SEQUENCE IF NOT EXISTS {ns}.{rounds};
CREATE TABLE IF NOT EXISTS {ns}.{table} (
    id          bigserial PRIMARY KEY,
    environment text             NOT NULL,
    round_id    bigint           NOT NULL,  -- the probes of one `ws health --record` run / `ws monitor` tick
    probed_at   timestamptz      NOT NULL,  -- when the round started
    interval_s  double precision NOT NULL CHECK (interval_s > 0),  -- the recorder's cadence
    component   text             NOT NULL,  -- e.g. postgres, redis, service:app-agents, schema:drift
    kind        text             NOT NULL,  -- database | migrations | redis | service | schema
    ok          boolean,                    -- NULL: not checked
    latency_ms  double precision,
    detail      text             NOT NULL,
    source      text             NOT NULL   -- health | monitor, and the recorder's host:pid
);
CREATE INDEX IF NOT EXISTS {index} ON {ns}.{table} (environment, probed_at);
"""


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create the ledger's namespace and the probe table when missing (idempotent, safe under concurrency)."""
    ledger.ensure_schema(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ws.health_probes.ddl'))")
        conn.execute(
            sql.SQL(DDL).format(
                ns=sql.Identifier(ledger.NAMESPACE),
                table=sql.Identifier(TABLE),
                rounds=sql.Identifier(ROUNDS),
                index=sql.Identifier(f"{TABLE}_env_probed_at"),
            )
        )


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """A connection to the ledger database with the probe table in place; one clear error when unreachable."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise CheckFailed(f"probe history: cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}") from None
    ensure_schema(conn)
    return conn


def _one(conn: psycopg.Connection[Any], query: sql.Composed, params: Sequence[Any] = ()) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(query, params).fetchone()
    assert row is not None
    return row


def _table() -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(ledger.NAMESPACE), sql.Identifier(TABLE))


@dataclass
class Round:
    """The components of an environment as one round found them."""

    id: int
    probed_at: datetime
    interval_s: float
    components: list[Component] = field(default_factory=list)

    @property
    def failed(self) -> list[Component]:
        return [c for c in self.components if c.ok is False]

    @property
    def ok(self) -> bool:
        """The integration is up when no checked component is down (components not checked do not count)."""
        return not self.failed


def record(
    conn: psycopg.Connection[Any],
    environment: str,
    components: Iterable[Component],
    *,
    interval_s: float,
    source: str,
    probed_at: datetime | None = None,
    retention: timedelta | None = DEFAULT_RETENTION,
) -> int:
    """Store one round; delete the environment's probes older than ``retention``. Returns the round's id."""
    if interval_s <= 0:
        raise UsageError("the probing interval must be positive")
    rows = list(components)
    with conn.transaction():
        found = _one(
            conn,
            sql.SQL("SELECT nextval({}) AS id, clock_timestamp() AS now").format(
                sql.Literal(f"{ledger.NAMESPACE}.{ROUNDS}")
            ),
        )
        round_id = int(found["id"])
        when: datetime = probed_at if probed_at is not None else found["now"]
        with conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {} (environment, round_id, probed_at, interval_s, component, kind, ok, latency_ms, "
                    "detail, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(_table()),
                [
                    (environment, round_id, when, interval_s, c.name, c.kind, c.ok, c.latency_ms, c.detail, source)
                    for c in rows
                ],
            )
        if retention is not None:
            prune(conn, environment, retention, now=when)
    return round_id


def prune(conn: psycopg.Connection[Any], environment: str, retention: timedelta, *, now: datetime | None = None) -> int:
    """Delete the environment's probes older than ``retention``; how many."""
    cursor = conn.execute(
        sql.SQL("DELETE FROM {} WHERE environment = %s AND probed_at < coalesce(%s, clock_timestamp()) - %s").format(
            _table()
        ),
        [environment, now, retention],
    )
    return cursor.rowcount


def rounds(conn: psycopg.Connection[Any], environment: str, since: datetime, until: datetime) -> list[Round]:
    """The rounds that can cover [since, until]: those inside it plus the last one before it (in time order)."""
    query = sql.SQL(
        "SELECT round_id, probed_at, interval_s, component, kind, ok, latency_ms, detail FROM {t} "
        "WHERE environment = %(env)s AND probed_at <= %(until)s AND (probed_at >= %(since)s OR round_id = "
        "(SELECT round_id FROM {t} WHERE environment = %(env)s AND probed_at < %(since)s "
        "ORDER BY probed_at DESC, round_id DESC LIMIT 1)) ORDER BY probed_at, round_id, id"
    ).format(t=_table())
    result: list[Round] = []
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, {"env": environment, "since": since, "until": until})
        for row in cursor:
            if not result or result[-1].id != row["round_id"]:
                result.append(Round(int(row["round_id"]), row["probed_at"], float(row["interval_s"])))
            result[-1].components.append(
                Component(row["component"], row["kind"], row["ok"], row["detail"], row["latency_ms"])
            )
    return result


TALLY = """
WITH samples AS (
    SELECT round_id, component, ok, probed_at, interval_s
    FROM {t}
    WHERE environment = %(env)s AND probed_at <= %(until)s AND probed_at >= %(since)s - interval '7 days'
), components AS (
    SELECT component, ok, probed_at, interval_s,
           lead(probed_at) OVER (PARTITION BY component ORDER BY probed_at, round_id) AS next_at
    FROM samples
), integration AS (
    SELECT at, interval_s, up, lead(at) OVER (ORDER BY at, round_id) AS next_at
    FROM (
        SELECT round_id, min(probed_at) AS at, max(interval_s) AS interval_s, bool_and(ok IS NOT FALSE) AS up
        FROM samples GROUP BY round_id
    ) rounds
), spans AS (
    SELECT component AS name, ok,
           least(coalesce(next_at, 'infinity'), probed_at + make_interval(secs => %(grace)s * interval_s),
                 %(until)s) - greatest(probed_at, %(since)s) AS span
    FROM components
    UNION ALL
    SELECT %(integration)s, up,
           least(coalesce(next_at, 'infinity'), at + make_interval(secs => %(grace)s * interval_s), %(until)s)
           - greatest(at, %(since)s)
    FROM integration
)
SELECT name,
       coalesce(sum(greatest(extract(epoch FROM span), 0)) FILTER (WHERE ok), 0)::float8 AS up_s,
       coalesce(sum(greatest(extract(epoch FROM span), 0)) FILTER (WHERE NOT ok), 0)::float8 AS down_s
FROM spans GROUP BY name ORDER BY name
"""


def tallies(
    conn: psycopg.Connection[Any], environment: str, since: datetime, until: datetime, grace: float, integration: str
) -> dict[str, tuple[float, float]]:
    """(up, down) seconds of every component and of the integration (named ``integration``) in [since, until],
    counted in the database by the rules of :mod:`infra.monitoring.uptime` (which also finds incidents and gaps):
    the monitor refreshes its uptime series this way without reading every row of a 30-day window."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            sql.SQL(TALLY).format(t=_table()),
            {"env": environment, "since": since, "until": until, "grace": grace, "integration": integration},
        )
        return {str(r["name"]): (float(r["up_s"]), float(r["down_s"])) for r in cursor.fetchall()}


def latest(conn: psycopg.Connection[Any], environment: str) -> Round | None:
    """The environment's last recorded round."""
    row = _one(
        conn,
        sql.SQL("SELECT max(probed_at) AS at FROM {} WHERE environment = %s").format(_table()),
        [environment],
    )
    at = row["at"]
    if at is None:
        return None
    found = rounds(conn, environment, at, at)
    return found[-1] if found else None


def environments(conn: psycopg.Connection[Any]) -> Sequence[str]:
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(sql.SQL("SELECT DISTINCT environment FROM {} ORDER BY 1").format(_table())).fetchall()
    return [str(r["environment"]) for r in rows]
