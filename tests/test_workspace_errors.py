"""Every malformed workspace.yaml gets one clear, located message and exit code 2 (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.workspace import WorkspaceError, load_workspace
from tests.helpers import run_ws

VALID = """\
version: 1
name: demo
github:
  owner: acme
environments:
  local:
    runtime: local
  prod:
    runtime: pulumi
    protected: true
database:
  name: demo_db
env:
  DATABASE_URL: ${database.url}
  API_URL: ${services.api.url}
repos:
  core:
    github: acme/core
    role: primary
    schema:
      prisma: prisma/schema.prisma
      namespace: core
    service:
      port: 4000
  api:
    github: acme/api
    role: secondary
    depends_on: [core]
    schema:
      prisma: prisma/schema.prisma
      extends: core
      namespace: api
    service:
      port: 4001
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workspace.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(write(tmp_path, text))
    return [str(p) for p in caught.value.problems]


def test_valid_document_loads(tmp_path: Path) -> None:
    loaded = load_workspace(write(tmp_path, VALID))
    assert list(loaded.model.repos) == ["core", "api"]
    assert loaded.repo_dir("api") == (tmp_path / "../api").resolve()


# (description, edit of VALID, expected line, expected fragments of the single message)
CASES = [
    ("yaml syntax", lambda t: t.replace("  owner: acme", "  owner: [acme"), 5, ["YAML syntax error"]),
    (
        "duplicate key",
        lambda t: t.replace("  owner: acme\n", "  owner: acme\n  owner: other\n"),
        5,
        ["duplicate key 'owner'"],
    ),
    (
        "unknown key with suggestion",
        lambda t: t.replace("    depends_on: [core]", "    depend_on: [core]"),
        28,
        ["unknown key 'depend_on'", "did you mean 'depends_on'?"],
    ),
    (
        "wrong type",
        lambda t: t.replace("      port: 4001", "      port: many"),
        34,
        ["repos.api.service.port", "integer"],
    ),
    ("missing field", lambda t: t.replace("    role: secondary\n", ""), 25, ["missing required key 'role'"]),
    (
        "unknown runtime",
        lambda t: t.replace("runtime: local", "runtime: docker"),
        7,
        ["environments.local.runtime", "'local' or 'pulumi'"],
    ),
    (
        "unknown repo in depends_on",
        lambda t: t.replace("depends_on: [core]", "depends_on: [cor]"),
        28,
        ["unknown repo 'cor'", "did you mean 'core'?"],
    ),
    (
        "unknown repo in extends",
        lambda t: t.replace("extends: core", "extends: nope"),
        31,
        ["schema.extends names unknown repo 'nope'"],
    ),
    (
        "undefined reference",
        lambda t: t.replace("${services.api.url}", "${services.apy.url}"),
        15,
        ["undefined reference ${services.apy.url}", "did you mean ${services.api.url}?"],
    ),
    (
        "literal token",
        lambda t: t.replace("  API_URL: ${services.api.url}", "  GH: ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        15,
        ["literal secret", "a GitHub token", "{secret: GH}"],
    ),
    (
        "password in url",
        lambda t: t.replace("${database.url}", "postgresql://app:hunter2@db/x"),
        14,
        ["a URL with a password"],
    ),
    (
        "password key",
        lambda t: t.replace("  API_URL: ${services.api.url}", "  DB_PASSWORD: hunter2"),
        15,
        ["DB_PASSWORD holds a literal value"],
    ),
    (
        "port collision",
        lambda t: t.replace("port: 4001", "port: 4000"),
        34,
        ["port 4000 is already used by repos.core.service.port"],
    ),
    (
        "unsafe repo name",
        lambda t: t.replace("  api:\n", "  'api;rm -rf':\n"),
        25,
        ["not a safe name", "^[a-z][a-z0-9-]{0,62}$"],
    ),
    ("unsafe environment name", lambda t: t.replace("  prod:", "  Prod_1:"), 8, ["'Prod_1' is not a safe name"]),
    (
        "two primaries",
        lambda t: t.replace("role: secondary", "role: primary"),
        27,
        ["exactly one repo must have role: primary"],
    ),
    (
        "self dependency",
        lambda t: t.replace("    role: primary\n", "    role: primary\n    depends_on: [core]\n"),
        20,
        ["core depends on itself"],
    ),
    (
        "bad secret name",
        lambda t: t.replace("  API_URL: ${services.api.url}", "  API_KEY: {secret: lower}"),
        15,
        ["secret name 'lower'"],
    ),
]


@pytest.mark.parametrize(("edit", "line", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_names_line_key_and_fix(tmp_path: Path, edit, line: int, fragments: list[str]) -> None:  # type: ignore[no-untyped-def]
    problems = problems_of(tmp_path, edit(VALID))
    matching = [p for p in problems if fragments[0] in p]
    assert len(matching) == 1, problems
    message = matching[0]
    assert f"workspace.yaml:{line}:" in message.split(" ")[0], message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "Fix: " in message or "YAML" in message


def test_cycle_prints_its_path(tmp_path: Path) -> None:
    text = VALID.replace("    role: primary\n", "    role: primary\n    depends_on: [api]\n").replace(
        "extends: core", "extends: core"
    )
    problems = problems_of(tmp_path, text)
    cycle = [p for p in problems if "dependency cycle" in p]
    assert len(cycle) == 1, problems
    assert "api -> core -> api" in cycle[0]
    assert "workspace.yaml:29:" in cycle[0].split(" ")[0]


def test_unterminated_reference(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, VALID.replace("${services.api.url}", "${services.api.url"))
    assert any("unterminated ${" in p and "workspace.yaml:15:" in p.split(" ")[0] for p in problems), problems


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "- just\n- a list\n")
    assert len(problems) == 1
    assert problems[0].endswith(
        "workspace.yaml:1:1: the top level must be a mapping. Fix: start with `version: 1` and `name: ...`"
    )


def test_cli_exit_code_2_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("    depends_on: [core]", "    depend_on: [core]"))
    result = run_ws("-w", str(path), "check")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "workspace.yaml:28:5: repos.api.depend_on: unknown key 'depend_on'" in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_ws("-w", str(tmp_path / "nope.yaml"), "plan", "--env", "local")
    assert result.returncode == 2
    assert "file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_environment_on_command_line(tmp_path: Path) -> None:
    result = run_ws("-w", str(write(tmp_path, VALID)), "plan", "--env", "qa")
    assert result.returncode == 2
    assert "unknown environment 'qa'" in result.stderr and "local, prod" in result.stderr
