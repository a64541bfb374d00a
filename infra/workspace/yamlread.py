"""Bounded, fast reading of workspace.yaml: libyaml's events into dicts and lists that remember positions.

The round-trip parser (ruamel) takes tens of seconds for a few megabytes and recurses on deep nesting; a
plain loader expands aliases and merge keys without limit. This reader takes libyaml's event stream (C) and
builds the values itself, without recursion, within fixed limits: the file size, the number of values
after expanding aliases and merge keys, the nesting depth, and the length of a key. Scalars resolve as
YAML 1.2 does (ruamel's default): ``yes``/``on`` are text, ``true``/``false`` booleans, ``0o17`` octal.
Every mapping and sequence keeps the line and column of each key and item for located messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML's C parser (libyaml); no stubs installed

# libyaml's parser (PyYAML's wheels bundle it); PyYAML's own Python parser, also iterative, where it is missing
_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_BYTES = 2 * 1024 * 1024
MAX_VALUES = 1_000_000
MAX_CHARACTERS = 8 * 1024 * 1024  # text after expanding aliases: four times the largest file
MAX_DEPTH = 100
MAX_KEY_LENGTH = 1024

Mark = tuple[int, int]  # 1-based line and column


class YamlProblem(Exception):
    """A located reason the document cannot be read; the loader turns it into a Problem."""

    def __init__(self, line: int, column: int, message: str, fix: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message, self.fix = line, column, message, fix


class PositionedMap(dict[Any, Any]):
    """A mapping that remembers where each of its keys was written."""

    __slots__ = ("positions",)

    def __init__(self) -> None:
        super().__init__()
        self.positions: dict[Any, Mark] = {}


class PositionedList(list[Any]):
    """A sequence that remembers where each of its items was written."""

    __slots__ = ("positions",)

    def __init__(self) -> None:
        super().__init__()
        self.positions: list[Mark] = []


# YAML 1.2 implicit types as ruamel resolves them (ruamel.yaml.resolver, version (1, 2)).
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_INT = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_STR_TAGS = {"!", "tag:yaml.org,2002:str"}
_MERGE = object()  # the pending key of a `<<:` entry


def _plain(text: str) -> Any:
    """The value of a plain (unquoted) scalar."""
    first = text[:1]
    if first in "-+0123456789.":
        if _INT.match(text):
            return _to_int(text)
        if _FLOAT.match(text):
            return _to_float(text)
    elif first in "tTfF" and _BOOL.match(text):
        return text in ("true", "True", "TRUE")
    if first in "~nN" or not text:
        if _NULL.match(text):
            return None
    return text


def _to_int(text: str) -> int:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    if digits.startswith("0b"):
        return sign * int(digits[2:], 2)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    return sign * int(digits or "0")


def _to_float(text: str) -> float:
    digits = text.replace("_", "").lower()
    if digits.endswith(".inf"):
        return -math.inf if digits.startswith("-") else math.inf
    if digits.endswith(".nan"):
        return math.nan
    return float(digits)


def _tagged(tag: str, text: str, mark: Mark) -> Any:
    kind = tag.removeprefix("tag:yaml.org,2002:")
    try:
        if kind == "int":
            return _to_int(text)
        if kind == "float":
            return _to_float(text)
        if kind == "bool":
            return {"true": True, "false": False}[text.lower()]
        if kind == "null":
            return None
    except (ValueError, KeyError):
        raise YamlProblem(
            *mark, f"{short(text)} is not a valid !!{kind}", f"write a {kind} value or drop the tag"
        ) from None
    raise YamlProblem(
        *mark, f"the tag {short(tag)} is not supported", "remove the tag; workspace.yaml uses plain values"
    )


@dataclass(slots=True)
class _Node:
    """What a finished value contributes to its parent: values after expansion, height and merge depth."""

    value: Any
    size: int = 1
    height: int = 0
    merges: int = 0
    characters: int = 0


@dataclass(slots=True)
class _Open:
    """A mapping or sequence whose end event has not come yet."""

    node: _Node
    mark: Mark
    anchor: str | None
    is_map: bool
    key: Any = None
    key_mark: Mark = (0, 0)
    has_key: bool = False
    merge_values: list[dict[Any, Any]] = field(default_factory=list)


def read(text: str) -> Any:
    """The single document of ``text`` as dicts, lists and scalars; raises :class:`YamlProblem`.

    Errors of the YAML syntax itself surface as :class:`yaml.MarkedYAMLError` (see :func:`syntax_problem`).
    """
    parser = _PARSER(text)
    try:
        return _build(iter(parser.get_event, None))
    finally:
        parser.dispose()


def _mark(event: Any) -> Mark:
    return event.start_mark.line + 1, event.start_mark.column + 1


def _build(events: Iterator[Any]) -> Any:
    anchors: dict[str, _Node] = {}
    stack: list[_Open] = []
    documents = 0
    result: Any = None
    for event in events:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            mark = _mark(event)
            if event.tag and event.tag not in _STR_TAGS:
                done = _Node(_tagged(event.tag, event.value, mark))
            elif event.implicit[0]:  # plain (unquoted) and untagged
                if stack and stack[-1].is_map and not stack[-1].has_key and event.value == "<<":
                    done = _Node(_MERGE)
                else:
                    done = _Node(_plain(event.value))
            else:
                done = _Node(event.value)
            done.characters = len(event.value)
            if event.anchor is not None:
                anchors[event.anchor] = done
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            mark = _mark(event)
            if len(stack) >= MAX_DEPTH:
                raise YamlProblem(
                    *mark,
                    f"values nested deeper than {MAX_DEPTH} levels",
                    "flatten the document; workspace.yaml needs fewer than ten levels",
                )
            if event.tag and event.tag not in ("!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
                raise YamlProblem(*mark, f"the tag {short(event.tag)} is not supported", "remove the tag")
            is_map = kind is yaml.MappingStartEvent
            stack.append(_Open(_Node(PositionedMap() if is_map else PositionedList()), mark, event.anchor, is_map))
            continue
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            opened = stack.pop()
            done = opened.node
            if opened.merge_values:
                _merge(opened)
            if opened.anchor is not None:
                anchors[opened.anchor] = done
            mark = opened.mark
        elif kind is yaml.AliasEvent:
            mark = _mark(event)
            found = anchors.get(event.anchor)
            if found is None:
                raise YamlProblem(*mark, f"unknown alias *{event.anchor[:60]}", "define the anchor (&name) first")
            if len(stack) + found.height > MAX_DEPTH:
                raise YamlProblem(
                    *mark,
                    f"the alias *{event.anchor[:60]} nests values deeper than {MAX_DEPTH} levels",
                    "flatten the document or drop the alias",
                )
            done = found
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise YamlProblem(*_mark(event), "a second YAML document", "keep one document (remove the ---)")
            continue
        else:  # stream and document ends
            continue
        if not stack:
            result = done.value
            continue
        _add(stack[-1], done, mark)
    return result


def _add(parent: _Open, child: _Node, mark: Mark) -> None:
    node = parent.node
    if parent.is_map and not parent.has_key:
        key = child.value
        if isinstance(key, dict | list):
            raise YamlProblem(*mark, "a key must be a plain value, not a mapping or a list", "use a plain key")
        if isinstance(key, str) and len(key) > MAX_KEY_LENGTH:
            raise YamlProblem(
                *mark,
                f"a key of {len(key):,} characters ({short(key)}); keys are at most {MAX_KEY_LENGTH:,} characters",
                "use a short key",
            )
        if key is not _MERGE and key in node.value:
            first = node.value.positions[key][0]
            raise YamlProblem(
                *mark,
                f"duplicate key {short(key)} (first defined on line {first})",
                "keep one of the two keys; YAML keeps only the last silently, ws refuses",
            )
        parent.key, parent.key_mark, parent.has_key = key, mark, True
        return
    if parent.is_map:
        parent.has_key = False
        if parent.key is _MERGE:
            parent.merge_values.extend(_merge_values(child, mark))
            node.merges = max(node.merges, child.merges + 1)
            if node.merges > MAX_DEPTH:
                raise YamlProblem(
                    *mark,
                    f"merge keys (<<) nested deeper than {MAX_DEPTH} levels",
                    "merge fewer levels; write the keys out instead",
                )
            _grow(node, child, mark, nests=False)
            return
        node.value[parent.key] = child.value
        node.value.positions[parent.key] = parent.key_mark
    else:
        node.value.append(child.value)
        node.value.positions.append(mark)
        node.merges = max(node.merges, child.merges)  # a list of merged mappings is as deep as its deepest
    _grow(node, child, mark)


def _grow(node: _Node, child: _Node, mark: Mark, *, nests: bool = True) -> None:
    """Count a child's values into its parent (a merged mapping's keys sit at the parent's own level)."""
    node.size += child.size
    node.characters += child.characters
    node.height = max(node.height, child.height + nests)
    if node.characters > MAX_CHARACTERS:
        raise YamlProblem(
            *mark,
            f"the document expands to more than {MAX_CHARACTERS:,} characters of text (each use of an alias counts "
            "its text)",
            "use fewer aliases (*name) of long values; workspace.yaml never needs that much text",
        )
    if node.size > MAX_VALUES:
        raise YamlProblem(
            *mark,
            f"the document expands to more than {MAX_VALUES:,} values (each use of an alias counts its values)",
            "use fewer aliases (*name) and merge keys (<<); workspace.yaml never needs that many values",
        )


