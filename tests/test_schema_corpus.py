"""The real-world corpus (tests/fixtures/prisma/corpus) against Prisma 7 itself.

Every schema is parsed, printed and validated by ws and by Prisma (validation three times: as written, without the
datasource URL lines, and also without the preview features Prisma 7 does not know, so that Prisma gets to the
models) (`prisma format` / `prisma validate`, run for
all files in one node process by tests/fixtures/prisma/prisma_wasm.cjs, which a test here checks against the
real CLI). Verdicts and error lines must be equal; a Prisma error ws does not implement fails the test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from infra.schema.psl import format_file, parse, parse_schema, print_file
from infra.schema.reformat import missing_bits, reformat, reformat_files
from infra.schema.synthetic import workspace_schemas
from infra.schema.validate import ACCEPTED_OLD_PREVIEW_FEATURES, ACTIVE_PREVIEW_FEATURES, validate
from tests.fixtures.prisma.nodetools import error_lines, prisma_batch, prisma_format, prisma_validate
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "prisma"
CORPUS = FIXTURES / "corpus"
URL_LINE = re.compile(r"^[ \t]*(?:url|directUrl|shadowDatabaseUrl)[ \t]*=[^\n]*\n", re.MULTILINE)
LARGE = "generated-large/schema.prisma"

Files = list[tuple[str, str]]


def corpus_schemas() -> dict[str, Files]:
    """Schema name -> its files (path relative to the corpus folder, text)."""
    out: dict[str, Files] = {}
    for folder in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        paths = sorted(folder.rglob("*.prisma"))
        out[folder.name] = [(p.relative_to(CORPUS).as_posix(), p.read_text(encoding="utf-8")) for p in paths]
    constructed = FIXTURES / "constructed" / "comments_everywhere.prisma"
    out["constructed"] = [("constructed/comments_everywhere.prisma", constructed.read_text(encoding="utf-8"))]
    out["generated-large"] = [(LARGE, workspace_schemas(models=300, seed=11).primary)]
    return out


SCHEMAS = corpus_schemas()
FILES = [(name, path, text) for name, files in SCHEMAS.items() for path, text in files]
VARIANT_NAMES = ("original", "without-urls", "configuration-fixed")
VARIANTS = [(name, variant) for name in SCHEMAS for variant in VARIANT_NAMES]
PREVIEW_FEATURES = re.compile(r"(previewFeatures[ \t]*=[ \t]*\[)([^\]\n]*)\]")


def without_urls(files: Files) -> Files:
    return [(path, URL_LINE.sub("", text)) for path, text in files]


def configuration_fixed(files: Files) -> Files:
    """Without the URL lines and the preview features Prisma 7 does not know: Prisma then validates the models."""
    known = set(ACTIVE_PREVIEW_FEATURES) | ACCEPTED_OLD_PREVIEW_FEATURES

    def keep_known(match: re.Match[str]) -> str:
        names = [n for n in re.findall(r'"([^"]*)"', match.group(2)) if n in known]
        return match.group(1) + ", ".join(f'"{n}"' for n in names) + "]"

    return [(path, PREVIEW_FEATURES.sub(keep_known, text)) for path, text in without_urls(files)]


def variant_files(name: str, variant: str) -> Files:
    return {"original": SCHEMAS[name], "without-urls": without_urls(SCHEMAS[name])}.get(
        variant, configuration_fixed(SCHEMAS[name])
    )


@pytest.fixture(scope="module")
def prisma() -> dict[tuple[str, str], Any]:
    """Prisma's results for every schema and file, computed in one batch."""
    keys: list[tuple[str, str]] = []
    jobs: list[dict[str, object]] = []
    for name, files in SCHEMAS.items():
        for variant in VARIANT_NAMES:
            keys.append((name, variant))
            jobs.append({"op": "validate", "files": [list(f) for f in variant_files(name, variant)]})
        for path, text in files:
            keys.append(("format", path))
            jobs.append({"op": "format", "files": [[path, text]]})
    return dict(zip(keys, prisma_batch(jobs), strict=True))


