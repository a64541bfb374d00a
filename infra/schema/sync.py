"""`ws schema sync`: rewrite the secondaries' copies of the shared models and enums from the primary.

Only the blocks that differ are rewritten (in ``prisma format`` style); the secondary's own back-relation
fields on a shared model are kept, the primary's back-relations to models the secondary does not have are
dropped, and every other byte of the files stays as it was. The external lists of prisma.config.ts are
kept in step with ``shared_models``.
"""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass, replace

from infra.errors import UsageError, WorkspaceError
from infra.schema import prisma_config
from infra.schema.align import compare_blocks, expected_external
from infra.schema.load import LoadedSchemas, ReaderFactory, RepoSchema, load_schemas
from infra.schema.model_info import is_back_relation
from infra.schema.psl import Blank, Block, Field, Member, append_blocks, print_file
from infra.workspace.located import LoadedWorkspace


@dataclass(frozen=True)
class FileEdit:
    """One file of one repo to rewrite (``old_text`` is None when the file is new)."""

    repo: str
    path: str  # relative to the repo
    old_text: str | None
    new_text: str

    def diff(self) -> str:
        old = (self.old_text or "").splitlines(keepends=True)
        new = self.new_text.splitlines(keepends=True)
        fromfile = f"a/{self.repo}/{self.path}" if self.old_text is not None else "/dev/null"
        return "".join(difflib.unified_diff(old, new, fromfile, f"b/{self.repo}/{self.path}"))

    def as_dict(self) -> dict[str, object]:
        return {"repo": self.repo, "path": self.path, "new_file": self.old_text is None, "diff": self.diff()}


def unified_diff(edits: list[FileEdit]) -> str:
    return "".join(edit.diff() for edit in edits)


def merged_copy(primary: Block, primary_repo: RepoSchema, copy: Block | None, secondary: RepoSchema) -> Block:
    """The primary's block as the secondary should hold it: plus its own back-relations, minus dangling ones."""
    if primary.kind == "enum":
        return replace(primary, file=copy.file if copy else primary.file)
    available = set(secondary.schema.models) | {
        n for n in secondary.config.shared_models if n in primary_repo.schema.models
    }
    members: list[Member] = []
    for member in primary.members:
        if isinstance(member, Field) and is_back_relation(member, primary_repo.schema) and member.type not in available:
            continue
        members.append(member)
    names = {m.name for m in members if isinstance(m, Field)}
    extras = [
        f
        for f in (copy.fields if copy else [])
        if is_back_relation(f, secondary.schema) and f.name not in names and f.type in available
    ]
    # each kept back-relation stays where the secondary has it: after the field it follows in the copy (or after
    # the last field when none of those is left), so a sync moves no line it does not change
    copy_order = [f.name for f in copy.fields] if copy else []
    for extra in extras:
        placed = {m.name: i for i, m in enumerate(members) if isinstance(m, Field)}
        before = copy_order[: copy_order.index(extra.name)]
        anchor = next((placed[name] for name in reversed(before) if name in placed), None)
        position = (anchor if anchor is not None else max(placed.values())) + 1
        members.insert(position, extra)
    # no dangling blank lines where dropped fields were
    cleaned: list[Member] = []
    for member in members:
        if isinstance(member, Blank) and (not cleaned or isinstance(cleaned[-1], Blank)):
            continue
        cleaned.append(member)
    while cleaned and isinstance(cleaned[-1], Blank):
        cleaned.pop()
    if cleaned and isinstance(cleaned[0], Blank):
        cleaned.pop(0)
    return replace(primary, members=tuple(cleaned), file=copy.file if copy else primary.file)


