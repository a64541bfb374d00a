"""What a Prisma block means physically: table and schema names, columns, relations, canonical attributes."""

from __future__ import annotations

from infra.schema.psl import Attribute, Block, Call, Expr, Field, Ident, Schema, Str, find_arg, names_of

# The unnamed first argument of these attributes, named (so `@map("x")` equals `@map(name: "x")`).
POSITIONAL = {
    "default": "value",
    "relation": "name",
    "map": "name",
    "index": "fields",
    "unique": "fields",
    "id": "fields",
    "schema": "name",
    "fulltext": "fields",
}


def str_arg(attribute: Attribute | None, name: str = "name", position: int | None = 0) -> str | None:
    if attribute is None:
        return None
    value = attribute.arg(name, position)
    return value.value if isinstance(value, Str) else None


def db_name(block: Block) -> str:
    """The table (or enum type) name: @@map or the block name."""
    return str_arg(block.block_attribute("map")) or block.name


def schema_name(block: Block, default: str) -> str:
    return str_arg(block.block_attribute("schema")) or default


def column_name(field: Field) -> str:
    return str_arg(field.attribute("map")) or field.name


def relation_fields(field: Field) -> list[str]:
    relation = field.attribute("relation")
    return names_of(relation.arg("fields")) if relation else []


def relation_references(field: Field) -> list[str]:
    relation = field.attribute("relation")
    return names_of(relation.arg("references")) if relation else []


def is_relation(field: Field, schema: Schema) -> bool:
    return field.type in schema.models or field.attribute("relation") is not None and field.type not in schema.enums


def is_back_relation(field: Field, schema: Schema) -> bool:
    """A relation field without `fields:`: the virtual side Prisma requires, with no column of its own."""
    return is_relation(field, schema) and not relation_fields(field)


def scalar_fields(block: Block, schema: Schema) -> list[Field]:
    """Fields that are columns (not relation fields)."""
    return [f for f in block.fields if not is_relation(f, schema) and f.type not in schema.types]


def canonical_args(attribute: Attribute) -> dict[str, str]:
    positional = POSITIONAL.get(attribute.name)
    out: dict[str, str] = {}
    for index, arg in enumerate(attribute.args):
        name = arg.name or (positional if index == 0 and positional else f"#{index}")
        out[name] = arg.value.text()
    return out


def canonical_attribute(attribute: Attribute, field: Field | None = None) -> str:
    """Attribute text with positional arguments named, defaults made explicit and arguments sorted."""
    args = canonical_args(attribute)
    if attribute.name == "relation" and field is not None and relation_fields(field):
        args.setdefault("onUpdate", "Cascade")
        args.setdefault("onDelete", "SetNull" if field.optional else "Restrict")
    prefix = "@@" if attribute.block else "@"
    if not args:
        return prefix + attribute.name
    return f"{prefix}{attribute.name}(" + ", ".join(f"{k}: {v}" for k, v in sorted(args.items())) + ")"


def native_type(field: Field) -> Attribute | None:
    return next((a for a in field.attributes if a.name.startswith("db.")), None)


def id_fields(block: Block) -> list[str]:
    block_id = block.block_attribute("id")
    if block_id is not None:
        return names_of(block_id.arg("fields", 0))
    return [f.name for f in block.fields if f.attribute("id") is not None]


def default_expr(field: Field) -> Expr | None:
    attribute = field.attribute("default")
    return find_arg(attribute.args, "value", 0) if attribute else None


def call_name(expr: Expr | None) -> str | None:
    return expr.name if isinstance(expr, Call) else None


def ident_name(expr: Expr | None) -> str | None:
    return expr.name if isinstance(expr, Ident) else None
