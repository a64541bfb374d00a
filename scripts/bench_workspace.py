"""Benchmark: reading large workspace.yaml files and `ws check` / `ws plan` on many repos.

1. Load (read + validate + rules) of a valid ~1 MB workspace (3,400 repos), next to the round-trip parse of
   the same text by ruamel (the baseline: what every command did before the fast reader). Target: < 1 s.
2. `ws check` on a 300-repo workspace, as a user runs it (a fresh process), next to `ws --help` (start-up
   alone) and `ws check` on 3 repos (the baseline), with the time of each check in-process. Target: < 2 s.
3. `ws plan` on 3,000 repos whose depends_on chain runs in sorted order (recursed past Python's limit before).

Times are best of N; CPU seconds are printed beside wall seconds because the machine is shared.

    .venv/bin/python scripts/bench_workspace.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from infra.checks import CHECKS
from infra.workspace import load_workspace
from infra.workspace.synthetic import chain_workspace

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeat: int, action: Callable[[], Any]) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def run_ws(repeat: int, *args: str, cwd: Path) -> tuple[float, float]:
    """Best wall and CPU seconds of `ws ARGS` in a fresh process."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "infra.cli", *args], cwd=cwd, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(walls), min(cpus)


def row(label: str, seconds: tuple[float, float], baseline: tuple[float, float] | None = None) -> None:
    ratio = f"  {baseline[1] / seconds[1]:6.1f}x faster (CPU)" if baseline and seconds[1] else ""
    print(f"  {label:<44} {seconds[0]:7.3f} s wall {seconds[1]:7.3f} s CPU{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        big = folder / "large" / "workspace.yaml"
        big.parent.mkdir()
        big.write_text(chain_workspace(3400), encoding="utf-8")
        text = big.read_text(encoding="utf-8")
        print(f"1. load of a valid {len(text.encode()) / 2**20:.2f} MB workspace (3,400 repos); target < 1 s")
        baseline = best_of(1, lambda: YAML(typ="rt").load(text))
        row("ruamel round-trip parse alone (baseline)", baseline)
        row("ws load_workspace (read, validate, rules)", best_of(args.repeat, lambda: load_workspace(big)), baseline)

        checked = folder / "checked" / "workspace.yaml"
        checked.parent.mkdir()
        checked.write_text(chain_workspace(300), encoding="utf-8")
        print("2. ws check on 300 repos (fresh process); target < 2 s")
        row("ws --help (start-up alone)", run_ws(args.repeat, "--help", cwd=checked.parent))
        small = folder / "small" / "workspace.yaml"
        small.parent.mkdir()
        small.write_text(chain_workspace(3), encoding="utf-8")
        row("ws check on 3 repos (baseline)", run_ws(args.repeat, "-w", str(small), "check", cwd=small.parent))
        row("ws check on 300 repos", run_ws(args.repeat, "-w", str(checked), "check", cwd=checked.parent))
        loaded = load_workspace(checked)
        row("  of which: load", best_of(args.repeat, lambda: load_workspace(checked)))
        for check in CHECKS:
            row(f"  of which: {check.__name__}", best_of(1, lambda check=check: list(check(loaded))))

        chain = folder / "chain" / "workspace.yaml"
        chain.parent.mkdir()
        chain.write_text(chain_workspace(3000), encoding="utf-8")
        print("3. ws plan on 3,000 repos in one sorted depends_on chain")
        row("ws plan --env local --json", run_ws(1, "-w", str(chain), "plan", "--env", "local", "--json", cwd=folder))


if __name__ == "__main__":
    main()
