"""Probe history and uptime: rounds stored in a real PostgreSQL (`ws.health_probes`) and read back by `ws uptime`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from infra.deploy.health import Component
from infra.errors import UsageError
from infra.monitoring import history, probes, uptime
from tests.helpers import EXAMPLES, run_ws

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SERVICES = ("service:app-agents", "service:saas-spec-driven-development")


def components(down: tuple[str, ...] = (), unchecked: tuple[str, ...] = ()) -> list[Component]:
    result = [Component("postgres", "database", True, "connected", 1.5), Component("redis", "redis", True, "PING ok")]
    for name in SERVICES:
        if name in unchecked:
            result.append(Component(name, "service", None, "not deployed"))
        elif name in down:
            result.append(Component(name, "service", False, "http://127.0.0.1:1/health unreachable: refused", 2.0))
        else:
            result.append(Component(name, "service", True, "http://127.0.0.1:1/health HTTP 200", 3.0))
    return result


def record_minutes(
    url: str, minutes: range, *, down: range = range(0), unchecked: tuple[str, ...] = (), environment: str = "prod"
) -> None:
    """One round per minute (interval 60 s) at START + each minute; ``down`` minutes find app-agents failing."""
    with probes.connect(url) as conn:
        for minute in minutes:
            failing = ("service:app-agents",) if minute in down else ()
            probes.record(
                conn,
                environment,
                components(failing, unchecked),
                interval_s=60,
                source="test",
                probed_at=START + timedelta(minutes=minute),
                retention=None,
            )


def test_an_outage_is_one_incident_with_its_duration_and_spent_budget(fresh_database: str) -> None:
    record_minutes(fresh_database, range(0, 60), down=range(20, 25))
    until = START + timedelta(minutes=60)
    report = history.read_uptime(fresh_database, "prod", timedelta(hours=1), now=until)
    whole = report.integration
    assert (whole.up_s, whole.down_s, whole.unknown_s) == (3300, 300, 0)
    assert whole.uptime == pytest.approx(3300 / 3600)
    assert whole.budget_s == pytest.approx(3.6)  # 0.1% of an hour
    assert whole.budget_remaining == pytest.approx(1 - 300 / 3.6)
    [incident] = report.incidents
    assert incident.start == START + timedelta(minutes=20) and incident.end == START + timedelta(minutes=25)
    assert incident.duration_s(until) == 300 and incident.down_s == 300
    assert incident.components == ["service:app-agents"]
    assert incident.first_detail == "service:app-agents: http://127.0.0.1:1/health unreachable: refused"
    by_name = {t.name: t for t in report.components}
    assert by_name["service:app-agents"].down_s == 300
    assert by_name["service:saas-spec-driven-development"].down_s == 0
    assert by_name["postgres"].uptime == 1.0
    assert report.gaps == []


def test_gaps_in_probing_are_unknown_not_up(fresh_database: str) -> None:
    # rounds each minute, then none for 20 minutes (a round stands for at most 2 x 60 s), then rounds again
    record_minutes(fresh_database, range(0, 10))
    record_minutes(fresh_database, range(30, 40))
    until = START + timedelta(minutes=40)
    report = history.read_uptime(fresh_database, "prod", timedelta(minutes=40), now=until)
    whole = report.integration
    assert whole.down_s == 0
    # the 10th round stands for two intervals (to minute 11), the last one till the end of the window
    assert whole.up_s == 9 * 60 + 120 + 10 * 60
    assert whole.unknown_s == 19 * 60
    assert [(g.start, g.end) for g in report.gaps] == [(START + timedelta(minutes=11), START + timedelta(minutes=30))]
    assert whole.uptime == 1.0  # of the known time ...
    assert whole.as_dict()["uptime_if_unknown_was_down"] == pytest.approx(1260 / 2400)  # ... not of the window
    assert whole.as_dict()["coverage"] == pytest.approx(1260 / 2400)


def test_time_before_the_first_round_is_a_gap_and_the_round_before_the_window_counts(fresh_database: str) -> None:
    record_minutes(fresh_database, range(0, 30), down=range(0, 3))
    # the window starts at minute 2: the round of minute 1 (down) stands for minute 1-2, the part inside is minute 2
    report = history.read_uptime(fresh_database, "prod", timedelta(minutes=28), now=START + timedelta(minutes=30))
    assert report.integration.down_s == 60
    [incident] = report.incidents
    assert incident.start == START + timedelta(minutes=2) and incident.end == START + timedelta(minutes=3)
    early = history.read_uptime(fresh_database, "prod", timedelta(minutes=40), now=START + timedelta(minutes=30))
    assert [g.seconds for g in early.gaps] == [600]  # nothing was probed in the 10 minutes before START
    assert early.integration.unknown_s == 600


def test_an_incident_still_open_at_the_end_is_ongoing(fresh_database: str) -> None:
    record_minutes(fresh_database, range(0, 10), down=range(7, 10))
    until = START + timedelta(minutes=10)
    report = history.read_uptime(fresh_database, "prod", timedelta(minutes=10), now=until)
    [incident] = report.incidents
    assert incident.end is None and incident.duration_s(until) == 180
    assert report.as_dict()["incidents"][0]["end"] is None


def test_unchecked_components_are_unknown_and_do_not_fail_the_integration(fresh_database: str) -> None:
    record_minutes(fresh_database, range(0, 10), unchecked=("service:saas-spec-driven-development",))
    report = history.read_uptime(fresh_database, "prod", timedelta(minutes=10), now=START + timedelta(minutes=10))
    spec = next(t for t in report.components if t.name == "service:saas-spec-driven-development")
    assert spec.uptime is None and spec.unknown_s == 600
    assert report.integration.uptime == 1.0


def test_environments_are_kept_apart_and_retention_deletes_old_probes(fresh_database: str) -> None:
    record_minutes(fresh_database, range(0, 5), environment="staging", down=range(0, 5))
    record_minutes(fresh_database, range(0, 5))
    report = history.read_uptime(fresh_database, "prod", timedelta(minutes=5), now=START + timedelta(minutes=5))
    assert report.integration.down_s == 0
    with probes.connect(fresh_database) as conn:
        probes.record(
            conn,
            "prod",
            components(),
            interval_s=60,
            source="test",
            probed_at=START + timedelta(days=1, minutes=3),
            retention=timedelta(days=1),
        )
        kept = conn.execute(
            "SELECT environment, min(probed_at) AS first, count(DISTINCT round_id) AS rounds FROM ws.health_probes "
            "GROUP BY environment ORDER BY environment"
        ).fetchall()
    # prod's rounds older than a day before the new round (minutes 0-2) are gone; staging is not pruned by prod
    assert [(r["environment"], r["first"], r["rounds"]) for r in kept] == [
        ("prod", START + timedelta(minutes=3), 3),
        ("staging", START, 5),
    ]


def test_durations_parse_or_fail_clearly() -> None:
    assert uptime.parse_duration("30d") == timedelta(days=30)
    assert uptime.parse_duration("90m") == timedelta(minutes=90)
    assert uptime.parse_duration("15") == timedelta(seconds=15)
    for bad in ("", "0d", "3 weeks", "-1h", "9" * 40 + "d"):
        with pytest.raises(UsageError, match="--window: .* is not a duration"):
            uptime.parse_duration(bad)
    with pytest.raises(UsageError, match="--retention: '99999999d' is longer than 3660 days"):
        uptime.parse_duration("99999999d", "--retention")


def test_ws_uptime_json_and_table(fresh_database: str) -> None:
    record_minutes(fresh_database, range(0, 60), down=range(20, 25))
    done = run_ws(
        "-w", str(EXAMPLES / "workspace.yaml"), "uptime", "--env", "prod", "--window", "3650d", "--json",
        env={"WS_LEDGER_URL": fresh_database},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["integration"]["down_seconds"] == 300 and data["integration"]["target"] == 0.999
    assert data["incidents"][0]["components"] == ["service:app-agents"]
    assert data["incidents"][0]["duration_seconds"] == 300
    assert data["gaps"] and data["integration"]["unknown_seconds"] > 0  # the window reaches back before START
    text = run_ws(
        "-w", str(EXAMPLES / "workspace.yaml"), "uptime", "--env", "prod", "--window", "3650d",
        "--database-url", fresh_database,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "incidents (the integration down)" in text.stdout and "service:app-agents" in text.stdout
    assert "gaps in probing (unknown, not counted as up)" in text.stdout


def test_ws_uptime_bad_input_is_one_clear_message(fresh_database: str) -> None:
    bad = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "uptime", "--env", "prod", "--window", "soon")
    assert bad.returncode == 2 and "--window: 'soon' is not a duration" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "uptime", "--env", "nowhere")
    assert unknown.returncode == 2 and "unknown environment 'nowhere'" in unknown.stderr
    unreachable = run_ws(
        "-w", str(EXAMPLES / "workspace.yaml"), "uptime", "--env", "prod",
        "--database-url", "postgresql://postgres@127.0.0.1:1/nothing",
    )  # fmt: skip
    assert unreachable.returncode == 1 and "cannot connect to PostgreSQL" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_recording_rounds_concurrently_creates_the_table_once(fresh_database: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(minute: int) -> int:
        with probes.connect(fresh_database) as conn:
            return probes.record(
                conn, "prod", components(), interval_s=60, source="t", probed_at=START + timedelta(minutes=minute)
            )

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(one, range(8)))
    assert len(set(ids)) == 8
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM ws.health_probes").fetchone() == (8 * 4,)


def test_the_database_counts_the_same_seconds_as_the_report(fresh_database: str) -> None:
    """`ws monitor` refreshes its uptime series with probes.tallies (counted in SQL); `ws uptime` with
    uptime.compute. Both follow one rule: the same up and down seconds for every component and the integration,
    with outages, gaps, unchecked components, rounds before the window and two recorders of different cadence."""
    record_minutes(fresh_database, range(0, 50), down=range(12, 17))
    record_minutes(fresh_database, range(70, 90), unchecked=("service:saas-spec-driven-development",))
    with probes.connect(fresh_database) as conn:
        for minute in (3, 8, 52, 58, 95):  # a scheduled recorder every few minutes, one of them seeing an outage
            probes.record(
                conn,
                "prod",
                components(("service:app-agents",) if minute == 52 else ()),
                interval_s=300,
                source="test",
                probed_at=START + timedelta(minutes=minute, seconds=30),
                retention=None,
            )
        for since_minute, until_minute in ((0, 100), (10, 60), (15, 16), (-30, 200), (49, 75)):
            since, until = START + timedelta(minutes=since_minute), START + timedelta(minutes=until_minute)
            report = uptime.compute("prod", probes.rounds(conn, "prod", since, until), since, until)
            counted = probes.tallies(conn, "prod", since, until, uptime.GRACE, "integration")
            expected = {t.name: (t.up_s, t.down_s) for t in [report.integration, *report.components]}
            assert set(counted) == set(expected)
            for name, (up, down) in expected.items():
                assert counted[name] == (pytest.approx(up, abs=1e-6), pytest.approx(down, abs=1e-6)), (
                    since_minute, until_minute, name)  # fmt: skip
