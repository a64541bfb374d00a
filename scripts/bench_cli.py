"""Start-up time of the `ws` command, side by side with `python -c pass`.

    .venv/bin/python scripts/bench_cli.py [--runs 9] [--importtime] [--instructions]

Runs each command in a fresh process, interleaved round by round so machine load hits every command alike, and
prints the median wall time, the time above the bare interpreter and the ratio to it. Targets (issue 13): `ws --help`,
`ws plan --env dev` and `ws check` on the real workspace.yaml each under 0.3 s. `--importtime` adds, per command, the
modules that cost most to import (`python -X importtime`), to see what to make lazy. `--instructions` counts
the instructions each command executes under valgrind's callgrind (one run each): unlike times, the count does not
change with the machine's load, so it compares commands, and a change, on a busy machine. It also counts the
imports every workspace command needs (click, rich, PyYAML, the model), the floor under `ws plan`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
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


# What every command that reads workspace.yaml imports, and the model it builds: the floor under `ws plan`.
FLOORS: dict[str, list[str]] = {
    "import click": [sys.executable, "-c", "import click"],
    "import rich (console, table)": [sys.executable, "-c", "import rich.console, rich.table"],
    "import yaml (PyYAML)": [sys.executable, "-c", "import yaml"],
    "import the workspace model (with PyYAML)": [sys.executable, "-c", "import infra.workspace.model"],
    "load and check workspace.yaml (no output)": [
        sys.executable,
        "-c",
        "from infra.workspace.loader import load_workspace; load_workspace(None)",
    ],
}


def instructions(argv: list[str]) -> int:
    """Instructions ``argv`` executes (callgrind's Ir), from start to exit."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        for line in out.read_text().splitlines() if out.exists() else []:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        sys.exit(f"error: callgrind gave no count for {' '.join(argv[1:])}: {result.stderr[-500:]}")


def print_instructions() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("error: --instructions needs valgrind (apt-get install valgrind)")
    counts = {name: instructions(argv) for name, argv in {**COMMANDS, **FLOORS}.items()}
    base = counts["python -c pass"]
    print(f"\n{'instructions (callgrind, one run each)':<40} {'M instr':>9} {'x python':>9} {'above python':>13}")
    for name, count in counts.items():
        print(f"{name:<40} {count / 1e6:>9.0f} {count / base:>8.2f}x {(count - base) / 1e6:>11.0f} M")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per command (median reported)")
    parser.add_argument("--importtime", action="store_true", help="also list each command's costliest imports")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each command's instructions under valgrind (independent of load), with the import floors",
    )
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
    if args.instructions:
        print_instructions()


if __name__ == "__main__":
    main()
