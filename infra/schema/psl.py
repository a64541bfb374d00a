"""Prisma Schema Language: a lossless parser and a printer.

The parser covers the whole grammar: ``datasource``, ``generator``, ``model``, ``enum``, ``type`` and ``view``
blocks; ``//`` comments, ``/* */`` block comments and ``///`` doc comments, every one of them kept in the tree
(doc comments attach to the next block, field, value or ``@@`` attribute; a doc group followed by a blank line
stays a detached comment), as are blank lines; object arguments such as ``where: { a: { not: 1 } }``; field
types with ``?`` and ``[]`` and ``Unsupported("...")``; field and block attributes with any arguments
(functions, arrays, named arguments, nested calls such as ``[a(sort: Desc)]``); string escapes; trailing
commas and line breaks inside (...) or [...] are rejected as Prisma rejects them; multi-file schema folders
(one :class:`SchemaFile` per file, merged by :class:`Schema`).

Every node remembers its offsets in the source, so :func:`print_file` reproduces untouched blocks byte for
byte and re-renders only the blocks that were replaced; :func:`format_file` renders a whole file exactly as
``prisma format`` (Prisma 7) does: field and block attributes in Prisma's order, block attributes (with the
comments above them) after the fields, aligned columns, block comments as ``/** ... */``, one blank line
between top-level items and one final newline.
Syntax errors raise :class:`PslSyntaxError` naming ``file:line:column``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal, NamedTuple, Union

BLOCK_KINDS = ("datasource", "generator", "model", "enum", "type", "view")
SCALAR_TYPES = ("String", "Boolean", "Int", "BigInt", "Float", "Decimal", "DateTime", "Json", "Bytes")


class PslSyntaxError(Exception):
    """A schema file that is not valid Prisma Schema Language; the message names file:line:column."""

    def __init__(self, file: str, line: int, column: int, message: str, fix: str = "") -> None:
        self.file, self.line, self.column, self.message, self.fix = file, line, column, message, fix
        text = f"{file}:{line}:{column}: {message}"
        super().__init__(f"{text}. Fix: {fix}" if fix else text)


# --- expressions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Str:
    value: str
    raw: str  # as written, quotes included

    def text(self) -> str:
        return self.raw


@dataclass(frozen=True)
class Num:
    raw: str

    def text(self) -> str:
        return self.raw


@dataclass(frozen=True)
class Ident:
    name: str  # constants (true, Cascade, Desc) and field references

    def text(self) -> str:
        return self.name


@dataclass(frozen=True)
class Arg:
    name: str | None
    value: Expr

    def text(self) -> str:
        return f"{self.name}: {self.value.text()}" if self.name else self.value.text()


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Arg, ...]

    def text(self) -> str:
        return f"{self.name}({', '.join(a.text() for a in self.args)})"

    def arg(self, name: str, position: int | None = None) -> Expr | None:
        return find_arg(self.args, name, position)


@dataclass(frozen=True)
class Array:
    items: tuple[Expr, ...]

    def text(self) -> str:
        return "[" + ", ".join(i.text() for i in self.items) + "]"


@dataclass(frozen=True)
class Obj:
    """An object argument (Prisma 7 partial indexes: ``where: { status: { not: "x" } }``)."""

    items: tuple[tuple[str, Expr], ...]

    def text(self) -> str:
        if not self.items:
            return "{}"
        return "{ " + ", ".join(f"{k}: {v.text()}" for k, v in self.items) + " }"


Expr = Union[Str, Num, Ident, Call, Array, Obj]  # noqa: UP007  (a runtime alias used in isinstance-free code)


def find_arg(args: Sequence[Arg], name: str, position: int | None = None) -> Expr | None:
    """The argument called ``name``, else the unnamed one at ``position`` (Prisma's positional default)."""
    for arg in args:
        if arg.name == name:
            return arg.value
    if position is not None:
        unnamed = [a for a in args if a.name is None]
        if len(unnamed) > position:
            return unnamed[position].value
    return None


def names_of(expr: Expr | None) -> list[str]:
    """Field names listed in ``[a, b(sort: Desc)]`` (or a single ``a``)."""
    if expr is None:
        return []
    items = expr.items if isinstance(expr, Array) else (expr,)
    out = []
    for item in items:
        if isinstance(item, Ident):
            out.append(item.name)
        elif isinstance(item, Call):
            out.append(item.name)
    return out


# --- nodes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    name: str  # without @/@@: "id", "default", "db.VarChar", "@index" is stored as "index" with block=True
    args: tuple[Arg, ...]
    has_parens: bool
    block: bool
    line: int = 0
    column: int = 0
    doc: tuple[str, ...] = ()  # /// lines above an @@ attribute
    comment: str | None = None  # trailing comment of an @@ attribute line
    end: int = field(default=0, compare=False)  # offset just after the attribute (its ")" or its name)

    def text(self) -> str:
        prefix = "@@" if self.block else "@"
        if not self.has_parens:
            return prefix + self.name
        return f"{prefix}{self.name}({', '.join(a.text() for a in self.args)})"

    def arg(self, name: str, position: int | None = None) -> Expr | None:
        return find_arg(self.args, name, position)


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # "String", "Agent", or "Unsupported" (see unsupported)
    optional: bool
    list: bool
    attributes: tuple[Attribute, ...]
    doc: tuple[str, ...] = ()  # /// lines above, without the slashes
    comment: str | None = None  # trailing // comment, as written
    unsupported: str | None = None  # the string of Unsupported("...")
    line: int = 0
    column: int = 0
    type_end: int = field(default=0, compare=False)  # offset just after the type, its [] and ? included

    @property
    def type_text(self) -> str:
        base = f"Unsupported({json.dumps(self.unsupported)})" if self.unsupported is not None else self.type
        return base + ("[]" if self.list else "") + ("?" if self.optional else "")

    def attribute(self, name: str) -> Attribute | None:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        return None


@dataclass(frozen=True)
class EnumValue:
    name: str
    attributes: tuple[Attribute, ...]
    doc: tuple[str, ...] = ()
    comment: str | None = None
    line: int = 0
    column: int = 0

    def attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)


