"""Uptime, error budget and incidents of an environment, from its stored probe rounds (:mod:`.probes`).

How the time of a window is counted, for each component and for the integration as a whole:

* a round stands for the state it found from its ``probed_at`` until the next round, but for at most
  ``GRACE x interval`` of its recorder; time no round stands for is **unknown** (a gap in probing);
* a component is *up* while its last probe passed, *down* while it failed, *unknown* while it was not checked
  or not probed;
* the **integration** is down while any component is down, up while every checked component is up;
* uptime ratio = up / (up + down) over the known time; unknown time is reported beside it, never counted as up
  (``uptime_if_unknown_was_down`` is the pessimistic bound up / window);
* error budget = (1 - target) x the window; spent = the down time; remaining = 1 - spent / budget (below 0
  when overspent);
* an incident is a run of rounds with the integration down, from the first failing round to the first round
  that passes again (open while none has); it names every component that failed in it and the first detail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from infra.errors import UsageError
from infra.monitoring.slo import GRACE, TARGET

if TYPE_CHECKING:  # probes imports psycopg and the deploy ledger; `ws check` reaches this module for TARGET alone
    from infra.monitoring.probes import Round

__all__ = ["GRACE", "TARGET", "UptimeReport", "compute", "format_duration", "parse_duration"]
INTEGRATION = "integration"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = timedelta(days=3660)  # ten years: windows and retentions beyond that are typos


def parse_duration(text: str, option: str = "--window") -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a number of seconds; one clear error otherwise."""
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,9})?)\s*([smhdw]?)\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{option}: {text!r} is not a duration; write e.g. 30s, 5m, 24h, 30d or 2w")
    seconds = float(match.group(1)) * UNITS[match.group(2) or "s"]
    if seconds > MAX_DURATION.total_seconds():
        raise UsageError(f"{option}: {text!r} is longer than {MAX_DURATION.days} days; write a shorter duration")
    return timedelta(seconds=seconds)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


@dataclass
class Tally:
    """Up, down and unknown seconds of one component (or the integration) in the window."""

    name: str
    window_s: float
    target: float
    up_s: float = 0.0
    down_s: float = 0.0

    @property
    def unknown_s(self) -> float:
        return max(0.0, self.window_s - self.up_s - self.down_s)

    @property
    def uptime(self) -> float | None:
        known = self.up_s + self.down_s
        return self.up_s / known if known > 0 else None

    @property
    def budget_s(self) -> float:
        return (1 - self.target) * self.window_s

    @property
    def budget_remaining(self) -> float:
        return 1 - self.down_s / self.budget_s if self.budget_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uptime": None if self.uptime is None else round(self.uptime, 6),
            "target": self.target,
            "meets_target": None if self.uptime is None else self.uptime >= self.target,
            "up_seconds": round(self.up_s, 3),
            "down_seconds": round(self.down_s, 3),
            "unknown_seconds": round(self.unknown_s, 3),
            "coverage": round((self.up_s + self.down_s) / self.window_s, 6) if self.window_s else 0.0,
            "uptime_if_unknown_was_down": round(self.up_s / self.window_s, 6) if self.window_s else None,
            "error_budget_seconds": round(self.budget_s, 3),
            "error_budget_spent_seconds": round(self.down_s, 3),
            "error_budget_remaining": round(self.budget_remaining, 6),
        }


@dataclass
class Incident:
    start: datetime
    end: datetime | None  # None: still open at the end of the window
    components: list[str]
    first_detail: str
    down_s: float = 0.0

    def duration_s(self, until: datetime) -> float:
        return ((self.end or until) - self.start).total_seconds()

    def as_dict(self, until: datetime) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "duration_seconds": round(self.duration_s(until), 3),
            "down_seconds": round(self.down_s, 3),
            "components": self.components,
            "first_failing": self.first_detail,
        }


@dataclass
class Gap:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "seconds": round(self.seconds, 3)}


