"""`ws schema package`: the shared types as an npm package, versioned by the exported schema, packed offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from infra.schema import export, types_package
from infra.workspace import load_workspace
from tests.fixtures.prisma.nodetools import node_modules
from tests.helpers import EXAMPLES, run_ws

PRIMARY = "saas-ecosystem-architecture/admin-app/prisma/schema.prisma"
AGENTS = "app-agents/shared/database/schema.prisma"
TYPES_BLOCK = (
    '\ntypes:\n  package: "@example-ecosystem/shared-database-types"\n  python_package: shared-database-types\n'
)


def load_yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


VERSION = re.compile(r"^0\.1\.0-schema-[0-9a-f]{12}$")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("node_modules", "*.db", "__pycache__", ".ws"))
    with (target / "workspace.yaml").open("a", encoding="utf-8") as handle:
        handle.write(TYPES_BLOCK)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def version(workspace: Path) -> str:
    return types_package.version_of(load_workspace(workspace / "workspace.yaml"))


def test_package_builds_and_packs_offline_with_the_version_of_the_schema(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "package"
    env = {
        "WS_TSC": str(node_modules() / ".bin" / "tsc"),
        "npm_config_offline": "true",  # npm pack needs no registry
        "npm_config_cache": str(tmp_path / "npm-cache"),
    }
    result = run_ws("-w", str(workspace / "workspace.yaml"), "schema", "package", "--out", str(out), "--pack", "--json",
                    env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    loaded = load_workspace(workspace / "workspace.yaml")
    expected = f"0.1.0-schema-{types_package.content_hash(export.export_types(loaded))}"
    assert data["version"] == expected and VERSION.match(expected)
    assert data["package"] == "@example-ecosystem/shared-database-types"
    tarball = Path(data["tarball"])
    assert tarball.name == f"example-ecosystem-shared-database-types-{expected}.tgz" and tarball.is_file()
    with tarfile.open(tarball) as packed:
        names = set(packed.getnames())
        manifest = json.loads(packed.extractfile("package/package.json").read())  # type: ignore[union-attr]
        declarations = packed.extractfile("package/dist/index.d.ts").read().decode()  # type: ignore[union-attr]
        packed.extractall(tmp_path / "unpacked", filter="data")
    assert {
        "package/package.json",
        "package/README.md",
        "package/dist/index.js",
        "package/dist/index.d.ts",
        "package/dist/metrics.js",
        "package/dist/metrics.d.ts",
        "package/python/shared_database_types.py",
        "package/python/pyproject.toml",
    } <= names
    assert not any(n.startswith("package/src/") or n.endswith(".npmrc") for n in names), names
    assert manifest["version"] == expected and manifest["types"] == "dist/index.d.ts"
    assert manifest["publishConfig"] == {"registry": "https://npm.pkg.github.com"}
    assert "export interface Organization {" in declarations and "export declare enum AgentStatus" in declarations
    # the compiled JavaScript runs: the enum's values and the metrics helper are there
    node = shutil.which("node")
    assert node is not None
    script = "const t = require('./dist/index.js'); console.log(JSON.stringify([t.AgentStatus, typeof t.groupPath]))"
    ran = subprocess.run([node, "-e", script], cwd=tmp_path / "unpacked" / "package", capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    status, helper = json.loads(ran.stdout)
    assert "ACTIVE" in status and helper == "function"


def test_the_version_follows_the_shared_models_only(workspace: Path) -> None:
    first = version(workspace)
    assert VERSION.match(first) and version(workspace) == first  # the same schema, the same version
    # a secondary's own model and a primary model no one shares are not in the types
    edit(workspace / AGENTS, "model ToolInvocation {\n", "model ToolInvocation {\n  note String?\n")
    with (workspace / PRIMARY).open("a", encoding="utf-8") as handle:
        handle.write('\nmodel AuditNote {\n  id Int @id\n\n  @@schema("ecosystem")\n}\n')
    assert version(workspace) == first
    # a shared model's new field is
    edit(workspace / PRIMARY, "model Agent {\n", "model Agent {\n  nickname String?\n")
    changed = version(workspace)
    assert VERSION.match(changed) and changed != first


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("  package: shared-database-types", "GitHub Packages takes scoped names only"),
        ("  package: Shared Types", "types.package"),
        ("  package: '@x/y'\n  version: '1.0'", "types.version"),
        ("  package: '@x/y'\n  registry: http://registry.example", "types.registry"),
    ],
)
def test_the_types_block_is_validated_at_its_line(workspace: Path, line: str, message: str) -> None:
    text = (workspace / "workspace.yaml").read_text(encoding="utf-8").replace(TYPES_BLOCK, "")
    (workspace / "workspace.yaml").write_text(text + f"\ntypes:\n{line}\n", encoding="utf-8")
    types_line = (text + "\n").count("\n") + 1
    result = run_ws("-w", str(workspace / "workspace.yaml"), "check", in_process=True)
    assert result.returncode == 2, result.stdout + result.stderr
    output = " ".join(result.stderr.split())
    assert "Traceback" not in output and message in output, output
    assert re.search(rf"workspace\.yaml:({types_line}|{types_line + 1}|{types_line + 2}):", output), output


def test_without_a_types_block_package_says_how_to_add_one(tmp_path: Path) -> None:
    result = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "schema", "package", "--out", str(tmp_path / "p"),
                    in_process=True)  # fmt: skip
    assert result.returncode == 2
    assert "declares no types package" in result.stderr and "types:" in result.stderr


def test_the_primarys_release_workflow_publishes_the_package() -> None:
    from infra.github.repofiles import RELEASE_WORKFLOW, repo_files
    from tests.helpers import ROOT

    loaded = load_workspace(ROOT / "workspace.yaml")
    assert loaded.model.types is not None
    files = repo_files(loaded)
    document = load_yaml(files[loaded.model.primary][RELEASE_WORKFLOW])
    assert document["permissions"] == {}
    job = document["jobs"]["types"]
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert any("prisma generate" in r for r in runs) and any("ws schema package" in r for r in runs)
    publish = job["steps"][-1]
    assert "npm publish" in publish["run"] and publish["env"]["NODE_AUTH_TOKEN"] == "${{ github.token }}"
    assert all("${{" not in r for r in runs)
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", s["uses"]) for s in job["steps"] if "uses" in s and
               not s["uses"].startswith("./"))  # fmt: skip
    # the secondaries' release workflows publish nothing
    for repo in loaded.model.repos:
        if repo != loaded.model.primary:
            assert "types" not in load_yaml(files[repo][RELEASE_WORKFLOW])["jobs"]


def test_a_primary_without_an_image_gets_a_types_only_release_that_passes_the_gates(tmp_path: Path) -> None:
    from infra.github.actions import generate_actions
    from infra.github.repofiles import RELEASE_WORKFLOW, repo_files
    from tests.helpers import ROOT
    from tests.test_github_actions import actionlint, write_tree, zizmor

    text = (ROOT / "workspace.yaml").read_text(encoding="utf-8")
    text = text.replace("      image: ghcr.io/saas-ecosystem/admin-app\n", "", 1)
    (tmp_path / "workspace.yaml").write_text(text, encoding="utf-8")
    loaded = load_workspace(tmp_path / "workspace.yaml")
    workflow = repo_files(loaded)[loaded.model.primary][RELEASE_WORKFLOW]
    assert list(load_yaml(workflow)["jobs"]) == ["types"]
    # the workflow beside the coordination repository's actions, checked out as ./workspace as on the runner
    files = {**generate_actions(loaded), ".github/workflows/release.yml": workflow}
    tree = write_tree(tmp_path / "tree", files, "workspace")
    linted = actionlint(tree, [".github/workflows/release.yml"])
    assert linted.returncode == 0 and linted.stdout == "", linted.stdout + linted.stderr
    for persona in ("regular", "auditor"):
        findings = zizmor(tree, persona)
        assert json.loads(findings.stdout) == [], findings.stdout + findings.stderr


def test_a_github_packages_scope_other_than_the_primarys_owner_is_refused_at_its_line(workspace: Path) -> None:
    edit(workspace / "workspace.yaml", '"@example-ecosystem/shared-database-types"', '"@someone-else/types"')
    line = (workspace / "workspace.yaml").read_text(encoding="utf-8").split('"@someone-else')[0].count("\n") + 1
    result = run_ws("-w", str(workspace / "workspace.yaml"), "check", in_process=True)
    assert result.returncode == 2, result.stdout + result.stderr
    output = " ".join(result.stderr.split())
    assert f"workspace.yaml:{line}:" in output and "GitHub Packages refuses scope @someone-else" in output, output
    assert "package: '@example-ecosystem/types'" in output, output
