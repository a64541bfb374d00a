"""`ws schema drift` against a real database migrated from the example repos, then altered by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from infra.schema import drift as driftmod
from infra.schema.drift import drift
from infra.workspace import load_workspace
from tests.helpers import EXAMPLES, run_ws

STAGES = [
    "saas-ecosystem-architecture/admin-app/prisma/migrations",
    "app-agents/shared/database/migrations",
    "saas-spec-driven-development/prisma/migrations",
]


def migrate(url: str) -> None:
    """Apply every example repo's migration.sql in stage order (primary first), as prisma migrate would."""
    with psycopg.connect(url, autocommit=True) as conn:
        for folder in STAGES:
            for migration in sorted((EXAMPLES / folder).glob("*/migration.sql")):
                conn.execute(migration.read_text(encoding="utf-8").encode())


@pytest.fixture
def migrated(fresh_database: str) -> str:
    migrate(fresh_database)
    return fresh_database


def test_migrated_database_has_no_drift(migrated: str) -> None:
    result = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "schema", "drift", "--database-url", migrated, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["drift"] == []
    assert data["tables"] == 11
    assert data["namespaces"] == ["ecosystem", "agents", "specs"]


def test_env_local_reads_database_url(migrated: str) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute('ALTER TABLE "ecosystem"."organizations" ADD COLUMN "extra" integer')
    result = run_ws(
        "-w", str(EXAMPLES / "workspace.yaml"), "schema", "drift", "--env", "local", env={"DATABASE_URL": migrated}
    )
    assert result.returncode == 1
    assert "ecosystem.organizations.extra" in result.stdout
    assert "1 difference(s) between the database and the declared models" in result.stderr


ALTERATIONS = [
    ('ALTER TABLE "ecosystem"."agents" DROP COLUMN "config"', "missing column", "ecosystem.agents.config"),
    ('ALTER TABLE "agents"."agent_runs" ADD COLUMN "note" text', "extra column", "agents.agent_runs.note"),
    (
        'ALTER TABLE "ecosystem"."organizations" ALTER COLUMN "slug" TYPE varchar(80)',
        "column type",
        "ecosystem.organizations.slug",
    ),
    ('ALTER TABLE "specs"."requirements" ALTER COLUMN "body" DROP NOT NULL', "nullability", "specs.requirements.body"),
    (
        'ALTER TABLE "specs"."requirements" ALTER COLUMN "priority" SET DEFAULT 5',
        "default",
        "specs.requirements.priority",
    ),
    (
        'ALTER TABLE "ecosystem"."agent_tools" ALTER COLUMN "enabled" DROP DEFAULT',
        "default",
        "ecosystem.agent_tools.enabled",
    ),
    ('DROP INDEX "ecosystem"."agents_status_idx"', "missing index", "ecosystem.agents agents_status_idx"),
    (
        'CREATE INDEX "handmade_idx" ON "agents"."conversations" ("role")',
        "extra index",
        "agents.conversations handmade_idx",
    ),
    (
        'DROP INDEX "ecosystem"."organizations_slug_key"',
        "missing unique",
        "ecosystem.organizations organizations_slug_key",
    ),
    (
        'ALTER TABLE "agents"."tool_invocations" DROP CONSTRAINT "tool_invocations_run_id_fkey"',
        "missing foreign key",
        "agents.tool_invocations tool_invocations_run_id_fkey",
    ),
    (
        'ALTER TABLE "specs"."specifications" DROP CONSTRAINT "specifications_agent_id_fkey", '
        'ADD CONSTRAINT "specifications_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "ecosystem"."agents"("id") '
        "ON DELETE CASCADE ON UPDATE CASCADE",
        "foreign key",
        "specs.specifications specifications_agent_id_fkey",
    ),
    (
        'ALTER TABLE "agents"."memories" DROP CONSTRAINT "memories_pkey", ADD PRIMARY KEY ("agent_id")',
        "primary key",
        "agents.memories",
    ),
    ('ALTER TYPE "specs"."SpecStatus" ADD VALUE \'ARCHIVED\'', "enum values", "specs.SpecStatus"),
    ('CREATE TYPE "agents"."Mood" AS ENUM (\'HAPPY\')', "extra enum", "agents.Mood"),
    ('DROP TABLE "specs"."dev_artifacts"', "missing table", "specs.dev_artifacts"),
    ('CREATE TABLE "agents"."scratch" ("id" integer PRIMARY KEY)', "extra table", "agents.scratch"),
]


