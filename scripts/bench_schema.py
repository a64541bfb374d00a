"""Benchmark: parse + check of a synthetic 500-model schema set (a primary and two secondaries with copies).

Prints ws's time (best of N) next to Prisma's own `prisma validate` of the same primary schema (the
baseline, run side by side when the Node tools are installed: scripts/install-node-tools.sh), and the ratio.
Target: check under 1 s.

    .venv/bin/python scripts/bench_schema.py [--models 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from infra.schema.align import check_alignment
from infra.schema.load import load_schemas
from infra.schema.synthetic import workspace_schemas, write_workspace
from infra.workspace import load_workspace

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeat: int, action: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    synthetic = workspace_schemas(models=args.models)
    lines = len(synthetic.primary.splitlines()) + sum(len(t.splitlines()) for t in synthetic.secondaries.values())
    with tempfile.TemporaryDirectory() as folder:
        workspace_file = write_workspace(Path(folder), synthetic)
        report = check_alignment(load_schemas(load_workspace(workspace_file)))
        assert report.ok, [str(d) for d in report.differences()][:5]

        def check() -> None:
            check_alignment(load_schemas(load_workspace(workspace_file)))

        ws_seconds = best_of(args.repeat, check)
        cpu_started = time.process_time()
        check()
        cpu = time.process_time() - cpu_started
        print(f"schema set: {args.models} primary models, {report.total} shared copies checked, {lines} lines")
        print(f"ws schema check (parse 3 files + compare): {ws_seconds:.3f} s wall, {cpu:.3f} s CPU   target < 1 s")
        prisma = Path(os.environ.get("WS_NODE_TOOLS") or ROOT / ".ws" / "node") / "node_modules" / ".bin" / "prisma"
        if not prisma.exists():
            print("baseline: prisma not installed (run scripts/install-node-tools.sh); no ratio printed")
            return
        env = {**os.environ, "PRISMA_SCHEMA_ENGINE_BINARY": shutil.which("true") or "/bin/true"}
        env["CHECKPOINT_DISABLE"] = "1"
        primary = Path(folder) / "primary" / "prisma" / "schema.prisma"

        def validate() -> None:
            subprocess.run(
                [str(prisma), "validate", "--schema", str(primary)], env=env, check=True, capture_output=True
            )

        prisma_seconds = best_of(max(1, args.repeat // 2), validate)
        print(f"baseline prisma validate (primary schema only, 1 file): {prisma_seconds:.3f} s")
        print(f"ratio: ws checks 3 files in {ws_seconds / prisma_seconds:.2f}x the time prisma validates 1")


if __name__ == "__main__":
    main()