@dataclass(frozen=True)
class Assignment:
    key: str
    value: Expr
    doc: tuple[str, ...] = ()
    comment: str | None = None
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Comment:
    text: str  # the whole comment as written ("// ...", "/// ..." of a detached doc group, or "/* ... */")


@dataclass(frozen=True)
class Blank:
    pass


Member = Union[Field, EnumValue, Assignment, Attribute, Comment, Blank]  # noqa: UP007


@dataclass(frozen=True)
class Block:
    kind: Literal["datasource", "generator", "model", "enum", "type", "view"]
    name: str
    members: tuple[Member, ...]
    doc: tuple[str, ...] = ()
    file: str = ""
    line: int = 0
    column: int = 0
    start: int = 0  # offset of the first doc comment line (or the keyword)
    end: int = 0  # offset just after the closing brace

    @cached_property
    def fields(self) -> list[Field]:
        return [m for m in self.members if isinstance(m, Field)]

    @cached_property
    def values(self) -> list[EnumValue]:
        return [m for m in self.members if isinstance(m, EnumValue)]

    @cached_property
    def assignments(self) -> list[Assignment]:
        return [m for m in self.members if isinstance(m, Assignment)]

    @cached_property
    def block_attributes(self) -> list[Attribute]:
        return [m for m in self.members if isinstance(m, Attribute)]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def block_attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.block_attributes if a.name == name), None)

    def assignment(self, key: str) -> Expr | None:
        return next((a.value for a in self.assignments if a.key == key), None)


TopItem = Union[Block, Comment, Blank]  # noqa: UP007


@dataclass(frozen=True)
class SchemaFile:
    path: str
    text: str
    blocks: tuple[Block, ...]
    items: tuple[TopItem, ...] = ()  # every top-level block, comment and blank line, in order


