"""Start-up time of the `ws` command, side by side with `python -c pass`.

    .venv/bin/python scripts/bench_cli.py [--runs 9] [--importtime]

Runs each command in a fresh process, interleaved round by round so machine load hits every command alike, and
prints the median wall time, the time above the bare interpreter and the ratio to it. Targets (issue 13): `ws --help`,
`ws plan --env dev` and `ws check` on the real workspace.yaml each under 0.3 s. `--importtime` adds, per command, the
modules that cost most to import (`python -X importtime`), to see what to make lazy.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.3
# As on a user's machine, the commands run from compiled bytecode: PYTHONDONTWRITEBYTECODE (set in some sandboxes)
# would recompile every infra module on every start. The .pyc files go to their own folder, not into the tree.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPYCACHEPREFIX"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "ws-bench-cli-pycache")

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "ws --help": [sys.executable, "-m", "infra.cli", "--help"],
    "ws plan --env dev": [sys.executable, "-m", "infra.cli", "plan", "--env", "dev"],
    "ws check": [sys.executable, "-m", "infra.cli", "check"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one fresh process running ``argv``."""
    cpu = children_cpu()
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 1):  # 1: a check failed, which still did all the work being timed
        sys.exit(f"error: {' '.join(argv[2:])} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return elapsed, children_cpu() - cpu


def import_costs(argv: list[str], top: int) -> list[tuple[int, str]]:
    """The ``top`` top-level imports with the largest cumulative time (microseconds), from -X importtime."""
    result = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False
    )
    costs = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = line.split("|", 2)
        if cumulative.strip().isdigit() and not name[1:].startswith(" "):  # top-level imports only
            costs.append((int(cumulative), name.strip()))
    return sorted(costs, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per command (median reported)")
    parser.add_argument("--importtime", action="store_true", help="also list each command's costliest imports")
    args = parser.parse_args()

    for argv in COMMANDS.values():  # warm the file cache and write the .pyc files
        run_once(argv)
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            wall, cpu = run_once(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)

    base = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    print(
        f"{'command':<20} {'wall':>9} {'above python':>13} {'x python':>9} {'cpu':>9} {'x python':>9}"
        f" {'target':>8}  wall < target"
    )
    for name in COMMANDS:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        target = "" if name == "python -c pass" else f"{TARGET_S * 1000:.0f} ms"
        verdict = "" if not target else ("yes" if wall < TARGET_S else "NO")
        print(
            f"{name:<20} {wall * 1000:>6.0f} ms {(wall - base) * 1000:>10.0f} ms {wall / base:>8.2f}x"
            f" {cpu * 1000:>6.0f} ms {cpu / base_cpu if base_cpu else 0:>8.2f}x {target:>8}  {verdict}"
        )
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"(medians of {args.runs} runs each, interleaved; load average {load}; {sys.executable})")

    if args.importtime:
        for name, argv in COMMANDS.items():
            if name == "python -c pass":
                continue
            print(f"\n{name}: costliest top-level imports (cumulative)")
            for micros, module in import_costs(argv, 8):
                print(f"  {micros / 1000:>7.1f} ms  {module}")


if __name__ == "__main__":
    main()
