"""Semantic rules Prisma 7 enforces beyond the syntax, so `ws` agrees with `prisma validate` on validity.

Each rule reports Prisma's own message on Prisma's line (file:line, as ``prisma validate`` prints it); the rule list
is in docs/schema.md. Like Prisma, errors in the datasource and generator blocks (configuration) are reported
alone: the models are validated only once the configuration is valid.
"""

from __future__ import annotations

from infra.errors import Problem
from infra.schema.model_info import relation_fields, relation_references, str_arg
from infra.schema.psl import SCALAR_TYPES, Array, Assignment, Attribute, Block, Call, Ident, Schema, Str

# Prisma 7's active preview features (the list its "is not known" message gives), and the features it still
# accepts without effect (deprecated or promoted to GA), checked against Prisma 7.10.1.
ACTIVE_PREVIEW_FEATURES = (
    "fullTextSearchPostgres",
    "nativeDistinct",
    "partialIndexes",
    "postgresqlExtensions",
    "relationJoins",
    "schemaEngineDriverAdapters",
    "shardKeys",
    "strictUndefinedChecks",
    "typedSql",
    "views",
)
POSTGRES_ONLY_FEATURES = {"fullTextSearchPostgres"}
ACCEPTED_OLD_PREVIEW_FEATURES = frozenset(
    "aggregateApi atomicNumberOperations clientExtensions cockroachdb connectOrCreate createMany dataProxy deno "
    "distinct driverAdapters extendedIndexes extendedWhereUnique fieldReference filteredRelationCount filterJson "
    "fullTextIndex fullTextSearch groupBy improvedQueryRaw interactiveTransactions jsonProtocol microsoftSqlServer "
    "middlewares mongoDb multiSchema namedConstraints napi nApi nativeTypes omitApi orderByAggregateGroup "
    "orderByRelation prismaSchemaFolder queryCompiler reactNative referentialActions referentialIntegrity "
    "selectRelationCount tracing transactionApi uncheckedScalarInputs".split()
)
URL_PROPERTIES = {
    "url": (
        "The datasource property `url` is no longer supported in schema files. Move connection URLs for Migrate "
        "to `prisma.config.ts` and pass either `adapter` for a direct database connection or `accelerateUrl` "
        "for Accelerate to the `PrismaClient` constructor. See https://pris.ly/d/config-datasource and "
        "https://pris.ly/d/prisma7-client-config"
    ),
    "directUrl": (
        "The datasource property `directUrl` is no longer supported in schema files. Move connection URLs to "
        "`prisma.config.ts`. See https://pris.ly/d/config-datasource"
    ),
    "shadowDatabaseUrl": (
        "The datasource property `shadowDatabaseUrl` is no longer supported in schema files. Move connection "
        "URLs to `prisma.config.ts`. See https://pris.ly/d/config-datasource"
    ),
}
URL_FIX = "move the URL to datasource.url (or shadowDatabaseUrl) in prisma.config.ts and delete this line"
PROVIDER_NAMES = {
    "postgresql": "Postgres",
    "postgres": "Postgres",
    "mysql": "MySQL",
    "sqlite": "SQLite",
    "sqlserver": "SQL Server",
    "cockroachdb": "CockroachDB",
}
MULTI_SCHEMA_PROVIDERS = {"postgresql", "postgres", "cockroachdb", "sqlserver"}
COMPOSITE_BLOCK_ATTRIBUTES = {
    "unique": "Error validating: A unique constraint should be defined in the model containing the embed.",
    "index": "Error validating: An index should be defined in the model containing the embed.",
    "id": "Error validating: A composite type cannot define an id.",
}
# Errors of Prisma's parser database (names, types, attributes resolved): when there are any, Prisma stops there and
# reports none of the later validations (relations, unique criteria, connector rules).
RESOLUTION_ERRORS = (
    "The model ",
    "The enum ",
    "The view ",
    "The type ",
    "Field ",
    "Type ",
    "Attribute not known",
    "Error validating: The argument fields must",
    "Error validating: The argument `references` must",
    "Error validating: Defining `@",
    *COMPOSITE_BLOCK_ATTRIBUTES.values(),
)


def _ops(*families: str, kinds: tuple[str, ...] = ("Bloom", "MinMax", "MinMaxMulti")) -> frozenset[str]:
    return frozenset(f"{family}{kind}Ops" for family in families for kind in kinds)


