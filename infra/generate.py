"""`ws generate`: every file derived from workspace.yaml, written or compared byte for byte.

Each generator maps a LoadedWorkspace to {path relative to workspace.yaml's folder: content}. Generators
are pure; only :func:`write` touches the disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from infra.github.actions import generate_actions
from infra.github.workflows import generate_workflows
from infra.monitoring.files import generate_monitoring
from infra.stack.stackfiles import generate_stack_files
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Workspace

Generator = Callable[[LoadedWorkspace], dict[str, str]]
SCHEMA_FILE = "workspace.schema.json"


def workspace_json_schema() -> str:
    schema = Workspace.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/saas-ecosystem/workspace/workspace.schema.json"
    schema["title"] = "workspace.yaml"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def generate_schema(loaded: LoadedWorkspace) -> dict[str, str]:
    return {SCHEMA_FILE: workspace_json_schema()}


GENERATORS: list[Generator] = [
    generate_schema,
    generate_stack_files,
    generate_actions,
    generate_workflows,
    generate_monitoring,
]


def generated_files(loaded: LoadedWorkspace) -> dict[str, str]:
    files: dict[str, str] = {}
    for generator in GENERATORS:
        files.update(generator(loaded))
    return dict(sorted(files.items()))


def stale_files(loaded: LoadedWorkspace) -> list[str]:
    """Generated files whose committed content differs from what workspace.yaml produces now."""
    stale = []
    for relative, content in generated_files(loaded).items():
        target = loaded.root / relative
        if not target.is_file() or target.read_bytes() != content.encode("utf-8"):
            stale.append(relative)
    return stale


def write(loaded: LoadedWorkspace) -> list[tuple[str, str]]:
    """Write every generated file; returns (path, 'created' | 'updated' | 'unchanged')."""
    results = []
    for relative, content in generated_files(loaded).items():
        target: Path = loaded.root / relative
        data = content.encode("utf-8")
        if target.is_file() and target.read_bytes() == data:
            results.append((relative, "unchanged"))
            continue
        state = "updated" if target.exists() else "created"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        results.append((relative, state))
    return results
