"""`ws schema format`: every repo's Prisma schema as `prisma format` writes it, without Prisma's engine.

The text is what :func:`infra.schema.reformat.reformat_files` gives: relations completed as Prisma completes them
(back-relation fields, relation scalars, ``@relation`` arguments), then rendered by the printer the corpus test
holds byte-identical to ``prisma format``. A multi-file schema is formatted as one, as Prisma does.
"""

from __future__ import annotations

from infra.schema.load import LoadedSchemas, ReaderFactory, load_schemas
from infra.schema.reformat import reformat_files
from infra.schema.sync import FileEdit
from infra.workspace.located import LoadedWorkspace


def plan_format(
    loaded: LoadedWorkspace,
    readers: ReaderFactory | None = None,
    *,
    repos: list[str] | None = None,
    schemas: LoadedSchemas | None = None,
) -> list[FileEdit]:
    """Every schema file `prisma format` would change, with what it would write (empty: all formatted).

    Repos that are not checked out are left out (see load_schemas().skipped); ``repos`` limits the repos.
    """
    schemas = schemas or load_schemas(loaded, readers)
    edits: list[FileEdit] = []
    for name, repo in schemas.repos.items():
        if repos is not None and name not in repos:
            continue
        current = {schema_file.path: schema_file.text for schema_file in repo.files}
        for path, text in reformat_files(current.items()):
            if text != current[path]:
                edits.append(FileEdit(name, path, current[path], text))
    return edits
