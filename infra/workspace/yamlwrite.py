"""The YAML writer of every generated workflow, action and rules file: block style, fixed layout, comments kept.

Generated files are built as :class:`YamlMap` / :class:`YamlSeq` trees (ordered, with the few comments they
carry) and written by :func:`dump` in one fixed layout: two-space mappings, sequences indented four with the dash
at two, ``|`` blocks for scripts, never a folded line. The layout is the one ruamel.yaml's round-trip dumper
gives with ``indent(mapping=2, sequence=4, offset=2)`` and ``width=4096``, byte for byte (a test compares both on
every generated file and on thousands of awkward strings) except that an end-of-line comment always follows two
spaces (ruamel used one or two, depending on the comments of neighbouring keys), but written directly: ruamel's pure-Python emitter
cost `ws check` most of its time, and this writer needs no YAML library at all for the strings generated files
hold. A string ruamel would write in a style this writer does not reproduce (non-ASCII or control characters,
a key over 128 characters) is handed to ruamel itself, imported only then.

Scalars follow YAML 1.2 as ruamel resolves it: a string is written plain only when it reads back as the same
string; otherwise it is single-quoted, or double-quoted with escapes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

_MAPPING_INDENT = 2
_SEQUENCE_OFFSET = 2  # where the dash sits, from the parent key's column
_SEQUENCE_INDENT = 4  # where an item's content starts

# Plain text ruamel writes as plain: ASCII letters, digits, spaces and punctuation that is no indicator here.
_PLAIN_BODY = re.compile(r"[A-Za-z0-9 !\"$%&'()*+,./:;<=>?@\[\\\]^_`{|}~#-]*")
_FIRST_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
# Text that reads back as something other than a string (ruamel's YAML 1.2 resolver, which looks at the numeric
# patterns only for text starting with one of _NUMERIC_FIRST).
_NOT_TEXT_WORDS = frozenset(("true", "True", "TRUE", "false", "False", "FALSE", "~", "null", "Null", "NULL", "<<", "="))
_NUMERIC_FIRST = frozenset("-+0123456789.")
_NUMERIC = re.compile(
    r"""(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
       (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)?)""",
    re.X,
)


class YamlMap(dict[str, Any]):
    """An ordered mapping for a generated file, with the comments it carries.

    The comment methods keep ruamel's names and meaning, so documents read the same way they were built before.
    """

    __slots__ = ("start_comment", "eol_comments", "before_comments")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_comment: str | None = None
        self.eol_comments: dict[str, str] = {}
        self.before_comments: dict[str, str] = {}

    def yaml_set_start_comment(self, comment: str) -> None:
        """Comment lines at the very top of the document (each line gets its ``# ``)."""
        self.start_comment = comment

    def yaml_add_eol_comment(self, comment: str, key: str) -> None:
        """``# comment`` at the end of ``key``'s line."""
        self.eol_comments[key] = comment.removeprefix("# ")

    def yaml_set_comment_before_after_key(self, key: str, before: str) -> None:
        """Comment lines just above ``key``."""
        self.before_comments[key] = before


class YamlSeq(list[Any]):
    """A block sequence in a generated file."""


class Literal(str):
    """A string written as a ``|`` block (scripts, PromQL): its lines appear exactly as they are."""

    __slots__ = ()


def dump(document: YamlMap | dict[str, Any]) -> str:
    """``document`` as YAML text: the fixed layout, its comments, and a final newline."""
    lines: list[str] = []
    start = getattr(document, "start_comment", None)
    if start is not None:
        lines.extend(_comment_lines(start, 0))
    if not document:
        lines.append("{}")
    else:
        _mapping_lines(document, 0, lines, first_prefix=None)
    if _ends_in_kept_newlines(document):
        lines.append("...")  # the document end marker, so the kept final blank lines stay the block's
    return "\n".join(lines) + "\n"


def _ends_in_kept_newlines(node: Any) -> bool:
    while isinstance(node, (dict, list)) and node:
        node = list(node.values())[-1] if isinstance(node, dict) else node[-1]
    return isinstance(node, Literal) and node.endswith("\n\n")


# --- layout ----------------------------------------------------------------------------------------------


def _comment_lines(text: str, column: int) -> Iterable[str]:
    return (" " * column + ("# " + line if line else "#") for line in text.split("\n"))


def _mapping_lines(node: dict[str, Any], column: int, lines: list[str], first_prefix: str | None) -> None:
    """The lines of mapping ``node`` whose keys start at ``column``.

    ``first_prefix``: the text that starts the first key's line instead of indentation (a sequence's dash).
    """
    eol = getattr(node, "eol_comments", {})
    before = getattr(node, "before_comments", {})
    for index, (key, value) in enumerate(node.items()):
        if not isinstance(key, str):
            raise TypeError(f"generated YAML keys are strings, not {type(key).__name__}: {key!r}")
        if key in before:
            lines.extend(_comment_lines(before[key], column))
        lead = first_prefix if index == 0 and first_prefix is not None else " " * column
        head = f"{lead}{_scalar(key, key=True)}:"
        comment = f"  # {eol[key]}" if key in eol else ""
        _value_lines(head, comment, value, column, lines, in_sequence=False)


def _sequence_lines(node: list[Any], column: int, lines: list[str]) -> None:
    """The items of ``node``, the dash at ``column``."""
    for item in node:
        dash = " " * column + "-" + " " * (_SEQUENCE_INDENT - _SEQUENCE_OFFSET - 1)
        content = column + _SEQUENCE_INDENT - _SEQUENCE_OFFSET
        if isinstance(item, dict) and item:
            _mapping_lines(item, content, lines, first_prefix=dash)
        elif isinstance(item, list) and item:
            raise TypeError("a sequence directly inside a sequence is not used in generated files")
        else:
            _value_lines(dash.rstrip(), "", item, content - _MAPPING_INDENT, lines, in_sequence=True)


def _value_lines(head: str, comment: str, value: Any, column: int, lines: list[str], *, in_sequence: bool) -> None:
    """``head`` (``key:`` or ``-``) followed by ``value``, whose block content is indented from ``column``."""
    if isinstance(value, dict):
        if value:
            lines.append(head + comment)
            _mapping_lines(value, column + _MAPPING_INDENT, lines, first_prefix=None)
        else:
            lines.append(f"{head} {{}}{comment}")
    elif isinstance(value, list):
        if value:
            lines.append(head + comment)
            _sequence_lines(value, column + _SEQUENCE_OFFSET, lines)
        else:
            lines.append(f"{head} []{comment}")
    elif isinstance(value, Literal) and _block_safe(value):
        indicator, body = _literal(value, column + _MAPPING_INDENT)
        lines.append(f"{head} {indicator}{comment}")
        lines.extend(body)
    elif isinstance(value, Literal):  # a character a | block cannot hold as it is: one escaped line instead
        lines.append(f"{head} {_double_quoted(value)}{comment}")
    elif value is None:  # an empty value, as ruamel writes it: nothing after a key, a space after a dash
        lines.append(head + (" " if in_sequence else "") + comment)
    else:
        lines.append(f"{head} {_scalar(value, key=False)}{comment}")


def _block_safe(text: str) -> bool:
    """Whether a ``|`` block reads back as ``text``: some content, no line break but \\n (NEL, U+2028 and U+2029
    are unprintable too), nothing unprintable but tabs."""
    if not text.strip("\n"):
        return False  # nothing but line breaks: a block would read back empty
    return text.replace("\n", "").replace("\t", "").isprintable()


def _double_quoted(text: str) -> str:
    """``text`` as one double-quoted line, every character outside printable ASCII escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _literal(text: str, column: int) -> tuple[str, list[str]]:
    """A ``|`` block's indicator and its lines at ``column``."""
    stripped = text.rstrip("\n")
    trailing = len(text) - len(stripped)
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    indent = str(_MAPPING_INDENT) if text[:1] in (" ", "\n") else ""  # the block's first line decides its indentation
    pad = " " * column
    body = [pad + line if line else "" for line in stripped.split("\n")]
    body.extend([""] * (trailing - 1))
    return "|" + indent + chomp, body


# --- scalars ---------------------------------------------------------------------------------------------


def _scalar(value: Any, *, key: bool) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _text(str(value), key)
    return _by_ruamel(value, key)


@functools.lru_cache(maxsize=8192)
def _text(value: str, key: bool) -> str:
    if not value.isprintable():  # line breaks, control characters: one escaped line (ruamel folds or mangles them)
        return _double_quoted(value)
    if not value.isascii() or (key and len(value) > 128):
        return _by_ruamel(value, key)
    if _plain(value):
        return value
    if "'" in value:  # as ruamel does: double quotes rather than doubled single quotes
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "'" + value + "'"


def _plain(value: str) -> bool:
    """Whether ``value`` (printable ASCII, one line) may be written without quotes and read back unchanged."""
    if not value or value[0] == " " or value[-1] == " " or value[0] in _FIRST_INDICATORS:
        return False
    if value[0] in "-?:" and (len(value) == 1 or value[1] == " "):
        return False
    if value.startswith(("---", "...")):
        return False
    if ": " in value or value.endswith(":") or " #" in value:
        return False
    if value in _NOT_TEXT_WORDS or (value[0] in _NUMERIC_FIRST and _NUMERIC.fullmatch(value)):
        return False
    return _PLAIN_BODY.fullmatch(value) is not None


def _by_ruamel(value: Any, key: bool) -> str:
    """How ruamel writes ``value`` as a key or as a value: for what this writer does not spell itself."""
    import io

    from ruamel.yaml import YAML  # only for rare strings: ruamel's import alone costs tens of milliseconds

    yaml = YAML(typ="rt")
    yaml.width = 4096
    buffer = io.StringIO()
    yaml.dump({value: 0} if key else {"k": value}, buffer)
    text = buffer.getvalue()
    if key:
        written = text.removesuffix(": 0\n")
    else:
        written = text.removeprefix("k:").removesuffix("\n").lstrip(" ")
    if "\n" in written:  # ruamel folded it over lines indented for where it stood: one escaped line instead
        if not isinstance(value, str):
            raise ValueError(f"a generated YAML scalar must fit on one line: {value!r}")
        return _double_quoted(value)
    return written