# Prisma's BRIN matrix (psl-core postgres validations.rs): the operator classes each native type accepts, and for a
# field without a native type the scalar types the unnamed classes of a family point to.
BRIN_NATIVE_OPS = {
    "Bit": frozenset({"BitMinMaxOps"}),
    "VarBit": frozenset({"VarBitMinMaxOps"}),
    "Char": _ops("Bpchar", kinds=("Bloom", "MinMax")),
    "Date": _ops("Date"),
    "Real": _ops("Float4"),
    "DoublePrecision": _ops("Float8"),
    "Inet": _ops("Inet", kinds=("Inclusion", "Bloom", "MinMax", "MinMaxMulti")),
    "SmallInt": _ops("Int2"),
    "Integer": _ops("Int4"),
    "BigInt": _ops("Int8"),
    "Decimal": _ops("Numeric"),
    "Oid": _ops("Oid"),
    "ByteA": _ops("Bytea", kinds=("Bloom", "MinMax")),
    "Text": _ops("Text", kinds=("Bloom", "MinMax")),
    "VarChar": _ops("Text", kinds=("Bloom", "MinMax")),
    "Timestamp": _ops("Timestamp"),
    "Timestamptz": _ops("TimestampTz"),
    "Time": _ops("Time"),
    "Timetz": _ops("TimeTz"),
    "Uuid": _ops("Uuid"),
}
BRIN_SCALAR_OPS = {
    "Float": _ops("Float8"),
    "Int": _ops("Int4"),
    "BigInt": _ops("Int8"),
    "Decimal": _ops("Numeric"),
    "Bytes": _ops("Bytea", kinds=("Bloom", "MinMax")),
    "String": _ops("Text", kinds=("Bloom", "MinMax")),
    "DateTime": _ops("Timestamp"),
}
BRIN_OPS = frozenset().union(*BRIN_NATIVE_OPS.values())


def _relation_name(block: Block, field_name: str) -> str | None:
    f = block.field(field_name)
    relation = f.attribute("relation") if f else None
    if relation is None:
        return None
    return str_arg(relation, "name", 0)


def _provider(schema: Schema) -> str | None:
    datasources = schema.of_kind("datasource")
    expr = datasources[0].assignment("provider") if datasources else None
    return expr.value if isinstance(expr, Str) else None


def validate_config(schema: Schema) -> list[Problem]:
    """Errors of the datasource and generator blocks: Prisma 7's moved URLs and unknown preview features."""
    problems: list[Problem] = []
    provider = _provider(schema)
    for block in schema.of_kind("datasource"):
        for assignment in block.assignments:
            if assignment.key in URL_PROPERTIES:
                problems.append(
                    Problem(
                        block.file,
                        assignment.line,
                        assignment.column,
                        f"datasource {block.name}.{assignment.key}",
                        URL_PROPERTIES[assignment.key],
                        URL_FIX,
                    )
                )
    active = [f for f in ACTIVE_PREVIEW_FEATURES if f not in POSTGRES_ONLY_FEATURES or provider == "postgresql"]
    for block in schema.of_kind("generator"):
        features = next((a for a in block.assignments if a.key == "previewFeatures"), None)
        if features is None or not isinstance(features.value, Array):
            continue
        for item in features.value.items:
            if not isinstance(item, Str):
                continue
            if item.value in active or item.value in ACCEPTED_OLD_PREVIEW_FEATURES:
                continue
            problems.append(_unknown_feature(block, features, item.value, active))
    return problems


def _unknown_feature(block: Block, features: Assignment, name: str, active: list[str]) -> Problem:
    return Problem(
        block.file,
        features.line,
        features.column,
        f"generator {block.name}.previewFeatures",
        f'The preview feature "{name}" is not known. Expected one of: {", ".join(active)}',
        f"remove {name!r} from previewFeatures",
    )


def preview_features(schema: Schema) -> set[str]:
    out: set[str] = set()
    for block in schema.of_kind("generator"):
        value = block.assignment("previewFeatures")
        if isinstance(value, Array):
            out.update(i.value for i in value.items if isinstance(i, Str))
    return out