def test_corpus_holds_25_real_files_with_their_sources() -> None:
    real = [
        path for name, files in SCHEMAS.items() if name not in ("constructed", "generated-large") for path, _ in files
    ]
    assert len(real) >= 25
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    for path in real:
        folder, _, rest = path.partition("/")
        entry = folder if rest == "schema.prisma" else path
        assert f"| {entry} |" in sources, f"{path} has no row in SOURCES.md"
    assert len(SCHEMAS["generated-large"][0][1].splitlines()) > 5000


def test_batch_helper_gives_what_the_prisma_cli_gives(tmp_path: Path, prisma: dict[tuple[str, str], Any]) -> None:
    """The one-process shortcut is Prisma's CLI: same verdicts, same error lines, same formatting."""
    for name in ("umami-mysql", "prisma-example-project", "prisma-missing-backrelation"):
        folder = tmp_path / name
        shutil.copytree(CORPUS / name, folder)
        cli = prisma_validate(folder, "schema.prisma")
        ours = prisma[(name, "original")]
        assert (cli.returncode == 0) == ours["ok"], cli.stdout + cli.stderr
        if not ours["ok"]:
            expected = {(f"{name}/{f.rpartition('/')[2]}", n, m) for f, n, m in error_lines(cli.stderr)}
            assert expected == error_lines(ours["error"])
    # `prisma format` refuses a schema Prisma 7 refuses, so the CLI formats the schema without its URL lines
    ((path, text),) = without_urls(SCHEMAS["prisma-unformatted"])
    (tmp_path / "unformatted").mkdir()
    (tmp_path / "unformatted" / "schema.prisma").write_text(text, encoding="utf-8")
    assert prisma_format(tmp_path / "unformatted", "schema.prisma").returncode == 0
    formatted = (tmp_path / "unformatted" / "schema.prisma").read_text(encoding="utf-8")
    assert formatted != text
    (batch,) = prisma_batch([{"op": "format", "files": [[path, text]]}])
    files: Any = batch["files"]
    assert formatted == files[0][1] == format_file(parse(text, path))


@pytest.mark.parametrize(("name", "path", "text"), FILES, ids=[f[1] for f in FILES])
def test_print_equals_prisma_format(name: str, path: str, text: str, prisma: dict[tuple[str, str], Any]) -> None:
    parsed = parse(text, path)
    assert print_file(parsed) == text  # untouched: byte for byte
    formatted = format_file(parsed)
    assert format_file(parse(formatted, path)) == formatted  # idempotent
    expected = prisma[("format", path)]["files"][0][1]
    schema_file = parse(text, path)
    if not missing_bits(parse_schema([(path, text)])):
        assert formatted == expected
    # prisma format also repairs relations (missing relation fields, scalars and @relation arguments) first
    repaired = reformat(schema_file)
    assert repaired == expected
    assert reformat(parse(repaired, path)) == repaired  # idempotent


H = 'datasource db {\n  provider = "postgresql"\n}\n\n'
BROKEN_RELATIONS = {
    # back side only: Prisma adds the forward field (optional) and its scalar with the referenced @db type
    "back-only": H + "model User {\n  id    String @id @db.Uuid\n  posts Post[]\n}\n\nmodel Post {\n  id Int @id\n}\n",
    # forward side only: the back-relation is named after the model, pluralized (Inflector's rules)
    "forward-only": H + "model Category {\n  id Int @id\n}\n\nmodel Person {\n  id Int @id\n  category Category "
    "@relation(fields: [categoryId], references: [id])\n  categoryId Int\n}\n",
    "no-relation-attribute": H + "model Status {\n  id Int @id\n  posts Post[]\n}\n\n"
    "model Post {\n  id Int @id\n  author Status // trailing\n}\n",
    "missing-arguments": H + 'model User {\n  id Int @id\n  posts Post[] @relation("x")\n}\n\n'
    'model Post {\n  id Int @id\n  user User @relation("x", fields: [userId])\n  userId Int\n}\n',
    "empty-relation-attribute": H + "model User {\n  id Int @id\n  posts Post[]\n}\n\n"
    "model Post {\n  id Int @id\n  user User @relation\n}\n",
    "one-to-one": H
    + "model User {\n  id Int @id\n  profile Profile?\n}\n\nmodel Profile {\n  id Int @id\n  user User?\n}\n",
    "one-to-one-unique": H + "model User {\n  id Int @id\n}\n\nmodel Profile {\n  id Int @id\n  userId Int @unique\n"
    "  user User @relation(fields: [userId], references: [id])\n\n  @@index([id])\n}\n",
    "self-relation": H
    + 'model Node {\n  id Int @id\n  parent Node? @relation("tree")\n  children Node[] @relation("tree")\n}\n',
    "compound-key": H + "model Box {\n  a String\n  b Int\n  entries Entry[]\n\n  @@id([a, b])\n}\n\n"
    "model Entry {\n  id Int @id\n}\n",
    "ignored-model": H
    + "model mail_message {\n  id Int @id\n  b B @relation(fields: [bId], references: [id])\n  bId Int\n\n"
    "  @@ignore\n}\n\nmodel B {\n  id Int @id\n}\n",
    "enum-key": H + "enum K {\n  A\n}\n\nmodel B {\n  id K @id\n  as A[]\n}\n\nmodel A {\n  id Int @id\n}\n",
    "unknown-type-no-repair": H
    + "model User {\n  id Int @id\n  posts Post[]\n  x Foo\n}\n\nmodel Post {\n  id Int @id\n}\n",
}


