"""`prisma format` in full: the relation repair Prisma does before it renders (then :func:`psl.format_file`).

`prisma format` (Prisma 7, ``psl-core/src/reformat.rs``) does not only render: when the schema resolves (every
type known, no name defined twice, every ``fields:`` / ``references:`` name found) it completes inline (1:1 and
1:n) relations first, inserting text at the places Prisma inserts it:

- a missing back-relation field at the end of the referenced model (``posts Post[]``; ``post Post?`` for 1:1);
- a missing forward relation field at the end of the referencing model, with its ``@relation(fields, references)``;
- the missing relation scalar fields (``userId Int``, with the referenced field's ``@db.*`` type);
- a missing ``@relation(fields: [...], references: [...])`` after the forward field's type, or the missing
  ``fields`` / ``references`` arguments inside an existing ``@relation(...)``.

Relations are paired as Prisma's parser database pairs them (same relation name, the field itself excluded in
self-relations; the forward side of a 1:1 without ``fields`` is the first by model and field name). Implicit
many-to-many relations are left alone, as Prisma leaves them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from infra.schema.model_info import str_arg
from infra.schema.psl import SCALAR_TYPES, Block, Field, Schema, SchemaFile, format_file, names_of, parse, parse_schema


@dataclass(frozen=True)
class _Inline:
    """One inline relation: model A holds the forward field (and the scalar fields), model B the back field."""

    referencing: Block
    referenced: Block
    forward: Field | None
    back: Field | None
    one_to_one: bool


def _relation_name(f: Field) -> str | None:
    return str_arg(f.attribute("relation"), "name", 0)


def _has_arg(f: Field, name: str) -> bool:
    relation = f.attribute("relation")
    return relation is not None and relation.arg(name) is not None


def _models(schema: Schema) -> list[Block]:
    return [b for b in schema.blocks if b.kind in ("model", "view")]


def _relation_fields(block: Block, models: dict[str, Block]) -> list[Field]:
    return [f for f in block.fields if f.unsupported is None and f.type in models]


def _inline_relations(schema: Schema) -> list[_Inline]:
    """Prisma's ``ingest_relation``: every relation once, in the order of the models and their fields."""
    models = {b.name: b for b in _models(schema)}
    out: list[_Inline] = []
    for model in _models(schema):
        for f in _relation_fields(model, models):
            target = models[f.type]
            is_self = target is model
            opposite = next(
                (
                    g
                    for g in _relation_fields(target, models)
                    if g.type == model.name and not (is_self and g is f) and _relation_name(g) == _relation_name(f)
                ),
                None,
            )
            key = [model.name, f.name]
            if opposite is not None:
                opposite_key = [target.name, opposite.name]
                if f.list and opposite.list:
                    continue  # implicit many-to-many
                if f.list:
                    continue  # 1:n: the singular side defines it
                if not opposite.list:  # 1:1
                    if f.optional and not opposite.optional:
                        continue  # the required side defines it
                    if not f.optional and not opposite.optional and key > opposite_key:
                        continue
                    if f.optional and opposite.optional and not _has_arg(f, "fields"):
                        if _has_arg(opposite, "fields") or key > opposite_key:
                            continue
                    out.append(_Inline(model, target, f, opposite, True))
                    continue
                out.append(_Inline(model, target, f, opposite, False))
                continue
            if f.list:
                out.append(_Inline(target, model, None, f, False))  # defined on the back side only
                continue
            relation = f.attribute("relation")
            fields = names_of(relation.arg("fields")) if relation is not None and _has_arg(f, "fields") else None
            one_to_one = fields is not None and fields in _unique_indexes(model)
            out.append(_Inline(model, target, f, None, one_to_one))
    return out


def _unique_indexes(block: Block) -> list[list[str]]:
    """The unique constraints: field ``@unique`` in field order, then ``@@unique``."""
    out = [[f.name] for f in block.fields if f.attribute("unique") is not None]
    out.extend(names_of(a.arg("fields", 0)) for a in block.block_attributes if a.name == "unique")
    return out


