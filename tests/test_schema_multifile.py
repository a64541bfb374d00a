"""Multi-file schema folders (Prisma 6.7+ `prisma/schema/`): check, sync, drift and export across the files."""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.schema.align import check_alignment
from infra.schema.drift import drift
from infra.schema.export import export_types
from infra.schema.load import load_schemas
from infra.schema.sync import apply_edits, plan_sync
from infra.workspace import load_workspace
from tests.fixtures.prisma.nodetools import prisma_validate
from tests.helpers import EXAMPLES
from tests.test_schema_drift import migrate

PRIMARY_DIR = "saas-ecosystem-architecture/admin-app/prisma"
AGENTS = "app-agents/shared/database/schema.prisma"


def split_primary_into_a_folder(workspace: Path) -> Path:
    """The primary's schema.prisma becomes prisma/schema/{base,enums,agents}.prisma; workspace.yaml names the folder."""
    source = workspace / PRIMARY_DIR / "schema.prisma"
    text = source.read_text(encoding="utf-8")

    def block_start(keyword: str) -> int:  # where the block's doc comments begin
        return text.rfind("\n\n", 0, text.index(keyword)) + 2

    enums, organization, agent = (
        block_start(k) for k in ("enum AgentStatus {", "model Organization {", "model Agent {")
    )
    folder = workspace / PRIMARY_DIR / "schema"
    (folder / "models").mkdir(parents=True)
    (folder / "base.prisma").write_text(text[:enums], encoding="utf-8")
    (folder / "enums.prisma").write_text(text[enums:organization], encoding="utf-8")
    (folder / "models" / "organization.prisma").write_text(text[organization:agent], encoding="utf-8")
    (folder / "models" / "agents.prisma").write_text(text[agent:], encoding="utf-8")
    source.unlink()
    yaml = workspace / "workspace.yaml"
    old = "prisma: admin-app/prisma/schema.prisma"
    yaml.write_text(yaml.read_text(encoding="utf-8").replace(old, "prisma: admin-app/prisma/schema", 1), "utf-8")
    return folder


def test_primary_folder_is_checked_synced_exported_and_drift_checked(tmp_path: Path, fresh_database: str) -> None:
    workspace = tmp_path / "examples"
    shutil.copytree(EXAMPLES, workspace, ignore=shutil.ignore_patterns("node_modules", "*.db", "__pycache__"))
    single_file_export = export_types(load_workspace(workspace / "workspace.yaml"))
    folder = split_primary_into_a_folder(workspace)
    validated = prisma_validate(workspace / PRIMARY_DIR, "schema")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    loaded = load_workspace(workspace / "workspace.yaml")
    schemas = load_schemas(loaded)
    primary = schemas.repos["saas-ecosystem-architecture"]
    assert sorted(f.path for f in primary.files) == [
        "admin-app/prisma/schema/base.prisma",
        "admin-app/prisma/schema/enums.prisma",
        "admin-app/prisma/schema/models/agents.prisma",
        "admin-app/prisma/schema/models/organization.prisma",
    ]
    # check: aligned across the files; export: the same types as from the single file
    assert check_alignment(schemas).ok
    assert export_types(loaded) == single_file_export
    # drift: the models of every file are declared
    migrate(fresh_database)
    report = drift(loaded, fresh_database)
    assert report.items == [] and report.tables == 11
    # a change in one file of the folder is reported with that file, and sync copies it
    agents_file = folder / "models" / "agents.prisma"
    text = agents_file.read_text(encoding="utf-8")
    old = '  version   String   @default("1.0.0") @db.VarChar(32)'
    assert old in text
    agents_file.write_text(text.replace(old, old.replace("1.0.0", "2.0.0")), encoding="utf-8")
    schemas = load_schemas(loaded)
    differences = check_alignment(schemas).differences()
    assert {(d.repo, d.name, d.member, d.aspect) for d in differences} == {
        ("app-agents", "AgentTool", "version", "@default")
    }
    edits = plan_sync(loaded, schemas=schemas)
    assert [(e.repo, e.path) for e in edits] == [("app-agents", "shared/database/schema.prisma")]
    apply_edits(loaded, edits)
    assert '@default("2.0.0")' in (workspace / AGENTS).read_text(encoding="utf-8")
    assert check_alignment(load_schemas(loaded)).ok