def test_relation_repair_equals_prisma_format() -> None:
    """prisma format completes relations before it renders; ws's reformat inserts the same text."""
    cases = [(f"{name}/schema.prisma", text) for name, text in BROKEN_RELATIONS.items()]
    folder = [
        ("folder/schema/a.prisma", H + "model User {\n  id Int @id\n  posts Post[]\n}\n"),
        ("folder/schema/b.prisma", "model Post {\n  id Int @id\n}\n"),
    ]
    jobs: list[dict[str, object]] = [{"op": "format", "files": [[path, text]]} for path, text in cases]
    jobs.append({"op": "format", "files": [list(f) for f in folder]})
    results = prisma_batch(jobs)
    assert len(results) == len(cases) + 1  # one answer per case, then the folder's
    for (path, text), result in zip(cases, results[:-1], strict=True):
        files: Any = result["files"]
        assert reformat(parse(text, path)) == files[0][1], path
        changed = bool(missing_bits(parse_schema([(path, text)])))
        assert changed == (not path.startswith("unknown-type")), path  # Prisma repairs only schemas that resolve
    repaired: Any = results[-1]["files"]
    assert reformat_files(folder) == [tuple(f) for f in repaired]
    assert "user   User? @relation(fields: [userId], references: [id])" in repaired[1][1], "across the files"
    missing = SCHEMAS["prisma-missing-backrelation"][0]
    assert format_file(parse(missing[1], missing[0])) != reformat(parse(missing[1], missing[0]))


BRIN_FIELDS = [
    *[(f" @db.{native}", scalar) for native, scalar in (("Bit", "String"), ("Char", "String"), ("Date", "DateTime"))],
    *[(f" @db.{native}", scalar) for native, scalar in (("Real", "Float"), ("Inet", "String"), ("Integer", "Int"))],
    *[(f" @db.{native}", scalar) for native, scalar in (("Text", "String"), ("Time", "DateTime"), ("Uuid", "String"))],
    *[(f" @db.{native}", scalar) for native, scalar in (("Money", "Decimal"), ("JsonB", "Json"), ("ByteA", "Bytes"))],
    *[("", scalar) for scalar in ("String", "Int", "BigInt", "Float", "Decimal", "DateTime", "Bytes", "Boolean", "E")],
]
BRIN_OPS = ["", "BitMinMaxOps", "TextMinMaxOps", "Int4BloomOps", "Float8MinMaxOps", "UuidMinMaxOps", "InetOps"]
BRIN_OPS += ["TimestampMinMaxMultiOps", "DateBloomOps", "NumericBloomOps", "ByteaMinMaxOps", "InetInclusionOps"]
OTHER_RULES = {
    "type-unique": "type T {\n  a Int\n  b Int\n\n  @@unique([a, b])\n}\n",
    "type-index-id": "type T {\n  a Int\n  b Int\n\n  @@index([a, b])\n  @@id([a, b])\n}\n",
    "type-field-attributes": "type T {\n  a Int @unique\n  b Int @id\n}\n",
    # an error of resolution (here: the composite type's @@unique) hides the later ones (composite types on Postgres)
    "resolution-first": H + "type T {\n  a Int\n\n  @@unique([a])\n}\n\nmodel M {\n  id Int @id\n  t T\n}\n",
    "unknown-type-hides-relation": H + "model A {\n  id Int @id\n  x Foo\n  b B\n}\n\nmodel B {\n  id Int @id\n}\n",
}


