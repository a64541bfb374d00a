"""Stack files: generated per `runtime: pulumi` environment, kept in step with workspace.yaml by `ws generate`
(existing values kept, keys only added or removed), drift reported by `ws generate --check`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.errors import UsageError, WorkspaceError
from infra.stack.stackfiles import (
    SERVICES_KEY,
    check_stack_files,
    default_config,
    generate_stack_files,
    pulumi_environments,
    read_stack_config,
    settings_from_config,
    stack_file,
    stack_file_name,
)
from infra.workspace.loader import load_workspace
from tests.helpers import EXAMPLES, ROOT, run_ws


@pytest.mark.parametrize("workspace", [ROOT / "workspace.yaml", EXAMPLES / "workspace.yaml"], ids=["real", "example"])
def test_committed_stack_files_are_what_the_generator_produces(workspace: Path) -> None:
    loaded = load_workspace(workspace)
    files = generate_stack_files(loaded)
    assert sorted(files) == sorted(stack_file_name(loaded.model, e) for e in pulumi_environments(loaded.model))
    assert {"Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"} <= set(files)
    assert ("Pulumi.cluster.yaml" in files) == (workspace == EXAMPLES / "workspace.yaml")  # its Kubernetes one
    for name, content in files.items():
        assert (loaded.root / name).read_text(encoding="utf-8") == content
        config = read_stack_config(content, name)
        environment = name.split(".")[1]
        assert set(config[SERVICES_KEY]) == {r for r, repo in loaded.model.repos.items() if repo.service}
        settings = settings_from_config(loaded.model, environment, config)  # valid as committed
        assert settings.postgres.version == loaded.model.database.version


def test_environments_publish_different_ports() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    ports = [
        port
        for environment in ("dev", "staging", "prod")
        for settings in [settings_from_config(ws, environment, default_config(ws, environment))]
        for port in [settings.postgres.host_port, settings.redis.host_port]
        + [s.host_port for s in settings.services.values()]
    ]
    assert None not in ports and len(ports) == len(set(ports))  # stacks can share one Docker host


PULUMI_REWRITTEN = """\
encryptionsalt: v1:abc:def
config:
  saas-ecosystem-workspace:OPENAI_API_KEY:
    secure: v1:xyz:ciphertext
  ws:bind_ip: 0.0.0.0
  ws:host: docker.internal
  ws:postgres:
    host_port: 5432
    memory_mb: 2048
    version: "15.10"
  ws:redis:
    host_port: 6379
    memory_mb: null
    version: "7.2"
  ws:services:
    app-agents:
      cpus: 2
      host_port: 3001
      image_tag: sha-1234567
      memory_mb: 1024
    retired-repo:
      cpus: 1
      host_port: 3009
      image_tag: v0
      memory_mb: 1
    saas-ecosystem-architecture:
      cpus: 1
      host_port: 3000
      image_tag: v2.0.0
      memory_mb: 512
