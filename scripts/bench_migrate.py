"""Benchmark `ws migrate run` against pgloader and against raw `psql \\copy`, side by side, on the same data.

Three scenarios, each on freshly generated SQLite agent files (examples/app-agents/scripts/generate_memories.py:
text, JSON, blob and mixed epoch/ISO timestamp columns):

* many files: N agents x M rows (default 200 files, 1,000,000 rows);
* one large file (default 400,000 rows);
* many small files: 2,000 files x 500 rows (the shape of many agents' memories: start-up and per-file costs);
* 30 MB blobs: one file of 10,000 rows where 10 blobs are 30 MB each (memory: batches are sized in bytes).

For each scenario, in the same run:

* pgloader: one invocation per file, each into its own schema (pgloader loads one SQLite file per run);
* ws migrate run, validation included (every batch compared with the source inside its transaction);
* ws migrate run --no-validate (the load alone);
* raw psql \\copy of the same rows pre-dumped as COPY text files: the upper bound of loading.

Every method runs ``--repeat`` times (default 3), in rounds (each method once per round, in the same order), each
on a database of its own that is dropped after it and from a CHECKPOINT (so no method pays for the dirty pages of
the one before); each method's median round is reported, with the spread of its rounds. On a shared VM whose speed
moves by 2x within minutes, one round of each moved the ratios by up to 0.3.

It prints rows/s of each and the ratios, the CPU time the whole machine was busy while each ran (cpu-s: ws, its
workers, PostgreSQL's backends, pgloader or psql together; us/row: that per row), and the share of rows that took
ws's native columnar path. ``--python-baseline`` adds ws with every row through Python (``--no-native``).

``--rss`` (always on in the blob scenario) also runs ws with validation in a fresh process of its own and prints its
peak RSS: the main process and the largest of its worker processes (getrusage).

Targets (issue 20): ws with validation >= 0.8x raw \\copy in the many-files and the large-file scenario; the load
alone >= 0.95x raw \\copy; peak RSS under 500 MB on the large file and the 30 MB blobs. Not run in tests or CI.
pgloader runs one process per file, so it is skipped for scenarios of more than ``--pgloader-max-files`` files.

pgloader comes from Debian: `sudo apt-get install -y pgloader` (the script says so and skips it when missing).

    .venv/bin/python scripts/bench_migrate.py                       # defaults
    .venv/bin/python scripts/bench_migrate.py --agents 20 --rows 2000 --large-rows 50000   # a quick look
    .venv/bin/python scripts/bench_migrate.py --formats             # also ws with text vs binary COPY
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.deploy.servers import postgres_server_url  # noqa: E402
from infra.migrate.load import RunOptions, run_migration  # noqa: E402
from infra.migrate.source import SourceFile  # noqa: E402

EXAMPLES = ROOT / "examples"
MIGRATIONS = sorted(
    (EXAMPLES / "saas-ecosystem-architecture/admin-app/prisma/migrations").glob("*/migration.sql")
) + sorted((EXAMPLES / "app-agents/shared/database/migrations").glob("*/migration.sql"))
TABLES = ("memories", "conversations")


def busy_cpu_seconds() -> float | None:
    """CPU time the whole machine spent busy so far (every process: ws, its workers, PostgreSQL's backends,
    pgloader, psql), from /proc/stat; None where there is none."""
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


SETTLE_SERVER: str | None = None  # the benchmark server's URL: every method starts from a checkpoint on it


def settle() -> None:
    """Write out what the methods before left in PostgreSQL's buffers (CHECKPOINT) and let the background work it
    starts end, so the method timed next does not pay for them: otherwise whichever method comes first after a
    large load (the last scenario's, or the corpus's) flushes its dirty pages while it runs. Needs a superuser or
    pg_checkpoint; without, each method starts as it finds the server."""
    global SETTLE_SERVER
    if SETTLE_SERVER is None:
        return
    try:
        with psycopg.connect(SETTLE_SERVER, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as exc:
        print(f"  note: no CHECKPOINT before each method ({str(exc).strip()}); methods start as the server is")
        SETTLE_SERVER = None
        return
    time.sleep(1.0)


class Timer:
    """Wall time and machine-wide busy CPU time of one method (started from a checkpoint: :func:`settle`)."""

    def __enter__(self) -> Timer:
        settle()
        self.cpu0, self.wall0 = busy_cpu_seconds(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.wall0
        cpu1 = busy_cpu_seconds()
        self.cpu = cpu1 - self.cpu0 if cpu1 is not None and self.cpu0 is not None else None


@dataclass
class Result:
    method: str
    rows: int
    seconds: float
    note: str = ""
    cpu: float | None = None  # machine-wide busy CPU seconds while it ran
    native: float | None = None  # share of rows that took ws's native path

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def generator() -> ModuleType:
    path = EXAMPLES / "app-agents" / "scripts" / "generate_memories.py"
    spec = importlib.util.spec_from_file_location("generate_memories", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_database(server: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def url_form(conninfo: str) -> str:
    """postgresql:// URL of a conninfo (pgloader wants the URL form)."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{user}{password}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"


