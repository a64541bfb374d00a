"""`ws schema check` and `ws schema sync` on a copy of the example workspace, through the real CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from infra.checks import run_checks
from infra.schema.align import check_alignment
from infra.schema.load import LocalReader, load_schemas
from infra.schema.sync import apply_edits, plan_sync
from infra.workspace import load_workspace
from tests.fixtures.prisma.nodetools import prisma_format, prisma_validate
from tests.helpers import EXAMPLES, ROOT, run_ws

PRIMARY = "saas-ecosystem-architecture/admin-app/prisma/schema.prisma"
AGENTS = "app-agents/shared/database/schema.prisma"
SPECS = "saas-spec-driven-development/prisma/schema.prisma"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("node_modules", "*.db", "__pycache__"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, text: str) -> int:
    return path.read_text(encoding="utf-8").split(text)[0].count("\n") + 1


def ws(workspace: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run_ws("-w", str(workspace / "workspace.yaml"), *args, env=env)


def test_example_workspace_is_fully_aligned(workspace: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    result = ws(workspace, "schema", "check", "--json", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["percent"] == 100.0 and data["shared"] == 8
    assert {(m["repo"], m["name"]) for m in data["shared_models"] if m["aligned"]} == {
        ("app-agents", "Organization"),
        ("app-agents", "Agent"),
        ("app-agents", "AgentMemory"),
        ("app-agents", "AgentTool"),
        ("app-agents", "AgentStatus"),
        ("saas-spec-driven-development", "Organization"),
        ("saas-spec-driven-development", "Agent"),
        ("saas-spec-driven-development", "AgentStatus"),
    }
    assert "Alignment: **100%** (8/8" in summary.read_text(encoding="utf-8")


def test_changed_shared_field_is_reported_then_synced(workspace: Path) -> None:
    edit(workspace / PRIMARY, "  name      String   @db.VarChar(128)", "  name      String   @db.VarChar(200)")
    before_agents = (workspace / AGENTS).read_text(encoding="utf-8")
    result = ws(workspace, "schema", "check", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    differences = [d for m in data["shared_models"] for d in m["differences"]]
    assert differences == [
        {
            "repo": "app-agents",
            "name": "AgentTool",
            "member": "name",
            "aspect": "native type",
            "primary": "@db.VarChar(200)",
            "copy": "@db.VarChar(128)",
            "file": differences[0]["file"],
            "line": line_of(workspace / AGENTS, "  name            String           @db.VarChar(128)"),
        }
    ]
    assert differences[0]["file"].endswith(AGENTS)
    assert data["percent"] == 87.5
    assert "failed: schema alignment 87.5%" in result.stderr

    check = ws(workspace, "schema", "sync", "--check")
    assert check.returncode == 1
    assert "-  name            String           @db.VarChar(128)" in check.stdout
    assert "+  name            String           @db.VarChar(200)" in check.stdout
    assert (workspace / AGENTS).read_text(encoding="utf-8") == before_agents, "--check writes nothing"

    synced = ws(workspace, "schema", "sync")
    assert synced.returncode == 0, synced.stderr
    after = (workspace / AGENTS).read_text(encoding="utf-8")
    changed = [(a, b) for a, b in zip(before_agents.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [
        (
            "  name            String           @db.VarChar(128)",
            "  name            String           @db.VarChar(200)",
        )
    ], "only the changed field's line differs; back-relations and everything else are byte-identical"
    loaded = load_workspace(workspace / "workspace.yaml")
    assert plan_sync(loaded) == [], "a second sync changes nothing (what --check tests)"
    assert check_alignment(load_schemas(loaded)).ok


def test_sync_keeps_back_relations_and_drops_dangling_ones(workspace: Path) -> None:
    # a new required column in Agent, and a new shared enum value: both secondaries must follow
    edit(
        workspace / PRIMARY,
        '  config         Json          @default("{}")',
        '  config         Json          @default("{}")\n  region         String        @default("eu")',
    )
    edit(workspace / PRIMARY, "  RETIRED\n", "  RETIRED\n  ARCHIVED\n")
    report = check_alignment(load_schemas(load_workspace(workspace / "workspace.yaml")))
    aspects = sorted((d.repo, d.name, d.member, d.aspect) for d in report.differences())
    assert aspects == [
        ("app-agents", "Agent", "region", "missing field"),
        ("app-agents", "AgentStatus", "ARCHIVED", "missing value"),
        ("saas-spec-driven-development", "Agent", "region", "missing field"),
        ("saas-spec-driven-development", "AgentStatus", "ARCHIVED", "missing value"),
    ]
    loaded = load_workspace(workspace / "workspace.yaml")
    apply_edits(loaded, plan_sync(loaded))
    specs = (workspace / SPECS).read_text(encoding="utf-8")
    assert "specifications Specification[]" in specs, "the secondary's back-relation is kept"
    assert "memories" not in specs and "AgentTool" not in specs, "no back-relation to models specs does not have"
    agents = (workspace / AGENTS).read_text(encoding="utf-8")
    assert "runs           AgentRun[]" in agents and "memories       AgentMemory[]" in agents
    assert "  ARCHIVED\n" in agents and "  ARCHIVED\n" in specs
    for repo, schema in (("app-agents", AGENTS), ("saas-spec-driven-development", SPECS)):
        validated = prisma_validate(workspace / repo, schema.split("/", 1)[1])
        assert validated.returncode == 0, f"prisma rejects the synced {repo}: {validated.stdout}{validated.stderr}"
    assert check_alignment(load_schemas(loaded)).ok
    assert plan_sync(loaded) == []


def test_sync_leaves_a_back_relation_where_the_secondary_has_it(workspace: Path) -> None:
    """A secondary's own back-relation between shared fields stays there when sync rewrites the model: the only
    changed line is the primary's change."""
    agents = workspace / AGENTS
    edit(agents, "  runs           AgentRun[]\n", "")
    edit(agents, "  name           String\n", "  name           String\n  runs           AgentRun[]\n")
    edit(
        workspace / PRIMARY,
        '  config         Json          @default("{}")',
        '  config         Json          @default("{}")\n  region         String        @default("eu")',
    )
    before = agents.read_text(encoding="utf-8")
    loaded = load_workspace(workspace / "workspace.yaml")
    apply_edits(loaded, plan_sync(loaded))
    after = agents.read_text(encoding="utf-8")
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert removed == [] and [line.split() for line in added] == [["region", "String", '@default("eu")']]
    model = after.split("model Agent {", 1)[1].split("\n}\n", 1)[0].splitlines()
    fields = [line.split()[0] for line in model if line.strip() and not line.strip().startswith("@@")]
    assert fields.index("runs") == fields.index("name") + 1
    assert plan_sync(load_workspace(workspace / "workspace.yaml")) == []