def validate(schema: Schema) -> list[Problem]:
    """Prisma's errors for this schema (configuration errors alone when there are any, as Prisma does)."""
    config = validate_config(schema)
    if config:
        return config
    problems: list[Problem] = []

    def problem(block: Block, line: int, column: int, key: str, message: str, fix: str) -> None:
        problems.append(Problem(block.file, line or block.line, column or block.column, key, message, fix))

    provider = _provider(schema)
    features = preview_features(schema)
    datasources = schema.of_kind("datasource")
    schemas_expr = datasources[0].assignment("schemas") if datasources else None
    declared_schemas = (
        {i.value for i in schemas_expr.items if isinstance(i, Str)} if isinstance(schemas_expr, Array) else None
    )
    seen: dict[str, Block] = {}
    for block in schema.blocks:
        if block.kind in ("datasource", "generator"):
            continue
        if block.name in seen:
            problem(
                block,
                0,
                0,
                block.name,
                f'The {block.kind} "{block.name}" cannot be defined because a {seen[block.name].kind} with that name '
                "already exists.",
                "rename or remove one of them",
            )
        seen[block.name] = block
    models, enums, types = schema.models, schema.enums, schema.types
    for block in schema.blocks:
        if block.kind == "view" and "views" not in features:
            problem(
                block,
                0,
                0,
                block.name,
                "Error validating: View definitions are only available with the `views` preview feature.",
                'add "views" to previewFeatures of the generator',
            )
        if block.kind == "type" and provider not in (None, "mongodb"):
            shown = PROVIDER_NAMES.get(provider or "", provider)
            problem(
                block,
                0,
                0,
                block.name,
                f"Error validating: Composite types are not supported on {shown}.",
                "use a model (composite types are MongoDB-only)",
            )
        if (
            block.kind in ("model", "enum", "view")
            and declared_schemas is not None
            and provider in MULTI_SCHEMA_PROVIDERS
        ):
            attribute = block.block_attribute("schema")
            name = str_arg(attribute)
            if attribute is None:
                prefix = f'Error validating model "{block.name}": This model' if block.kind == "model" else "This enum"
                if block.kind == "view":
                    prefix = "This view"
                problem(
                    block,
                    0,
                    0,
                    block.name,
                    f"{prefix} is missing an `@@schema` attribute.",
                    f"add @@schema(...) naming one of {sorted(declared_schemas)}",
                )
            elif name not in declared_schemas:
                problem(
                    block,
                    attribute.line,
                    attribute.column,
                    block.name,
                    "This schema is not defined in the datasource. Read more on `@@schema` at "
                    "https://pris.ly/d/multi-schema",
                    f"add {name!r} to the datasource's schemas",
                )
        if block.kind not in ("model", "view", "type"):
            continue
        if block.kind == "view":
            primary = [f for f in block.fields if f.attribute("id")] + (
                [a for a in block.block_attributes if a.name == "id"]
            )
            for item in primary:
                problem(
                    block,
                    item.line,
                    item.column,
                    block.name,
                    "Error validating: Views cannot have primary keys.",
                    "use @unique or @@unique instead of @id/@@id",
                )
        if block.kind == "type":
            for attribute in block.block_attributes:
                if attribute.name in COMPOSITE_BLOCK_ATTRIBUTES:
                    message = COMPOSITE_BLOCK_ATTRIBUTES[attribute.name]
                    problem(block, attribute.line, attribute.column, block.name, message, "move it to the model")
            for f in block.fields:
                for attribute in f.attributes:
                    if attribute.name in ("id", "unique"):
                        key, fix = f"{block.name}.{f.name}", f"remove @{attribute.name} (put it on the model)"
                        problem(block, f.line, f.column, key, f'Attribute not known: "@{attribute.name}".', fix)
                        message = (
                            f"Error validating: Defining `@{attribute.name}` attribute for a field in a composite "
                            "type is not allowed."
                        )
                        problem(block, f.line, f.column, key, message, fix)
        names: set[str] = set()
        kind_name = "composite type" if block.kind == "type" else block.kind
        for f in block.fields:
            if f.name in names:
                problem(
                    block,
                    f.line,
                    f.column,
                    f"{block.name}.{f.name}",
                    f'Field "{f.name}" is already defined on {kind_name} "{block.name}".',
                    "rename one",
                )
            names.add(f.name)
            known = f.unsupported is not None or f.type in SCALAR_TYPES or f.type in models or f.type in enums
            if not known and f.type not in types:
                problem(
                    block,
                    f.line,
                    f.column,
                    f"{block.name}.{f.name}",
                    f'Type "{f.type}" is neither a built-in type, nor refers to another model, composite type, or '
                    "enum.",
                    "fix the type name or declare it",
                )
            if f.type not in models or block.kind == "type":
                continue
            problems.extend(_relation_problems(block, f.name, models[f.type]))
        for attribute in block.block_attributes:
            for message in _index_type_problems(block, attribute, provider, datasources[0].name if datasources else ""):
                problem(block, attribute.line, attribute.column, block.name, message, "see the index types doc")
        if block.kind == "model" and block.block_attribute("ignore") is None:
            unique = block.block_attribute("id") or block.block_attribute("unique")
            if not unique and not any(f.attribute("id") or f.attribute("unique") for f in block.fields):
                problem(
                    block,
                    0,
                    0,
                    block.name,
                    f'Error validating model "{block.name}": Each model must have at least one unique criteria that '
                    "has only required fields. Either mark a single field with `@id`, `@unique` or add a multi field "
                    "criterion with `@@id([])` or `@@unique([])` to the model.",
                    "add an @id, @@id or @unique",
                )
    resolution = [p for p in problems if p.message.startswith(RESOLUTION_ERRORS)]
    return resolution or problems