@dataclass
class Schema:
    """All files of one schema (a single file or a folder) with lookups by block name."""

    files: list[SchemaFile] = field(default_factory=list)

    @property
    def blocks(self) -> Iterator[Block]:
        for f in self.files:
            yield from f.blocks

    def of_kind(self, *kinds: str) -> list[Block]:
        return [b for b in self.blocks if b.kind in kinds]

    @cached_property
    def models(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks if b.kind in ("model", "view")}

    @cached_property
    def enums(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks if b.kind == "enum"}

    @cached_property
    def types(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks if b.kind == "type"}

    def block(self, name: str) -> Block | None:
        return next((b for b in self.blocks if b.name == name and b.kind in ("model", "view", "enum", "type")), None)


# --- lexer ---------------------------------------------------------------------------------------------

TokenKind = Literal["ident", "string", "number", "punct", "newline", "comment", "doc", "block", "eof"]
_TOKEN = re.compile(  # whitespace before a token is skipped by the match; frequent kinds first
    r"[ \t\r\f\v\ufeff]*(?:"
    r"(?P<ident>[A-Za-z_][A-Za-z0-9_\-]*)"
    r"|(?P<punct>@@|[{}()\[\],:=?.@])"
    r"|(?P<newline>\n)"
    r"|(?P<string>\"(?:[^\"\\\n]|\\[^\n])*\")"
    r"|(?P<doc>///[^\n]*)"
    r"|(?P<comment>//[^\n]*)"
    r"|(?P<block>/\*(?s:.*?)\*/)"
    r"|(?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))"
    r"|(?P<open_block>/\*)"
    r"|(?P<open_string>\"(?:[^\"\\\n]|\\[^\n])*)"
    r"|(?P<bad>.)"
    r")?"
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "/": "/", "b": "\b", "f": "\f", "0": "\0"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")


class Token(NamedTuple):
    kind: TokenKind
    text: str
    value: str
    start: int
    end: int
    line: int
    column: int


def tokenize(text: str, file: str) -> list[Token]:
    tokens: list[Token] = []
    append = tokens.append
    line, line_start = 1, 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind is None:
            continue  # whitespace at the end of the text
        token_text = match.group(kind)
        end = match.end()
        start = end - len(token_text)
        column = start - line_start + 1
        if kind == "ident" or kind == "punct":
            append(Token(kind, token_text, token_text, start, end, line, column))  # type: ignore[arg-type]
            continue
        if kind == "string":
            value = _unescape(token_text, file, line, column) if "\\" in token_text else token_text[1:-1]
            append(Token("string", token_text, value, start, end, line, column))
            continue
        if kind == "open_string":
            raise PslSyntaxError(file, line, column, "unterminated string", 'close the string with " on the same line')
        if kind == "open_block":
            raise PslSyntaxError(file, line, column, "unterminated block comment", "close the comment with */")
        if kind == "block":
            append(Token("block", token_text, token_text, start, end, line, column))
            breaks = token_text.count("\n")
            if breaks:
                line += breaks
                line_start = start + token_text.rfind("\n") + 1
            continue
        if kind == "bad":
            raise PslSyntaxError(
                file, line, column, f"unexpected character {token_text!r}", "remove it or quote it inside a string"
            )
        append(Token(kind, token_text, token_text, start, end, line, column))  # type: ignore[arg-type]
        if kind == "newline":
            line += 1
            line_start = end
    append(Token("eof", "", "", len(text), len(text), line, len(text) - line_start + 1))
    return tokens


def _unescape(raw: str, file: str, line: int, column: int) -> str:
    def replace_escape(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] == "u" and len(code) == 5:
            return chr(int(code[1:], 16))
        if code in _ESCAPES:
            return _ESCAPES[code]
        raise PslSyntaxError(
            file,
            line,
            column + 1 + match.start(),
            f"unknown string escape \\{code}",
            'use \\", \\\\, \\n, \\t, \\r or \\uXXXX',
        )

    return _ESCAPE.sub(replace_escape, raw[1:-1])


# --- parser --------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.tokens = tokenize(text, file)
        self.pos = 0
        self.tok: Token = self.tokens[0]  # the current token (kept in step by advance)

    # token helpers
    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tok
        if token.kind != "eof":
            self.pos += 1
            self.tok = self.tokens[self.pos]
        return token

    def error(self, message: str, fix: str = "", token: Token | None = None) -> PslSyntaxError:
        token = token or self.tok
        return PslSyntaxError(self.file, token.line, token.column, message, fix)

    def describe(self, token: Token) -> str:
        return {"newline": "end of line", "eof": "end of file"}.get(token.kind, repr(token.text))

    def expect(self, text: str, fix: str = "") -> Token:
        if self.tok.text != text or self.tok.kind not in ("punct",):
            raise self.error(f"expected {text!r} but found {self.describe(self.tok)}", fix)
        return self.advance()

    def expect_ident(self, what: str) -> Token:
        if self.tok.kind != "ident":
            raise self.error(f"expected {what} but found {self.describe(self.tok)}")
        return self.advance()

    def skip_inline_space(self) -> None:
        """Prisma allows no line break (nor comment) inside (...) or [...]."""
        if self.tok.kind in ("newline", "comment", "doc", "block"):
            raise self.error(
                "line breaks are not allowed inside (...) or [...]",
                "keep the attribute, call or list on one line",
            )

    def trailing_comma(self, close: str) -> None:
        if self.tok.kind == "punct" and self.tok.text == close:
            raise self.error(
                "trailing commas are not valid in attribute arguments and lists", "remove the comma before " + close
            )

    # grammar
    def parse_file(self) -> SchemaFile:
        blocks: list[Block] = []
        items: list[TopItem] = []
        doc: list[str] = []
        doc_start: int | None = None

        def detach_doc() -> None:
            nonlocal doc, doc_start
            items.extend(Comment("///" + line) for line in doc)
            doc, doc_start = [], None

        while self.tok.kind != "eof":
            token = self.tok
            if token.kind == "newline":
                self.advance()
                if self.tok.kind == "newline":  # a blank line detaches doc comments
                    detach_doc()
                    if not items or not isinstance(items[-1], Blank):
                        items.append(Blank())
                continue
            if token.kind == "doc":
                if doc_start is None:
                    doc_start = token.start
                doc.append(token.text[3:])
                self.advance()
                continue
            if token.kind in ("comment", "block"):
                detach_doc()
                items.append(Comment(token.text))
                self.advance()
                continue
            if token.kind == "ident" and token.text in BLOCK_KINDS:
                block = self.parse_block(tuple(doc), doc_start)
                blocks.append(block)
                items.append(block)
                doc, doc_start = [], None
                continue
            raise self.error(
                f"expected a block (one of {', '.join(BLOCK_KINDS)}) but found {self.describe(token)}",
                "start each top-level declaration with model, enum, type, view, datasource or generator",
            )
        detach_doc()
        return SchemaFile(self.file, self.text, tuple(blocks), tuple(items))

    def parse_block(self, doc: tuple[str, ...], doc_start: int | None) -> Block:
        keyword = self.advance()
        kind = keyword.text
        name = self.expect_ident(f"a name after {kind!r}")
        self.expect("{", f"open the {kind} body with {{ on the same line")
        self.end_of_line(f"{kind} {name.text}")
        members: list[Member] = []
        pending_doc: list[str] = []

        def detach_doc() -> None:
            members.extend(Comment("///" + line) for line in pending_doc)
            pending_doc.clear()

        while True:
            token = self.tok
            if token.kind == "eof":
                raise self.error(
                    f"{kind} {name.text} (line {keyword.line}) is not closed", "add the closing } on its own line"
                )
            if token.kind == "punct" and token.text == "}":
                self.advance()
                break
            if token.kind == "newline":
                self.advance()
                detach_doc()
                if not members or not isinstance(members[-1], Blank):
                    members.append(Blank())
                continue
            if token.kind == "doc":
                pending_doc.append(token.text[3:])
                self.advance()
                self.end_of_line("doc comment")
                continue
            if token.kind == "comment":
                detach_doc()
                members.append(Comment(token.text))
                self.advance()
                self.end_of_line("comment")
                continue
            if token.kind == "block":
                detach_doc()
                members.append(Comment(token.text))
                self.advance()
                if self.tok.kind in ("newline", "comment", "doc", "block", "eof"):
                    self.end_of_line("comment")
                continue  # a block comment may precede a declaration on the same line
            if token.kind == "punct" and token.text == "@@":
                if kind in ("datasource", "generator"):
                    raise self.error(f"block attributes are not allowed in a {kind}")
                attribute = self.parse_attribute(block=True)
                comment = self.end_of_line(f"@@{attribute.name}")
                members.append(replace(attribute, doc=tuple(pending_doc), comment=comment))
                pending_doc.clear()
                continue
            if token.kind != "ident":
                raise self.error(
                    f"unexpected {self.describe(token)} in {kind} {name.text}",
                    "each line holds one field, value, key = value, @@attribute or comment",
                )
            if kind in ("datasource", "generator"):
                members.append(self.parse_assignment(tuple(pending_doc)))
            elif kind == "enum":
                members.append(self.parse_enum_value(tuple(pending_doc)))
            else:
                members.append(self.parse_field(tuple(pending_doc), f"{kind} {name.text}"))
            pending_doc.clear()
        detach_doc()
        # drop the Blank produced by the newline right after "{"
        trimmed = list(members)
        if trimmed and isinstance(trimmed[0], Blank):
            trimmed.pop(0)
        while trimmed and isinstance(trimmed[-1], Blank):
            trimmed.pop()
        end = self.tokens[self.pos - 1].end
        return Block(
            kind,  # type: ignore[arg-type]
            name.text,
            tuple(trimmed),
            doc,
            self.file,
            keyword.line,
            keyword.column,
            doc_start if doc_start is not None else keyword.start,
            end,
        )

    def end_of_line(self, after: str) -> str | None:
        """Consume one optional trailing comment (// or /* */, as Prisma allows) and the newline."""
        comment = None
        if self.tok.kind in ("comment", "doc", "block"):
            comment = self.advance().text
        if self.tok.kind == "newline":
            self.advance()
            return comment
        if self.tok.kind == "eof" or (self.tok.kind == "punct" and self.tok.text == "}"):
            return comment
        raise self.error(
            f"unexpected {self.describe(self.tok)} after {after}", "put one declaration per line", self.tok
        )

    def parse_assignment(self, doc: tuple[str, ...]) -> Assignment:
        key = self.advance()
        self.expect("=", f"write `{key.text} = value`")
        value = self.parse_expr()
        comment = self.end_of_line(key.text)
        return Assignment(key.text, value, doc, comment, key.line, key.column)

    def parse_enum_value(self, doc: tuple[str, ...]) -> EnumValue:
        name = self.advance()
        attributes: list[Attribute] = []
        while self.tok.kind == "punct" and self.tok.text == "@":
            attributes.append(self.parse_attribute(block=False))
        comment = self.end_of_line(name.text)
        return EnumValue(name.text, tuple(attributes), doc, comment, name.line, name.column)

    def parse_field(self, doc: tuple[str, ...], where: str) -> Field:
        name = self.advance()
        if self.tok.kind != "ident":
            raise self.error(
                f"field {name.text} of {where} has no type",
                f"write `{name.text} String` (or another type) on the same line",
                name,
            )
        type_token = self.advance()
        type_name = type_token.text
        unsupported: str | None = None
        if type_name == "Unsupported":
            self.expect("(", 'write Unsupported("native type")')
            if self.tok.kind != "string":
                raise self.error("Unsupported(...) takes one string", 'write Unsupported("circle")')
            unsupported = self.advance().value
            self.expect(")")
        is_list = optional = False
        if self.tok.kind == "punct" and self.tok.text == "[":
            self.advance()
            self.expect("]", f"write {type_name}[] for a list")
            is_list = True
        question = self.tok
        if self.tok.kind == "punct" and self.tok.text == "?":
            self.advance()
            optional = True
        type_end = self.tokens[self.pos - 1].end
        if is_list and optional:
            raise self.error(
                f"field {name.text}: a list cannot be optional", f"write {type_name}[] (lists are never null)", question
            )
        attributes: list[Attribute] = []
        while self.tok.kind == "punct" and self.tok.text == "@":
            attributes.append(self.parse_attribute(block=False))
        comment = self.end_of_line(f"field {name.text}")
        return Field(
            name.text,
            type_name,
            optional,
            is_list,
            tuple(attributes),
            doc,
            comment,
            unsupported,
            name.line,
            name.column,
            type_end,
        )

    def parse_attribute(self, *, block: bool) -> Attribute:
        at = self.advance()
        parts = [self.expect_ident("an attribute name").text]
        while self.tok.kind == "punct" and self.tok.text == "." and self.peek().kind == "ident":
            self.advance()
            parts.append(self.advance().text)
        has_parens = False
        args: tuple[Arg, ...] = ()
        if self.tok.kind == "punct" and self.tok.text == "(" and self.tok.start == self.tokens[self.pos - 1].end:
            has_parens = True
            args = self.parse_args()
        end = self.tokens[self.pos - 1].end
        return Attribute(".".join(parts), args, has_parens, block, at.line, at.column, end=end)

    def parse_args(self) -> tuple[Arg, ...]:
        open_token = self.expect("(")
        args: list[Arg] = []
        while True:
            self.skip_inline_space()
            if self.tok.kind == "punct" and self.tok.text == ")":
                self.advance()
                return tuple(args)
            if self.tok.kind == "eof":
                raise self.error(f"parenthesis opened on line {open_token.line} is not closed", "add )", open_token)
            name = None
            if self.tok.kind == "ident" and self.peek().kind == "punct" and self.peek().text == ":":
                name = self.advance().text
                self.advance()
                self.skip_inline_space()
            args.append(Arg(name, self.parse_expr()))
            self.skip_inline_space()
            if self.tok.kind == "punct" and self.tok.text == ",":
                self.advance()
                self.skip_inline_space()
                self.trailing_comma(")")
                continue
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.error(f"expected ',' or ')' but found {self.describe(self.tok)}", "separate arguments by ,")

    def parse_expr(self) -> Expr:
        token = self.tok
        if token.kind == "string":
            self.advance()
            return Str(token.value, token.text)
        if token.kind == "number":
            self.advance()
            return Num(token.text)
        if token.kind == "ident":
            self.advance()
            name = token.text
            while self.tok.kind == "punct" and self.tok.text == "." and self.peek().kind == "ident":
                self.advance()
                name += "." + self.advance().text
            if self.tok.kind == "punct" and self.tok.text == "(":
                return Call(name, self.parse_args())
            return Ident(name)
        if token.kind == "punct" and token.text == "{":
            self.advance()
            entries: list[tuple[str, Expr]] = []
            while True:
                self.skip_inline_space()
                if self.tok.kind == "punct" and self.tok.text == "}":
                    self.advance()
                    return Obj(tuple(entries))
                key = self.expect_ident("a key in { key: value }")
                self.expect(":", "write { key: value }")
                self.skip_inline_space()
                entries.append((key.text, self.parse_expr()))
                self.skip_inline_space()
                if self.tok.kind == "punct" and self.tok.text == ",":
                    self.advance()
                    continue
                if not (self.tok.kind == "punct" and self.tok.text == "}"):
                    raise self.error(f"expected ',' or '}}' but found {self.describe(self.tok)}", "separate by ,")
        if token.kind == "punct" and token.text == "[":
            self.advance()
            items: list[Expr] = []
            while True:
                self.skip_inline_space()
                if self.tok.kind == "punct" and self.tok.text == "]":
                    self.advance()
                    return Array(tuple(items))
                if self.tok.kind == "eof":
                    raise self.error(f"bracket opened on line {token.line} is not closed", "add ]", token)
                items.append(self.parse_expr())
                self.skip_inline_space()
                if self.tok.kind == "punct" and self.tok.text == ",":
                    self.advance()
                    self.skip_inline_space()
                    self.trailing_comma("]")
                    continue
                if not (self.tok.kind == "punct" and self.tok.text == "]"):
                    raise self.error(f"expected ',' or ']' but found {self.describe(self.tok)}", "separate items by ,")
        raise self.error(
            f"expected a value but found {self.describe(token)}",
            'a value is a "string", a number, a name, f(), or [..]',
        )


def parse(text: str, file: str = "schema.prisma") -> SchemaFile:
    """Parse one schema file; raise :class:`PslSyntaxError` (file:line:column) when it is not valid PSL."""
    return _Parser(text, file).parse_file()


def parse_schema(files: Iterable[tuple[str, str]]) -> Schema:
    """Parse every (path, text) of a schema (single file or folder) into one :class:`Schema`."""
    return Schema([parse(text, path) for path, text in files])


# --- printer -------------------------------------------------------------------------------------------


# prisma format's order of field and block attributes (others keep their place after these, db.* comes last)
FIELD_ATTRIBUTE_ORDER = ("id", "unique", "default", "updatedAt", "map", "relation", "ignore")
BLOCK_ATTRIBUTE_ORDER = ("id", "unique", "index", "fulltext", "map", "ignore", "schema", "shardKey")


def _field_attribute_rank(attribute: Attribute) -> int:
    if attribute.name in FIELD_ATTRIBUTE_ORDER:
        return FIELD_ATTRIBUTE_ORDER.index(attribute.name)
    return len(FIELD_ATTRIBUTE_ORDER) + (1 if attribute.name.startswith("db.") else 0)


def _block_attribute_rank(attribute: Attribute) -> int:
    if attribute.name in BLOCK_ATTRIBUTE_ORDER:
        return BLOCK_ATTRIBUTE_ORDER.index(attribute.name)
    return len(BLOCK_ATTRIBUTE_ORDER)


def _comment_lines(text: str, indent: str) -> list[str]:
    """A comment on its own line as prisma format writes it (block comments become ``/** ... */``)."""
    if not text.startswith("/*"):
        return [indent + text]  # trailing blanks stay, as prisma format keeps them
    inner = text[2:-2]
    lines = [line.strip() for line in inner.split("\n")]
    lines = [line[1:].strip() if line.startswith("*") else line for line in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return [indent + "/**", *[f"{indent} * {line}".rstrip() for line in lines], indent + " */"]


def render_block(block: Block) -> str:
    """One block exactly as ``prisma format`` writes it, doc comments included."""
    lines = [f"///{d}" for d in block.doc]
    lines.append(f"{block.kind} {block.name} {{")
    lines.extend(_member_rows(block))
    lines.append("}")
    return "\n".join(lines)


def _member_rows(block: Block) -> list[str]:
    # prisma format: fields/values/assignments and the comments and blank lines between them first (aligned in
    # groups that blank lines separate), then, after one blank line, the block attributes in Prisma's order,
    # each with the comments written right above it.
    body: list[Member] = []
    attributes: list[tuple[list[Comment], Attribute]] = []
    pending: list[Comment] = []
    for member in block.members:
        if isinstance(member, Comment):
            pending.append(member)
            continue
        if isinstance(member, Attribute):
            while body and isinstance(body[-1], Blank):
                body.pop()  # the blank lines above a block attribute go with it (a field after it joins its group)
            attributes.append((pending, member))
            pending = []
            continue
        body.extend(pending)
        pending = []
        body.append(member)
    body.extend(pending)
    cleaned: list[Member] = []
    for member in body:
        if isinstance(member, Blank) and (not cleaned or isinstance(cleaned[-1], Blank)):
            continue
        cleaned.append(member)
    while cleaned and isinstance(cleaned[-1], Blank):
        cleaned.pop()
    out: list[str] = []
    group: list[Member] = []

    def flush() -> None:
        rows: list[tuple[list[str], Field | EnumValue | Assignment]] = []
        for member in group:
            if isinstance(member, Field):
                attrs = sorted(member.attributes, key=_field_attribute_rank)
                rows.append(([member.name, member.type_text, " ".join(a.text() for a in attrs)], member))
            elif isinstance(member, EnumValue):
                rows.append(([member.name, " ".join(a.text() for a in member.attributes)], member))
            elif isinstance(member, Assignment):
                rows.append(([member.key, "= " + member.value.text()], member))
        widths = [0, 0, 0]
        for cells, _ in rows:
            for i, cell in enumerate(cells[:-1]):
                widths[i] = max(widths[i], len(cell))
        by_member = {id(m): cells for cells, m in rows}
        for member in group:
            if isinstance(member, Comment):
                out.extend(_comment_lines(member.text, "  "))
                continue
            cells = by_member[id(member)]
            out.extend(f"  ///{d}" for d in member.doc)  # type: ignore[union-attr]
            padded = [cell.ljust(widths[i]) if i < len(cells) - 1 else cell for i, cell in enumerate(cells)]
            text = " ".join(padded).rstrip()
            comment = member.comment  # type: ignore[union-attr]
            if comment:
                text += " " + comment
            out.append("  " + text)
        group.clear()

    for member in cleaned:
        if isinstance(member, Blank):
            flush()
            out.append("")
        else:
            group.append(member)
    flush()
    if attributes:
        if out:
            out.append("")
        for comments, attribute in sorted(attributes, key=lambda pair: _block_attribute_rank(pair[1])):
            for comment in comments:
                out.extend(_comment_lines(comment.text, "  "))
            out.extend(f"  ///{d}" for d in attribute.doc)
            text = "  " + attribute.text()
            out.append(text + (" " + attribute.comment if attribute.comment else ""))
    return out


def format_file(schema_file: SchemaFile) -> str:
    """The whole file as ``prisma format`` (Prisma 7) writes it."""
    out: list[str] = []
    previous: TopItem | None = None
    for item in schema_file.items:
        if isinstance(item, Blank):
            if out and out[-1] != "":
                out.append("")
        else:
            if isinstance(previous, Block) and out and out[-1] != "":
                out.append("")  # a blank line after every block
            if isinstance(item, Block):
                out.append(render_block(item))
            else:
                out.extend(_comment_lines(item.text, ""))
        previous = item
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def print_file(schema_file: SchemaFile, replacements: dict[int, Block | None] | None = None) -> str:
    """The file's text with the blocks at the given indexes re-rendered (None removes the block).

    Untouched blocks and everything between blocks are copied byte for byte.
    """
    replacements = replacements or {}
    text = schema_file.text
    out: list[str] = []
    pos = 0
    for index, block in enumerate(schema_file.blocks):
        if index not in replacements:
            continue
        new = replacements[index]
        out.append(text[pos : block.start])
        if new is None:
            pos = block.end
            if text[pos : pos + 1] == "\n":
                pos += 1
            while text[pos : pos + 1] == "\n" and (not out or out[-1].endswith("\n\n")):
                pos += 1
        else:
            out.append(render_block(new))
            pos = block.end
    out.append(text[pos:])
    return "".join(out)


def append_blocks(text: str, blocks: Sequence[Block]) -> str:
    """Text with rendered blocks appended at the end, separated by one blank line."""
    if not blocks:
        return text
    body = "\n\n".join(render_block(b) for b in blocks)
    stripped = text.rstrip("\n")
    return (stripped + "\n\n" if stripped else "") + body + "\n"


def with_members(block: Block, members: Sequence[Member]) -> Block:
    return replace(block, members=tuple(members))
