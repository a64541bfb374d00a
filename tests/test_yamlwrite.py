"""The generated-YAML writer against ruamel.yaml's round-trip dumper, the writer it replaced (and its oracle here).

Each test would fail if the writer quoted a string ruamel leaves plain (or the reverse), laid out a block
differently, or wrote text that reads back as another value.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from infra.generate import generated_files
from infra.github.actions import ACTIONS
from infra.github.workflows import deployment_workflow, pr_workflow
from infra.monitoring import rules
from infra.stack.stackfiles import HEADER, default_config, pulumi_environments, stack_file
from infra.workspace.loader import load_workspace
from infra.workspace.yamlwrite import Literal, YamlMap, YamlSeq, dump
from tests.helpers import EXAMPLES, ROOT

EOL_COMMENT = re.compile(r"(?m)^(.*\S) +# (.*)$")


def two_spaces_before(comments: set[str], text: str) -> str:
    """``text`` with two spaces before each of ``comments`` at a line's end (ruamel put one or two there)."""
    return EOL_COMMENT.sub(lambda m: f"{m[1]}  # {m[2]}" if m[2] in comments else m[0], text)


def eol_comments(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        found.update(getattr(node, "eol_comments", {}).values())
        for value in node.values():
            found |= eol_comments(value)
    elif isinstance(node, list):
        for item in node:
            found |= eol_comments(item)
    return found


def ruamel_text(document: Any) -> str:
    writer = YAML(typ="rt")
    writer.width = 4096
    writer.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    writer.dump(document, buffer)
    return buffer.getvalue()


def to_ruamel(node: Any) -> Any:
    """``node`` as the ruamel objects the generators built before, comments included."""
    if isinstance(node, dict):
        result = CommentedMap()
        for key, value in node.items():
            result[key] = to_ruamel(value)
        if isinstance(node, YamlMap):
            if node.start_comment is not None:
                result.yaml_set_start_comment(node.start_comment)
            for key, comment in node.eol_comments.items():
                result.yaml_add_eol_comment(comment, key)
            for key, comment in node.before_comments.items():
                result.yaml_set_comment_before_after_key(key, before=comment)
        return result
    if isinstance(node, list):
        return CommentedSeq(to_ruamel(item) for item in node)
    if isinstance(node, Literal):
        return LiteralScalarString(node)
    return node


def same_as_ruamel(document: Any) -> None:
    ours = dump(document)
    assert two_spaces_before(eol_comments(document), ruamel_text(to_ruamel(document))) == ours
    plain = yaml.safe_load(ours)
    assert plain == yaml.safe_load(ruamel_text(to_ruamel(document)))


AWKWARD = [
    *"ab xz09-_.:#'\"{}[],&*!|>%@`?=~<$()/\\+^;",
    *["true", "null", "1.5", "0x1F", "2024-01-01", "---", "...", "on", "yes", " ", ": ", " #", "- ", "? "],
    *["N", "Y", "~", "e5", "_", "0o7", ".inf", "<<", "=", "${{ ", " }}"],
]


def test_awkward_strings_are_written_as_ruamel_writes_them() -> None:
    rng = random.Random(20261203)
    for _ in range(3000):
        text = "".join(rng.choice(AWKWARD) for _ in range(rng.randint(0, 8)))
        same_as_ruamel(YamlMap({"k": text}))
        if text:
            same_as_ruamel(YamlMap({text: "v"}))


@pytest.mark.parametrize(
    "value",
    [
        "plain text",
        "",
        "it's",
        'say "hi"',
        "ends with colon:",
        "a: b",
        "a #b",
        "a#b",
        "héllo wörld",
        "tab\there",
        "one\ntwo",
        'it\'s\nmultiline: "quoted"\n',
        "\ntrailing\n\n",
        "x" * 300,
        7,
        0,
        True,
        False,
        3.5,
        None,
        Literal("echo one\necho two\n"),
        Literal("no final newline"),
        Literal("two final newlines\n\n"),
        Literal("  leading space\nsecond\n"),
        Literal("blank\n\nlines inside\n"),
    ],
)
def test_scalars_match_ruamel(value: Any) -> None:
    same_as_ruamel(YamlMap({"key": value, "list": YamlSeq([value, value])}))


def test_layout_and_comments_match_ruamel() -> None:
    document = YamlMap(
        name="layout",
        empty_map=YamlMap(),
        empty_list=YamlSeq(),
        nested=YamlMap(deeper=YamlMap(deepest=YamlSeq([YamlMap(a=1, b=YamlSeq(["x"])), "y"]))),
    )
    document.yaml_set_start_comment("first line\nsecond line")
    document.yaml_set_comment_before_after_key("nested", before="about nested\nand more")
    document["nested"].yaml_add_eol_comment("on deeper", "deeper")
    same_as_ruamel(document)


def test_any_text_reads_back_as_it_was_written() -> None:
    """Review finding: a Literal holding \\r, NEL or U+2028 was written raw into a | block (it read back changed,
    or not at all), and a plain string holding U+2028 raised. Whatever the text, YAML 1.2 reads back the value."""
    alphabet = [
        *AWKWARD,
        "\n",
        "\r",
        "\t",
        "\x85",
        "\u2028",
        "\u2029",
        "\x00",
        "\x1b",
        "é",
        "€",
        "\U0001f600",
        "\ufeff",
    ]
    reader = YAML(typ="safe", pure=True)
    rng = random.Random(2028)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        document = YamlMap(plain=text, block=Literal(text), items=YamlSeq([text, Literal(text)]))
        written = dump(document)
        assert reader.load(written) == {"plain": text, "block": text, "items": [text, text]}, (text, written)


@pytest.mark.parametrize("folder", [ROOT, EXAMPLES], ids=["root", "examples"])
def test_every_generated_document_matches_ruamel(folder: Path) -> None:
    loaded = load_workspace(folder / "workspace.yaml")
    documents = [
        deployment_workflow(loaded.model),
        pr_workflow(loaded.model),
        rules.rules_document(loaded),
        rules.tests_document(loaded),
    ]
    documents += [build() for build in ACTIONS.values()]
    for document in documents:
        same_as_ruamel(document)
    # and every generated YAML file reads back through ruamel and is written again unchanged
    for relative, text in generated_files(loaded).items():
        if relative.endswith((".yml", ".yaml")) and not relative.startswith("Pulumi."):
            again = ruamel_text(YAML(typ="rt").load(text))
            assert two_spaces_before({m[2] for m in EOL_COMMENT.finditer(text)}, again) == text, relative


@pytest.mark.parametrize("folder", [ROOT, EXAMPLES], ids=["root", "examples"])
def test_a_new_stack_file_is_written_as_ruamel_wrote_it(folder: Path) -> None:
    loaded = load_workspace(folder / "workspace.yaml")
    for environment in pulumi_environments(loaded.model):
        expected = HEADER + ruamel_text(to_ruamel({"config": default_config(loaded.model, environment)}))
        assert stack_file(loaded.model, environment, None) == expected, environment