def test_each_hand_made_alteration_is_named(migrated: str) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        for statement, _, _ in ALTERATIONS:
            conn.execute(statement.encode())
    report = drift(load_workspace(EXAMPLES / "workspace.yaml"), migrated)
    found = {(item.kind, item.object) for item in report.items}
    for statement, kind, obj in ALTERATIONS:
        assert (kind, obj) in found, f"{statement!r} not reported as {kind} {obj}; got {sorted(found)}"
    expected = {(kind, obj) for _, kind, obj in ALTERATIONS}
    # the extra primary-key-less change of memories also shows as a primary key difference only
    assert found - expected == set(), sorted(found - expected)
    details = {(i.kind, i.object): i.detail for i in report.items}
    assert details[("column type", "ecosystem.organizations.slug")] == (
        "declared character varying(64); database character varying(80)"
    )
    assert details[("default", "specs.requirements.priority")] == "declared 3; database 5"
    assert "ON DELETE SetNull" in details[("foreign key", "specs.specifications specifications_agent_id_fkey")]


IMPLICIT_M2M_SQL = """
CREATE TABLE "specs"."tags" ("id" SERIAL NOT NULL, "name" TEXT NOT NULL, CONSTRAINT "tags_pkey" PRIMARY KEY ("id"));
CREATE TABLE "specs"."_SpecificationToTag" (
    "A" UUID NOT NULL, "B" INTEGER NOT NULL, CONSTRAINT "_SpecificationToTag_AB_pkey" PRIMARY KEY ("A","B"));
CREATE TABLE "specs"."_RelatedTags" (
    "A" INTEGER NOT NULL, "B" INTEGER NOT NULL, CONSTRAINT "_RelatedTags_AB_pkey" PRIMARY KEY ("A","B"));
CREATE UNIQUE INDEX "tags_name_key" ON "specs"."tags"("name");
CREATE INDEX "_SpecificationToTag_B_index" ON "specs"."_SpecificationToTag"("B");
CREATE INDEX "_RelatedTags_B_index" ON "specs"."_RelatedTags"("B");
ALTER TABLE "specs"."_SpecificationToTag" ADD CONSTRAINT "_SpecificationToTag_A_fkey" FOREIGN KEY ("A")
    REFERENCES "specs"."specifications"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "specs"."_SpecificationToTag" ADD CONSTRAINT "_SpecificationToTag_B_fkey" FOREIGN KEY ("B")
    REFERENCES "specs"."tags"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "specs"."_RelatedTags" ADD CONSTRAINT "_RelatedTags_A_fkey" FOREIGN KEY ("A")
    REFERENCES "specs"."tags"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "specs"."_RelatedTags" ADD CONSTRAINT "_RelatedTags_B_fkey" FOREIGN KEY ("B")
    REFERENCES "specs"."tags"("id") ON DELETE CASCADE ON UPDATE CASCADE;
CREATE TABLE "ecosystem"."_AgentToTag" (
    "A" UUID NOT NULL, "B" INTEGER NOT NULL, CONSTRAINT "_AgentToTag_AB_pkey" PRIMARY KEY ("A","B"));
CREATE INDEX "_AgentToTag_B_index" ON "ecosystem"."_AgentToTag"("B");
ALTER TABLE "ecosystem"."_AgentToTag" ADD CONSTRAINT "_AgentToTag_A_fkey" FOREIGN KEY ("A")
    REFERENCES "ecosystem"."agents"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "ecosystem"."_AgentToTag" ADD CONSTRAINT "_AgentToTag_B_fkey" FOREIGN KEY ("B")
    REFERENCES "specs"."tags"("id") ON DELETE CASCADE ON UPDATE CASCADE;
"""


