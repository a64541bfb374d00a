"""Hostile workspace.yaml files: every command answers with one located message (exit 2), in bounded memory.

Memory is measured as the peak resident size of the `ws` process (and capped with RLIMIT_AS, so a regression
fails instead of eating the machine); time is bounded only by a generous timeout against hangs, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.workspace import WorkspaceError, load_workspace, loader, yamlread
from infra.workspace.graph import edges_of, find_cycle, stages
from infra.workspace.synthetic import chain_workspace
from tests.helpers import ROOT, run_ws
from tests.test_workspace_errors import VALID

MEASURE = """\
import json, resource, subprocess, sys
cap = 1024 * 2**20
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
result = subprocess.run(sys.argv[1:], preexec_fn=limit, capture_output=True, text=True, timeout=120)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": result.returncode, "stderr": result.stderr, "stdout": result.stdout, "peak": peak}))
"""


def run_measured(*args: str, cwd: Path | None = None) -> dict[str, object]:
    """Run `ws ARGS` in a fresh process and report its exit code, output and peak resident memory."""
    wrapper = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "infra.cli", *args],
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert wrapper.returncode == 0, wrapper.stderr
    report: dict[str, object] = json.loads(wrapper.stdout)
    return report


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workspace.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(WorkspaceError) as caught:
        load_workspace(path)
    return [str(p) for p in caught.value.problems]


def alias_bomb() -> str:
    """About 1 KB: nine anchor levels of nine aliases each, so `description: *i` stands for 9**9 strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    anchors = "x-anchors:\n" + "".join(f"  {line}\n" for line in lines)
    return anchors + VALID.replace("name: demo\n", "name: demo\ndescription: *i\n")


@pytest.mark.parametrize(
    "command", [["check"], ["plan", "--env", "local"], ["env", "--env", "local", "--repo", "api"], ["generate"]]
)
def test_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path, command: list[str]) -> None:
    path = write(tmp_path, alias_bomb())
    assert path.stat().st_size < 4096
    report = run_measured("-w", str(path), *command, cwd=tmp_path)
    stderr = str(report["stderr"])
    assert report["code"] == 2, report
    assert "Traceback" not in stderr
    assert "workspace.yaml:" in stderr and "more than 1,000,000 values" in stderr, stderr
    assert stderr.count("\n") <= 2, stderr
    assert int(str(report["peak"])) < 200 * 2**20, report


def test_a_long_value_behind_many_aliases_is_refused_by_its_expanded_text(tmp_path: Path) -> None:
    """Found by review: 400 KB of text used 500 times passes the value count, then the env rules scanned every copy
    for minutes. The expanded text is bounded too."""
    long_value = "x" * 400_000
    uses = "".join(f"  V{index}: *long\n" for index in range(500))
    text = VALID.replace("name: demo\n", f"name: demo\nx-long: &long {long_value}\n").replace(
        "env:\n", f"env:\n{uses}", 1
    )
    path = write(tmp_path, text)
    assert path.stat().st_size < 2 * 1024 * 1024
    report = run_measured("-w", str(path), "plan", "--env", "local", cwd=tmp_path)
    stderr = str(report["stderr"])
    assert report["code"] == 2, report
    assert "more than 8,388,608 characters of text" in stderr, stderr