def _unique_criterias(block: Block) -> list[list[str]]:
    """Prisma's ``unique_criterias``: the primary key first, then the unique constraints."""
    primary = [[f.name] for f in block.fields if f.attribute("id") is not None]
    attribute = block.block_attribute("id")
    if attribute is not None:
        primary.append(names_of(attribute.arg("fields", 0)))
    return primary + _unique_indexes(block)


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


def _camel_case(name: str) -> str:
    """Inflector's ``to_camel_case``: ``UserProfile`` and ``user_profile`` become ``userProfile``, ``HTTPCall``
    ``httpcall``, ``A1b`` ``a1B`` (a word starts after a separator, an upper-case letter after a lower-case one or
    a digit, and a letter after a digit)."""
    words = [
        w
        for part in re.split(r"[_\-\s]+", name)
        for w in re.split(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[0-9])(?=[a-z])", part)
        if w
    ]
    if not words:
        return name
    return words[0].lower() + "".join(w[:1].upper() + w[1:].lower() for w in words[1:])


# Inflector's ``to_plural`` (the crate Prisma's ``cruet`` is): uncountable words, whole-word special cases, then
# the first matching rule from the end of this list; its stem (group 1) gets the suffix.
_UNCOUNTABLE = frozenset(
    "accommodation adulthood advertising advice aggression aid air aircraft alcohol anger applause arithmetic "
    "assistance athletics bacon baggage beef biology blood botany bread butter carbon cardboard cash chalk chaos "
    "chess crossroads countryside dancing deer dignity dirt dust economics education electricity engineering "
    "enjoyment envy equipment ethics evidence evolution fame fiction flour flu food fuel fun furniture gallows "
    "garbage garlic genetics gold golf gossip grammar gratitude grief guilt gymnastics happiness hardware harm hate "
    "hatred health heat height help homework honesty honey hospitality housework humour hunger hydrogen ice "
    "importance inflation information innocence iron irony jam jewelry judo karate knowledge lack laughter lava "
    "leather leisure lightning linguine linguini linguistics literature litter livestock logic loneliness luck "
    "luggage macaroni machinery magic management mankind marble mathematics mayonnaise measles methane milk money "
    "mud music mumps nature news nitrogen nonsense nurture nutrition obedience obesity oxygen pasta patience "
    "physics poetry pollution poverty pride psychology publicity punctuation quartz racism relaxation reliability "
    "research respect revenge rice rubbish rum salad satire seaside series shame sheep shopping silence sleep "
    "smoke smoking snow soap software soil sorrow soup speed spelling steam stuff stupidity sunshine symmetry "
    "tennis thirst thunder toast tolerance toys traffic transporation travel trust understanding unemployment "
    "unity validity veal vengeance violence".split()
)
_SPECIAL = {
    "ox": "oxen",
    "man": "men",
    "woman": "women",
    "die": "dice",
    "yes": "yeses",
    "foot": "feet",
    "eave": "eaves",
    "goose": "geese",
    "tooth": "teeth",
    "quiz": "quizzes",
}
_PLURAL_RULES = [
    (re.compile(pattern), suffix)
    for pattern, suffix in (
        (r"(\w*)s$", "s"),
        (r"(\w*([^aeiou]ese))$", ""),
        (r"(\w*(ax|test))is$", "es"),
        (r"(\w*(alias|[^aou]us|tlas|gas|ris))$", "es"),
        (r"(\w*(e[mn]u))s?$", "s"),
        (r"(\w*([^l]ias|[aeiou]las|[emjzr]as|[iu]am))$", ""),
        (
            r"(\w*(alumn|syllab|octop|vir|radi|nucle|fung|cact|stimul|termin|bacill|foc|uter|loc|strat))(?:us|i)$",
            "i",
        ),
        (r"(\w*(alumn|alg|vertebr))(?:a|ae)$", "ae"),
        (r"(\w*(seraph|cherub))(?:im)?$", "im"),
        (r"(\w*(her|at|gr))o$", "oes"),
        (
            r"(\w*(agend|addend|millenni|dat|extrem|bacteri|desiderat|strat|candelabr|errat|ov|symposi|curricul"
            r"|automat|quor))(?:a|um)$",
            "a",
        ),
        (
            r"(\w*(apheli|hyperbat|periheli|asyndet|noumen|phenomen|criteri|organ|prolegomen|hedr|automat))(?:a|on)$",
            "a",
        ),
        (r"(\w*)sis$", "ses"),
        (r"(\w*(kni|wi|li))fe$", "ves"),
        (r"(\w*(ar|l|ea|eo|oa|hoo))f$", "ves"),
        (r"(\w*([^aeiouy]|qu))y$", "ies"),
        (r"(\w*([^ch][ieo][ln]))ey$", "ies"),
        (r"(\w*(x|ch|ss|sh|zz)es)$", ""),
        (r"(\w*(x|ch|ss|sh|zz))$", "es"),
        (r"(\w*(matr|cod|mur|sil|vert|ind|append))(?:ix|ex)$", "ices"),
        (r"(\w*[ml])(?:ice|ouse)$", "ice"),
        (r"(\w*pe)(?:rson|ople)$", "ople"),
        (r"(\w*child)(?:ren)?$", "ren"),
        (r"(\w*eaux)$", ""),
    )
]


