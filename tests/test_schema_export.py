"""`ws schema export-types`: the TypeScript compiles with tsc and the Python module validates records."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pydantic
import pytest

from infra.schema.export import export_types
from infra.workspace import load_workspace
from tests.fixtures.prisma.nodetools import tsc
from tests.helpers import EXAMPLES, run_ws

CONSUMER = """
import { Agent, AgentMemory, AgentStatus, AgentTool, Organization } from "./index";

const org: Organization = { id: "o1", slug: "acme", name: "Acme", createdAt: new Date() };
const agent: Agent = {
  id: "a1",
  organizationId: org.id,
  name: "planner",
  status: AgentStatus.ACTIVE,
  config: { model: "x", tools: ["search"], depth: 2, nested: { ok: true, none: null } },
  createdAt: new Date(),
  updatedAt: new Date(),
};
const memory: AgentMemory = {
  id: 10n,
  agentId: agent.id,
  kind: "summary",
  content: "text",
  metadata: null,
  createdAt: new Date(),
};
const tool: AgentTool = {
  id: "t1", agentId: agent.id, name: "search", version: "1.0.0", schema: {}, enabled: true, createdAt: new Date(),
};
// @ts-expect-error: status must be an AgentStatus
const wrong: Agent = { ...agent, status: "SLEEPING" };
// @ts-expect-error: BigInt ids are bigint, not number
const wrongId: AgentMemory = { ...memory, id: 10 };
export const all = [org, agent, memory, tool, wrong, wrongId];
"""


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"shared_types_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("types")
    result = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "schema", "export-types", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    states = {f["path"]: f["state"] for f in json.loads(result.stdout)["files"]}
    assert states == {
        "python/cross_repository_metrics.py": "written",
        "python/shared_database_types.py": "written",
        "typescript/index.ts": "written",
        "typescript/metrics.ts": "written",
        "typescript/package.json": "written",
        "typescript/tsconfig.json": "written",
    }
    return out


def test_typescript_compiles_and_enforces_types(exported: Path) -> None:
    package = json.loads((exported / "typescript" / "package.json").read_text(encoding="utf-8"))
    assert package["name"] == "@example-ecosystem/shared-database-types"
    index = (exported / "typescript" / "index.ts").read_text(encoding="utf-8")
    assert "export enum AgentStatus {" in index and "export interface AgentMemory {" in index
    assert "  metadata: JsonValue | null;" in index and "  id: bigint;" in index
    assert "memories" not in index, "relation fields are not row columns"
    (exported / "typescript" / "consumer.ts").write_text(CONSUMER, encoding="utf-8")
    result = tsc(exported / "typescript", "--noEmit", "--strict", "--target", "ES2022", "index.ts", "consumer.ts")
    assert result.returncode == 0, result.stdout + result.stderr
    # and a real type error is caught (the compile above is not vacuous)
    (exported / "typescript" / "broken.ts").write_text(
        'import { Organization } from "./index";\nexport const o: Organization = { id: 1 };\n', encoding="utf-8"
    )
    broken = tsc(exported / "typescript", "--noEmit", "--strict", "--target", "ES2022", "index.ts", "broken.ts")
    assert broken.returncode != 0 and "broken.ts" in broken.stdout
    (exported / "typescript" / "broken.ts").unlink()
    (exported / "typescript" / "consumer.ts").unlink()


def test_python_module_validates_records(exported: Path) -> None:
    module = load_module(exported / "python" / "shared_database_types.py")
    agent = module.Agent.model_validate(
        {
            "id": "a1",
            "organizationId": "o1",
            "name": "planner",
            "status": "PAUSED",
            "config": {"depth": 2, "tools": ["x"]},
            "createdAt": "2026-01-05T09:00:00Z",
            "updatedAt": datetime(2026, 1, 6),
        }
    )
    assert agent.status is module.AgentStatus.PAUSED
    memory = module.AgentMemory(id=2**40, agentId="a1", kind="summary", content="c", createdAt=datetime(2026, 1, 1))
    assert memory.metadata is None
    with pytest.raises(pydantic.ValidationError):
        module.Agent.model_validate({"id": "a1", "organizationId": "o1", "name": "n", "status": "SLEEPING"})
    with pytest.raises(pydantic.ValidationError):
        module.Organization(id="o", slug="s", name="n", createdAt=datetime(2026, 1, 1), unexpected=1)


def test_every_scalar_kind_maps(tmp_path: Path) -> None:
    """Decimal, Bytes, BigInt, Float, lists and optionals, in both languages, from a changed primary."""
    shutil.copytree(EXAMPLES, tmp_path / "ex", ignore=shutil.ignore_patterns("*.db", "node_modules"))
    schema = tmp_path / "ex/saas-ecosystem-architecture/admin-app/prisma/schema.prisma"
    text = schema.read_text(encoding="utf-8")
    text = text.replace(
        "  enabled   Boolean  @default(true)\n",
        "  enabled   Boolean  @default(true)\n  price     Decimal  @db.Decimal(10, 2)\n  blob      Bytes?\n"
        "  tags      String[]\n  score     Float\n  calls     BigInt?\n",
    )
    schema.write_text(text, encoding="utf-8")
    loaded = load_workspace(tmp_path / "ex" / "workspace.yaml")
    files = export_types(loaded)
    assert files == export_types(loaded), "deterministic"
    ts, py = files["typescript/index.ts"], files["python/shared_database_types.py"]
    for line in ("  price: string;", "  blob: Uint8Array | null;", "  tags: string[];", "  score: number;"):
        assert line in ts
    for line in (
        "    price: Decimal",
        "    blob: bytes | None = None",
        "    tags: list[str]",
        "    calls: int | None = None",
    ):
        assert line in py
    out = tmp_path / "out"
    for path, content in files.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(content, encoding="utf-8")
    module = load_module(out / "python" / "shared_database_types.py")
    tool = module.AgentTool(
        id="t",
        agentId="a",
        name="n",
        version="1",
        schema={"a": [1, 2]},
        enabled=True,
        price="12.50",
        blob=b"\x00\x01",
        tags=["x"],
        score=1.5,
        createdAt=datetime(2026, 1, 1),
    )
    assert tool.price == Decimal("12.50") and tool.calls is None
    with pytest.raises(pydantic.ValidationError):
        module.AgentTool.model_validate({**tool.model_dump(), "tags": "not-a-list"})
    assert (
        files["typescript/package.json"]
        != export_types(load_workspace(EXAMPLES / "workspace.yaml"))["typescript/package.json"]
    ), "the package version follows the types"


def test_check_reports_stale_files(exported: Path) -> None:
    ok = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "schema", "export-types", "--out", str(exported), "--check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (exported / "typescript" / "index.ts").write_text("// edited\n", encoding="utf-8")
    stale = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "schema", "export-types", "--out", str(exported), "--check")
    assert stale.returncode == 1 and "typescript/index.ts" in stale.stderr