def test_implicit_many_to_many_join_tables_are_declared(migrated: str, tmp_path: Path) -> None:
    """An implicit many-to-many relation (list fields on both sides, a named self-relation too, one to a shared
    model) declares the join table Prisma 6+ creates (what the migration above holds) in model A's schema: no
    drift, also when only one repo's namespace is compared; and a change to one is named."""
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples, ignore=shutil.ignore_patterns("node_modules", "*.db", "__pycache__"))
    schema = examples / "saas-spec-driven-development/prisma/schema.prisma"
    text = schema.read_text(encoding="utf-8")
    text = text.replace("model Specification {\n", "model Specification {\n  tags Tag[]\n", 1)
    text = text.replace("model Agent {\n", "model Agent {\n  tags Tag[]\n", 1)  # the shared model's copy
    text += """
model Tag {
  id             Int             @id @default(autoincrement())
  name           String          @unique
  specifications Specification[]
  agents         Agent[]
  related        Tag[]           @relation("RelatedTags")
  relatedTo      Tag[]           @relation("RelatedTags")

  @@map("tags")
  @@schema("specs")
}
"""
    schema.write_text(text, encoding="utf-8")
    loaded = load_workspace(examples / "workspace.yaml")
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(IMPLICIT_M2M_SQL.encode())
    report = drift(loaded, migrated)
    assert report.items == [], [i.as_dict() for i in report.items]
    assert report.tables == 11 + 4
    # ecosystem._AgentToTag is declared by the specs repo's relation: neither "missing" when only specs is compared
    # nor "extra" when only the primary is
    for repo in ("saas-spec-driven-development", "saas-ecosystem-architecture"):
        subset = drift(loaded, migrated, only={repo})
        assert subset.items == [] and len(subset.namespaces) == 1, (repo, [i.as_dict() for i in subset.items])
    assert drift(loaded, migrated, only={"saas-ecosystem-architecture"}).tables == 5

    # a change to a join table, and one a renamed relation left behind, are drift like any other table's
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute('DROP INDEX "specs"."_RelatedTags_B_index"')
        conn.execute('ALTER TABLE "specs"."_SpecificationToTag" DROP CONSTRAINT "_SpecificationToTag_A_fkey"')
        conn.execute('CREATE TABLE "specs"."_TagToRequirement" ("A" INTEGER NOT NULL, "B" UUID NOT NULL)')
    found = {(i.kind, i.object) for i in drift(loaded, migrated).items}
    assert found == {
        ("missing index", "specs._RelatedTags _RelatedTags_B_index"),
        ("missing foreign key", "specs._SpecificationToTag _SpecificationToTag_A_fkey"),
        ("extra table", "specs._TagToRequirement"),
    }


def test_drift_reads_only_pg_catalog_with_few_whole_catalog_queries(migrated: str) -> None:
    queries = [
        driftmod.TABLES_SQL,
        driftmod.COLUMNS_SQL,
        driftmod.INDEXES_SQL,
        driftmod.CONSTRAINTS_SQL,
        driftmod.ENUMS_SQL,
    ]
    assert all("information_schema" not in q for q in queries)
    executed: list[str] = []
    with psycopg.connect(migrated, autocommit=True) as conn:
        original = psycopg.Cursor.execute

        def counting(self, query, params=None, **kwargs):  # type: ignore[no-untyped-def]
            executed.append(str(query))
            return original(self, query, params, **kwargs)

        psycopg.Cursor.execute = counting  # type: ignore[method-assign]
        try:
            catalog = driftmod.live_catalog(conn, ["ecosystem", "agents", "specs"])
        finally:
            psycopg.Cursor.execute = original  # type: ignore[method-assign]
    assert len(executed) == 5
    assert len(catalog.tables) == 11


def test_unreachable_database_is_one_message(tmp_path: Path) -> None:
    result = run_ws(
        "-w",
        str(EXAMPLES / "workspace.yaml"),
        "schema",
        "drift",
        "--database-url",
        "postgresql://postgres@127.0.0.1:1/x",
    )
    assert result.returncode == 2
    assert "cannot connect to the database" in result.stderr and "Traceback" not in result.stderr


def test_provisioned_environment_needs_its_secret_or_an_explicit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.errors import UsageError

    loaded = load_workspace(EXAMPLES / "workspace.yaml")
    monkeypatch.delenv("WS_DB_PASSWORD_SAAS_ECOSYSTEM_ARCHITECTURE", raising=False)
    with pytest.raises(UsageError) as caught:
        driftmod.database_url_for(loaded, "dev")
    assert "WS_DB_PASSWORD_SAAS_ECOSYSTEM_ARCHITECTURE" in str(caught.value) and "--database-url" in str(caught.value)
    monkeypatch.setenv("WS_DB_PASSWORD_SAAS_ECOSYSTEM_ARCHITECTURE", "s3cret")
    assert driftmod.database_url_for(loaded, "dev") == (
        "postgresql://saas_ecosystem_architecture:s3cret@postgres:5432/example_ecosystem"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5999/other")
    assert driftmod.database_url_for(loaded, "local") == "postgresql://postgres@127.0.0.1:5999/other"
