"""Benchmark `ws up` of the example workspace from cold, against the critical path of its services.

Each run makes a fresh copy of examples/workspace.yaml in a temporary folder with free ports and no
DATABASE_URL/REDIS_URL, so `ws up` starts embedded PostgreSQL and Valkey from nothing (initdb included),
applies every migration, starts the services stage by stage, runs the integration tests and the health check.

Printed side by side:
- total: wall time of the whole `ws up` process (target: under 15 s);
- stages via ws: per stage, first deploy step start to last deploy step end, from the ledger, summed;
- critical path (baseline): the same services started by hand, the same commands and env, one stage at a time,
  each timed from spawn to its first healthy /health (polled every 5 ms); per stage the slowest, summed;
- overhead: stages via ws / critical path - 1 (target: under 10%).

Usage: .venv/bin/python scripts/bench_up.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT))

from infra.deploy.local import LocalRuntime, stop_group  # noqa: E402
from infra.workspace.graph import edges_of, stages  # noqa: E402
from infra.workspace.loader import load_workspace  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cold_workspace(folder: Path) -> Path:
    text = (EXAMPLES / "workspace.yaml").read_text()
    text = text.replace("name: example_ecosystem", f"name: example_ecosystem\n  port: {free_port()}")
    text = text.replace("cache: {}", f"cache:\n  port: {free_port()}")
    for repo, port in (
        ("saas-ecosystem-architecture", 4100),
        ("app-agents", 4101),
        ("saas-spec-driven-development", 4102),
    ):
        text = text.replace(f"    path: {repo}\n", f"    path: {EXAMPLES / repo}\n")
        text = text.replace(f"port: {port}\n", f"port: {free_port()}\n")
    path = folder / "workspace.yaml"
    path.write_text(text.replace("# yaml-language-server: $schema=./workspace.schema.json\n", ""))
    return path


def ws(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "-w", str(workspace), *args],
        cwd=workspace.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def stage_times_from_ledger(database_url: str, deployment_id: int) -> list[float]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT stage, min(started_at), max(finished_at) FROM ws.deployment_steps "
            "WHERE deployment_id = %s AND step = 'deploy' GROUP BY stage ORDER BY stage",
            [deployment_id],
        ).fetchall()
    return [(end - start).total_seconds() for _, start, end in rows]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


BASELINE_REPEATS = 3  # the by-hand start of each stage is measured this many times; the median counts


def start_stage(loaded: Any, runtime: LocalRuntime, infra: Any, stage: list[str]) -> float:
    """Start a stage's services by hand, in parallel; seconds until the slowest is healthy; then stop them."""
    children = []
    started = time.perf_counter()
    for repo in stage:
        service = loaded.model.repos[repo].service
        assert service is not None and service.run.local
        env = runtime.service_env(repo, infra, runtime.default_version(repo))
        child = subprocess.Popen(
            service.run.local,
            shell=True,
            cwd=loaded.repo_dir(repo),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        children.append((repo, child, f"http://127.0.0.1:{service.port}{service.health.path}"))
    times: dict[str, float] = {}
    while len(times) < len(children):
        for repo, _, url in children:
            if repo not in times and healthy(url):
                times[repo] = time.perf_counter() - started
        time.sleep(0.005)
    for _, child, _ in children:
        stop_group(child.pid, reap=child)
    return max(times.values())


def critical_path(workspace: Path) -> list[float]:
    """Start the services by hand, stage by stage, with ws's env; per stage the slowest spawn-to-healthy."""
    loaded = load_workspace(workspace)
    runtime = LocalRuntime(loaded, "local")
    infra = runtime.infra()
    per_stage = []
    for stage in stages(edges_of(loaded.model)):
        for repo in stage:
            runtime.stop(repo)
        samples = [start_stage(loaded, runtime, infra, stage) for _ in range(BASELINE_REPEATS)]
        per_stage.append(statistics.median(samples))
    return per_stage


def run_once() -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ws-bench-up-"))
    workspace = cold_workspace(folder)
    try:
        started = time.perf_counter()
        up = ws(workspace, "up", "--json")
        total = time.perf_counter() - started
        if up.returncode != 0:
            raise SystemExit(f"ws up failed:\n{up.stderr[-3000:]}")
        result = json.loads(up.stdout)
        runtime = LocalRuntime(load_workspace(workspace), "local")
        infra = runtime.locate()
        assert infra is not None
        via_ws = stage_times_from_ledger(infra.database_url, int(result["deployment_id"]))
        baseline = critical_path(workspace)
        return {"total": total, "stages_ws": via_ws, "critical": baseline}
    finally:
        ws(workspace, "down")
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="Cold runs to make (median reported).")
    args = parser.parse_args()
    runs = [run_once() for _ in range(args.runs)]
    totals = [r["total"] for r in runs]
    ws_stages = [sum(r["stages_ws"]) for r in runs]
    critical = [sum(r["critical"]) for r in runs]
    print(f"{'run':>4} {'total s':>8} {'stages via ws s':>16} {'critical path s':>16} {'ratio':>7} {'overhead':>9}")
    for index, r in enumerate(runs, start=1):
        a, b = sum(r["stages_ws"]), sum(r["critical"])
        print(f"{index:>4} {r['total']:>8.2f} {a:>16.3f} {b:>16.3f} {a / b:>7.3f} {100 * (a / b - 1):>8.1f}%")
        detail = ", ".join(
            f"stage {i}: ws {w:.3f}s / by hand {c:.3f}s"
            for i, (w, c) in enumerate(zip(r["stages_ws"], r["critical"], strict=True), 1)
        )
        print(f"      {detail}")
    total, a, b = statistics.median(totals), statistics.median(ws_stages), statistics.median(critical)
    print(
        f"median: total {total:.2f}s (target < 15s: {'met' if total < 15 else 'MISSED'}); "
        f"overhead over the critical path {100 * (a / b - 1):.1f}% (target < 10%: {'met' if a / b < 1.10 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