def test_index_type_and_composite_rules_agree_with_prisma() -> None:
    """Prisma's BRIN operator class matrix, index types per provider and composite type attributes, case by case."""
    cases: list[tuple[str, str]] = []
    for (native, scalar), ops in ((f, o) for f in BRIN_FIELDS for o in BRIN_OPS):
        index = f"[a(ops: {ops})]" if ops else "[a]"
        model = f"model A {{\n  id Int @id\n  a  {scalar}{native}\n\n  @@index({index}, type: Brin)\n}}\n"
        cases.append((f"{scalar}{native}-{ops}", H + "enum E {\n  X\n}\n\n" + model))
    for provider in ("mysql", "sqlite", "sqlserver", "cockroachdb", "mongodb"):
        for kind in ("Brin", "Gist", "SpGist", "Hash", "BTree"):
            key = ' @map("_id")' if provider == "mongodb" else ""
            model = f"model A {{\n  id Int @id{key}\n  a  Int\n\n  @@index([a], type: {kind})\n}}\n"
            cases.append((f"{provider}-{kind}", f'datasource db {{\n  provider = "{provider}"\n}}\n\n{model}'))
    cases.extend(OTHER_RULES.items())
    results = prisma_batch([{"op": "validate", "files": [["x/schema.prisma", text]]} for _, text in cases])
    refused = 0
    for (name, text), result in zip(cases, results, strict=True):
        ours = {(p.file, p.line, p.message) for p in validate(parse_schema([("x/schema.prisma", text)]))}
        theirs = set() if result["ok"] else error_lines(str(result["error"]))
        assert ours == theirs, name
        refused += bool(theirs)
    assert 100 < refused < len(cases) - 20  # both verdicts are exercised


@pytest.mark.parametrize(("name", "variant"), VARIANTS, ids=[f"{n}-{v}" for n, v in VARIANTS])
def test_validation_agrees_with_prisma(name: str, variant: str, prisma: dict[tuple[str, str], Any]) -> None:
    problems = validate(parse_schema(variant_files(name, variant)))
    result = prisma[(name, variant)]
    ours = {(p.file, p.line, p.message) for p in problems}
    assert result["ok"] == (not problems), f"prisma: {result.get('error')}\nws: {ours}"
    if not result["ok"]:
        assert ours == error_lines(result["error"])


COMMENTED_AGENT_EDITS = [
    # (line as it is, line(s) with comments of every kind) - applied to the primary and to app-agents' copy alike
    (
        "  id             String        @id",
        "  /**\n   * block comment on its own line\n   */\n  id             String        @id",
    ),
    ("  name           String\n", "  name           String /* trailing block comment */\n"),
    (
        '  config         Json          @default("{}")',
        '  /// doc of config\n  config         Json          @default("{}") // trailing',
    ),
    (
        "  @@unique([organizationId, name])",
        "  // above the unique\n  /// doc above the unique\n  @@unique([organizationId, name]) // after unique",
    ),
    ("  @@index([status])", "  @@index([status]) /* after index */"),
]


