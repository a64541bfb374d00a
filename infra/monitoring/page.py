"""`ws dashboard`: one self-contained HTML page about an environment, for a person to look at.

Everything the page needs is inside it (inline CSS, an inline SVG graph, no script, no font, no image, no CDN);
its Content-Security-Policy forbids loading anything else. It shows the dependency graph with each repo's health,
uptime and error budget, the components' uptime, the incidents, the recent deployments with their stages and
outcome, schema alignment and drift, migration progress and the DORA figures.

The data come from the environment's ledger database (the last recorded probe round, the probe history, the
deploy ledger, the migration ledger) and the repos' checkouts (schema alignment); nothing is probed by
rendering, so the page shows what `ws health --record` / `ws monitor` last stored and says when that was.
"""

from __future__ import annotations

import html
import http.server
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from infra import metrics as figures
from infra.deploy import dora
from infra.deploy.health import Component
from infra.errors import CheckFailed, UsageError
from infra.monitoring import ledger_view, probes
from infra.monitoring.uptime import TARGET, Tally, UptimeReport, compute, format_duration
from infra.workspace.graph import edges_of, stages
from infra.workspace.located import LoadedWorkspace

STATUS_CLASS = {True: "up", False: "down", None: "unknown"}
STATUS_TEXT = {True: "up", False: "DOWN", None: "unknown"}
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


@dataclass
class PageData:
    workspace: str
    environment: str
    generated_at: datetime
    window: timedelta
    last_round: probes.Round | None
    uptime: UptimeReport | None
    deployments: list[ledger_view.DeploymentView]
    dora: dora.EnvironmentFigures | None
    alignment: figures.Availability
    migration: figures.Availability
    edges: dict[str, list[str]]
    repos: list[str]
    problems: list[str] = field(default_factory=list)


