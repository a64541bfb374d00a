"""Benchmark: `ws schema drift` on a 1,000-table database, side by side with migra inspecting the same database.

Builds a database from a synthetic workspace (a primary and two secondaries, >= 1,000 tables with primary
keys, unique and secondary indexes, foreign keys and enums), then times:
  - ws drift: five whole-catalog pg_catalog queries + the comparison with the declared models;
  - migra (PyPI `migra`, installed by this script into its own venv .ws/bench-venv, never into the
    project's dependencies): schemainspect's inspection of the same database, and the `migra` command
    comparing the database with itself (two inspections plus the diff).
Prints times and ratios. Targets: drift under 3 s and at least 3x faster than migra.

    .venv/bin/python scripts/bench_drift.py [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from infra.schema.drift import Catalog, declared_catalog, drift
from infra.schema.load import load_schemas
from infra.schema.synthetic import workspace_schemas, write_workspace
from infra.workspace import load_workspace

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".ws" / "bench-venv"
MIGRA = ["migra==3.0.1663481299", "schemainspect==3.1.1663587362", "sqlalchemy==1.4.54", "psycopg2-binary==2.9.10"]
ACTIONS = {"Cascade": "CASCADE", "Restrict": "RESTRICT", "SetNull": "SET NULL", "NoAction": "NO ACTION"}


def ensure_migra() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "migra").exists():
        print(f"installing migra into {VENV} (benchmark only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *MIGRA], check=True)
    return python


def column_type(text: str) -> sql.Composable:
    if text.startswith("enum "):
        namespace, name = text[5:].removesuffix("[]").split(".", 1)
        return sql.SQL("{}{}").format(sql.Identifier(namespace, name), sql.SQL("[]" if text.endswith("[]") else ""))
    return sql.SQL(text)  # a type name from the fixed mapping in infra.schema.drift, never user input


def default_sql(value: str | None, type_text: str) -> sql.Composable:
    if value is None:
        return sql.SQL("")
    if value == "now()":
        return sql.SQL(" DEFAULT CURRENT_TIMESTAMP")
    if type_text.endswith("[]"):
        return sql.SQL(" DEFAULT {}").format(sql.Literal("{}"))
    return sql.SQL(" DEFAULT {}::{}").format(sql.Literal(value), column_type(type_text))


def create_database(conn: psycopg.Connection[object], catalog: Catalog) -> None:
    """DDL equivalent to what prisma migrate would create for the declared catalog."""
    namespaces = sorted({name.split(".", 1)[0] for name in [*catalog.tables, *catalog.enums]})
    for namespace in namespaces:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(namespace)))
    for name, values in catalog.enums.items():
        namespace, enum = name.split(".", 1)
        conn.execute(
            sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
                sql.Identifier(namespace, enum), sql.SQL(", ").join(sql.Literal(v) for v in values)
            )
        )
    for name, table in catalog.tables.items():
        namespace, table_name = name.split(".", 1)
        columns = [
            sql.SQL("{} {}{}{}").format(
                sql.Identifier(column),
                column_type(spec.type),
                sql.SQL("" if spec.nullable else " NOT NULL"),
                default_sql(spec.default, spec.type),
            )
            for column, spec in table.columns.items()
        ]
        if table.primary_key:
            columns.append(
                sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(
                    sql.Identifier(table.primary_key[0]),
                    sql.SQL(", ").join(sql.Identifier(c) for c in table.primary_key[1]),
                )
            )
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(namespace, table_name), sql.SQL(", ").join(columns))
        )
        for index_name, index in table.indexes.items():
            parts = [
                sql.SQL("{}{}").format(
                    sql.Identifier(c.removesuffix(" DESC")), sql.SQL(" DESC" if c.endswith(" DESC") else "")
                )
                for c in index.columns
            ]
            conn.execute(
                sql.SQL("CREATE {}INDEX {} ON {} USING {} ({})").format(
                    sql.SQL("UNIQUE " if index.unique else ""),
                    sql.Identifier(index_name),
                    sql.Identifier(namespace, table_name),
                    sql.SQL(index.method),
                    sql.SQL(", ").join(parts),
                )
            )
    for name, table in catalog.tables.items():
        namespace, table_name = name.split(".", 1)
        for fk_name, fk in table.foreign_keys.items():
            target_ns, target = fk.target.split(".", 1)
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} ON UPDATE {}"
                ).format(
                    sql.Identifier(namespace, table_name),
                    sql.Identifier(fk_name),
                    sql.SQL(", ").join(sql.Identifier(c) for c in fk.columns),
                    sql.Identifier(target_ns, target),
                    sql.SQL(", ").join(sql.Identifier(c) for c in fk.target_columns),
                    sql.SQL(ACTIONS[fk.on_delete]),
                    sql.SQL(ACTIONS[fk.on_update]),
                )
            )


def url_for(server_url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


INSPECT = """
import sys, time
from sqlbag import S
from schemainspect import get_inspector
best = None
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    with S(sys.argv[1]) as session:
        inspector = get_inspector(session)
        tables = len(inspector.tables)
    elapsed = time.perf_counter() - started
    best = elapsed if best is None else min(best, elapsed)
print(best, tables)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="A maintenance database URL of the server to create the benchmark database on.",
    )
    parser.add_argument("--models", type=int, default=834, help="primary models (834 gives 1,000 tables in all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    migra_python = ensure_migra()
    name = f"ws_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = url_for(args.server_url, name)
    try:
        with tempfile.TemporaryDirectory() as folder:
            loaded = load_workspace(write_workspace(Path(folder), workspace_schemas(models=args.models)))
            schemas = load_schemas(loaded)
            catalog, _ = declared_catalog(schemas)
            print(f"building {len(catalog.tables)} tables in {name} ...", flush=True)
            with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
                create_database(conn, catalog)
            report = drift(loaded, url, schemas)
            assert not report.items, [str(i) for i in report.items[:5]]
            ws_best = min(drift(loaded, url, schemas).seconds for _ in range(args.repeat))
            print(
                f"ws schema drift ({report.tables} tables, 5 catalog queries + compare): {ws_best:.3f} s   target < 3 s"
            )
            sqlalchemy_url = (
                url.replace("postgresql://", "postgresql+psycopg2://", 1) if url.startswith("postgresql://") else url
            )
            if not sqlalchemy_url.startswith("postgresql"):
                sqlalchemy_url = "postgresql+psycopg2:///?" + "&".join(
                    f"{k}={v}" for k, v in psycopg.conninfo.conninfo_to_dict(url).items()
                )
            inspect = subprocess.run(
                [str(migra_python), "-c", INSPECT, sqlalchemy_url, str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            migra_inspect, migra_tables = inspect.stdout.split()
            print(
                f"migra baseline: schemainspect of the same database ({migra_tables} tables): {float(migra_inspect):.3f} s"
            )
            started = time.perf_counter()
            subprocess.run(
                [str(VENV / "bin" / "migra"), "--unsafe", sqlalchemy_url, sqlalchemy_url],
                check=True,
                capture_output=True,
            )
            migra_command = time.perf_counter() - started
            print(f"migra command (database vs itself: 2 inspections + diff): {migra_command:.3f} s")
            print(
                f"ratio: ws drift is {float(migra_inspect) / ws_best:.1f}x faster than migra's inspection"
                f" and {migra_command / ws_best:.1f}x faster than the migra command   target >= 3x"
            )
    finally:
        with psycopg.connect(args.server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