def test_sync_of_a_primary_with_comments_everywhere_changes_only_the_changed_line(tmp_path: Path) -> None:
    from infra.schema.sync import apply_edits, plan_sync
    from infra.workspace import load_workspace
    from tests.helpers import EXAMPLES

    workspace = tmp_path / "examples"
    shutil.copytree(EXAMPLES, workspace, ignore=shutil.ignore_patterns("node_modules", "*.db", "__pycache__"))
    primary = workspace / "saas-ecosystem-architecture/admin-app/prisma/schema.prisma"
    copy = workspace / "app-agents/shared/database/schema.prisma"
    for path in (primary, copy):
        text = path.read_text(encoding="utf-8")
        start = text.index("model Agent {")
        end = text.index("\n}\n", start)
        block = text[start:end]
        for old, new in COMMENTED_AGENT_EDITS:
            assert old in block, (path, old)
            block = block.replace(old, new, 1)
        text = text[:start] + block + text[end:]
        assert format_file(parse(text)) == text, "the commented files are what prisma format writes"
        path.write_text(text, encoding="utf-8")
    loaded = load_workspace(workspace / "workspace.yaml")
    assert [e.path for e in plan_sync(loaded)] == [], "identical commented copies are in sync"
    text = primary.read_text(encoding="utf-8")
    primary.write_text(text.replace('@default("{}") // trailing', '@default("[]") // trailing', 1), encoding="utf-8")
    before = copy.read_text(encoding="utf-8")
    # (saas-spec-driven-development's copy of Agent has none of the comments, so it is rewritten too)
    edits = [e for e in plan_sync(loaded, repos=["app-agents"]) if e.path.endswith(".prisma")]
    assert [(e.repo, e.path) for e in edits] == [("app-agents", "shared/database/schema.prisma")]
    apply_edits(loaded, edits)
    after = copy.read_text(encoding="utf-8")
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [
        (
            '  config         Json          @default("{}") // trailing',
            '  config         Json          @default("[]") // trailing',
        )
    ], "every comment and blank line stays; only the changed line differs"