def collect(
    loaded: LoadedWorkspace, environment: str, url: str, window: timedelta, *, now: datetime | None = None
) -> PageData:
    """Read everything the page shows; what cannot be read is named in ``problems`` (and on the page)."""
    problems: list[str] = []
    last_round = None
    report = None
    deployments: list[ledger_view.DeploymentView] = []
    found_dora = None
    try:
        with probes.connect(url) as conn:
            if now is None:
                row = conn.execute("SELECT clock_timestamp() AS now").fetchone()
                assert row is not None
                now = row["now"]
            assert now is not None
            last_round = probes.latest(conn, environment)
            since = now - window
            report = compute(environment, probes.rounds(conn, environment, since, now), since, now, TARGET)
            deployments = ledger_view.recent_deployments(conn, environment, 10)
            rows = dora.read_deployments(conn, environment)
            found_dora = dora.compute(environment, rows, now - timedelta(days=30), now)
    except (CheckFailed, psycopg.Error) as exc:
        problems.append(f"ledger database: {str(exc).strip().splitlines()[0]}")
    if now is None:
        now = datetime.now(UTC)
    migration = figures.migration_completion(loaded, url)
    return PageData(
        loaded.model.name,
        environment,
        now,
        window,
        last_round,
        report,
        deployments,
        found_dora,
        figures.schema_alignment(loaded),
        migration,
        edges_of(loaded.model),
        list(loaded.model.repos),
        problems,
    )


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def percent(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def repo_components(data: PageData, repo: str) -> list[Component]:
    if data.last_round is None:
        return []
    return [c for c in data.last_round.components if c.name.split(":", 1)[-1] == repo]


def repo_state(data: PageData, repo: str) -> bool | None:
    states = [c.ok for c in repo_components(data, repo) if c.ok is not None]
    if not states:
        return None
    return all(states)


def tally(data: PageData, name: str) -> Tally | None:
    if data.uptime is None:
        return None
    return next((t for t in data.uptime.components if t.name == name), None)


def graph_svg(data: PageData) -> str:
    """The dependency graph: one column per deploy stage, edges from a dependency to its dependents."""
    layers = stages(data.edges)
    width, height, gap_x, gap_y = 260, 74, 90, 26
    tallest = max((len(layer) for layer in layers), default=1)
    total_w = len(layers) * width + (len(layers) - 1) * gap_x + 20
    total_h = tallest * height + (tallest - 1) * gap_y + 20
    where: dict[str, tuple[int, int]] = {}
    for column, layer in enumerate(layers):
        offset = (tallest - len(layer)) * (height + gap_y) // 2
        for row, repo in enumerate(layer):
            where[repo] = (10 + column * (width + gap_x), 10 + offset + row * (height + gap_y))
    parts = [
        f'<svg class="graph" role="img" aria-label="dependency graph" viewBox="0 0 {total_w} {total_h}" '
        f'width="{total_w}" height="{total_h}" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker></defs>',
    ]
    for repo, dependencies in data.edges.items():
        for dependency in dependencies:
            if repo not in where or dependency not in where:
                continue
            x1, y1 = where[dependency]
            x2, y2 = where[repo]
            parts.append(
                f'<path class="edge" data-from="{e(dependency)}" data-to="{e(repo)}" '
                f'd="M {x1 + width} {y1 + height // 2} C {x1 + width + gap_x // 2} {y1 + height // 2}, '
                f'{x2 - gap_x // 2} {y2 + height // 2}, {x2} {y2 + height // 2}" fill="none" stroke="#6b7280" '
                'stroke-width="2" marker-end="url(#arrow)"/>'
            )
    for repo, (x, y) in where.items():
        state = repo_state(data, repo)
        service = tally(data, f"service:{repo}")
        uptime = percent(service.uptime) if service else "n/a"
        budget = f"{service.budget_remaining * 100:.1f}%" if service else "n/a"
        parts.append(
            f'<g class="node {STATUS_CLASS[state]}" data-repo="{e(repo)}">'
            f'<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="10"/>'
            f'<text x="{x + 12}" y="{y + 22}" class="name">{e(repo)}</text>'
            f'<text x="{x + 12}" y="{y + 42}">{STATUS_TEXT[state]} · uptime {e(uptime)}</text>'
            f'<text x="{x + 12}" y="{y + 60}">error budget left {e(budget)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def card(label: str, value: str, key: str, detail: str = "", state: bool | None = None) -> str:
    css = f" {STATUS_CLASS[state]}" if state is not None else ""
    return (
        f'<div class="card{css}"><div class="label">{e(label)}</div>'
        f'<div class="value" data-metric="{e(key)}">{e(value)}</div><div class="detail">{e(detail)}</div></div>'
    )


def table(headers: list[str], rows: list[list[str]], caption: str, key: str) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f'<table data-table="{e(key)}"><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def td(value: object, key: str | None = None, css: str | None = None) -> str:
    attributes = (f' data-metric="{e(key)}"' if key else "") + (f' class="{e(css)}"' if css else "")
    return f"<td{attributes}>{e(value)}</td>"


def render(data: PageData, *, refresh: int | None = None) -> str:
    """The HTML page (``refresh``: seconds after which a browser reloads it, for the served page)."""
    window = format_duration(data.window.total_seconds())
    whole = data.uptime.integration if data.uptime else None
    now_ok = data.last_round.ok if data.last_round else None
    sections: list[str] = []
    cards = [
        card(
            "integration now",
            STATUS_TEXT[now_ok],
            "integration-now",
            f"last probed {when(data.last_round.probed_at if data.last_round else None)}",
            now_ok,
        ),
        card(
            f"integration uptime ({window})",
            percent(whole.uptime if whole else None),
            "integration-uptime",
            f"target {TARGET:.1%}",
            None if whole is None or whole.uptime is None else whole.uptime >= TARGET,
        ),
        card(
            f"error budget left ({window})",
            f"{whole.budget_remaining * 100:.1f}%" if whole else "n/a",
            "integration-budget",
            f"{format_duration(whole.down_s)} down of {format_duration(whole.budget_s)} allowed" if whole else "",
        ),
        card(
            "incidents",
            str(len(data.uptime.incidents)) if data.uptime else "n/a",
            "incidents",
            f"unknown (not probed): {format_duration(whole.unknown_s)}" if whole else "",
        ),
        card(
            "schema alignment",
            percent(data.alignment.value, 1),
            "schema-alignment",
            data.alignment.detail,
            None if data.alignment.value is None else data.alignment.value >= 1,
        ),
        card("schema drift", *drift_card(data)),
        card(
            "migration progress",
            percent(data.migration.value, 1),
            "migration",
            data.migration.detail,
        ),
    ]
    sections.append(f'<section class="cards">{"".join(cards)}</section>')
    sections.append(f"<section><h2>Dependency graph (deploy order, left to right)</h2>{graph_svg(data)}</section>")
    if data.uptime is not None:
        rows = []
        latest = {c.name: c for c in data.last_round.components} if data.last_round else {}
        for t in [data.uptime.integration, *data.uptime.components]:
            current = latest.get(t.name)
            state = now_ok if t.name == "integration" else (current.ok if current else None)
            rows.append(
                [
                    td(t.name),
                    td(STATUS_TEXT[state], f"now:{t.name}", STATUS_CLASS[state]),
                    td(percent(t.uptime), f"uptime:{t.name}"),
                    td(format_duration(t.down_s), f"down:{t.name}"),
                    td(format_duration(t.unknown_s)),
                    td(f"{t.budget_remaining * 100:.1f}%", f"budget:{t.name}"),
                    td(current.detail if current else ""),
                ]
            )
        sections.append(
            "<section>"
            + table(
                ["component", "now", "uptime", "down", "unknown", "budget left", "last detail"],
                rows,
                f"uptime over {window} (target {TARGET:.1%}); gaps in probing are unknown, never up",
                "components",
            )
            + "</section>"
        )
        incident_rows = [
            [
                td(when(i.start)),
                td(when(i.end) if i.end else "ongoing"),
                td(format_duration(i.duration_s(data.uptime.until)), f"incident-duration:{n}"),
                td(", ".join(i.components)),
                td(i.first_detail),
            ]
            for n, i in enumerate(data.uptime.incidents)
        ]
        sections.append(
            "<section>"
            + table(
                ["start", "end", "duration", "components", "first failing"], incident_rows, "incidents", "incidents"
            )
            + "</section>"
        )
    deployment_rows = []
    for d in data.deployments:
        chips = "".join(
            f'<span class="chip {e(s.status)}" title="{e(s.detail or "")}">'
            f"{e(s.step)}{(' ' + e(s.repo)) if s.repo else ''}{f' (stage {s.stage})' if s.stage is not None else ''}"
            "</span>"
            for s in d.steps
        )
        deployment_rows.append(
            [
                td(d.id),
                td(d.status, f"deployment-status:{d.id}", d.status),
                td(when(d.started_at)),
                td(format_duration(d.seconds) if d.seconds is not None else "running", f"deployment-duration:{d.id}"),
                td(", ".join(d.repos)),
                f'<td class="steps">{chips}</td>',
            ]
        )
    sections.append(
        "<section>"
        + table(
            ["id", "outcome", "started", "duration", "repos", "steps"],
            deployment_rows,
            "recent deployments",
            "deployments",
        )
        + "</section>"
    )
    if data.dora is not None:
        dora_rows = [
            [td(dora.FIGURE_NAMES[key]), td(dora.format_value(f), f"dora:{key}"), td(dora.format_detail(f))]
            for key, f in data.dora.figures().items()
        ]
        sections.append(
            "<section>"
            + table(["figure", "value", "detail"], dora_rows, "DORA figures (30 days)", "dora")
            + "</section>"
        )
    if data.problems:
        items = "".join(f"<li>{e(p)}</li>" for p in data.problems)
        sections.append(f'<section class="problems"><h2>Not available</h2><ul>{items}</ul></section>')
    meta_refresh = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta_refresh}<title>{e(data.workspace)} · {e(data.environment)}</title><style>{STYLE}</style></head>"
        f'<body><header><h1>{e(data.workspace)} <span class="env">{e(data.environment)}</span></h1>'
        f"<p>generated {when(data.generated_at)} by ws dashboard</p></header><main>{''.join(sections)}</main>"
        "</body></html>\n"
    )