def plan_repo(primary: RepoSchema, secondary: RepoSchema) -> list[FileEdit]:
    edits: list[FileEdit] = []
    replacements: dict[str, dict[int, Block | None]] = {}
    appended: list[Block] = []
    index_of = {(b.file, b.name): i for f in secondary.files for i, b in enumerate(f.blocks)}
    for name in secondary.config.shared_models:
        p_block = primary.schema.block(name)
        if p_block is None:
            continue  # reported by plan_sync's validation
        c_block = secondary.schema.block(name)
        if c_block is not None:
            file = secondary.display(c_block.file)
            new = merged_copy(p_block, primary, c_block, secondary)
            differs = compare_blocks(secondary.repo, p_block, primary.schema, c_block, secondary.schema, file)
            # the copy also lacks a back-relation the primary has to a model this repo holds (Prisma refuses a
            # relation without its opposite field)
            if not differs and {f.name for f in new.fields} == {f.name for f in c_block.fields}:
                continue
            replacements.setdefault(c_block.file, {})[index_of[(c_block.file, c_block.name)]] = new
        else:
            appended.append(merged_copy(p_block, primary, None, secondary))
    main_file = next((f for f in secondary.files if any(b.kind == "datasource" for b in f.blocks)), None)
    main_path = main_file.path if main_file else secondary.files[0].path
    for schema_file in secondary.files:
        changes = replacements.get(schema_file.path)
        extra = appended if schema_file.path == main_path else []
        if not changes and not extra:
            continue
        text = print_file(schema_file, changes) if changes else schema_file.text
        text = append_blocks(text, extra)
        if text != schema_file.text:
            edits.append(FileEdit(secondary.repo, schema_file.path, schema_file.text, text))
    tables, enums = expected_external(primary, list(secondary.config.shared_models))
    config = secondary.prisma_config
    if config is None:
        prisma_path = secondary.config.prisma
        migrations = secondary.config.migrations_dir
        edits.append(
            FileEdit(
                secondary.repo,
                "prisma.config.ts",
                None,
                prisma_config.new_config(prisma_path, posixpath.normpath(migrations), tables, enums),
            )
        )
    else:
        rewritten = prisma_config.rewrite(config, tables, enums)
        if rewritten is None:
            raise UsageError(
                f"{secondary.display(config.path)}: cannot keep the external lists in step: add "
                "`experimental: { externalTables: true }`, `tables: { external: [] }` and "
                "`enums: { external: [] }` to defineConfig({...}), then rerun `ws schema sync`"
            )
        if rewritten != config.text:
            edits.append(FileEdit(secondary.repo, config.path, config.text, rewritten))
    return edits


def plan_sync(
    loaded: LoadedWorkspace,
    readers: ReaderFactory | None = None,
    *,
    repos: list[str] | None = None,
    schemas: LoadedSchemas | None = None,
) -> list[FileEdit]:
    """Every file edit that brings the secondaries' copies in line with the primary (empty: all in sync).

    ``readers`` gives each repo's files (default: the local checkouts), so the same plan can be computed
    for a branch on GitHub. Repos that are not checked out are left out (see load_schemas().skipped).
    """
    schemas = schemas or load_schemas(loaded, readers)
    primary = schemas.repos.get(schemas.primary)
    if primary is None:
        raise UsageError(
            f"the primary repo {schemas.primary} is not available ({schemas.skipped.get(schemas.primary, '')}); "
            "check it out next to workspace.yaml or set its path"
        )
    problems = []
    for name, secondary in schemas.repos.items():
        if name == schemas.primary:
            continue
        for index, shared in enumerate(secondary.config.shared_models):
            if primary.schema.block(shared) is None:
                problems.append(
                    loaded.problem(
                        ("repos", name, "schema", "shared_models", index),
                        f"the primary {schemas.primary} has no model or enum {shared!r}",
                        "remove it from shared_models or add it to the primary schema",
                    )
                )
    if problems:
        raise WorkspaceError(problems)
    edits: list[FileEdit] = []
    for name, secondary in schemas.repos.items():
        if name == schemas.primary or (repos is not None and name not in repos):
            continue
        edits.extend(plan_repo(primary, secondary))
    return edits


def apply_edits(loaded: LoadedWorkspace, edits: list[FileEdit]) -> list[str]:
    """Write the edits into the local checkouts; the paths written (for messages)."""
    written = []
    for edit in edits:
        target = loaded.repo_dir(edit.repo) / edit.path
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != edit.old_text:
            raise UsageError(f"{target} changed since the sync was planned; rerun `ws schema sync`")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(edit.new_text, encoding="utf-8")
        written.append(str(target))
    return written