def test_every_corpus_export_compiles_strictly_and_imports(tmp_path: Path) -> None:
    """Types of every corpus schema's models, views and enums: `tsc --strict` accepts them, Python imports them."""
    import importlib.util
    import json

    from infra.schema.export import render_types
    from tests.fixtures.prisma.nodetools import tsc

    modules: list[tuple[str, Path, int]] = []
    for index, (name, files) in enumerate(SCHEMAS.items()):
        schema = parse_schema(files)
        blocks = [b for b in schema.blocks if b.kind in ("model", "view", "enum")]
        ts, py = render_types(blocks, schema)
        folder = tmp_path / f"schema{index}"
        folder.mkdir()
        (folder / "index.ts").write_text(ts, encoding="utf-8")
        (folder / "types.py").write_text(py, encoding="utf-8")
        modules.append((name, folder / "types.py", len(blocks)))
    config = {"compilerOptions": {"strict": True, "noEmit": True, "target": "ES2022"}, "include": ["*/index.ts"]}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    compiled = tsc(tmp_path, "-p", "tsconfig.json")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    for index, (name, path, count) in enumerate(modules):
        spec = importlib.util.spec_from_file_location(f"corpus_types_{index}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # raises on a keyword, an invalid name or an unresolved annotation
        assert len(module.__all__) >= count, name


def test_export_keeps_values_prisma_client_returns_and_nests_composite_types() -> None:
    from infra.schema.export import render_types

    constructed = parse_schema(SCHEMAS["constructed"])
    ts, py = render_types([constructed.enums["Status"]], constructed)
    assert 'ACTIVE = "ACTIVE",' in ts and '"active"' not in ts, "enum values are names, not @map values"
    assert '    None_ = "None"' in py and '    global_ = "global"' in py and '    class_ = "class"' in py
    namespace: dict[str, Any] = {}
    exec(compile(py, "types.py", "exec"), namespace)
    assert namespace["Status"]("None").name == "None_" and namespace["Status"].BLOCKED == "BLOCKED"
    mongo = parse_schema(SCHEMAS["prisma-composite-panic"])
    ts, py = render_types([mongo.models["sample_model"]], mongo)
    assert "export interface NestedType {" in ts and "  some_field: NestedType;" in ts
    assert "class NestedType(BaseModel):" in py and "    some_field: NestedType" in py
    namespace = {}
    exec(compile(py, "types.py", "exec"), namespace)
    row = namespace["sample_model"].model_validate({"id": "1", "some_field": {"this_causes_error": "x"}})
    assert row.some_field.this_causes_error == "x"


def test_copied_back_relation_to_a_model_the_secondary_lacks_says_so(tmp_path: Path) -> None:
    """An exact copy of Agent, whose back-relation `memories` points at a model the secondary does not have."""
    from infra.schema.align import check_alignment
    from infra.schema.load import load_schemas
    from infra.workspace import load_workspace
    from tests.helpers import EXAMPLES

    workspace = tmp_path / "examples"
    shutil.copytree(EXAMPLES, workspace, ignore=shutil.ignore_patterns("node_modules", "*.db", "__pycache__"))
    specs = workspace / "saas-spec-driven-development/prisma/schema.prisma"
    text = specs.read_text(encoding="utf-8")
    old = "  specifications Specification[]\n"
    specs.write_text(text.replace(old, old + "  memories       AgentMemory[]\n", 1), encoding="utf-8")
    report = check_alignment(load_schemas(load_workspace(workspace / "workspace.yaml")))
    found = [d for d in report.differences() if d.member == "memories" and d.copy is not None]
    assert [(d.repo, d.name, d.primary, d.copy) for d in found] == [
        ("saas-spec-driven-development", "Agent", "AgentMemory[]", "AgentMemory[]")
    ]
    refused = [d for d in report.problems if d.member == "memories"]
    assert len(refused) == 1 and 'Type "AgentMemory" is neither a built-in type' in refused[0].aspect
    assert found[0].aspect.startswith("back-relation to AgentMemory, a model this repo does not have")
    assert "extra field" not in str(found[0]) and "not in the primary" not in str(found[0])


def test_schema_check_reports_prisma_7_errors_and_accepts_block_comments(tmp_path: Path) -> None:
    """`ws schema check` applies the Prisma 7 rules to every repo, with Prisma's message at Prisma's line."""
    import json

    from tests.helpers import EXAMPLES, run_ws

    workspace = tmp_path / "examples"
    shutil.copytree(EXAMPLES, workspace, ignore=shutil.ignore_patterns("node_modules", "*.db", "__pycache__"))
    agents = workspace / "app-agents/shared/database/schema.prisma"
    text = agents.read_text(encoding="utf-8")
    old = '  schemas  = ["ecosystem", "agents"]\n}\n'
    assert old in text
    text = text.replace(old, old.replace("\n}", '\n  url      = env("DATABASE_URL") /* Prisma 6 style */\n}'), 1)
    agents.write_text("/* a block comment Prisma accepts */\n" + text, encoding="utf-8")
    result = run_ws("-w", str(workspace / "workspace.yaml"), "schema", "check", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    problems = json.loads(result.stdout)["problems"]
    url_line = (
        agents.read_text(encoding="utf-8").splitlines().index('  url      = env("DATABASE_URL") /* Prisma 6 style */')
        + 1
    )
    assert [(p["repo"], p["file"].endswith("shared/database/schema.prisma"), p["line"]) for p in problems] == [
        ("app-agents", True, url_line)
    ]
    assert "The datasource property `url` is no longer supported in schema files" in problems[0]["aspect"]
    assert "prisma.config.ts" in problems[0]["aspect"]


# Fields written after block attributes, with blank lines and comments between (found when `ws schema format`
# inserted a back-relation before the closing brace): prisma format moves the attributes below the fields, and
# the blank lines above an attribute go with it.
MOVED_ATTRIBUTES = {
    "a": 'model A {\n  id Int @id\n  name String\n\n  @@index([name])\n  @@map("a")\n  extra String\n}\n',
    "b": "model A {\n  id Int @id\n  name String\n\n  @@index([name])\n\n  extra String\n}\n",
    "c": 'model A {\n  id Int @id\n\n  name String\n  @@index([name])\n  extra String\n  @@map("a")\n}\n',
    "d": "model A {\n  id Int @id\n  name String\n\n  // about the index\n  @@index([name])\n  extra String\n}\n",
    "e": "model A {\n  id Int @id\n  name String\n  // about the index\n\n  @@index([name])\n  extra String\n}\n",
    "f": 'model A {\n  id Int @id\n  name String\n\n\n  @@index([name])\n\n  @@map("a")\n  extra String\n\n  other Int\n}\n',
}


def test_fields_after_block_attributes_are_rendered_as_prisma_format_does() -> None:
    jobs: list[dict[str, object]] = [
        {"op": "format", "files": [[f"{name}.prisma", H + text]]} for name, text in MOVED_ATTRIBUTES.items()
    ]
    results = prisma_batch(jobs)
    assert len(results) == len(MOVED_ATTRIBUTES)
    for (name, text), result in zip(MOVED_ATTRIBUTES.items(), results, strict=True):
        files: Any = result["files"]
        assert format_file(parse(H + text, f"{name}.prisma")) == files[0][1], name