def _plural(word: str) -> str:
    if word in _UNCOUNTABLE:
        return word
    if word in _SPECIAL:
        return _SPECIAL[word]
    for rule, suffix in reversed(_PLURAL_RULES):
        match = rule.search(word)
        if match:
            return word[: match.start()] + match.group(1) + suffix + word[match.end() :]
    return word + "s"


def _arity(f: Field | None) -> str:
    if f is None:
        return "?"
    return "[]" if f.list else "?" if f.optional else ""


@dataclass(frozen=True)
class _Inferred:
    name: str
    arity: str
    type: str  # "" when the referenced field is not a built-in scalar (an enum): Prisma then adds no field
    native: str


def _inferred_scalars(relation: _Inline, datasource: str) -> list[_Inferred]:
    """Prisma's ``infer_missing_referencing_scalar_fields``: one per field of the first unique criteria."""
    criteria = _unique_criterias(relation.referenced)
    if not criteria:
        return []
    native_prefix = f"{datasource}."
    out = []
    for name in criteria[0]:
        referenced = relation.referenced.field(name)
        if referenced is None:
            continue
        inferred = _lower_first(relation.referenced.name) + _upper_first(name)
        existing = relation.referencing.field(inferred)
        native = next((a.text() for a in referenced.attributes if a.name.startswith(native_prefix)), "")
        scalar = referenced.type if referenced.type in SCALAR_TYPES and referenced.unsupported is None else ""
        if existing is not None:
            scalar = existing.type if existing.type in SCALAR_TYPES and existing.unsupported is None else ""
            out.append(_Inferred(inferred, _arity(existing), scalar, native))
        else:
            out.append(_Inferred(inferred, _arity(relation.forward), scalar, native))
    return out


def _referenced_fields(relation: _Inline) -> list[str]:
    if relation.forward is not None and _has_arg(relation.forward, "references"):
        attribute = relation.forward.attribute("relation")
        return names_of(attribute.arg("references")) if attribute is not None else []
    for criteria in _unique_criterias(relation.referenced):
        found = [relation.referenced.field(n) for n in criteria]
        if all(f is not None and not f.optional for f in found):
            return criteria
    return []


def _fields_argument(relation: _Inline) -> str:
    return "fields: [" + ", ".join(f.name for f in _inferred_scalars(relation, "")) + "]"


def _references_argument(relation: _Inline) -> str:
    return "references: [" + ", ".join(_referenced_fields(relation)) + "]"


def _resolves(schema: Schema) -> bool:
    """What Prisma's parser database needs before it repairs: known types, unique names, existing field refs."""
    names: set[str] = set()
    for block in schema.blocks:
        if block.kind in ("datasource", "generator"):
            continue
        if block.name in names:
            return False
        names.add(block.name)
    known = set(SCALAR_TYPES) | names
    models = {b.name: b for b in _models(schema)}
    for block in schema.blocks:
        if block.kind not in ("model", "view", "type"):
            continue
        seen: set[str] = set()
        for f in block.fields:
            if f.name in seen or (f.unsupported is None and f.type not in known):
                return False
            seen.add(f.name)
            relation = f.attribute("relation")
            if relation is None or f.type not in models:
                continue
            if any(block.field(n) is None for n in names_of(relation.arg("fields"))):
                return False
            if any(models[f.type].field(n) is None for n in names_of(relation.arg("references"))):
                return False
    return True


