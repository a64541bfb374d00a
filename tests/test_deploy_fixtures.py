"""The deploy tests' fixtures drop every database they create, even when the test and its clean-up fail.

An inner pytest run uses ``make_example``, creates the example's database, then breaks `ws down` (its working
folder is gone, so the finalizer that runs it raises) and fails; the database must still be dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.helpers import ROOT

INNER = """
import shutil
from pathlib import Path

import psycopg
from psycopg import sql

from tests.conftest import postgres_url, redis_url, state_dir  # noqa: F401  (fixtures)
from tests.test_deploy_pipeline import make_example  # noqa: F401  (fixture)


def test_fails_after_creating_databases(make_example, postgres_url):
    names = []
    for _ in range(2):
        example = make_example(6.0)
        names.append(example.name)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names[-1])))
    Path(NAMES).write_text("\\n".join(names))
    shutil.rmtree(example.root)  # `ws down` cannot even start in the finalizer now
    raise AssertionError("the test fails after creating its databases")
"""


def test_example_databases_are_dropped_when_the_test_and_ws_down_fail(tmp_path: Path, postgres_url: str) -> None:
    names_file = tmp_path / "names.txt"
    inner = tmp_path / "inner" / "test_inner.py"
    inner.parent.mkdir()
    inner.write_text(INNER.replace("NAMES", repr(str(names_file))))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(inner)],
        cwd=inner.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the test fails after creating its databases" in done.stdout
    assert "FileNotFoundError" in done.stdout  # the `ws down` finalizer failed too
    names = names_file.read_text().split()
    assert len(names) == 2 and all(n.startswith("ws_deploy_") for n in names)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", [names]).fetchall()
    assert left == []