def test_file_larger_than_two_megabytes_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "# padding\n" * (2 * 1024 * 1024 // 10))
    assert path.stat().st_size > yamlread.MAX_BYTES
    problems = problems_of(path)
    assert len(problems) == 1
    assert "larger than 2 MB (2,097,152 bytes)" in problems[0], problems
    report = run_measured("-w", str(path), "check", cwd=tmp_path)
    assert report["code"] == 2 and "larger than 2 MB" in str(report["stderr"]), report


class Tripwire:
    """An item that must never be rendered: the value is cut long before it."""

    rendered = 0

    def __repr__(self) -> str:
        Tripwire.rendered += 1
        return "tripwire"


def test_short_never_renders_a_value_whole() -> None:
    inner: list[object] = ["lol"] * 9
    for _ in range(8):  # shared lists as aliases make them: 9**9 items in a few hundred objects
        inner = [inner] * 9
    text = loader._short({"description": inner, "later": [Tripwire()] * 1000})
    assert len(text) <= 60 and text.endswith("..."), text
    assert loader._short(["x" * 200_000]).__len__() <= 60
    assert Tripwire.rendered == 0


def test_flow_nesting_beyond_the_depth_limit_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: demo\n", "name: demo\ndescription: " + "[" * 600 + "]" * 600 + "\n"))
    problems = problems_of(path)
    assert len(problems) == 1
    assert "workspace.yaml:3:" in problems[0] and "nested deeper than 100 levels" in problems[0], problems
    result = run_ws("-w", str(path), "check", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "nested deeper than 100 levels" in result.stderr


def test_merge_keys_nested_300_deep_are_located(tmp_path: Path) -> None:
    chain = "x-merges:\n  m0: &m0 {k0: 0}\n" + "".join(
        f"  m{level}: &m{level} {{<<: *m{level - 1}, k{level}: {level}}}\n" for level in range(1, 301)
    )
    path = write(tmp_path, chain + VALID)
    problems = problems_of(path)
    assert len(problems) == 1
    assert "workspace.yaml:103:" in problems[0] and "merge keys (<<) nested deeper than 100 levels" in problems[0]
    result = run_ws("-w", str(path), "plan", "--env", "local", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_three_thousand_repos_in_a_sorted_dependency_chain_plan_fine(tmp_path: Path) -> None:
    path = write(tmp_path, chain_workspace(3000))
    loaded = load_workspace(path)
    layers = stages(edges_of(loaded.model))
    assert len(layers) == 3000 and layers[0] == ["repo-00001"] and layers[-1] == ["repo-03000"]
    cyclic = {name: list(deps) for name, deps in edges_of(loaded.model).items()}
    cyclic["repo-00001"] = ["repo-03000"]
    cycle = find_cycle(cyclic)
    assert cycle is not None and len(cycle) == 3001 and cycle[0] == cycle[-1] == "repo-00001"
    result = run_ws("-w", str(path), "plan", "--env", "local", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "repo-03000" in result.stdout


def test_a_cycle_through_a_long_chain_is_reported_with_its_line(tmp_path: Path) -> None:
    text = chain_workspace(1500).replace("    role: primary\n", "    role: primary\n    depends_on: [repo-01500]\n", 1)
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 1 and "dependency cycle: repo-00001 -> repo-01500 -> repo-01499" in problems[0]


def test_reading_a_one_megabyte_workspace_never_uses_the_round_trip_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The round-trip parser took 35-40 s for 10 MB; reading takes the fast path (bench: bench_workspace.py)."""
    from ruamel.yaml import YAML

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the round-trip parser read workspace.yaml")

    monkeypatch.setattr(YAML, "load", refuse)
    monkeypatch.setattr(YAML, "compose", refuse)
    path = write(tmp_path, chain_workspace(3400))
    assert 0.95 * 2**20 < path.stat().st_size <= yamlread.MAX_BYTES
    loaded = load_workspace(path)
    assert len(loaded.model.repos) == 3400
    assert loaded.problem(("repos", "repo-03400", "service", "port"), "x").line == path.read_text().count("\n") - 3


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("    role: primary\n", "    role: primary\n    path: /etc\n", 20, "repos.core.path: path '/etc' is absolute"),
        (
            "    role: primary\n",
            "    role: primary\n    path: ../../../../etc\n",
            20,
            "path '../../../../etc' leads more than one folder above",
        ),
        ("    role: primary\n", "    role: primary\n    path: ~/core\n", 20, "starts in a home folder"),
        ("    role: primary\n", "    role: primary\n    path: a/../../..\n", 20, "leads more than one folder above"),
        (
            "      prisma: prisma/schema.prisma\n      namespace: core",
            "      prisma: ../../../../etc/passwd\n      namespace: core",
            21,
            "repos.core.schema.prisma: path '../../../../etc/passwd' leads outside the repo",
        ),
        (
            "      namespace: api\n",
            "      namespace: api\n      migrations: /var/lib/migrations\n",
            33,
            "repos.api.schema.migrations: path '/var/lib/migrations' is absolute",
        ),
    ],
)
def test_paths_leaving_the_workspace_or_the_repo_are_refused_at_their_line(
    tmp_path: Path, old: str, new: str, line: int, fragment: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert f"workspace.yaml:{line}:" in problems[0] and fragment in problems[0] and "Fix: " in problems[0], problems
    result = run_ws("-w", str(path), "check", cwd=tmp_path)
    assert result.returncode == 2 and fragment in result.stderr and "checkout ok" not in result.stdout


@pytest.mark.parametrize("checkout", ["core", "./repos/core", "../core", "repos/../../core", "."])
def test_checkouts_inside_or_beside_the_workspace_folder_are_fine(tmp_path: Path, checkout: str) -> None:
    loaded = load_workspace(
        write(tmp_path, VALID.replace("    role: primary\n", f"    role: primary\n    path: {checkout}\n"))
    )
    assert loaded.repo_dir("core").is_relative_to(tmp_path.parent)


def test_sqlite_migration_paths_stay_inside_the_repo(tmp_path: Path) -> None:
    text = VALID + "    sqlite_migration:\n      source: agents/*/memory.db\n      archive: ../../../tmp/archive\n"
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 1 and "repos.api.sqlite_migration.archive: path '../../../tmp/archive'" in problems[0]


@pytest.mark.parametrize(
    ("old", "new", "line", "fragments"),
    [
        (
            "      port: 4000",
            "      port: true",
            24,
            ["repos.core.service.port: expected a number, got the boolean true", "a boolean is not a number"],
        ),
        (
            "  protected: true",
            "  protected: true\n    stack: ../../../tmp/evil",
            11,
            ["environments.prod.stack: stack name '../../../tmp/evil' is not a safe name", "stack: prod"],
        ),
        (
            "  name: demo_db\n",
            "  name: demo_db\n  version: 15\n",
            13,
            ["database.version: expected text, got the int 15", 'quotes so YAML reads it as text: version: "15"'],
        ),
        (
            "  name: demo_db\n",
            "  name: demo_db\n  max_connections: '100'\n",
            13,
            ["database.max_connections", "valid integer"],
        ),
    ],
)
def test_values_of_the_wrong_type_are_refused_with_a_fix(
    tmp_path: Path, old: str, new: str, line: int, fragments: list[str]
) -> None:
    assert old in VALID
    problems = problems_of(write(tmp_path, VALID.replace(old, new, 1)))
    assert len(problems) == 1, problems
    assert f"workspace.yaml:{line}:" in problems[0], problems
    for fragment in fragments:
        assert fragment in problems[0], problems


def test_a_byte_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "workspace.yaml"
    path.write_bytes(VALID.replace("owner: acme", "owner: acmé").encode("utf-8").replace("é".encode(), b"\xe9"))
    problems = problems_of(path)
    assert len(problems) == 1
    assert "workspace.yaml:4:13: byte 0xe9 is not UTF-8 text. Fix: save the file as UTF-8" in problems[0], problems


def test_a_key_over_yamls_1024_character_limit_is_named_and_never_printed_whole(tmp_path: Path) -> None:
    key = "K" * 200_000
    for text, line in (
        (VALID.replace("env:\n", f"env:\n  {key}: x\n"), "14:3"),  # a simple key: YAML's own limit
        (VALID.replace("env:\n", f"env:\n  ? {key}\n  : x\n"), "14:5"),  # an explicit key has none: ours
        (VALID.replace("env:\n", f"env:\n  {'K' * 1025}: x\n"), "14:3"),
    ):
        path = write(tmp_path, text)
        problems = problems_of(path)
        assert len(problems) == 1, problems
        assert f"workspace.yaml:{line}:" in problems[0] and "1,024 characters" in problems[0], problems
        result = run_ws("-w", str(path), "check", cwd=tmp_path)
        assert result.returncode == 2 and "1,024 characters" in result.stderr
        assert len(result.stderr) < 600 and "could not find expected" not in result.stderr, result.stderr


def test_a_long_unknown_key_or_value_is_cut_in_messages(tmp_path: Path) -> None:
    text = VALID.replace("    depends_on: [core]", f"    depends_on: [core]\n    {'x' * 1000}: 1").replace(
        "  owner: acme", f"  owner: {'o' * 100_000}"
    )
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert len(problems) == 2, problems
    assert all(len(p) < 600 for p in problems), [len(p) for p in problems]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://github.example.com/api/v3", "would send the GitHub token unencrypted"),
        ("http://10.0.0.5:8080", "would send the GitHub token unencrypted"),
        ("http://127.0.0.1.example.com", "would send the GitHub token unencrypted"),
        ("ftp://github.example.com", "is not an http(s) URL"),
        ("https://user:pw@github.example.com/api/v3", "the URL holds credentials"),
        ("github.example.com", "is not an http(s) URL"),
    ],
)
def test_github_api_url_must_be_https(tmp_path: Path, url: str, fragment: str) -> None:
    problems = problems_of(write(tmp_path, VALID.replace("  owner: acme\n", f"  owner: acme\n  api_url: {url}\n")))
    assert len(problems) == 1 and "workspace.yaml:5:3: github.api_url:" in problems[0], problems
    assert fragment in problems[0] and "pw" not in problems[0].split("github.api_url:")[1]


@pytest.mark.parametrize(
    "url",
    ["https://github.example.com/api/v3", "http://127.0.0.1:8123", "http://[::1]:9000/api/v3", "http://localhost:1"],
)
def test_github_api_url_https_or_loopback_is_fine(tmp_path: Path, url: str) -> None:
    loaded = load_workspace(write(tmp_path, VALID.replace("  owner: acme\n", f"  owner: acme\n  api_url: {url}\n")))
    assert loaded.model.github.api_url == url


def test_a_file_full_of_mistakes_reports_the_first_fifty_and_a_count(tmp_path: Path) -> None:
    unknown = "".join(f"  unknown_{index}: 1\n" for index in range(5000))
    problems = problems_of(write(tmp_path, VALID.replace("  owner: acme\n", "  owner: acme\n" + unknown)))
    assert len(problems) == 51 and problems[-1].endswith("... and 4,950 more problems. Fix: fix the ones above first")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a [*a]\n", "f.yaml:1:8: unknown alias *a"),
        ("x: !!python/object/apply:os.system [id]\n", "f.yaml:1:4: the tag 'tag:yaml.org,2002:python/object/apply"),
        ("a: 1\n---\nb: 2\n", "f.yaml:2:1: a second YAML document"),
        ("? [1, 2]\n: 3\n", "f.yaml:1:3: a key must be a plain value"),
        ("a: {<<: 5}\n", "f.yaml:1:9: a merge key (<<) takes a mapping or a list of mappings"),
        ("a: 1\na: 2\n", "f.yaml:2:1: duplicate key 'a' (first defined on line 1)"),
    ],
)
def test_unsafe_or_ambiguous_yaml_is_refused_at_its_position(text: str, expected: str) -> None:
    with pytest.raises(WorkspaceError) as caught:
        loader.read_document(text, "f.yaml")
    assert [str(p) for p in caught.value.problems][0].startswith(expected), caught.value.problems


def test_scalars_resolve_as_yaml_1_2_and_merge_keys_work() -> None:
    document = loader.read_document(
        "a: yes\nb: on\nc: true\nd: 0o17\ne: 0x1F\nf: 1_000\ng: ~\nh: 2024-01-01\ni: '15'\n"
        "base: &base {k: 1, j: 1}\nmerged: {<<: [*base, {m: 2}], k: 3}\n",
        "f.yaml",
    )
    assert document == {
        "a": "yes",
        "b": "on",
        "c": True,
        "d": 15,
        "e": 31,
        "f": 1000,
        "g": None,
        "h": "2024-01-01",
        "i": "15",
        "base": {"k": 1, "j": 1},
        "merged": {"k": 3, "j": 1, "m": 2},
    }
    assert document.positions["merged"] == (11, 1) and document["merged"].positions["k"] == (11, 31)


def test_an_endless_file_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    report = run_measured("-w", "/dev/zero", "check", cwd=tmp_path)
    assert report["code"] == 2 and "larger than 2 MB" in str(report["stderr"]), report
    assert int(str(report["peak"])) < 200 * 2**20, report