def missing_bits(schema: Schema) -> dict[str, list[tuple[int, str]]]:
    """File path -> the (offset, text) insertions ``prisma format`` makes there, in Prisma's order."""
    bits: dict[str, list[tuple[int, str]]] = {}
    if not _resolves(schema):
        return bits

    def add(block: Block, position: int, content: str) -> None:
        bits.setdefault(block.file, []).append((position, content))

    relations = _inline_relations(schema)
    datasources = schema.of_kind("datasource")
    datasource = datasources[0].name if datasources else "db"
    for relation in relations:  # push_missing_fields
        if relation.back is None:
            model = relation.referencing.name
            arity = "?" if relation.one_to_one else "[]"
            name = _camel_case(model) if arity == "?" else _plural(_camel_case(model))
            ignore = "@ignore" if relation.referencing.block_attribute("ignore") is not None else ""
            add(relation.referenced, relation.referenced.end - 1, f"{name} {model}{arity} {ignore}\n")
        if relation.forward is None:
            model = relation.referenced.name
            inferred = _inferred_scalars(relation, datasource)
            arity = "?" if any(s.arity == "?" for s in inferred) else ""
            name = _plural(_camel_case(model)) if arity == "[]" else _camel_case(model)
            content = f"{name} {model}{arity} @relation({_fields_argument(relation)}, {_references_argument(relation)})"
            add(relation.referencing, relation.referencing.end - 1, content + "\n")
        if relation.forward is not None and _has_arg(relation.forward, "fields"):
            continue
        for scalar in _inferred_scalars(relation, datasource):
            if relation.referencing.field(scalar.name) is not None:
                continue
            if not scalar.type:
                break
            content = f"{scalar.name} {scalar.type}{scalar.arity} {scalar.native}\n"
            add(relation.referencing, relation.referencing.end - 1, content)
    for relation in relations:  # push_missing_attributes
        forward = relation.forward
        if forward is not None and forward.attribute("relation") is None:
            content = f" @relation({_fields_argument(relation)}, {_references_argument(relation)})"
            add(relation.referencing, forward.type_end, content)
    for relation in relations:  # push_missing_relation_attribute_args
        forward = relation.forward
        attribute = forward.attribute("relation") if forward is not None else None
        if forward is None or attribute is None:
            continue
        extra = []
        if not _has_arg(forward, "fields"):
            extra.append(_fields_argument(relation))
        if not _has_arg(forward, "references"):
            extra.append(_references_argument(relation))
        if not extra:
            continue  # (Prisma inserts ", " here, which its renderer drops again)
        if not attribute.args:
            add(relation.referencing, attribute.end, "(" + ", ".join(extra) + ")")
        else:
            add(relation.referencing, attribute.end - 1, ", " + ", ".join(extra))
    return {path: sorted(found, key=lambda bit: bit[0]) for path, found in bits.items()}


def _enrich(text: str, bits: list[tuple[int, str]]) -> str:
    out, last = [], 0
    for position, content in bits:
        out.append(text[last:position])
        out.append(content)
        last = position
    out.append(text[last:])
    return "".join(out)


def reformat_files(files: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every (path, text) of one schema as ``prisma format`` writes it: relations repaired, then rendered."""
    schema = parse_schema(files)
    bits = missing_bits(schema)
    out = []
    for schema_file in schema.files:
        found = bits.get(schema_file.path)
        repaired = parse(_enrich(schema_file.text, found), schema_file.path) if found else schema_file
        out.append((schema_file.path, format_file(repaired)))
    return out


def reformat(schema_file: SchemaFile) -> str:
    """One schema file as ``prisma format`` writes it (relations to models in other files are not seen)."""
    ((_, text),) = reformat_files([(schema_file.path, schema_file.text)])
    return text