def test_check_applies_prismas_rules_and_sync_restores_a_missing_back_relation(workspace: Path) -> None:
    """A copy of Agent without the primary's back-relation to AgentMemory (which app-agents holds) is field for
    field aligned, yet Prisma refuses the schema: `ws schema check` says so at the relation's line, and sync puts
    the back-relation back, after which Prisma accepts it."""
    agents = workspace / AGENTS
    edit(agents, "  memories       AgentMemory[]\n", "")
    refused = prisma_validate(workspace / "app-agents", AGENTS.split("/", 1)[1])
    assert refused.returncode != 0, refused.stdout
    result = ws(workspace, "schema", "check", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert [(p["repo"], p["name"], p["member"]) for p in problems] == [("app-agents", "AgentMemory", "agent")]
    assert "missing an opposite relation field on the model `Agent`" in problems[0]["aspect"]
    assert "(Prisma refuses the schema)" in problems[0]["aspect"]
    assert problems[0]["file"].endswith(AGENTS)
    assert problems[0]["line"] == line_of(agents, "  agent     Agent    @relation")

    synced = ws(workspace, "schema", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "  memories       AgentMemory[]\n" in agents.read_text(encoding="utf-8")
    assert prisma_validate(workspace / "app-agents", AGENTS.split("/", 1)[1]).returncode == 0
    assert ws(workspace, "schema", "check").returncode == 0


def test_missing_copy_and_external_list_are_repaired(workspace: Path) -> None:
    agents = workspace / AGENTS
    text = agents.read_text(encoding="utf-8")
    start = text.index("/// Long-term memory")
    end = text.index("/// A tool an agent may call.")
    agents.write_text(text[:start] + text[end:], encoding="utf-8")
    edit(agents, "  memories       AgentMemory[]\n", "")
    edit(workspace / "saas-spec-driven-development/prisma.config.ts", '"ecosystem.organizations", ', "")
    report = check_alignment(load_schemas(load_workspace(workspace / "workspace.yaml")))
    failing = {(d.repo, d.name): d.aspect for d in report.differences()}
    assert failing[("app-agents", "AgentMemory")] == "missing copy (run `ws schema sync`)"
    assert failing[("saas-spec-driven-development", "Organization")].startswith(
        "not declared external: add 'ecosystem.organizations' to tables.external"
    )
    result = ws(workspace, "schema", "sync", "--dry-run")
    assert result.returncode == 0 and "+model AgentMemory {" in result.stdout
    assert '+    external: ["ecosystem.organizations", "ecosystem.agents"],' in result.stdout
    loaded = load_workspace(workspace / "workspace.yaml")
    assert not check_alignment(load_schemas(loaded)).ok, "--dry-run writes nothing"
    apply_edits(loaded, plan_sync(loaded))
    assert check_alignment(load_schemas(loaded)).ok


def test_collisions_and_dangling_relations_are_problems(workspace: Path) -> None:
    edit(
        workspace / SPECS, '  @@map("dev_artifacts")\n  @@schema("specs")', '  @@map("agents")\n  @@schema("ecosystem")'
    )
    edit(workspace / AGENTS, "fields: [toolId], references: [id]", "fields: [toolId], references: [uuid]")
    report = check_alignment(load_schemas(load_workspace(workspace / "workspace.yaml")))
    texts = [str(p) for p in report.problems]
    assert any("DevArtifact: table ecosystem.agents collides with the primary's model Agent" in t for t in texts), texts
    assert any("ToolInvocation.tool: references AgentTool.uuid, which does not exist in the copy" in t for t in texts)
    assert not report.ok and report.percent == 100.0


def test_syntax_error_in_a_schema_is_one_located_message(workspace: Path) -> None:
    edit(workspace / AGENTS, "  input       Json\n", "  input       Json @default(\n")
    line = line_of(workspace / AGENTS, "  input       Json @default(")
    result = ws(workspace, "schema", "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        f"shared/database/schema.prisma:{line}:29:" in result.stderr.replace("\n", "")
        and "line breaks are not allowed" in result.stderr
    )


def test_real_workspace_says_not_checked_out() -> None:
    result = run_ws("-w", str(ROOT / "workspace.yaml"), "schema", "check")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout and "not checked out" in result.stdout
    assert "alignment: nothing compared (no secondary schema could be read)" in result.stdout
    loaded = load_workspace(ROOT / "workspace.yaml")
    skipped = check_alignment(load_schemas(loaded)).skipped
    assert set(skipped) == {"saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development"}
    assert all(reason.startswith("not checked out") for reason in skipped.values())
    rows = {r.name: r for r in run_checks(loaded)}
    assert rows["schema alignment app-agents"].status == "skipped"
    assert rows["schema alignment app-agents"].detail.startswith("skipped: not checked out")
    assert rows["schema alignment saas-spec-driven-development"].status == "skipped"


def test_schemas_can_be_read_through_any_reader(workspace: Path) -> None:
    """--ref reads files through a reader; here the reader is a second folder standing for another branch."""
    branch = workspace.parent / "branch"
    shutil.copytree(workspace, branch)
    edit(branch / PRIMARY, "  kind      String   @db.VarChar(32)", "  kind      String   @db.VarChar(48)")
    loaded = load_workspace(workspace / "workspace.yaml")
    readers = lambda repo: LocalReader(branch / str(loaded.model.repos[repo].path))  # noqa: E731
    report = check_alignment(load_schemas(loaded, readers))
    assert [(d.name, d.member, d.aspect) for d in report.differences()] == [("AgentMemory", "kind", "native type")]
    edits = plan_sync(loaded, readers)
    assert [(e.repo, e.path) for e in edits] == [("app-agents", "shared/database/schema.prisma")]
    assert "+  kind      String   @db.VarChar(48)" in edits[0].diff()
    assert check_alignment(load_schemas(loaded)).ok, "the local checkout is untouched"


def test_check_ref_reads_every_repo_through_the_github_contents_api(tmp_path: Path) -> None:
    from tests.fake_github import FakeGitHub
    from tests.workspace_builder import GIT_IDENTITY, OWNER, build_workspace, commit_file, git_in

    with FakeGitHub() as fake:
        workspace_file = build_workspace(tmp_path, fake)
        env = {**GIT_IDENTITY, "GITHUB_TOKEN": fake.token}
        primary = tmp_path / "saas-ecosystem-architecture"
        for repo in ("saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development"):
            git_in(tmp_path / repo, "checkout", "-q", "-b", "feat")
        text = (primary / PRIMARY.split("/", 1)[1]).read_text(encoding="utf-8")
        changed = text.replace("  kind      String   @db.VarChar(32)", "  kind      String   @db.VarChar(40)")
        commit_file(primary, PRIMARY.split("/", 1)[1], changed, "widen kind")
        for repo in ("saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development"):
            git_in(tmp_path / repo, "push", "-q", "origin", "feat")
        git_in(primary, "checkout", "-q", "main")  # the local checkout is not what --ref reads

        on_main = run_ws("-w", str(workspace_file), "schema", "check", "--ref", "main", "--json", env=env)
        assert on_main.returncode == 0, on_main.stdout + on_main.stderr
        assert json.loads(on_main.stdout)["percent"] == 100.0
        on_feat = run_ws("-w", str(workspace_file), "schema", "check", "--ref", "feat", "--json", env=env)
        assert on_feat.returncode == 1, on_feat.stderr
        differences = [d for m in json.loads(on_feat.stdout)["shared_models"] for d in m["differences"]]
        assert [(d["name"], d["member"], d["aspect"], d["primary"], d["copy"]) for d in differences] == [
            ("AgentMemory", "kind", "native type", "@db.VarChar(40)", "@db.VarChar(32)")
        ]
        assert differences[0]["file"] == f"{OWNER}/app-agents@feat:shared/database/schema.prisma"
        reads = [r for r in fake.requests if "/contents/" in r.path and r.query.get("ref") == "feat"]
        assert {r.path.split("/")[3] for r in reads} == {
            "saas-ecosystem-architecture",
            "app-agents",
            "saas-spec-driven-development",
        }
        # the local checkouts were never the source
        assert check_alignment(load_schemas(load_workspace(workspace_file))).ok


def test_multi_file_schema_folder_is_checked_and_synced(workspace: Path) -> None:
    """A secondary whose schema is a folder of *.prisma files: the copy's own file is the one rewritten."""
    source = workspace / AGENTS
    text = source.read_text(encoding="utf-8")
    folder = workspace / "app-agents/shared/database/schema"
    folder.mkdir()
    split = text.index("enum RunStatus {")
    (folder / "shared.prisma").write_text(text[:split], encoding="utf-8")
    (folder / "runtime.prisma").write_text(text[split:], encoding="utf-8")
    source.unlink()
    edit(workspace / "workspace.yaml", "prisma: shared/database/schema.prisma", "prisma: shared/database/schema")
    loaded = load_workspace(workspace / "workspace.yaml")
    assert check_alignment(load_schemas(loaded)).ok
    edit(
        workspace / PRIMARY,
        '  version   String   @default("1.0.0") @db.VarChar(32)',
        '  version   String   @default("2.0.0") @db.VarChar(32)',
    )
    report = check_alignment(load_schemas(loaded))
    assert [(d.repo, d.name, d.member, d.aspect) for d in report.differences()] == [
        ("app-agents", "AgentTool", "version", "@default")
    ]
    assert report.differences()[0].file.endswith("shared/database/schema/shared.prisma")
    edits = plan_sync(loaded)
    assert [(e.repo, e.path) for e in edits] == [("app-agents", "shared/database/schema/shared.prisma")]
    apply_edits(loaded, edits)
    assert check_alignment(load_schemas(loaded)).ok
    assert (folder / "runtime.prisma").read_text(encoding="utf-8") == text[split:]
    validated = prisma_validate(workspace / "app-agents", "shared/database/schema")
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_shared_model_relating_to_an_unshared_one_is_a_problem(workspace: Path) -> None:
    edit(
        workspace / "workspace.yaml",
        "shared_models: [Organization, Agent, AgentStatus]",
        "shared_models: [Agent, AgentStatus]",
    )
    report = check_alignment(load_schemas(load_workspace(workspace / "workspace.yaml")))
    texts = [str(p) for p in report.problems]
    assert texts[0] == (
        "workspace.yaml: Agent.organization: the shared model relates to Organization, which "
        "saas-spec-driven-development does not share; add Organization to "
        "repos.saas-spec-driven-development.schema.shared_models"
    )
    # the copy it still holds is now the secondary's own model on the primary's table
    assert "Organization: table ecosystem.organizations collides with the primary's model Organization" in texts[1]
    assert len(texts) == 2


def test_sync_writes_a_missing_prisma_config_and_refuses_one_it_cannot_edit(workspace: Path) -> None:
    config = workspace / "saas-spec-driven-development/prisma.config.ts"
    config.unlink()
    loaded = load_workspace(workspace / "workspace.yaml")
    failing = {(d.name, d.aspect.split(":")[0]) for d in check_alignment(load_schemas(loaded)).differences()}
    assert failing == {
        ("Organization", "not declared external"),
        ("Agent", "not declared external"),
        ("AgentStatus", "not declared external"),
    }
    edits = plan_sync(loaded)
    assert [(e.repo, e.path, e.old_text) for e in edits] == [("saas-spec-driven-development", "prisma.config.ts", None)]
    assert edits[0].diff().startswith("--- /dev/null\n+++ b/saas-spec-driven-development/prisma.config.ts")
    apply_edits(loaded, edits)
    assert check_alignment(load_schemas(loaded)).ok
    created = config.read_text(encoding="utf-8")
    assert '    external: ["ecosystem.organizations", "ecosystem.agents"],' in created
    assert 'schema: "prisma/schema.prisma"' in created and 'migrations: { path: "prisma/migrations" }' in created
    validated = prisma_validate(workspace / "saas-spec-driven-development", "prisma/schema.prisma")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    # a config without the external lists cannot be kept in step automatically: one message with the fix
    config.write_text('import { defineConfig } from "prisma/config";\n\nexport default defineConfig({});\n')
    result = ws(workspace, "schema", "sync", "--check")
    assert result.returncode == 2
    assert "cannot keep the external lists in step" in result.stderr and "tables: { external: [] }" in result.stderr


def test_a_name_the_primarys_own_schema_lacks_fails_at_its_line(workspace: Path) -> None:
    # a typo in the primary's own shared_models: no secondary lists it, so nothing compared it before
    edit(
        workspace / "workspace.yaml",
        "shared_models: [Organization, Agent, AgentMemory, AgentTool, AgentStatus]",  # the primary's, first
        "shared_models: [Organization, Agent, AgentMemory, AgentTool, AgentStatus, Organisation]",
    )
    line = line_of(workspace / "workspace.yaml", "Organisation]")
    result = ws(workspace, "schema", "check", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is False
    [problem] = data["problems"]
    assert problem["file"].endswith("workspace.yaml") and problem["line"] == line, problem
    assert problem["name"] == "Organisation" and "did you mean 'Organization'?" in problem["aspect"], problem
    checked = ws(workspace, "check", "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    failed = [r for r in json.loads(checked.stdout)["checks"] if r["status"] == "fail" and "schema" in r["name"]]
    assert len(failed) == 1 and f"workspace.yaml:{line}:" in failed[0]["detail"], failed
    assert "did you mean 'Organization'" in failed[0]["detail"]


def test_format_writes_what_prisma_format_writes_relations_completed(workspace: Path, tmp_path: Path) -> None:
    """`ws schema format` completes a relation and renders as `prisma format` does, without Prisma's engine."""
    agents = workspace / AGENTS
    edit(agents, "  memories       AgentMemory[]\n", "")  # the back-relation Prisma adds again
    edit(agents, "model Agent {", "model   Agent {")  # and a layout Prisma rewrites
    broken = agents.read_text(encoding="utf-8")
    # Prisma's own answer, from a copy (prisma format rewrites the file in place)
    oracle = tmp_path / "oracle" / "app-agents"
    shutil.copytree(workspace / "app-agents", oracle, ignore=shutil.ignore_patterns("node_modules"))
    formatted = prisma_format(oracle, AGENTS.split("/", 1)[1])
    assert formatted.returncode == 0, formatted.stderr
    expected = (oracle / AGENTS.split("/", 1)[1]).read_text(encoding="utf-8")
    assert expected != broken and re.search(r"^  agentMemories +AgentMemory\[\]$", expected, re.M)  # Prisma names it

    check = ws(workspace, "schema", "format", "--check", "--json")
    assert check.returncode == 1, check.stderr
    report = json.loads(check.stdout)
    assert report["written"] is False
    assert [(e["repo"], e["path"]) for e in report["edits"]] == [("app-agents", AGENTS.split("/", 1)[1])]
    assert agents.read_text(encoding="utf-8") == broken  # --check writes nothing

    done = ws(workspace, "schema", "format")
    assert done.returncode == 0, done.stderr
    assert "formatted 1 file(s)" in done.stdout
    assert agents.read_text(encoding="utf-8") == expected
    assert ws(workspace, "schema", "format", "--check").returncode == 0
    assert ws(workspace, "schema", "check").returncode == 0
