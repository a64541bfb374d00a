"""The documentation stays true: docs/cli.md matches `--help`, every command has help, the README is short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_cli_docs_are_current_and_every_command_and_option_has_help() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_cli_docs_check_names_a_command_without_help(tmp_path: Path) -> None:
    """The check is not vacuous: a command or option without help text is reported, with its name."""
    script = f"""
import click, runpy, sys
sys.argv = ["gen_cli_docs.py", "--check"]
import infra.cli
@click.command("undocumented")
@click.option("--quietly", is_flag=True)
def undocumented(quietly):
    pass
infra.cli.COMMAND_MODULES["undocumented"] = "_test_undocumented"
import types
module = types.ModuleType("infra.cli._test_undocumented")
module.COMMANDS = [undocumented]
sys.modules["infra.cli._test_undocumented"] = module
runpy.run_path({str(ROOT / "scripts" / "gen_cli_docs.py")!r}, run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 1
    assert "ws undocumented: the command has no help text" in result.stderr
    assert "ws undocumented --quietly: the option has no help text" in result.stderr


def test_cli_docs_check_fails_when_the_file_is_stale(tmp_path: Path) -> None:
    script = f"""
import runpy, sys
sys.argv = ["gen_cli_docs.py", "--check"]
import infra.cli
infra.cli.cli.help = "A changed description."
runpy.run_path({str(ROOT / "scripts" / "gen_cli_docs.py")!r}, run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 1
    assert "docs/cli.md is stale" in result.stderr


def test_readme_is_short_and_links_only_to_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) < 8 * 1024
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert targets, "the README links to the docs"
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert missing == []
    assert "DESIGN.md" not in text


def test_docs_link_only_to_files_that_exist() -> None:
    missing = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text(encoding="utf-8")):
            if not target.startswith("http") and not (page.parent / target).exists():
                missing.append(f"{page.name}: {target}")
    assert missing == []


def test_readme_test_command_is_the_one_ci_runs() -> None:
    """The README's second fresh-machine command ends in the test command that .ci/run runs."""
    readme = README.read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert main_job.endswith("&& .venv/bin/ws -w examples/workspace.yaml up")
    test_command = tests.rsplit(" && ", 1)[1]
    assert test_command in ci.splitlines()
    for command in commands:
        assert "--require-hashes -r requirements.lock" in command


def test_every_file_the_docs_name_exists() -> None:
    """A module, script or test named in the README or docs/ (e.g. `infra/deploy/plan.py`) is where it says."""
    missing = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for path in re.findall(r"`((?:infra|scripts|tests|examples)/[A-Za-z0-9_./-]+)`", page.read_text("utf-8")):
            if not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert missing == []
