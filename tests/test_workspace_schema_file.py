"""The JSON schema kept with the package is the one the model gives (it is read instead of built, for speed)."""

from __future__ import annotations

from infra.generate import PACKAGED_SCHEMA, workspace_json_schema


def test_the_packaged_schema_is_the_models() -> None:
    assert PACKAGED_SCHEMA.read_text(encoding="utf-8") == workspace_json_schema(), (
        "infra/workspace/workspace.schema.json is stale: run `python scripts/gen_workspace_schema.py`"
    )
