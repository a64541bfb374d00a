"""Read and rewrite the externally-managed lists of a repo's prisma.config.ts.

A secondary declares the shared tables and enums external (``tables.external`` / ``enums.external`` with
``experimental.externalTables: true``) so its own migrations never create or alter them. Only those
arrays are read and rewritten; the rest of the file stays byte-identical.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'')


@dataclass(frozen=True)
class ExternalList:
    items: tuple[str, ...]
    start: int  # offset of "["
    end: int  # offset just after "]"
    indent: str  # indentation of the line holding `external:`
    key_column: int  # column of `external` (0-based)


@dataclass(frozen=True)
class PrismaConfig:
    path: str
    text: str
    tables: ExternalList | None
    enums: ExternalList | None
    external_tables_enabled: bool


def _skip_string_or_comment(text: str, pos: int) -> int:
    """If a string, template or comment starts at pos, the offset after it; else pos."""
    char = text[pos]
    if char in "\"'`":
        end = pos + 1
        while end < len(text) and text[end] != char:
            end += 2 if text[end] == "\\" else 1
        return end + 1
    if text.startswith("//", pos):
        newline = text.find("\n", pos)
        return len(text) if newline < 0 else newline
    if text.startswith("/*", pos):
        close = text.find("*/", pos + 2)
        return len(text) if close < 0 else close + 2
    return pos


def _matching(text: str, open_pos: int) -> int:
    """Offset just after the bracket closing the one at open_pos (strings and comments skipped)."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[text[open_pos]]]
    pos = open_pos + 1
    while pos < len(text) and stack:
        skipped = _skip_string_or_comment(text, pos)
        if skipped != pos:
            pos = skipped
            continue
        char = text[pos]
        if char in pairs:
            stack.append(pairs[char])
        elif stack and char == stack[-1]:
            stack.pop()
        pos += 1
    return pos


def _find_key(text: str, key: str, start: int, end: int) -> int | None:
    """Offset of the value after `key:` at the top level of the object text[start:end]."""
    pos = start
    depth = 0
    pattern = re.compile(r"(?:\b|[\"'])" + re.escape(key) + r"[\"']?\s*:\s*")
    while pos < end:
        skipped = _skip_string_or_comment(text, pos)
        if skipped != pos:
            if depth == 0:
                match = pattern.match(text, pos)
                if match and match.end() <= end:
                    return match.end()
            pos = skipped
            continue
        char = text[pos]
        if char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif depth == 0:
            match = pattern.match(text, pos)
            if match and (pos == 0 or not (text[pos - 1].isalnum() or text[pos - 1] == "_")):
                return match.end()
        pos += 1
    return None


def _config_object(text: str) -> tuple[int, int] | None:
    match = re.search(r"defineConfig\s*\(\s*\{", text)
    if match:
        open_pos = match.end() - 1
        return open_pos + 1, _matching(text, open_pos) - 1
    match = re.search(r"export\s+default\s*\{", text)
    if match:
        open_pos = match.end() - 1
        return open_pos + 1, _matching(text, open_pos) - 1
    return None


def _external(text: str, section: str, body: tuple[int, int]) -> ExternalList | None:
    value = _find_key(text, section, *body)
    if value is None or text[value : value + 1] != "{":
        return None
    inner = (value + 1, _matching(text, value) - 1)
    array = _find_key(text, "external", *inner)
    if array is None or text[array : array + 1] != "[":
        return None
    end = _matching(text, array)
    items = tuple(m.group(1) if m.group(1) is not None else m.group(2) for m in _STRING.finditer(text, array, end))
    line_start = text.rfind("\n", 0, array) + 1
    line = text[line_start:array]
    indent = line[: len(line) - len(line.lstrip())]
    key_column = line.find("external")
    return ExternalList(items, array, end, indent, key_column if key_column >= 0 else len(indent))


def parse_config(path: str, text: str) -> PrismaConfig:
    body = _config_object(text)
    if body is None:
        return PrismaConfig(path, text, None, None, False)
    experimental = _find_key(text, "experimental", *body)
    enabled = False
    if experimental is not None and text[experimental : experimental + 1] == "{":
        inner = (experimental + 1, _matching(text, experimental) - 1)
        flag = _find_key(text, "externalTables", *inner)
        enabled = flag is not None and text.startswith("true", flag)
    return PrismaConfig(path, text, _external(text, "tables", body), _external(text, "enums", body), enabled)


def render_list(items: list[str], indent: str, key_column: int) -> str:
    """A prettier-style array: on one line when it fits in 80 columns, else one item per line."""
    quoted = [json.dumps(i) for i in items]
    one_line = "[" + ", ".join(quoted) + "]"
    if key_column + len("external: ") + len(one_line) + 1 <= 80:
        return one_line
    inner = indent + "  "
    return "[\n" + "".join(f"{inner}{q},\n" for q in quoted) + indent + "]"


def rewrite(config: PrismaConfig, tables: list[str], enums: list[str]) -> str | None:
    """The config text with both external lists set (None when a list is not declared in the file)."""
    if config.tables is None or config.enums is None:
        return None
    edits = []
    for current, wanted in ((config.tables, tables), (config.enums, enums)):
        if set(current.items) != set(wanted) or len(current.items) != len(wanted):
            edits.append((current.start, current.end, render_list(wanted, current.indent, current.key_column)))
    text = config.text
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def new_config(schema_path: str, migrations_path: str, tables: list[str], enums: list[str]) -> str:
    """A complete prisma.config.ts for a secondary that has none yet."""
    return (
        "// Prisma configuration. The shared models are owned and migrated by the primary repo: declaring them\n"
        "// external keeps this repo's migrations from creating or altering them. Kept in step by `ws schema sync`.\n"
        'import { defineConfig } from "prisma/config";\n'
        "\n"
        "export default defineConfig({\n"
        f"  schema: {json.dumps(schema_path)},\n"
        f"  migrations: {{ path: {json.dumps(migrations_path)} }},\n"
        '  datasource: { url: process.env.DATABASE_URL ?? "" },\n'
        "  experimental: { externalTables: true },\n"
        "  tables: {\n"
        f"    external: {render_list(tables, '    ', 4)},\n"
        "  },\n"
        "  enums: {\n"
        f"    external: {render_list(enums, '    ', 4)},\n"
        "  },\n"
        "});\n"
    )