def drift_card(data: PageData) -> tuple[str, str, str, bool | None]:
    """(value, key, detail, state) of the drift card, from the last recorded round's drift check."""
    drift = next((c for c in data.last_round.components if c.name == "schema:drift"), None) if data.last_round else None
    if drift is None:
        return "n/a", "schema-drift", "no drift check recorded", None
    text = "none" if drift.ok else ("drift" if drift.ok is False else "not checked")
    return text, "schema-drift", drift.detail, drift.ok


STYLE = """
:root { color-scheme: light; --up: #15803d; --down: #b91c1c; --unknown: #6b7280; --bg: #f8fafc; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg);
  color: #0f172a; }
header { padding: 16px 24px; background: #0f172a; color: #f8fafc; }
header h1 { margin: 0; font-size: 22px; } header p { margin: 4px 0 0; color: #cbd5e1; }
.env { padding: 2px 8px; border-radius: 6px; background: #334155; font-size: 16px; }
main { padding: 16px 24px; display: grid; gap: 20px; }
h2 { font-size: 16px; margin: 0 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #e2e8f0; border-left: 6px solid var(--unknown); border-radius: 8px;
  padding: 10px 12px; }
.card.up { border-left-color: var(--up); } .card.down { border-left-color: var(--down); }
.card .label { color: #475569; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 600; } .card .detail { color: #64748b; font-size: 12px; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 12px 16px; overflow-x: auto; }
section.cards { background: none; border: 0; padding: 0; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-weight: 600; padding-bottom: 6px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
td.up, td.succeeded { color: var(--up); font-weight: 600; }
td.down, td.failed, td.rolled_back, td.interrupted { color: var(--down); font-weight: 600; }
.chip { display: inline-block; margin: 1px 3px 1px 0; padding: 1px 6px; border-radius: 10px; font-size: 12px;
  background: #e2e8f0; }
.chip.succeeded { background: #dcfce7; } .chip.failed, .chip.interrupted { background: #fee2e2; }
.chip.skipped { background: #f1f5f9; color: #64748b; }
svg.graph .node rect { fill: #fff; stroke: var(--unknown); stroke-width: 3; }
svg.graph .node.up rect { stroke: var(--up); fill: #f0fdf4; } svg.graph .node.down rect { stroke: var(--down);
  fill: #fef2f2; }
svg.graph text { font: 13px system-ui, sans-serif; fill: #0f172a; } svg.graph text.name { font-weight: 600; }
.problems { border-color: #fca5a5; }
"""


def serve(
    loaded: LoadedWorkspace, environment: str, url: str, window: timedelta, host: str, port: int
) -> http.server.ThreadingHTTPServer:
    """A server rendering the page anew for each GET of ``/`` (bind it; the caller runs ``serve_forever``)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path.split("?", 1)[0] != "/":
                self.send_error(404, "only / is served")
                return
            body = render(collect(loaded, environment, url, window), refresh=30).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the command prints its own lines
            pass

    try:
        return http.server.ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise UsageError(f"--listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
