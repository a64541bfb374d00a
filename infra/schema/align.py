"""`ws schema check`: are the secondaries' copies of the shared models and enums physically the primary's?

The comparison is on the physical projection: columns (type, optionality, list, native type, default, map,
id/unique), forward relations (fields, references, actions) and block attributes (@@id, @@unique, @@index,
@@map, @@schema, ...). Back-relation fields (relation fields without ``fields:``) are repo-specific additions
Prisma requires on both sides, so they are ignored. Beyond the copies, a secondary must not own a table that
collides with a primary table, its relations into shared models must point at existing fields, and its
prisma.config.ts must declare the shared tables and enums external.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from infra.markdown import markdown_table
from infra.schema.load import LoadedSchemas, RepoSchema
from infra.schema.model_info import (
    canonical_attribute,
    db_name,
    is_back_relation,
    is_relation,
    relation_fields,
    relation_references,
    schema_name,
)
from infra.schema.psl import Attribute, Block, Field, Schema, names_of
from infra.schema.validate import validate


@dataclass(frozen=True)
class Difference:
    """One way a copy differs from the primary (or one rule a secondary breaks)."""

    repo: str
    name: str  # model or enum
    member: str  # field, value or @@attribute; "" for the block itself
    aspect: str  # "type", "optional", "@default", "missing field", ...
    primary: str | None
    copy: str | None
    file: str
    line: int

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        target = f"{self.name}.{self.member}" if self.member else self.name
        if self.primary is not None or self.copy is not None:
            return f"{where}: {target}: {self.aspect}: primary {self.primary or '-'}, copy {self.copy or '-'}"
        return f"{where}: {target}: {self.aspect}"

    def as_dict(self) -> dict[str, object]:
        return {
            "repo": self.repo,
            "name": self.name,
            "member": self.member,
            "aspect": self.aspect,
            "primary": self.primary,
            "copy": self.copy,
            "file": self.file,
            "line": self.line,
        }


@dataclass
class SharedStatus:
    repo: str
    name: str
    kind: str  # model | enum
    differences: list[Difference] = field(default_factory=list)

    @property
    def aligned(self) -> bool:
        return not self.differences


@dataclass
class AlignmentReport:
    primary: str
    statuses: list[SharedStatus]
    problems: list[Difference]  # rules outside the copies: collisions, dangling relations
    skipped: dict[str, str]

    @property
    def total(self) -> int:
        return len(self.statuses)

    @property
    def aligned(self) -> int:
        return sum(1 for s in self.statuses if s.aligned)

    @property
    def percent(self) -> float:
        return 100.0 if not self.statuses else round(100.0 * self.aligned / self.total, 1)

    @property
    def ok(self) -> bool:
        return self.aligned == self.total and not self.problems

    def differences(self) -> list[Difference]:
        return [d for s in self.statuses for d in s.differences] + self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "primary": self.primary,
            "aligned": self.aligned,
            "shared": self.total,
            "percent": self.percent,
            "shared_models": [
                {
                    "repo": s.repo,
                    "name": s.name,
                    "kind": s.kind,
                    "aligned": s.aligned,
                    "differences": [d.as_dict() for d in s.differences],
                }
                for s in self.statuses
            ],
            "problems": [p.as_dict() for p in self.problems],
            "skipped": self.skipped,
        }

    def markdown(self) -> str:
        lines = [
            "## ws schema check",
            "",
            f"Alignment: **{self.percent:g}%** ({self.aligned}/{self.total} shared models and enums aligned"
            f" with {self.primary})",
            "",
        ]
        rows: list[tuple[str, str, str, str]] = []
        for s in self.statuses:
            detail = "; ".join(f"{d.member or d.name}: {d.aspect}" for d in s.differences) or "-"
            rows.append((s.repo, s.name, "aligned" if s.aligned else "differs", detail))
        rows += [(p.repo, p.name, "problem", p.aspect) for p in self.problems]
        rows += [(repo, "-", "skipped", reason) for repo, reason in self.skipped.items()]
        lines.append(markdown_table(["repo", "shared", "status", "differences"], rows))
        return "\n".join(lines)


# --- physical projection -------------------------------------------------------------------------------


def physical_fields(block: Block, schema: Schema) -> dict[str, Field]:
    return {f.name: f for f in block.fields if not is_back_relation(f, schema)}


def _attribute_map(field_: Field) -> dict[str, tuple[str, str]]:
    """Attribute kind -> (canonical text to compare, text as written to report)."""
    out = {}
    for attribute in field_.attributes:
        key = "@db" if attribute.name.startswith("db.") else "@" + attribute.name
        out[key] = (canonical_attribute(attribute, field_), attribute.text())
    return out


def _block_attribute_key(attribute: Attribute) -> str:
    if attribute.name in ("unique", "index", "fulltext"):
        return f"@@{attribute.name}([{', '.join(names_of(attribute.arg('fields', 0)))}])"
    return "@@" + attribute.name


def compare_blocks(
    repo: str, primary: Block, primary_schema: Schema, copy: Block, copy_schema: Schema, file: str
) -> list[Difference]:
    out: list[Difference] = []

    def diff(member: str, aspect: str, p: str | None, c: str | None, line: int) -> None:
        out.append(Difference(repo, primary.name, member, aspect, p, c, file, line or copy.line))

    if primary.kind != copy.kind:
        diff("", "kind", primary.kind, copy.kind, copy.line)
        return out
    if primary.kind == "enum":
        p_values = [(v.name, " ".join(a.text() for a in v.attributes)) for v in primary.values]
        c_values = [(v.name, " ".join(a.text() for a in v.attributes)) for v in copy.values]
        if p_values != c_values:
            c_names = {v.name for v in copy.values}
            p_names = {v.name for v in primary.values}
            for name, _ in p_values:
                if name not in c_names:
                    diff(name, "missing value", name, None, copy.line)
            for value in copy.values:
                if value.name not in p_names:
                    diff(value.name, "extra value", None, value.name, value.line)
            if not out:
                diff("", "values", ", ".join(n for n, _ in p_values), ", ".join(n for n, _ in c_values), copy.line)
    else:
        p_fields = physical_fields(primary, primary_schema)
        c_fields = physical_fields(copy, copy_schema)
        for name, pf in p_fields.items():
            cf = c_fields.get(name)
            if cf is None:
                diff(name, "missing field", f"{pf.type_text}", None, copy.line)
                continue
            if (pf.unsupported or pf.type) != (cf.unsupported or cf.type):
                diff(name, "type", pf.unsupported or pf.type, cf.unsupported or cf.type, cf.line)
            if pf.optional != cf.optional:
                diff(name, "optional", str(pf.optional).lower(), str(cf.optional).lower(), cf.line)
            if pf.list != cf.list:
                diff(name, "list", str(pf.list).lower(), str(cf.list).lower(), cf.line)
            pa, ca = _attribute_map(pf), _attribute_map(cf)
            for key in sorted(set(pa) | set(ca), key=lambda k: (k not in pa, k)):
                p_attr, c_attr = pa.get(key), ca.get(key)
                if (p_attr and p_attr[0]) != (c_attr and c_attr[0]):
                    aspect = {"@db": "native type", "@relation": "relation"}.get(key, key)
                    diff(name, aspect, p_attr[1] if p_attr else None, c_attr[1] if c_attr else None, cf.line)
        for name, cf in c_fields.items():
            if name in p_fields:
                continue
            back = primary.field(name)
            if back is not None and cf.type not in copy_schema.models and back.type in primary_schema.models:
                # the primary's back-relation, copied into a repo that lacks its target model: Prisma reads the
                # type as unknown, so the copy cannot keep the field
                diff(
                    name,
                    f"back-relation to {cf.type}, a model this repo does not have (drop the field from the copy, "
                    f"or share {cf.type} too)",
                    back.type_text,
                    cf.type_text,
                    cf.line,
                )
                continue
            diff(name, "extra field (not in the primary)", None, cf.type_text, cf.line)
    p_attrs = {_block_attribute_key(a): a for a in primary.block_attributes}
    c_attrs = {_block_attribute_key(a): a for a in copy.block_attributes}
    for key in sorted(set(p_attrs) | set(c_attrs), key=lambda k: (k not in p_attrs, k)):
        pa_ = p_attrs.get(key)
        ca_ = c_attrs.get(key)
        p_text = canonical_attribute(pa_) if pa_ else None
        c_text = canonical_attribute(ca_) if ca_ else None
        if p_text != c_text:
            diff(
                key, "block attribute", pa_.text() if pa_ else None, ca_.text() if ca_ else None, ca_.line if ca_ else 0
            )
    return out


# --- the report ----------------------------------------------------------------------------------------


def _file_of(repo_schema: RepoSchema, block: Block) -> str:
    return repo_schema.display(block.file)


def expected_external(primary: RepoSchema, names: list[str]) -> tuple[list[str], list[str]]:
    """The `tables.external` and `enums.external` entries for these shared names ("schema.table")."""
    namespace = primary.config.namespace
    tables: list[str] = []
    enums: list[str] = []
    for name in names:
        block = primary.schema.block(name)
        if block is None:
            continue
        entry = f"{schema_name(block, namespace)}.{db_name(block)}"
        (enums if block.kind == "enum" else tables).append(entry)
    return tables, enums


def check_alignment(schemas: LoadedSchemas) -> AlignmentReport:
    primary_name = schemas.primary
    primary = schemas.repos.get(primary_name)
    statuses: list[SharedStatus] = []
    problems: list[Difference] = []
    skipped = dict(schemas.skipped)
    if primary is None:
        for repo in schemas.repos:
            skipped.setdefault(repo, f"the primary {primary_name} is not available to compare with")
        return AlignmentReport(primary_name, [], [], skipped)
    p_schema = primary.schema
    primary_tables = {(schema_name(b, primary.config.namespace), db_name(b)): b for b in p_schema.models.values()}
    for repo, secondary in schemas.repos.items():
        if repo == primary_name:
            continue
        s_schema = secondary.schema
        shared = list(secondary.config.shared_models)
        main_file = secondary.files[0].path if secondary.files else secondary.config.prisma
        for name in shared:
            p_block = p_schema.block(name)
            status = SharedStatus(repo, name, p_block.kind if p_block else "model")
            statuses.append(status)
            c_block = s_schema.block(name)
            if p_block is None:
                status.differences.append(_not_in_primary(schemas, primary, repo, name))
                continue
            if c_block is None:
                status.differences.append(
                    Difference(
                        repo,
                        name,
                        "",
                        "missing copy (run `ws schema sync`)",
                        p_block.kind,
                        None,
                        secondary.display(main_file),
                        0,
                    )
                )
                continue
            status.differences.extend(
                compare_blocks(repo, p_block, p_schema, c_block, s_schema, _file_of(secondary, c_block))
            )
        for name in shared:
            p_block = p_schema.block(name)
            for f in p_block.fields if p_block is not None and p_block.kind != "enum" else []:
                if relation_fields(f) and f.type in p_schema.models and f.type not in shared:
                    problems.append(
                        Difference(
                            repo,
                            name,
                            f.name,
                            f"the shared model relates to {f.type}, which {repo} does not share; "
                            f"add {f.type} to repos.{repo}.schema.shared_models",
                            None,
                            None,
                            "workspace.yaml",
                            0,
                        )
                    )
        _check_external(primary, secondary, statuses, shared, main_file)
        problems.extend(_secondary_rules(primary, secondary, primary_tables, set(shared)))
    for name in primary.config.shared_models:
        if p_schema.block(name) is None:  # the primary's own list: no secondary compares it
            problems.append(_not_in_primary(schemas, primary, primary_name, name))
    problems.extend(_validity(schemas))
    return AlignmentReport(primary_name, statuses, problems, skipped)


def _not_in_primary(schemas: LoadedSchemas, primary: RepoSchema, repo: str, name: str) -> Difference:
    """``name`` is in ``repo``'s shared_models but not in the primary's schema: where it is listed and the fix."""
    key = f"repos.{repo}.schema.shared_models"
    known = sorted(primary.schema.models) + sorted(primary.schema.enums)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    main_file = primary.display(primary.files[0].path if primary.files else primary.config.prisma)
    fix = (
        f"did you mean {close[0]!r}? fix the name in {key}"
        if close
        else f"remove it from {key}, or add `model {name}` (or `enum {name}`) to {main_file}"
    )
    file, line = "workspace.yaml", 0
    if schemas.workspace is not None:
        shared = schemas.workspace.model.repos[repo].schema_
        index = shared.shared_models.index(name) if shared is not None else 0
        where = schemas.workspace.problem(("repos", repo, "schema", "shared_models", index), "")
        file, line = where.file, where.line
    aspect = f"listed in {key} but the primary {schemas.primary} has no model or enum {name}; {fix}"
    return Difference(repo, name, "", aspect, None, None, file, line)


def _validity(schemas: LoadedSchemas) -> list[Difference]:
    """Prisma's own semantic rules on every repo's schema (what `prisma validate` refuses): an unknown type, a
    relation without its opposite field, a model without a unique criterion, a missing @@schema, ..."""
    problems = []
    for repo, repo_schema in schemas.repos.items():
        for problem in validate(repo_schema.schema):
            name, _, member = problem.key.partition(".")
            aspect = f"{problem.message} (Prisma refuses the schema); fix: {problem.fix}"
            problems.append(
                Difference(repo, name, member, aspect, None, None, repo_schema.display(problem.file), problem.line)
            )
    return problems


def _check_external(
    primary: RepoSchema, secondary: RepoSchema, statuses: list[SharedStatus], shared: list[str], main_file: str
) -> None:
    config = secondary.prisma_config
    by_name = {s.name: s for s in statuses if s.repo == secondary.repo}
    config_file = secondary.display(config.path if config else "prisma.config.ts")
    tables, enums = expected_external(primary, shared)
    for name in shared:
        block = primary.schema.block(name)
        if block is None:
            continue
        entry = f"{schema_name(block, primary.config.namespace)}.{db_name(block)}"
        section = "enums" if block.kind == "enum" else "tables"
        declared = None
        if config is not None:
            listed = config.enums if block.kind == "enum" else config.tables
            declared = listed.items if listed is not None else None
        if config is None or declared is None or entry not in declared:
            by_name[name].differences.append(
                Difference(
                    secondary.repo,
                    name,
                    "",
                    f"not declared external: add {entry!r} to {section}.external in prisma.config.ts"
                    " (`ws schema sync` does it)",
                    entry,
                    None,
                    config_file,
                    0,
                )
            )
    if config is not None and not config.external_tables_enabled and (tables or enums):
        for name in shared:
            if name in by_name and primary.schema.block(name) is not None:
                by_name[name].differences.append(
                    Difference(
                        secondary.repo,
                        name,
                        "",
                        "prisma.config.ts does not set experimental: { externalTables: true }",
                        "true",
                        None,
                        config_file,
                        0,
                    )
                )
                break


def _secondary_rules(
    primary: RepoSchema,
    secondary: RepoSchema,
    primary_tables: dict[tuple[str, str], Block],
    shared: set[str],
) -> list[Difference]:
    out: list[Difference] = []
    s_schema = secondary.schema
    namespace = secondary.config.namespace
    for block in s_schema.models.values():
        file = secondary.display(block.file)
        if block.name in shared:
            continue
        table = (schema_name(block, namespace), db_name(block))
        clash = primary_tables.get(table)
        if clash is not None:
            out.append(
                Difference(
                    secondary.repo,
                    block.name,
                    "",
                    f"table {table[0]}.{table[1]} collides with the primary's model {clash.name}; "
                    f"rename it or move it to the {namespace!r} schema",
                    None,
                    None,
                    file,
                    block.line,
                )
            )
        elif table[0] == primary.config.namespace:
            out.append(
                Difference(
                    secondary.repo,
                    block.name,
                    "",
                    f"own model in the primary's namespace {table[0]!r}; use @@schema({namespace!r})",
                    None,
                    None,
                    file,
                    block.line,
                )
            )
        for f in block.fields:
            if not is_relation(f, s_schema) or f.type not in shared:
                continue
            target = s_schema.models.get(f.type)
            p_target = primary.schema.models.get(f.type)
            for ref in relation_references(f):
                for model, label in ((target, "copy"), (p_target, "primary")):
                    if model is not None and model.field(ref) is None:
                        out.append(
                            Difference(
                                secondary.repo,
                                block.name,
                                f.name,
                                f"references {f.type}.{ref}, which does not exist in the {label}",
                                None,
                                None,
                                file,
                                f.line,
                            )
                        )
            for local in relation_fields(f):
                if block.field(local) is None:
                    out.append(
                        Difference(
                            secondary.repo,
                            block.name,
                            f.name,
                            f"fields: [{local}] names no field of {block.name}",
                            None,
                            None,
                            file,
                            f.line,
                        )
                    )
    return out
