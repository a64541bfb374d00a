"""`ws env` and `ws env template` output is safe to `source` in bash and to read with python-dotenv and
docker --env-file, whatever the values hold; control characters are refused at their line instead."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import dotenv
import pytest

from infra.workspace import WorkspaceError, load_workspace
from tests.helpers import run_ws
from tests.test_workspace_errors import VALID

# Values an attacker or a careless user may write; every one must come back exactly, and execute nothing.
HOSTILE = {
    "BACKTICKS": "`touch {canary}`",
    "SUBSTITUTION": "$(touch {canary})",
    "DOLLAR": "$HOME and $$ and $",
    "QUOTES": "it's \"quoted\" 'twice'",
    "BACKSLASH": "C:\\path\\n not a newline \\ (a backslash)",
    "MIXED": "' $(touch {canary}) ` \\ \"",
    "SPACES": "  spaces, # not a comment ; rm -rf /  ",
    "TAB": "tab\there",
    "UNICODE": "ünïcode ✓",
    "EQUALS": "a=b=c",
    "EMPTY": "",
    "LEADING_DASH": "-n",
    "TRAILING_BACKSLASH": "it ends with ' $(touch {canary}) \\",
}
DOTENV_INEXACT = {"MIXED", "TRAILING_BACKSLASH"}  # documented in infra.workspace.env.dotenv_line


def yaml_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def hostile_workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    canary = tmp_path / "executed"
    values = {key: value.replace("{canary}", str(canary)) for key, value in HOSTILE.items()}
    lines = "".join(f"  {key}: {yaml_quoted(value)}\n" for key, value in values.items())
    path = tmp_path / "workspace.yaml"
    path.write_text(VALID.replace("env:\n", "env:\n" + lines, 1), encoding="utf-8")
    return path, values


def sourced(env_file: Path, names: list[str]) -> dict[str, str]:
    """The variables as bash sees them after `set -a; source FILE` (printed by Python, no shell quoting)."""
    script = f'set -a; source "{env_file}"; exec python3 -c \'import json, os, sys; print(json.dumps({{n: os.environ.get(n) for n in sys.argv[1:]}}))\' "$@"'
    result = subprocess.run(
        ["bash", "-c", script, "bash", *names],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    found: dict[str, str] = json.loads(result.stdout)
    return found


def docker_env_file(text: str) -> dict[str, str]:
    """docker --env-file's rules (docker/cli opts/file.go): one KEY=VALUE per line, the value taken literally."""
    variables = {}
    for line in text.split("\n"):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), line
        variables[key] = value
    return variables


def test_ws_env_is_safe_to_source_and_exact(tmp_path: Path) -> None:
    path, values = hostile_workspace(tmp_path)
    result = run_ws("-w", str(path), "env", "--env", "local", "--repo", "api", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env_file = tmp_path / ".env"
    env_file.write_text(result.stdout, encoding="utf-8")
    seen = sourced(env_file, list(values))
    assert not (tmp_path / "executed").exists()
    assert seen == values
    docker = docker_env_file(result.stdout)
    assert set(values) <= set(docker) and len(result.stdout.splitlines()) == len(docker)


def test_ws_env_template_is_safe_to_source_and_exact(tmp_path: Path) -> None:
    path, values = hostile_workspace(tmp_path)
    output = tmp_path / ".env.shared"
    result = run_ws("-w", str(path), "env", "template", "-o", str(output), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = sourced(output, list(values))
    assert not (tmp_path / "executed").exists()
    assert seen == values
    text = output.read_text(encoding="utf-8")
    assert set(values) <= set(docker_env_file(text))


def test_python_dotenv_reads_the_values_exactly(tmp_path: Path) -> None:
    path, values = hostile_workspace(tmp_path)
    result = run_ws("-w", str(path), "env", "--env", "local", "--repo", "api", cwd=tmp_path)
    env_file = tmp_path / ".env"
    env_file.write_text(result.stdout, encoding="utf-8")
    read = dotenv.dotenv_values(env_file, interpolate=False)
    exact = {k: v for k, v in values.items() if k not in DOTENV_INEXACT}
    assert {key: read[key] for key in exact} == exact
    assert (read["MIXED"] or "").replace("\\$", "$").replace("\\`", "`") == values["MIXED"]
    assert re.sub(r"\\(.)", r"\1", read["TRAILING_BACKSLASH"] or "") == values["TRAILING_BACKSLASH"]
    assert set(read) == set(dotenv.dotenv_values(env_file))  # interpolation adds no variable


@pytest.mark.parametrize(
    ("escape", "what"),
    [("\\n", "U+000A line feed"), ("\\r", "U+000D carriage return"), ("\\0", "U+0000 NUL"), ("\\e", "U+001B")],
)
def test_control_characters_in_values_are_refused_at_their_line(tmp_path: Path, escape: str, what: str) -> None:
    path = tmp_path / "workspace.yaml"
    path.write_text(VALID.replace("env:\n", f'env:\n  GREETING: "hello{escape}PATH=/evil"\n', 1), encoding="utf-8")
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(path)
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 1 and "workspace.yaml:14:3: env.GREETING:" in problems[0], problems
    assert f"control character ({what})" in problems[0]
    result = run_ws("-w", str(path), "env", "--env", "local", "--repo", "api", cwd=tmp_path)
    assert result.returncode == 2 and "PATH=/evil" not in result.stdout


def test_a_secret_value_with_a_line_break_is_refused_not_written(tmp_path: Path) -> None:
    path = tmp_path / "workspace.yaml"
    path.write_text(VALID.replace("env:\n", "env:\n  API_TOKEN: {secret: API_TOKEN}\n", 1), encoding="utf-8")
    result = run_ws(
        "-w",
        str(path),
        "env",
        "--env",
        "local",
        "--repo",
        "api",
        "--secrets-from",
        "env",
        cwd=tmp_path,
        env={"API_TOKEN": "s3cr3t\nPATH=/evil"},
    )
    assert result.returncode == 2, result
    assert "API_TOKEN: its value holds a control character (U+000A line feed)" in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr and "PATH=/evil" not in result.stdout