def _merge_values(child: _Node, mark: Mark) -> list[dict[Any, Any]]:
    if isinstance(child.value, dict):
        return [child.value]
    if isinstance(child.value, list) and all(isinstance(item, dict) for item in child.value):
        return list(child.value)
    raise YamlProblem(*mark, "a merge key (<<) takes a mapping or a list of mappings", "merge mappings only")


def _merge(opened: _Open) -> None:
    target: PositionedMap = opened.node.value
    for source in opened.merge_values:
        positions = getattr(source, "positions", {})
        for key, value in source.items():
            if key not in target:
                target[key] = value
                target.positions[key] = positions.get(key, opened.mark)


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, without ever rendering the whole value.

    Aliases can make a small file hold a value of billions of items; this walks only as far as it prints.
    """
    pieces: list[str] = []
    budget = [limit + 1]

    def emit(text: str) -> bool:
        pieces.append(text[: budget[0]])
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(item: Any, depth: int) -> bool:
        if depth > limit:
            return emit("...")
        if isinstance(item, str):
            text = repr(item[: limit + 2])
            if len(item) > limit + 2:
                text = text[:-1]
            return emit(text)
        if isinstance(item, dict):
            if not emit("{"):
                return False
            for index, (key, val) in enumerate(item.items()):
                if (index and not emit(", ")) or not walk(key, depth + 1) or not emit(": "):
                    return False
                if not walk(val, depth + 1):
                    return False
            return emit("}")
        if isinstance(item, list | tuple):
            if not emit("["):
                return False
            for index, val in enumerate(item):
                if (index and not emit(", ")) or not walk(val, depth + 1):
                    return False
            return emit("]")
        return emit(repr(item)[: limit + 1])

    walk(value, 0)
    text = "".join(pieces)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem:
    """A libyaml syntax error as a located problem, naming YAML's 1,024-character limit of a simple key."""
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
    if mark is not None and ("expected ':'" in what or "mapping values are not allowed" in what):
        start = exc.context_mark if "expected ':'" in what and exc.context_mark is not None else mark
        line_text = _line(text, start.line)
        key_column = len(line_text) - len(line_text.lstrip(" -?\t"))
        end = mark.column if start is mark else len(line_text)
        if end - key_column > MAX_KEY_LENGTH:
            return YamlProblem(
                start.line + 1,
                key_column + 1,
                f"a key longer than {MAX_KEY_LENGTH:,} characters, YAML's limit for a key written `key: value`",
                "use a short key",
            )
    if len(what) > 200:
        what = what[:197] + "..."
    return YamlProblem(line, column, f"YAML syntax error: {what}", "correct the YAML at that position")


def _line(text: str, index: int) -> str:
    start = 0
    for _ in range(index):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start : end if end >= 0 else len(text)]
