"""Observability commands: uptime from the probe history, the monitor serving /metrics, the dashboard page.

Parse, call infra.monitoring, render. Exit codes: 0 ok, 1 below target / unreachable, 2 bad usage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.markup import escape

from infra.cli._common import (
    Context,
    check_environment,
    console,
    env_option,
    err_console,
    json_option,
    pass_context,
    print_json,
    step_summary,
    table,
)
from infra.deploy.health import HealthReport
from infra.deploy.runtime import Runtime
from infra.errors import CheckFailed, UsageError
from infra.markdown import markdown_table
from infra.monitoring import history, probes
from infra.monitoring.uptime import UptimeReport, format_duration, parse_duration
from infra.workspace.located import LoadedWorkspace

F = TypeVar("F", bound=Callable[..., Any])


def record_options(func: F) -> F:
    """`ws health --record [--interval 5m] [--retention 90d]`."""
    func = click.option(
        "--retention",
        default="90d",
        show_default=True,
        metavar="DURATION",
        help="With --record: delete this environment's probes older than this.",
    )(func)
    func = click.option(
        "--interval",
        "record_interval",
        default="5m",
        show_default=True,
        metavar="DURATION",
        help="With --record: how often this runs; a round stands for at most twice this, longer is a gap.",
    )(func)
    return click.option(
        "--record",
        is_flag=True,
        help="Store every component's result in ws.health_probes of ENV's ledger database (read by ws uptime).",
    )(func)


def record_health(
    loaded: LoadedWorkspace, runtime: Runtime, report: HealthReport, record_interval: str, retention: str
) -> None:
    """Store the report as one round of probes; one clear error (exit 1) when the ledger cannot be written."""
    interval = parse_duration(record_interval, "--interval")
    keep = parse_duration(retention, "--retention")
    try:
        url = history.ledger_url(loaded, report.environment, runtime)
        round_id = history.record_report(url, report, interval_s=interval.total_seconds(), retention=keep)
    except CheckFailed as exc:
        raise CheckFailed(f"probes not recorded: {exc}") from None
    err_console.print(f"recorded round {round_id} ({len(report.components)} probes) in ws.{probes.TABLE}")


def start_pushgateway(loaded: LoadedWorkspace, environment: str) -> None:
    """`ws up`: the local Pushgateway of monitoring.pushgateway, or why there is none."""
    from infra.monitoring import pushgateway

    message = pushgateway.start_local(loaded, environment)
    if message:
        err_console.print(escape(message))


def stop_pushgateway(loaded: LoadedWorkspace, environment: str) -> list[str]:
    """`ws down`: stop the Pushgateway `ws up` started; what was stopped."""
    from infra.monitoring import pushgateway

    return pushgateway.stop_local(loaded, environment)


def percent(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def render_uptime(report: UptimeReport) -> None:
    window = format_duration(report.window_s)
    rows = [
        (
            escape(t.name),
            percent(t.uptime),
            "n/a" if t.uptime is None else ("yes" if t.uptime >= t.target else "[red]no[/]"),
            format_duration(t.down_s),
            format_duration(t.unknown_s),
            f"{t.budget_remaining * 100:.1f}%",
        )
        for t in [report.integration, *report.components]
    ]
    title = f"uptime of {report.environment} over {window} ({report.rounds} probe rounds), target {report.target:.1%}"
    console.print(table(title, ["component", "uptime", "meets", "down", "unknown", "budget left"], rows))
    if report.incidents:
        console.print(
            table(
                "incidents (the integration down)",
                ["start", "end", "duration", "components", "first failing"],
                [
                    (
                        f"{i.start:%Y-%m-%d %H:%M:%S%z}",
                        f"{i.end:%Y-%m-%d %H:%M:%S%z}" if i.end else "ongoing",
                        format_duration(i.duration_s(report.until)),
                        escape(", ".join(i.components)),
                        escape(i.first_detail),
                    )
                    for i in report.incidents
                ],
            )
        )
    else:
        console.print("no incidents in the window")
    if report.gaps:
        unknown = sum(g.seconds for g in report.gaps)
        shown = sorted(report.gaps, key=lambda g: g.seconds, reverse=True)[:5]
        console.print(
            f"gaps in probing (unknown, not counted as up): {len(report.gaps)}, {format_duration(unknown)} in all; "
            + "; ".join(f"{g.start:%Y-%m-%d %H:%M:%S} for {format_duration(g.seconds)}" for g in shown)
        )


def uptime_markdown(report: UptimeReport) -> str:
    lines = [
        f"## ws uptime {report.environment}: {percent(report.integration.uptime)} (target {report.target:.1%})",
        "",
        markdown_table(
            ["component", "uptime", "down", "unknown", "error budget left"],
            [
                (
                    t.name,
                    percent(t.uptime),
                    format_duration(t.down_s),
                    format_duration(t.unknown_s),
                    f"{t.budget_remaining * 100:.1f}%",
                )
                for t in [report.integration, *report.components]
            ],
        ),
        "",
    ]
    lines.append(f"{len(report.incidents)} incident(s), {len(report.gaps)} gap(s) in probing.")
    return "\n".join(lines)


def window_option(func: F) -> F:
    return click.option(
        "--window", default="30d", show_default=True, metavar="DURATION", help="The window ending now, e.g. 24h, 30d."
    )(func)


def database_option(func: F) -> F:
    return click.option(
        "--database-url",
        default=None,
        metavar="URL",
        envvar="WS_LEDGER_URL",
        help="The ledger database to read (default: the environment's own; env WS_LEDGER_URL).",
    )(func)


@click.command("uptime")
@env_option()
@window_option
@click.option("--target", type=float, default=0.999, show_default=True, help="The availability objective.")
@database_option
@json_option
@pass_context
def uptime_command(
    ctx: Context, environment: str, window: str, target: float, database_url: str | None, as_json: bool
) -> None:
    """Uptime of ENV per component and for the integration as a whole, against the target.

    The integration is up while every component is up at once. Read from the probes that `ws health --record`
    and `ws monitor` stored: the error budget left, the incidents and the gaps in probing, which count as
    unknown, never as up. Exit 1 when the ledger database cannot be read."""
    loaded = ctx.loaded
    check_environment(loaded, environment)
    span = parse_duration(window)
    if not 0 < target < 1:
        raise UsageError(f"--target: {target} must lie between 0 and 1 (e.g. 0.999)")
    url = database_url or history.ledger_url(loaded, environment)
    report = history.read_uptime(url, environment, span, target=target)
    if as_json:
        print_json(report.as_dict())
    else:
        render_uptime(report)
    step_summary(uptime_markdown(report))


@click.command("monitor")
@env_option()
@click.option("--interval", default="30s", show_default=True, metavar="DURATION", help="Time between probe rounds.")
@click.option(
    "--listen", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT", help="Where /metrics is served."
)
@click.option(
    "--checks-every",
    default="5m",
    show_default=True,
    metavar="DURATION",
    help="How often the slow figures refresh: schema alignment and drift, migrations, DORA, deploy durations.",
)
@click.option("--record/--no-record", default=True, show_default=True, help="Store each round in ws.health_probes.")
@click.option("--retention", default="90d", show_default=True, metavar="DURATION", help="Keep probes this long.")
@click.option("--target", type=float, default=0.999, show_default=True, help="The availability objective.")
@database_option
@pass_context
def monitor_command(
    ctx: Context,
    environment: str,
    interval: str,
    listen: str,
    checks_every: str,
    record: bool,
    retention: str,
    target: float,
    database_url: str | None,
) -> None:
    """Probe ENV on an interval, record every round and serve /metrics for Prometheus.

    Each round runs the checks of `ws health` concurrently, each probe bounded by its timeout, and stores them
    like `ws health --record`. /metrics (Prometheus text format) has component up, probe latency histograms,
    uptime ratios and error budget per window, schema alignment and drift, migration completion, DORA figures
    and deploy durations. Ctrl-C (or SIGTERM) stops it cleanly."""
    import signal
    import threading

    # imported here: prometheus_client is only needed by this command
    from infra.monitoring.exporter import Monitor, parse_listen

    loaded = ctx.loaded
    check_environment(loaded, environment)
    if not 0 < target < 1:
        raise UsageError(f"--target: {target} must lie between 0 and 1 (e.g. 0.999)")
    host, port = parse_listen(listen)
    monitor = Monitor(
        loaded,
        environment,
        interval=parse_duration(interval, "--interval").total_seconds(),
        checks_every=parse_duration(checks_every, "--checks-every").total_seconds(),
        record=record,
        retention=parse_duration(retention, "--retention"),
        target=target,
        database_url=database_url,
        progress=lambda message: err_console.print(escape(message)),
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        bound = monitor.serve(host, port)
        err_console.print(f"serving http://{host}:{bound}/metrics for {environment}; Ctrl-C stops")
        monitor.run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        monitor.close()
        signal.signal(signal.SIGTERM, previous)
    err_console.print(f"stopped after {monitor.rounds_done} round(s)")


@click.command("dashboard")
@env_option()
@window_option
@click.option("--output", "-o", default=None, metavar="FILE", help="Write the page to FILE instead of serving it.")
@click.option(
    "--listen", default="127.0.0.1:8765", show_default=True, metavar="HOST:PORT", help="Where the page is served."
)
@database_option
@pass_context
def dashboard_command(
    ctx: Context, environment: str, window: str, output: str | None, listen: str, database_url: str | None
) -> None:
    """Serve (or with -o write) one self-contained HTML page about ENV for a person to look at.

    The dependency graph with each service's health, uptime and error budget, recent deployments with their
    stages and outcome, schema alignment and drift, migration progress and DORA figures, from what
    `ws health --record` / `ws monitor` and the deploy ledger stored. Nothing is loaded from elsewhere: no CDN,
    no script. Served, the page is rendered anew on each request; Ctrl-C stops the server."""
    from pathlib import Path

    from infra.monitoring import page
    from infra.monitoring.exporter import parse_listen

    loaded = ctx.loaded
    check_environment(loaded, environment)
    span = parse_duration(window)
    url = database_url or history.ledger_url(loaded, environment)
    if output is not None:
        target = Path(output)
        if target.is_dir():
            raise UsageError(f"-o: {output} is a folder; name the HTML file to write")
        try:
            target.write_text(page.render(page.collect(loaded, environment, url, span)), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-o: cannot write {output}: {exc.strerror or exc}") from None
        err_console.print(f"wrote {output}")
        return
    host, port = parse_listen(listen)
    server = page.serve(loaded, environment, url, span, host, port)
    err_console.print(f"serving http://{host}:{server.server_port}/ for {environment}; Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    err_console.print("stopped")


COMMANDS: tuple[click.Command, ...] = (uptime_command, monitor_command, dashboard_command)
