"""Semantic rules Prisma enforces beyond the syntax, so `ws` agrees with `prisma validate` on validity.

Covered: unknown field types, duplicate names, composite types on relational providers, relation fields
whose ``fields``/``references`` name no field or have no opposite relation field, models without a unique
criterion, and ``@@schema`` when the datasource lists ``schemas``.
"""

from __future__ import annotations

from infra.errors import Problem
from infra.schema.model_info import relation_fields, relation_references, str_arg
from infra.schema.psl import SCALAR_TYPES, Array, Block, Schema, Str


def _relation_name(block: Block, field_name: str) -> str | None:
    f = block.field(field_name)
    relation = f.attribute("relation") if f else None
    if relation is None:
        return None
    return str_arg(relation, "name", 0)


def validate(schema: Schema) -> list[Problem]:
    problems: list[Problem] = []

    def problem(block: Block, line: int, column: int, key: str, message: str, fix: str) -> None:
        problems.append(Problem(block.file, line or block.line, column or block.column, key, message, fix))

    datasources = schema.of_kind("datasource")
    provider_expr = datasources[0].assignment("provider") if datasources else None
    provider = provider_expr.value if isinstance(provider_expr, Str) else None
    schemas_expr = datasources[0].assignment("schemas") if datasources else None
    declared_schemas = (
        {i.value for i in schemas_expr.items if isinstance(i, Str)} if isinstance(schemas_expr, Array) else None
    )
    seen: dict[str, Block] = {}
    for block in schema.blocks:
        if block.kind in ("datasource", "generator"):
            continue
        if block.name in seen:
            problem(block, 0, 0, block.name, f"{block.name} is defined twice", "rename or remove one of them")
        seen[block.name] = block
    models, enums, types = schema.models, schema.enums, schema.types
    for block in schema.blocks:
        if block.kind == "type" and provider not in (None, "mongodb"):
            problem(block, 0, 0, block.name, f"composite types are not supported on {provider}", "use a model")
        if block.kind in ("model", "enum", "view") and declared_schemas is not None:
            name = str_arg(block.block_attribute("schema"))
            if name is None:
                problem(
                    block,
                    0,
                    0,
                    block.name,
                    "missing @@schema",
                    f"add @@schema(...) naming one of {sorted(declared_schemas)}",
                )
            elif name not in declared_schemas:
                problem(block, 0, 0, block.name, f"schema {name!r} is not in the datasource's schemas", "list it")
        if block.kind not in ("model", "view", "type"):
            continue
        names: set[str] = set()
        for f in block.fields:
            if f.name in names:
                problem(block, f.line, f.column, f"{block.name}.{f.name}", "field defined twice", "rename one")
            names.add(f.name)
            known = f.unsupported is not None or f.type in SCALAR_TYPES or f.type in models or f.type in enums
            if not known and f.type not in types:
                problem(
                    block,
                    f.line,
                    f.column,
                    f"{block.name}.{f.name}",
                    f"type {f.type!r} is neither a built-in type nor a model, enum or composite type",
                    "fix the type name or declare it",
                )
            if f.type not in models or block.kind == "type":
                continue
            target = models[f.type]
            for local in relation_fields(f):
                if block.field(local) is None:
                    problem(
                        block, f.line, f.column, f"{block.name}.{f.name}", f"fields: {local} does not exist", "fix it"
                    )
            for ref in relation_references(f):
                if target.field(ref) is None:
                    problem(
                        block, f.line, f.column, f"{block.name}.{f.name}", f"references: {ref} does not exist", "fix it"
                    )
            relation = _relation_name(block, f.name)
            opposite = [
                g
                for g in target.fields
                if g.type == block.name
                and _relation_name(target, g.name) == relation
                and (target is not block or g is not f)
            ]
            if not opposite:
                problem(
                    block,
                    f.line,
                    f.column,
                    f"{block.name}.{f.name}",
                    f"relation field has no opposite relation field on {target.name}",
                    f"add a field of type {block.name} (or {block.name}[]) to {target.name}",
                )
        if block.kind == "model" and block.block_attribute("ignore") is None:
            unique = block.block_attribute("id") or block.block_attribute("unique")
            if not unique and not any(f.attribute("id") or f.attribute("unique") for f in block.fields):
                problem(block, 0, 0, block.name, "model has no unique criterion", "add an @id, @@id or @unique")
    return problems