@dataclass
class UptimeReport:
    environment: str
    since: datetime
    until: datetime
    target: float
    rounds: int
    integration: Tally
    components: list[Tally]
    incidents: list[Incident] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def window_s(self) -> float:
        return (self.until - self.since).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "window_seconds": round(self.window_s, 3),
            "target": self.target,
            "rounds": self.rounds,
            "integration": self.integration.as_dict(),
            "components": [c.as_dict() for c in self.components],
            "incidents": [i.as_dict(self.until) for i in self.incidents],
            "gaps": [g.as_dict() for g in self.gaps],
            "unknown_seconds": round(sum(g.seconds for g in self.gaps), 3),
        }


def _cover_end(rounds: list[Round], index: int, until: datetime) -> datetime:
    """Until when round ``index`` stands for the environment's state."""
    current = rounds[index]
    end = current.probed_at + timedelta(seconds=GRACE * current.interval_s)
    if index + 1 < len(rounds):
        end = min(end, rounds[index + 1].probed_at)
    return min(end, until)


def _seconds(start: datetime, end: datetime, since: datetime) -> float:
    return max(0.0, (end - max(start, since)).total_seconds())


def compute(
    environment: str, rounds: list[Round], since: datetime, until: datetime, target: float = TARGET
) -> UptimeReport:
    """The uptime report of ``rounds`` (time order; the last one before ``since`` may be included) over the window."""
    if not 0 < target < 1:
        raise UsageError(f"--target: {target} must lie between 0 and 1 (e.g. 0.999)")
    window_s = (until - since).total_seconds()
    integration = Tally(INTEGRATION, window_s, target)
    tallies: dict[str, Tally] = {}
    # per component: its last sample (start, ok, grace end), closed when the component's next sample arrives
    last_sample: dict[str, tuple[datetime, bool | None, datetime]] = {}
    incidents: list[Incident] = []
    gaps: list[Gap] = []
    open_incident: Incident | None = None
    covered_until = since
    counted = 0

    def close_sample(name: str, end: datetime) -> None:
        start, ok, grace_end = last_sample.pop(name)
        stop = min(end, grace_end, until)
        if ok is True:
            tallies[name].up_s += _seconds(start, stop, since)
        elif ok is False:
            tallies[name].down_s += _seconds(start, stop, since)

    for index, current in enumerate(rounds):
        at = current.probed_at
        if at > until:
            break
        end = _cover_end(rounds, index, until)
        if end > since:
            counted += 1
        # the integration
        start = max(at, since)
        if start > covered_until:
            gaps.append(Gap(covered_until, start))
        if current.ok:
            integration.up_s += _seconds(at, end, since)
            if open_incident is not None:
                open_incident.end = max(at, since)
                incidents.append(open_incident)
                open_incident = None
        else:
            down = _seconds(at, end, since)
            integration.down_s += down
            failed = current.failed
            if open_incident is None and end > since:
                first = failed[0]
                open_incident = Incident(max(at, since), None, [], f"{first.name}: {first.detail}")
            if open_incident is not None:
                open_incident.down_s += down
                for component in failed:
                    if component.name not in open_incident.components:
                        open_incident.components.append(component.name)
        covered_until = max(covered_until, end)
        # each component
        grace_end = at + timedelta(seconds=GRACE * current.interval_s)
        for component in current.components:
            tallies.setdefault(component.name, Tally(component.name, window_s, target))
            if component.name in last_sample:
                close_sample(component.name, at)
            last_sample[component.name] = (at, component.ok, grace_end)
    for name in list(last_sample):
        close_sample(name, until)
    if covered_until < until:
        gaps.append(Gap(covered_until, until))
    if open_incident is not None:
        incidents.append(open_incident)
    return UptimeReport(
        environment,
        since,
        until,
        target,
        counted,
        integration,
        sorted(tallies.values(), key=lambda t: t.name),
        incidents,
        [g for g in gaps if g.seconds > 0],
    )
