"""Rewrite infra/workspace/workspace.schema.json, the model's JSON schema kept with the package.

    .venv/bin/python scripts/gen_workspace_schema.py

Run it after changing infra/workspace/model.py (tests/test_workspace_schema_file.py fails until then), then
`ws generate` to copy it into the workspaces.
"""

from __future__ import annotations

from infra.generate import PACKAGED_SCHEMA, workspace_json_schema


def main() -> None:
    PACKAGED_SCHEMA.write_text(workspace_json_schema(), encoding="utf-8")
    print(f"wrote {PACKAGED_SCHEMA}")


if __name__ == "__main__":
    main()
