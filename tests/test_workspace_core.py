"""Stages, env resolution, `ws` exit codes and JSON shapes on the real and the example workspace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from infra.workspace import load_workspace
from infra.workspace.env import dotenv, render, resolve, shared_template
from infra.workspace.graph import closure, dependents, find_cycle, stages
from infra.workspace.model import SecretRef
from tests.helpers import EXAMPLES, ROOT, run_ws


def test_stages_are_topological_layers_sorted_by_name() -> None:
    edges = {"e": ["c", "d"], "d": ["a"], "c": ["a", "b"], "b": [], "a": []}
    assert stages(edges) == [["a", "b"], ["c", "d"], ["e"]]
    assert stages(dict(reversed(list(edges.items())))) == stages(edges)


def test_cycle_detection_returns_a_closed_path() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
    with pytest.raises(ValueError, match="a -> b -> a"):
        stages({"a": ["b"], "b": ["a"]})


def test_closure_and_dependents() -> None:
    edges = {"e": ["c"], "c": ["a"], "a": [], "b": []}
    assert closure(edges, ["e"]) == {"e", "c", "a"}
    assert dependents(edges, "a") == {"c", "e"}
    assert dependents(edges, "b") == set()


def test_real_workspace_declares_the_three_repos() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    assert ws.primary == "saas-ecosystem-architecture"
    assert {r for r, repo in ws.repos.items() if repo.role == "secondary"} == {
        "app-agents",
        "saas-spec-driven-development",
    }
    for name in ("app-agents", "saas-spec-driven-development"):
        assert ws.repos[name].depends_on == ["saas-ecosystem-architecture"]
    for var in (
        "DATABASE_URL",
        "REDIS_URL",
        "DB_MAX_CONNECTIONS",
        "AGENT_REGISTRY_URL",
        "SPEC_SERVICE_URL",
        "ADMIN_APP_URL",
    ):
        assert var in ws.env


def test_env_precedence_shared_environment_repo_override(tmp_path: Path) -> None:
    text = (EXAMPLES / "workspace.yaml").read_text()
    text = text.replace(
        "    maintainers: [example-specs]",
        "    maintainers: [example-specs]\n    env:\n      DB_MAX_CONNECTIONS: 7\n      TOKEN: {secret: SPEC_TOKEN}\n"
        "    environments:\n      prod:\n        env:\n          DB_MAX_CONNECTIONS: 3",
    )
    path = tmp_path / "workspace.yaml"
    path.write_text(text)
    ws = load_workspace(path).model
    spec = "saas-spec-driven-development"
    assert resolve(ws, "local", "app-agents")["DB_MAX_CONNECTIONS"] == ("10",)  # shared
    assert resolve(ws, "prod", "app-agents")["DB_MAX_CONNECTIONS"] == ("40",)  # environment
    assert resolve(ws, "dev", spec)["DB_MAX_CONNECTIONS"] == ("7",)  # repo
    assert resolve(ws, "prod", spec)["DB_MAX_CONNECTIONS"] == ("3",)  # repo in environment
    assert resolve(ws, "dev", spec)["TOKEN"] == (SecretRef(secret="SPEC_TOKEN"),)


def test_service_urls_and_database_urls_per_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    ws = load_workspace(EXAMPLES / "workspace.yaml").model
    local = resolve(ws, "local", "app-agents")
    assert render(local["ADMIN_APP_URL"]) == "http://127.0.0.1:4100"
    assert render(local["DATABASE_URL"]) == "postgresql://postgres@127.0.0.1:5432/example_ecosystem?schema=agents"
    assert render(local["PORT"]) == "4101"
    prod = resolve(ws, "prod", "app-agents")
    assert render(prod["ADMIN_APP_URL"]) == "http://saas-ecosystem-architecture:4100"
    assert render(prod["DATABASE_URL"]) == (
        "postgresql://app_agents:${secret:WS_DB_PASSWORD_APP_AGENTS}@postgres:5432/example_ecosystem?schema=agents"
    )
    assert render(prod["DATABASE_URL"], {"WS_DB_PASSWORD_APP_AGENTS": "s3"}.get).startswith(
        "postgresql://app_agents:s3@"
    )
    assert "hunter" not in dotenv(prod)


def test_local_database_url_follows_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.internal:6543/other?sslmode=disable")
    ws = load_workspace(EXAMPLES / "workspace.yaml").model
    assert (
        render(resolve(ws, "local", "app-agents")["DATABASE_URL"])
        == "postgresql://u@db.internal:6543/other?schema=agents"
    )


def test_shared_template_lists_shared_variables() -> None:
    text = shared_template(load_workspace(ROOT / "workspace.yaml").model)
    assert "DB_MAX_CONNECTIONS=20" in text
    assert "DATABASE_URL='${database.url}'" in text  # quoted: bash reads the reference literally


@pytest.mark.parametrize("workspace", [ROOT / "workspace.yaml", EXAMPLES / "workspace.yaml"], ids=["real", "example"])
def test_ws_check_passes(workspace: Path) -> None:
    result = run_ws("-w", str(workspace), "check", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    names = {c["name"] for c in report["checks"]}
    assert {"workspace.yaml", "dependency graph", "required env", "generated files"} <= names
    assert all(c["status"] in {"ok", "skipped"} for c in report["checks"])


def test_ws_plan_json_and_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    result = run_ws("plan", "--env", "prod", "--json", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["environment"] == "prod" and plan["protected"] is True and plan["runtime"] == "pulumi"
    assert [[r["name"] for r in s["repos"]] for s in plan["stages"]] == [
        ["saas-ecosystem-architecture"],
        ["app-agents", "saas-spec-driven-development"],
    ]
    text = summary.read_text()
    assert "```mermaid" in text and "saas_ecosystem_architecture --> app_agents" in text


def test_ws_plan_subset_and_bad_repo() -> None:
    result = run_ws("plan", "--env", "dev", "--repos", "app-agents", "--json")
    assert [s["repos"][0]["name"] for s in json.loads(result.stdout)["stages"]] == ["app-agents"]
    bad = run_ws("plan", "--env", "dev", "--repos", "app-agent")
    assert bad.returncode == 2 and "unknown repo(s) app-agent" in bad.stderr


def test_ws_graph_formats() -> None:
    mermaid = run_ws("graph")
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("flowchart LR")
    dot = run_ws("graph", "--format", "dot")
    assert '"saas-ecosystem-architecture" -> "app-agents";' in dot.stdout


def test_ws_env_outputs() -> None:
    result = run_ws(
        "-w", str(EXAMPLES / "workspace.yaml"), "env", "--env", "prod", "--repo", "app-agents", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["DATABASE_URL"]["secret"] is True
    assert data["ADMIN_APP_URL"] == {"value": "http://saas-ecosystem-architecture:4100", "secret": False}
    missing = run_ws("env", "--env", "prod", "--repo", "app-agents", "--secrets-from", "env")
    assert missing.returncode == 2 and "OPENAI_API_KEY" in missing.stderr
    supplied = run_ws(
        "env",
        "--env",
        "prod",
        "--repo",
        "app-agents",
        "--secrets-from",
        "env",
        env={"OPENAI_API_KEY": "sk-test", "WS_DB_PASSWORD_APP_AGENTS": "pw", "WS_CACHE_PASSWORD": "cpw"},
    )
    assert supplied.returncode == 0, supplied.stderr
    assert "OPENAI_API_KEY=sk-test" in supplied.stdout
    usage = run_ws("env")
    assert usage.returncode == 2 and "needs --env ENV and --repo REPO" in usage.stderr


def test_ws_env_check_fails_on_undefined_required_variable(tmp_path: Path) -> None:
    text = (
        (EXAMPLES / "workspace.yaml")
        .read_text()
        .replace(
            "requires: [DATABASE_URL, REDIS_URL, ADMIN_APP_URL]",
            "requires: [DATABASE_URL, REDIS_URL, ADMIN_APP_URL, LLM_MODEL]",
        )
    )
    path = tmp_path / "workspace.yaml"
    path.write_text(text)
    result = run_ws("-w", str(path), "env", "check", "--json")
    assert result.returncode == 1
    missing = json.loads(result.stdout)["missing"]
    assert {"environment": "prod", "repo": "app-agents", "variable": "LLM_MODEL"} in missing
    assert len(missing) == len(load_workspace(path).model.environments)  # one per environment


def test_generate_check_detects_stale_and_generate_repairs(tmp_path: Path) -> None:
    shutil.copy(ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    stale = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate", "--check", "--json")
    assert stale.returncode == 1
    assert "workspace.schema.json" in json.loads(stale.stdout)["stale"]
    written = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate")
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "workspace.schema.json").read_bytes() == (ROOT / "workspace.schema.json").read_bytes()
    again = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate", "--check")
    assert again.returncode == 0, again.stdout + again.stderr


def test_json_schema_validates_the_workspaces() -> None:
    import jsonschema
    from ruamel.yaml import YAML

    schema = json.loads((ROOT / "workspace.schema.json").read_text())
    for path in (ROOT / "workspace.yaml", EXAMPLES / "workspace.yaml"):
        jsonschema.validate(YAML(typ="safe").load(path.read_text()), schema)
    bad = YAML(typ="safe").load((ROOT / "workspace.yaml").read_text())
    bad["repos"]["app-agents"]["depend_on"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_every_command_is_reachable_through_the_lazy_root_group() -> None:
    import importlib

    from infra.cli import COMMAND_MODULES, cli

    defined = {
        command.name: module
        for module in set(COMMAND_MODULES.values())
        for command in importlib.import_module(f"infra.cli.{module}").COMMANDS
    }
    assert defined == COMMAND_MODULES
    help_text = run_ws("--help").stdout
    for name in COMMAND_MODULES:
        assert f"  {name} " in help_text, name
    assert cli.get_command(None, "nope") is None  # type: ignore[arg-type]


def test_local_database_url_accepts_a_libpq_conninfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "host=db.internal port=6543 dbname=other user=u")
    ws = load_workspace(EXAMPLES / "workspace.yaml").model
    assert (
        render(resolve(ws, "local", "app-agents")["DATABASE_URL"])
        == "postgresql://u@db.internal:6543/other?schema=agents"
    )