class Databases:
    def __init__(self, server: str) -> None:
        self.server = server
        self.created: list[str] = []

    def fresh(self, migrations: bool = True) -> str:
        name = f"ws_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        url = with_database(self.server, name)
        if migrations:
            with psycopg.connect(url, autocommit=True) as conn:
                for file in MIGRATIONS:
                    conn.execute(file.read_text(encoding="utf-8"))
        return url

    def drop_all(self) -> None:
        with psycopg.connect(self.server, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.clear()


def corpus(work: Path, label: str, agents: int, memories: int, conversations: int) -> list[Path]:
    folder = work / label
    marker = folder / f".done-{agents}-{memories}-{conversations}"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        started = time.monotonic()
        generator().generate(folder, agents, memories, conversations, seed=7)
        marker.touch()
        print(
            f"  generated {agents} file(s), {agents * (memories + conversations):,} rows in {time.monotonic() - started:.1f}s"
        )
    return sorted(folder.glob("agents/*/memory.db"))


BLOB_BYTES = 30 * 2**20


def blob_corpus(work: Path, blobs: int = 10, rows: int = 10_000) -> list[Path]:
    """One agent file of ``rows`` rows (half memories, half conversations) where ``blobs`` memories carry a 30 MB
    embedding."""
    folder = work / "blob"
    marker = folder / f".done-{blobs}-{rows}"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        [path] = generator().generate(folder, 1, rows // 2, rows - rows // 2, seed=7)
        with sqlite3.connect(path) as conn:
            step = max(1, (rows // 2) // max(1, blobs))
            conn.execute(
                "UPDATE memories SET embedding = randomblob(?) WHERE id % ? = 0 AND id / ? <= ?",
                (BLOB_BYTES, step, step, blobs),
            )
        conn.close()
        marker.touch()
    return sorted(folder.glob("agents/*/memory.db"))


RSS_SCRIPT = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from infra.migrate.load import RunOptions, run_migration
from infra.migrate.source import SourceFile
url, jobs, paths = sys.argv[2], int(sys.argv[3]), [Path(p) for p in sys.argv[4:]]
sources = [SourceFile("app-agents", p.parent.name, p, str(p), "agents", {}) for p in paths]
report = run_migration(url, sources, RunOptions(jobs=jobs))
print(json.dumps({
    "statuses": sorted({a.status for a in report.agents}),
    "rows": report.rows_loaded,
    "seconds": report.seconds,
    "main_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "workers_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def bench_rss(dbs: Databases, paths: list[Path], jobs: int) -> str:
    """ws migrate run with validation in a fresh Python process: its peak RSS and its largest worker's."""
    url = dbs.fresh()
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(ROOT), url, str(jobs), *map(str, paths)], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"ws migrate run (RSS) failed: {out.stderr[-2000:]}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if found["statuses"] != ["validated"]:
        raise SystemExit(f"ws migrate run (RSS) ended {found['statuses']}")
    main, worker = found["main_kib"] / 1024, found["workers_kib"] / 1024
    verdict = "met" if max(main, worker) < 500 else "NOT met"
    return (
        f"peak RSS of ws migrate run (validation included, {found['rows']:,} rows in {found['seconds']:.1f}s): main "
        f"process {main:.0f} MB, largest worker {worker:.0f} MB (target < 500 MB each: {verdict})"
    )


def sources(paths: list[Path]) -> list[SourceFile]:
    return [SourceFile("app-agents", p.parent.name, p, str(p), "agents", {}) for p in paths]


def bench_ws(
    dbs: Databases,
    paths: list[Path],
    jobs: int,
    validate: bool,
    copy_format: str,
    helper: bool = True,
    native: bool = True,
) -> Result:
    url = dbs.fresh()
    options = RunOptions(
        jobs=jobs,
        validate=validate,
        copy_format="text" if copy_format == "text" else "binary",
        helper_min_rows=-1 if helper else 0,
        native=native,
    )
    with Timer() as timer:
        report = run_migration(url, sources(paths), options)
    bad = [a.agent_id for a in report.agents if a.status not in ("validated", "loaded")]
    if bad:
        raise SystemExit(f"ws migrate run failed for {bad[:5]}")
    label = "ws migrate run" + (" (validation included)" if validate else " --no-validate (load alone)")
    label += "" if helper else ", no helper process"
    label += "" if native else ", Python path"
    share = report.native_rows / report.rows_loaded if report.rows_loaded else None
    return Result(f"{label} [{copy_format}]", report.rows_loaded, timer.seconds, f"{jobs} jobs", timer.cpu, share)


def dump_rows(dbs: Databases, paths: list[Path], work: Path, jobs: int) -> dict[str, Path]:
    """The rows, already converted (from a ws-loaded database), as COPY text files: what raw \\copy loads."""
    loaded = dbs.fresh()
    run_migration(loaded, sources(paths), RunOptions(jobs=jobs, validate=False))
    dumps: dict[str, Path] = {}
    with psycopg.connect(loaded) as conn:
        for table in TABLES:
            target = work / f"dump-{table}.copy"
            with (
                target.open("wb") as handle,
                conn.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(sql.Identifier("agents", table))) as copy,
            ):
                for chunk in copy:
                    handle.write(chunk)
            dumps[table] = target
    dbs.drop_all()
    return dumps


def bench_raw_copy(dbs: Databases, dumps: dict[str, Path]) -> Result:
    """psql \\copy of the pre-dumped rows (:func:`dump_rows`), one table after the other."""
    url = dbs.fresh()
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("psql is not installed (apt-get install -y postgresql-client)")
    rows = 0
    with Timer() as timer:
        for table, path in dumps.items():
            command = f"\\copy agents.{table} FROM '{path}'"
            out = subprocess.run(
                [psql, url_form(url), "-v", "ON_ERROR_STOP=1", "-c", command], capture_output=True, text=True
            )
            if out.returncode:
                raise SystemExit(f"psql \\copy failed: {out.stderr}")
            rows += int(out.stdout.strip().split()[-1])
    return Result(
        "raw psql \\copy of pre-dumped rows (upper bound)", rows, timer.seconds, "one stream per table", timer.cpu
    )


def median_result(runs: list[Result]) -> Result:
    """The run of median wall time among a method's rounds (the lower middle one for an even count, for every
    method alike), noting the seconds of every round."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    middle = ordered[(len(ordered) - 1) // 2]
    if len(runs) > 1:
        spread = ", ".join(f"{r.seconds:.2f}" for r in runs)
        middle = replace(middle, note=f"{middle.note}; median of {spread} s")
    return middle


PGLOADER_COMMAND = """LOAD DATABASE
  FROM sqlite://{source}
  INTO {target}
  WITH include drop, create tables, create indexes, reset sequences
  SET search_path TO '{schema}'
  BEFORE LOAD DO $$ CREATE SCHEMA IF NOT EXISTS "{schema}"; $$;
"""


def bench_pgloader(dbs: Databases, paths: list[Path], work: Path) -> Result | None:
    pgloader = shutil.which("pgloader")
    if pgloader is None:
        print("  pgloader is not installed: `sudo apt-get install -y pgloader` (Debian/Ubuntu); skipping it")
        return None
    url = dbs.fresh(migrations=False)
    target = url_form(url)
    with Timer() as timer:
        for index, path in enumerate(paths):
            schema = f"agent_{index:04d}"
            command = work / "pgloader.load"
            command.write_text(PGLOADER_COMMAND.format(source=path, target=target, schema=schema), encoding="utf-8")
            out = subprocess.run([pgloader, "--quiet", str(command)], capture_output=True, text=True, cwd=work)
            if out.returncode:
                raise SystemExit(f"pgloader failed on {path}: {out.stdout[-2000:]}{out.stderr[-2000:]}")
    rows = 0
    with psycopg.connect(url) as conn:
        for index in range(len(paths)):
            for table in TABLES:
                found = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"agent_{index:04d}", table))
                ).fetchone()
                rows += int(found[0]) if found else 0
    note = f"{len(paths)} invocations, no validation"
    return Result("pgloader, one invocation per file", rows, timer.seconds, note, timer.cpu)


def report(title: str, results: list[Result]) -> dict[str, Any]:
    baseline = next((r for r in results if r.method.startswith("pgloader")), None)
    raw = next((r for r in results if r.method.startswith("raw")), None)
    print(f"\n{title}")
    header = f"{'method':72} {'rows':>10} {'seconds':>9} {'rows/s':>10} {'x pgloader':>10} {'x raw copy':>10}"
    print(f"  {header} {'cpu-s':>7} {'us/row':>7} {'native':>7}")
    for r in results:
        vs_pgloader = f"{r.rate / baseline.rate:.2f}" if baseline and baseline.rate else "-"
        vs_raw = f"{r.rate / raw.rate:.2f}" if raw and raw.rate else "-"
        cpu = f"{r.cpu:>7.1f} {r.cpu / r.rows * 1e6:>7.1f}" if r.cpu is not None and r.rows else f"{'-':>7} {'-':>7}"
        native = f"{100 * r.native:>6.1f}%" if r.native is not None else f"{'-':>7}"
        print(
            f"  {r.method:72} {r.rows:>10,} {r.seconds:>9.2f} {r.rate:>10,.0f} {vs_pgloader:>10} {vs_raw:>10} {cpu}"
            f" {native}  {r.note}"
        )
    return {"title": title, "results": [r.__dict__ | {"rate": r.rate} for r in results]}


def targets(summaries: dict[str, tuple[str, list[Result]]]) -> None:
    def find(results: list[Result], prefix: str) -> Result | None:
        return next((r for r in results if r.method.startswith(prefix)), None)

    print("\ntargets (issue 20)")
    for key, (title, results) in summaries.items():
        raw = find(results, "raw")
        checks = (
            ("ws with validation", find(results, "ws migrate run (validation included) [binary]"), 0.8),
            ("ws load alone", find(results, "ws migrate run --no-validate (load alone) [binary]"), 0.95),
        )
        for label, ws, goal in checks:
            if raw is None or ws is None or not raw.rate:
                continue
            ratio = ws.rate / raw.rate
            required = key in ("many", "large")
            verdict = ("met" if ratio >= goal else "NOT met") if required else "no target"
            print(f"  {title}: {label} {ratio:.2f}x raw \\copy (target >= {goal}x): {verdict}")


def run_methods(args: argparse.Namespace, dbs: Databases, work: Path, paths: list[Path]) -> list[Result]:
    """Every method of one scenario, in rounds: each once per round, in the same order, each on a database of
    its own (dropped after it); each method's median round is reported, so a slow moment of the machine moves
    one round of it, not the verdict."""
    methods: list[Callable[[], Result | None]] = []
    if not args.skip_pgloader and len(paths) <= args.pgloader_max_files:
        methods.append(lambda: bench_pgloader(dbs, paths, work))
    methods.append(lambda: bench_ws(dbs, paths, args.jobs, True, "binary"))
    methods.append(lambda: bench_ws(dbs, paths, args.jobs, False, "binary"))
    if args.python_baseline:
        methods.append(lambda: bench_ws(dbs, paths, args.jobs, True, "binary", native=False))
        methods.append(lambda: bench_ws(dbs, paths, args.jobs, False, "binary", native=False))
    if args.no_helper_baseline:
        # the same run with every table converted in its unit's process alone (the previous behaviour)
        methods.append(lambda: bench_ws(dbs, paths, args.jobs, True, "binary", helper=False))
        methods.append(lambda: bench_ws(dbs, paths, args.jobs, False, "binary", helper=False))
    if args.formats:
        methods.append(lambda: bench_ws(dbs, paths, args.jobs, True, "text"))
        methods.append(lambda: bench_ws(dbs, paths, args.jobs, False, "text"))
    dumps = dump_rows(dbs, paths, work, args.jobs)
    methods.append(lambda: bench_raw_copy(dbs, dumps))
    runs: list[list[Result]] = [[] for _ in methods]
    for _ in range(max(1, args.repeat)):
        for index, method in enumerate(methods):
            found = method()
            dbs.drop_all()
            if found is not None:
                runs[index].append(found)
    for path in dumps.values():
        path.unlink()
    return [median_result(r) for r in runs if r]


EXAMPLES_TEXT = """the issue-20 targets, exactly (corpora are generated once into --work-dir and kept):
  .venv/bin/python scripts/bench_migrate.py --scenarios many,large --skip-pgloader
      the two target scenarios (200 files x 5,000 rows; 1 file x 400,000 rows), 3 rounds, about 8 minutes on
      2 quiet cores plus 1 minute of generation the first time; the 'targets' lines at the end say met / NOT met
  .venv/bin/python scripts/bench_migrate.py --scenarios many --skip-pgloader     # one scenario (about 2 min)
  .venv/bin/python scripts/bench_migrate.py --scenarios large --skip-pgloader
  .venv/bin/python scripts/bench_migrate.py                       # everything, pgloader and 2,000 small files too

cpu-s is the whole machine's busy CPU while a method ran: other load on the machine counts too, so compare
ratios of one run, side by side; the 'native' column is the share of rows that took the native columnar path."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=200, help="files in the many-files scenario")
    parser.add_argument("--rows", type=int, default=5000, help="rows per file (half memories, half conversations)")
    parser.add_argument("--large-rows", type=int, default=400_000, help="rows of the one-large-file scenario")
    parser.add_argument("--small-agents", type=int, default=2000, help="files in the many-small-files scenario")
    parser.add_argument("--small-rows", type=int, default=500, help="rows per file in the many-small-files scenario")
    parser.add_argument(
        "--scenarios", default="many,large,small", help="which scenarios to run (comma-separated; also: blob)"
    )
    parser.add_argument("--rss", action="store_true", help="also measure ws migrate run's peak RSS per scenario")
    parser.add_argument("--pgloader-max-files", type=int, default=200, help="skip pgloader above this many files")
    parser.add_argument(
        "--python-baseline", action="store_true", help="also run ws with every row through Python (--no-native)"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="ws migrate run --jobs")
    parser.add_argument("--formats", action="store_true", help="also run ws with text COPY (binary is the default)")
    parser.add_argument("--skip-pgloader", action="store_true")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of every method, interleaved; each method's median round is reported (default 3)",
    )
    parser.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="start each method as the server is, without a CHECKPOINT first (the methods before pay for each other)",
    )
    parser.add_argument(
        "--no-helper-baseline",
        action="store_true",
        help="also run ws with the per-table helper process off, side by side",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="where the corpora are generated (kept)")
    parser.add_argument("--database-url", default=None, help="server to create the benchmark databases on")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.gettempdir()) / "ws-bench-migrate"
    work.mkdir(parents=True, exist_ok=True)
    server = args.database_url or postgres_server_url(work / "state")
    global SETTLE_SERVER
    SETTLE_SERVER = None if args.no_checkpoint else server
    dbs = Databases(server)
    half = max(1, args.rows // 2)
    scenarios = {
        "many": (
            f"{args.agents} files x {args.rows:,} rows",
            lambda: corpus(work, "many", args.agents, half, args.rows - half),
        ),
        "large": (
            f"one file x {args.large_rows:,} rows",
            lambda: corpus(work, "large", 1, args.large_rows // 2, args.large_rows - args.large_rows // 2),
        ),
        "blob": (f"one file x 10,000 rows with 10 blobs of {BLOB_BYTES >> 20} MB", lambda: blob_corpus(work)),
        "small": (
            f"{args.small_agents} small files x {args.small_rows:,} rows",
            lambda: corpus(
                work, "small", args.small_agents, args.small_rows // 2, args.small_rows - args.small_rows // 2
            ),
        ),
    }
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in scenarios]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(scenarios)}")
    summaries: dict[str, tuple[str, list[Result]]] = {}
    memory: list[str] = []
    try:
        for key in chosen:
            title, make = scenarios[key]
            paths = make()
            print(f"\n== {title}")
            if args.rss or key == "blob":
                line = f"{title}: {bench_rss(dbs, paths, args.jobs)}"
                print(f"  {line}")
                memory.append(line)
            if key == "blob":
                continue
            results = run_methods(args, dbs, work, paths)
            report(title, results)
            summaries[key] = (title, results)
    finally:
        dbs.drop_all()
    targets(summaries)
    for line in memory:
        print(f"  {line}")


if __name__ == "__main__":
    main()