def _relation_problems(block: Block, field_name: str, target: Block) -> list[Problem]:
    f = block.field(field_name)
    assert f is not None
    out: list[Problem] = []

    def add(message: str, fix: str) -> None:
        out.append(Problem(block.file, f.line, f.column, f"{block.name}.{f.name}", message, fix))

    missing = [local for local in relation_fields(f) if block.field(local) is None]
    if missing:
        add(
            "Error validating: The argument fields must refer only to existing fields. The following fields do not "
            f"exist in this model: {', '.join(missing)}",
            "fix fields: [...]",
        )
    missing_refs = [ref for ref in relation_references(f) if target.field(ref) is None]
    if missing_refs:
        add(
            "Error validating: The argument `references` must refer only to existing fields in the related model "
            f"`{target.name}`. The following fields do not exist in the related model: {', '.join(missing_refs)}",
            "fix references: [...]",
        )
    relation = _relation_name(block, f.name)
    opposite = [
        g
        for g in target.fields
        if g.type == block.name and _relation_name(target, g.name) == relation and (target is not block or g is not f)
    ]
    if not opposite:
        add(
            f"Error validating field `{f.name}` in model `{block.name}`: The relation field `{f.name}` on model "
            f"`{block.name}` is missing an opposite relation field on the model `{target.name}`. Either run "
            "`prisma format` or add it manually.",
            f"add a field of type {block.name} (or {block.name}[]) to {target.name}",
        )
        return out
    # a 1:n relation whose singular side names no fields: Prisma needs fields and references there
    if not f.list and not relation_fields(f) and all(g.list for g in opposite):
        attribute = f'Error parsing attribute "@relation": The relation field `{f.name}` on Model `{block.name}`'
        add(
            f"{attribute} must specify the `fields` argument in the @relation attribute. You can run `prisma format` "
            "to fix this automatically.",
            "add @relation(fields: [...], references: [...])",
        )
        add(
            f"{attribute} must specify the `references` argument in the @relation attribute.",
            "add references: [...] to @relation",
        )
    return out


def _index_type_problems(block: Block, attribute: Attribute, provider: str | None, datasource: str) -> list[str]:
    """Prisma's errors for ``@@index(..., type: X)``: Postgres-only index types, and the BRIN operator classes."""
    kind = attribute.arg("type")
    if attribute.name != "index" or not isinstance(kind, Ident):
        return []
    prefix = 'Error parsing attribute "@@index": '
    postgres = provider in ("postgresql", "postgres")
    if not postgres and kind.name != "BTree" and not (provider == "cockroachdb" and kind.name == "Gin"):
        return [prefix + "The given index type is not supported with the current connector"]
    if kind.name != "Brin" or not postgres:
        return []
    out: list[str] = []
    fields = attribute.arg("fields", 0)
    for item in fields.items if isinstance(fields, Array) else ([fields] if fields is not None else []):
        name = item.name if isinstance(item, (Ident, Call)) else None
        f = block.field(name) if name else None
        if f is None:
            continue
        ops_expr = item.arg("ops") if isinstance(item, Call) else None
        if isinstance(ops_expr, Call):
            continue  # raw("..."): not checked
        ops = ops_expr.name if isinstance(ops_expr, Ident) else None
        if ops is not None and ops not in BRIN_OPS:
            out.append(prefix + f"The given operator class `{ops}` is not supported with the `Brin` index type.")
            continue
        native = next((a.name.split(".", 1)[1] for a in f.attributes if a.name.startswith(f"{datasource}.")), None)
        if native is None:
            if ops is None:
                if f.type not in BRIN_SCALAR_OPS:
                    out.append(prefix + f"The Brin index type does not support the type of the field `{f.name}`.")
                continue
            family = next((t for t, names in BRIN_SCALAR_OPS.items() if ops in names), None)
            if family is None:
                out.append(
                    prefix + f"The given operator class `{ops}` expects the field `{f.name}` to define a valid "
                    "native type."
                )
            elif f.type != family:
                out.append(
                    prefix + f"The given operator class `{ops}` points to the field `{f.name}` that is not of "
                    f"{family} type."
                )
            continue
        if native in BRIN_NATIVE_OPS and (ops is None or ops in BRIN_NATIVE_OPS[native]):
            continue
        if ops is None:
            out.append(prefix + f"The Brin index field type `{native}` has no default operator class.")
        else:
            out.append(
                prefix + f"The given operator class `{ops}` does not support native type `{native}` of field "
                f"`{f.name}`."
            )
    return out
