"""`ws generate`: every file derived from workspace.yaml, written or compared byte for byte.

Each generator maps a LoadedWorkspace to {path relative to workspace.yaml's folder: content}. Generators
are pure; only :func:`write` touches the disk, and it writes every file or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.errors import UsageError, display_path
from infra.github.actions import generate_actions
from infra.github.workflows import generate_workflows
from infra.monitoring.files import generate_monitoring
from infra.stack.stackfiles import generate_stack_files
from infra.workspace import shape
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Workspace

Generator = Callable[[LoadedWorkspace], dict[str, str]]
SCHEMA_FILE = "workspace.schema.json"


# The model's JSON schema, kept with the package: it changes only with the code, so no command builds it. tests/test_workspace_schema_file.py fails when it is stale;
# `python scripts/gen_workspace_schema.py` rewrites it.
PACKAGED_SCHEMA = Path(__file__).parent / "workspace" / SCHEMA_FILE


def workspace_json_schema() -> str:
    """The JSON schema of workspace.yaml, built from the model (what PACKAGED_SCHEMA holds)."""
    schema = shape.json_schema(Workspace)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/saas-ecosystem/workspace/workspace.schema.json"
    schema["title"] = "workspace.yaml"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def generate_schema(loaded: LoadedWorkspace) -> dict[str, str]:
    return {SCHEMA_FILE: PACKAGED_SCHEMA.read_text(encoding="utf-8")}


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


@dataclass
class _Pending:
    """One file to change: its new bytes in a temporary file beside it, and what to put back on failure."""

    relative: str
    target: Path
    temporary: Path
    previous: bytes | None  # None: the file did not exist
    mode: int


def write(loaded: LoadedWorkspace) -> list[tuple[str, str]]:
    """Write every generated file, all or none; returns (path, 'created' | 'updated' | 'unchanged').

    Every changed file is first written to a temporary file in its own folder; only when all of them are written
    are they renamed over their targets. A failure before that removes the temporaries; a failed rename puts back
    the files already replaced. Either way the workspace is left as it was and a UsageError names the file.
    """
    results: list[tuple[str, str]] = []
    pending: list[_Pending] = []
    created_dirs: list[Path] = []
    not_restored: list[str] = []
    umask = _umask()
    try:
        for relative, content in generated_files(loaded).items():
            target = loaded.root / relative
            data = content.encode("utf-8")
            if target.exists() and not target.is_file():
                raise _WriteFailed(relative, "it is a directory, not a file" if target.is_dir() else "not a file")
            previous = target.read_bytes() if target.is_file() else None
            if previous == data:
                results.append((relative, "unchanged"))
                continue
            created_dirs += _make_parents(target.parent, loaded.root)
            mode = stat.S_IMODE(target.stat().st_mode) if previous is not None else 0o666 & ~umask
            pending.append(_Pending(relative, target, _temporary(target, data, mode, relative), previous, mode))
            results.append((relative, "created" if previous is None else "updated"))
        replaced: list[_Pending] = []
        try:
            for item in pending:
                try:
                    os.replace(item.temporary, item.target)
                except OSError as exc:
                    raise _WriteFailed(item.relative, exc.strerror or str(exc)) from exc
                replaced.append(item)
        except _WriteFailed:
            not_restored = _put_back(replaced)
            raise
    except _WriteFailed as exc:
        for item in pending:
            item.temporary.unlink(missing_ok=True)
        for folder in reversed(created_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()
        outcome = (
            f"could not put back {', '.join(not_restored)} (restore them from git)"
            if not_restored
            else "nothing was written"
        )
        raise UsageError(
            f"{display_path(loaded.root / exc.relative)}: cannot write it: {exc.reason}; {outcome}. "
            "Fix: move away what is at that path or make it writable, then run `ws generate` again"
        ) from exc
    return results


class _WriteFailed(Exception):
    def __init__(self, relative: str, reason: str) -> None:
        super().__init__(f"{relative}: {reason}")
        self.relative = relative
        self.reason = reason


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parents(folder: Path, root: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not folder.exists() and folder != root:
        missing.append(folder)
        folder = folder.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as exc:
            raise _WriteFailed(str(path.relative_to(root)), exc.strerror or str(exc)) from exc
        created.append(path)
    return created


def _temporary(target: Path, data: bytes, mode: int, relative: str) -> Path:
    """``data`` in a new file beside ``target`` (same folder, so the rename is atomic), flushed to disk."""
    import tempfile  # here: `ws check` compares and never writes

    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".ws-tmp")
    except OSError as exc:
        raise _WriteFailed(relative, exc.strerror or str(exc)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, mode)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        raise _WriteFailed(relative, exc.strerror or str(exc)) from exc
    return Path(name)


def _put_back(replaced: list[_Pending]) -> list[str]:
    """Undo the renames already done: earlier contents back (through a temporary), created files removed.

    Returns the files that could not be put back.
    """
    failed = []
    for item in reversed(replaced):
        try:
            if item.previous is None:
                item.target.unlink()
            else:
                os.replace(_temporary(item.target, item.previous, item.mode, item.relative), item.target)
        except (OSError, _WriteFailed):
            failed.append(item.relative)
    return failed