"""


def test_regenerating_keeps_values_and_other_keys_and_follows_the_repos() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    text = stack_file(ws, "prod", PULUMI_REWRITTEN)
    assert text.startswith("encryptionsalt: v1:abc:def\n")
    assert "secure: v1:xyz:ciphertext" in text
    config = read_stack_config(text, "Pulumi.prod.yaml")
    assert "retired-repo" not in config[SERVICES_KEY]  # repo gone from workspace.yaml -> key removed
    assert (
        config[SERVICES_KEY]["saas-spec-driven-development"]
        == default_config(ws, "prod")[SERVICES_KEY]["saas-spec-driven-development"]
    )
    assert config[SERVICES_KEY]["app-agents"] == {
        "cpus": 2,
        "host_port": 3001,
        "image_tag": "sha-1234567",
        "memory_mb": 1024,
    }
    assert config["ws:postgres"] == {"host_port": 5432, "memory_mb": 2048, "version": "15.10"}
    assert config["ws:host"] == "docker.internal" and config["ws:bind_ip"] == "0.0.0.0"
    assert stack_file(ws, "prod", text) == text  # stable: a second run changes nothing
    settings = settings_from_config(ws, "prod", config)
    assert settings.redis.memory_mb is None and settings.services["app-agents"].cpus == 2.0


def test_a_complete_file_in_any_formatting_is_kept_byte_for_byte() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    complete = PULUMI_REWRITTEN.replace(
        "    retired-repo:\n      cpus: 1\n      host_port: 3009\n      image_tag: v0\n      memory_mb: 1\n",
        "    saas-spec-driven-development: {cpus: 1, host_port: 3002, image_tag: latest, memory_mb: 512}\n",
    )
    assert stack_file(ws, "prod", complete) == complete


def test_a_value_of_the_wrong_shape_is_left_for_the_program_to_report() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    broken = "config:\n  ws:postgres: fifteen\n"
    text = stack_file(ws, "dev", broken)
    config = read_stack_config(text, "Pulumi.dev.yaml")
    assert config["ws:postgres"] == "fifteen"  # not silently replaced by defaults
    assert set(config[SERVICES_KEY]) == {"saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development"}
    with pytest.raises(UsageError, match=r"Pulumi.dev.yaml: ws:postgres: must be a mapping"):
        settings_from_config(ws, "dev", config)


def test_an_unreadable_stack_file_is_a_located_error() -> None:
    ws = load_workspace(ROOT / "workspace.yaml").model
    with pytest.raises(WorkspaceError) as caught:
        stack_file(ws, "dev", "config:\n  ws:host: [unclosed\n", file="Pulumi.dev.yaml")
    (problem,) = caught.value.problems
    assert problem.file == "Pulumi.dev.yaml" and problem.line >= 2


def test_ws_generate_check_reports_stack_file_drift_and_ws_generate_repairs_it(tmp_path: Path) -> None:
    shutil.copy(ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    for environment in ("dev", "staging", "prod"):
        shutil.copy(ROOT / f"Pulumi.{environment}.yaml", tmp_path / f"Pulumi.{environment}.yaml")
    staging = tmp_path / "Pulumi.staging.yaml"
    edited = staging.read_text().replace("image_tag: latest", "image_tag: v3.1.4", 1)
    staging.write_text(edited.replace("    app-agents:\n", "    app-agent:\n"))  # a typo: stale key

    checked = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate", "--check", "--json")
    assert checked.returncode == 1, checked.stderr
    assert "Pulumi.staging.yaml" in checked.stdout and "Pulumi.dev.yaml" not in checked.stdout

    written = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate")
    assert written.returncode == 0, written.stderr
    config = read_stack_config(staging.read_text(), "Pulumi.staging.yaml")
    assert set(config[SERVICES_KEY]) == {"saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development"}
    assert config[SERVICES_KEY]["saas-ecosystem-architecture"]["image_tag"] == "v3.1.4"
    again = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate", "--check")
    assert again.returncode == 0, again.stdout + again.stderr


def test_ws_generate_on_a_corrupt_stack_file_exits_2_with_the_location(tmp_path: Path) -> None:
    shutil.copy(ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  ws:host: [unclosed\n")
    done = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate", "--check")
    assert done.returncode == 2
    assert "Pulumi.dev.yaml:" in done.stderr and "Traceback" not in done.stderr


def test_ws_check_validates_every_stack_file(tmp_path: Path) -> None:
    shutil.copy(ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path / "Pulumi.dev.yaml")
    prod = (ROOT / "Pulumi.prod.yaml").read_text().replace("host_port: 33001", "host_port: 33000")
    (tmp_path / "Pulumi.prod.yaml").write_text(prod)
    results = {r.name: r for r in check_stack_files(load_workspace(tmp_path / "workspace.yaml"))}
    assert results["stack file Pulumi.dev.yaml"].status == "ok"
    assert results["stack file Pulumi.staging.yaml"].status == "fail"
    assert "missing (run `ws generate`" in results["stack file Pulumi.staging.yaml"].detail
    assert results["stack file Pulumi.prod.yaml"].status == "fail"
    assert "ws:services.app-agents.host_port: host port 33000 is already published by" in (
        results["stack file Pulumi.prod.yaml"].detail
    )

    done = run_ws("-w", str(tmp_path / "workspace.yaml"), "check", "--json")
    assert done.returncode == 1
    assert "host port 33000 is already published" in done.stdout
