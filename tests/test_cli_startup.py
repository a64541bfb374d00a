"""`ws` answers at once: a command imports only what it needs (the times are in scripts/bench_cli.py).

These tests assert which modules a command imports, never how long it takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from infra.cli import COMMAND_MODULES, SUMMARIES, cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "workspace.yaml"

HEAVY = ("pulumi", "pulumi_docker", "pulumi_random", "github3", "psycopg", "redis", "pyarrow", "kubernetes")


def imported_modules(*args: str) -> set[str]:
    """Every module ``python -m infra.cli ARGS`` imports, from ``-X importtime``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "infra.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    return {
        line.split("|", 2)[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") >= 2
    }


def first_sentence(text: str) -> str:
    """What click lists for a command given enough room: its help's first sentence of the first paragraph."""
    words = text.split("\n\n", 1)[0].split()
    for index, word in enumerate(words):
        if word.endswith("."):
            return " ".join(words[: index + 1])
    return " ".join(words)


def test_every_command_has_a_summary_equal_to_its_own_help() -> None:
    ctx = click.Context(cli)
    for name in COMMAND_MODULES:
        command = cli.get_command(ctx, name)
        assert command is not None, name
        assert name in SUMMARIES, f"add {name!r} to infra.cli.SUMMARIES (what `ws --help` lists without importing)"
        assert SUMMARIES[name] == first_sentence(command.help or ""), name


def test_help_lists_every_command_without_importing_any_command_module_or_pydantic() -> None:
    modules = imported_modules("--help")
    command_modules = {f"infra.cli.{m}" for m in COMMAND_MODULES.values()}
    assert modules & command_modules == set()
    for heavy in ("pydantic", "rich", "ruamel.yaml", "yaml", "infra.workspace", *HEAVY):
        assert heavy not in modules, heavy
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    for name in COMMAND_MODULES:
        assert f"\n  {name} " in result.stdout, name


def test_plan_imports_the_workspace_and_nothing_of_the_five_areas() -> None:
    modules = imported_modules("-w", str(EXAMPLE), "plan", "--env", "local")
    assert "infra.workspace.graph" in modules
    areas = ("infra.github", "infra.schema", "infra.migrate", "infra.deploy", "infra.stack", "infra.checks")
    assert sorted(m for m in modules if m.startswith(areas) or m == "infra.generate") == []
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert sorted(m for m in modules if m.startswith("ruamel")) == []  # reading needs no round-trip parser
    # the model is checked by infra.workspace.shape: importing pydantic and building its validators cost more
    # than the whole command
    assert sorted(m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_core")) == []


def test_check_imports_no_database_driver_pulumi_or_github_client() -> None:
    modules = imported_modules("-w", str(EXAMPLE), "check")
    assert "infra.checks" in modules
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert sorted(m for m in modules if m.startswith("infra.deploy")) == []
    assert sorted(m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_core")) == []
