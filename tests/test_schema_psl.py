"""The Prisma parser and printer, cross-checked against Prisma's own validator and formatter.

Prisma runs for all files in one node process (tests/fixtures/prisma/prisma_wasm.cjs, checked against the CLI in
test_schema_corpus.py), so these checks take seconds instead of a CLI start per file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.schema.psl import PslSyntaxError, parse, parse_schema, print_file
from infra.schema.synthetic import workspace_schemas
from infra.schema.validate import validate
from tests.fixtures.prisma.nodetools import prisma_batch
from tests.helpers import ROOT

CORPUS = ROOT / "tests" / "fixtures" / "prisma"
EXAMPLE_SCHEMAS = [
    ROOT / "examples/saas-ecosystem-architecture/admin-app/prisma/schema.prisma",
    ROOT / "examples/app-agents/shared/database/schema.prisma",
    ROOT / "examples/saas-spec-driven-development/prisma/schema.prisma",
]
CORPUS_FILES = sorted((CORPUS / "valid").glob("*.prisma")) + sorted((CORPUS / "invalid").glob("*.prisma"))


def ours_valid(files: list[tuple[str, str]]) -> tuple[bool, str]:
    try:
        problems = validate(parse_schema(files))
    except PslSyntaxError as exc:
        return False, str(exc)
    return not problems, "; ".join(str(p) for p in problems)


def large_corpus(tmp: Path) -> list[Path]:
    synthetic = workspace_schemas(models=300, seed=11)
    paths = []
    for name, text in [("primary", synthetic.primary), *synthetic.secondaries.items()]:
        path = tmp / f"large_{name}.prisma"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@pytest.mark.parametrize(
    "path",
    CORPUS_FILES + EXAMPLE_SCHEMAS,
    ids=lambda p: p.name if p.parent.name != "prisma" else str(p.relative_to(ROOT)),
)
def test_prisma_agrees_on_validity(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    (prisma,) = prisma_batch([{"op": "validate", "files": [["schema.prisma", text]]}])
    ours, detail = ours_valid([(str(path), text)])
    assert prisma["ok"] == ours, f"prisma: {prisma.get('error')}\nours: {detail}"
    assert ours == (path.parent.name != "invalid"), "corpus folder names the expected validity"


def test_large_schemas_parse_roundtrip_and_validate(tmp_path: Path) -> None:
    paths = large_corpus(tmp_path)
    texts = [path.read_text(encoding="utf-8") for path in paths]
    results = prisma_batch([{"op": "validate", "files": [[p.name, t]]} for p, t in zip(paths, texts, strict=True)])
    for path, text, prisma in zip(paths, texts, results, strict=True):
        assert len(text.splitlines()) > 1000
        parsed = parse(text, path.name)
        assert len([b for b in parsed.blocks if b.kind == "model"]) >= 30
        assert print_file(parsed) == text
        assert prisma["ok"], prisma.get("error")
        assert ours_valid([(path.name, text)]) == (True, "")
    primary = parse((tmp_path / "large_primary.prisma").read_text(encoding="utf-8"))
    assert len([b for b in primary.blocks if b.kind == "model"]) == 300


def test_multi_file_folder_agrees_with_prisma() -> None:
    files = [(p.name, p.read_text(encoding="utf-8")) for p in sorted((CORPUS / "multi").glob("*.prisma"))]
    # without users.prisma the relation has no target: both Prisma and ws reject it
    without_users = [f for f in files if f[0] != "users.prisma"]
    whole, partial = prisma_batch([{"op": "validate", "files": [list(f) for f in v]} for v in (files, without_users)])
    assert whole["ok"], whole.get("error")
    schema = parse_schema(files)
    assert set(schema.models) == {"User", "Post"}
    assert schema.models["Post"].file == "posts.prisma"
    assert validate(schema) == []
    assert not partial["ok"]
    assert validate(parse_schema(without_users))


@pytest.mark.parametrize("path", CORPUS_FILES[:2] + EXAMPLE_SCHEMAS + sorted((CORPUS / "multi").glob("*.prisma")))
def test_printer_reproduces_untouched_files_byte_for_byte(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    parsed = parse(text, path.name)
    assert print_file(parsed) == text
    # re-rendering every block of a prisma-formatted file gives the same bytes (our printer == prisma format)
    assert print_file(parsed, {i: b for i, b in enumerate(parsed.blocks)}) == text


def test_render_matches_prisma_format() -> None:
    """Blocks re-rendered by ws are what `prisma format` writes for the same (badly formatted) schema."""
    source = (CORPUS / "valid" / "escapes_and_comments.prisma").read_text(encoding="utf-8")
    messy = "\n".join(" ".join(line.split()) for line in source.splitlines()) + "\n"
    (prisma,) = prisma_batch([{"op": "format", "files": [["schema.prisma", messy]]}])
    formatted = prisma["files"][0][1]  # type: ignore[index]
    assert formatted != messy
    parsed = parse(messy)
    assert print_file(parsed, dict(enumerate(parsed.blocks))) == formatted


def test_parser_keeps_every_detail() -> None:
    parsed = parse((CORPUS / "valid" / "escapes_and_comments.prisma").read_text(encoding="utf-8"), "x.prisma")
    weird = next(b for b in parsed.blocks if b.name == "Weird")
    assert weird.doc == (" A composite type is MongoDB-only in Prisma; Postgres rejects it, see invalid/.",)
    quote = weird.field("quote")
    assert quote is not None
    default = quote.attribute("default")
    assert default is not None and default.args[0].value.value == 'say "hi"\n\ttab \\ slash é'  # type: ignore[union-attr]
    shape = weird.field("shape")
    assert shape is not None and shape.unsupported == "circle" and shape.optional
    tags = weird.field("tags")
    assert tags is not None and tags.list
    index = weird.block_attribute("index")
    assert index is not None
    assert index.text() == '@@index([quote(ops: raw("text_pattern_ops"))], type: BTree)'
    account = next(b for b in parsed.blocks if b.name == "Account")
    relation = account.field("user").attribute("relation")  # type: ignore[union-attr]
    assert relation is not None and relation.arg("onUpdate").text() == "NoAction"  # type: ignore[union-attr]
    view = next(b for b in parsed.blocks if b.kind == "view")
    assert view.name == "ActiveUser"


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ('model A {\n  id Int @id\n  name String @default("x)\n}\n', 3, 24, "unterminated string"),
        ("model A {\n  id Int @id\n  name\n}\n", 3, 3, "field name of model A has no type"),
        ("model A {\n  id Int @id\n", 3, 1, "model A (line 1) is not closed"),
        ("modle A {\n}\n", 1, 1, "expected a block"),
        ("model A {\n  id Int[]? @id\n}\n", 2, 11, "a list cannot be optional"),
        ("model A {\n  id Int @default(1,)\n}\n", 2, 21, "trailing commas"),
        ("model A {\n  id Int @id $\n}\n", 2, 14, "unexpected character"),
        ('model A {\n  id String @default("\\q")\n}\n', 2, 23, "unknown string escape"),
    ],
)
def test_syntax_errors_name_file_line_column(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(PslSyntaxError) as caught:
        parse(text, "schema.prisma")
    assert (caught.value.file, caught.value.line, caught.value.column) == ("schema.prisma", line, column)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"schema.prisma:{line}:{column}: ")
