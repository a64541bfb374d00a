"""Benchmark: parse + validate + check of the largest corpus schema, side by side with `prisma validate`.

Two measurements, each the best of N runs, printed next to Prisma's own validator on the same file (the baseline,
run when the Node tools are installed: scripts/install-node-tools.sh):

1. the largest schema of the test corpus (tests/fixtures/prisma: the 6,000+ line schema infra.schema.synthetic
   generates, and the largest real file): parse + Prisma's rules (infra.schema.validate) + the alignment
   comparison of every model and enum with itself. Target: under 0.5 s.
2. `ws schema check` of a synthetic workspace (a primary with --models models and two secondaries holding copies).

    .venv/bin/python scripts/bench_schema.py [--models 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from infra.schema.align import check_alignment, compare_blocks
from infra.schema.load import load_schemas
from infra.schema.psl import parse_schema
from infra.schema.synthetic import workspace_schemas, write_workspace
from infra.schema.validate import ACCEPTED_OLD_PREVIEW_FEATURES, ACTIVE_PREVIEW_FEATURES, validate
from infra.workspace import load_workspace

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "prisma" / "corpus"
URL_LINE = re.compile(r"^[ \t]*(?:url|directUrl|shadowDatabaseUrl)[ \t]*=[^\n]*\n", re.MULTILINE)
PREVIEW_FEATURES = re.compile(r"(previewFeatures[ \t]*=[ \t]*\[)([^\]\n]*)\]")


def prisma_7_config(text: str) -> str:
    """Without the URL lines and the preview features Prisma 7 does not know, so that the models get validated."""
    known = set(ACTIVE_PREVIEW_FEATURES) | ACCEPTED_OLD_PREVIEW_FEATURES

    def keep_known(match: re.Match[str]) -> str:
        names = [n for n in re.findall(r'"([^"]*)"', match.group(2)) if n in known]
        return match.group(1) + ", ".join(f'"{n}"' for n in names) + "]"

    return PREVIEW_FEATURES.sub(keep_known, URL_LINE.sub("", text))


TARGET = 0.5


def best_of(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def parse_validate_check(name: str, text: str) -> None:
    schema = parse_schema([(name, text)])
    problems = validate(schema)
    assert not problems, [str(p) for p in problems][:3]
    for block in schema.blocks:
        if block.kind in ("model", "view", "enum"):
            assert not compare_blocks("bench", block, schema, block, schema, name)


def prisma_binary() -> Path | None:
    prisma = Path(os.environ.get("WS_NODE_TOOLS") or ROOT / ".ws" / "node") / "node_modules" / ".bin" / "prisma"
    return prisma if prisma.exists() else None


def prisma_seconds(prisma: Path, schema: Path, repeat: int) -> float:
    env = {
        **os.environ,
        "PRISMA_SCHEMA_ENGINE_BINARY": shutil.which("true") or "/bin/true",
        "CHECKPOINT_DISABLE": "1",
        "PRISMA_HIDE_UPDATE_MESSAGE": "1",
    }

    def run() -> None:
        subprocess.run([str(prisma), "validate", "--schema", str(schema)], env=env, check=True, capture_output=True)

    return best_of(repeat, run)


def bench_largest(folder: Path, repeat: int, prisma: Path | None) -> None:
    real = max(CORPUS.rglob("*.prisma"), key=lambda p: len(p.read_text(encoding="utf-8")))
    files = {
        "generated (largest corpus schema)": workspace_schemas(models=300, seed=11).primary,
        f"real: corpus/{real.relative_to(CORPUS)}": prisma_7_config(real.read_text(encoding="utf-8")),
    }
    for label, text in files.items():
        path = folder / f"bench_{len(text)}.prisma"
        path.write_text(text, encoding="utf-8")
        seconds = best_of(repeat, lambda text=text, name=path.name: parse_validate_check(name, text))  # type: ignore[misc]
        verdict = "ok" if seconds < TARGET else "OVER TARGET"
        print(f"{label}: {len(text.splitlines())} lines, {len(text) // 1024} KiB")
        print(f"  ws parse + validate + check: {seconds:.3f} s   target < {TARGET} s ({verdict})")
        if prisma is None:
            print("  baseline: prisma not installed (run scripts/install-node-tools.sh); no ratio printed")
            continue
        baseline = prisma_seconds(prisma, path, max(1, repeat // 2))
        print(f"  prisma validate (CLI, same file):  {baseline:.3f} s   ratio ws/prisma {seconds / baseline:.2f}")


def bench_workspace(folder: Path, models: int, repeat: int, prisma: Path | None) -> None:
    synthetic = workspace_schemas(models=models)
    lines = len(synthetic.primary.splitlines()) + sum(len(t.splitlines()) for t in synthetic.secondaries.values())
    workspace_file = write_workspace(folder / "workspace", synthetic)
    report = check_alignment(load_schemas(load_workspace(workspace_file)))
    assert report.ok, [str(d) for d in report.differences()][:5]

    def check() -> None:
        check_alignment(load_schemas(load_workspace(workspace_file)))

    seconds = best_of(repeat, check)
    print(f"workspace: {models} primary models, {report.total} shared copies, {lines} lines in 3 files")
    print(f"  ws schema check (parse + validate 3 files + compare): {seconds:.3f} s   target < 1 s")
    if prisma is not None:
        primary = folder / "workspace" / "primary" / "prisma" / "schema.prisma"
        baseline = prisma_seconds(prisma, primary, max(1, repeat // 2))
        print(f"  prisma validate (primary only, 1 file): {baseline:.3f} s   ratio {seconds / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    prisma = prisma_binary()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        bench_largest(folder, args.repeat, prisma)
        bench_workspace(folder, args.models, args.repeat, prisma)


if __name__ == "__main__":
    main()
