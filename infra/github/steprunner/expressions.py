"""Expressions of GitHub Actions workflows (``${{ }}``), evaluated the way GitHub does, and the runner's error.

Literals, context properties, ``!``, comparisons, ``&&``/``||`` returning operand values, parentheses and the
functions listed in the package's docstring. Comparisons follow GitHub: strings case-insensitively, mixed types
as numbers.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import UsageError

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
STATUS_FUNCTIONS = ("success", "failure", "cancelled", "always")


class RunnerError(UsageError):
    """The workflow uses something this runner does not support, or is malformed (exit code 2)."""


@dataclass(frozen=True)
class Status:
    """What the status functions answer where an expression is evaluated."""

    success: bool
    failure: bool


@dataclass
class ExpressionScope:
    """Contexts and status for evaluating expressions at one place of a run."""

    contexts: dict[str, Any]
    status: Status
    workdir: Path

    def child(self, **contexts: Any) -> ExpressionScope:
        return ExpressionScope({**self.contexts, **contexts}, self.status, self.workdir)


_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?)|(?P<string>'(?:[^']|'')*')|(?P<ident>[A-Za-z_][A-Za-z0-9_-]*)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[!<>().,\[\]*]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    result = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise RunnerError(f"cannot parse expression {text!r} at {text[position:]!r}")
        kind = match.lastgroup or ""
        result.append((kind, match.group(kind)))
        position = match.end()
    return result


def to_text(value: Any) -> str:
    """How GitHub turns a value into a string when it is interpolated."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)


def truthy(value: Any) -> bool:
    if isinstance(value, float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, dict | list):
        return True
    return bool(value)


def number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value.strip() == "":
            return 0.0
        try:
            return float(value.strip())
        except ValueError:
            return math.nan
    return math.nan


def _same_kind(a: Any, b: Any) -> bool:
    def kind(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int | float):
            return "number"
        if isinstance(v, str):
            return "string"
        return "object"

    return kind(a) == kind(b)


def _equal(a: Any, b: Any) -> bool:
    if _same_kind(a, b):
        if isinstance(a, str):
            return a.casefold() == b.casefold()
        if isinstance(a, dict | list):
            return a is b
        return bool(a == b)
    return number(a) == number(b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.casefold()
        y: Any = b.casefold()
    else:
        x, y = number(a), number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


def _lookup(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        for name, item in value.items():
            if isinstance(name, str) and name.casefold() == key.casefold():
                return item
    return None


class _Parser:
    def __init__(self, text: str, scope: ExpressionScope) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0
        self.scope = scope

    def parse(self) -> Any:
        value = self.or_()
        if self.position != len(self.tokens):
            raise RunnerError(f"unexpected {self.tokens[self.position][1]!r} in expression {self.text!r}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise RunnerError(f"expression {self.text!r} ends too early")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise RunnerError(f"expected {expected!r}, found {token[1]!r} in expression {self.text!r}")
        self.position += 1
        return token

    def or_(self) -> Any:
        return self.chain("||", self.and_, lambda left, right: left if truthy(left) else right)

    def and_(self) -> Any:
        return self.chain("&&", self.comparison, lambda left, right: right if truthy(left) else left)

    def chain(self, operator: str, operand: Callable[[], Any], combine: Callable[[Any, Any], Any]) -> Any:
        """``operand (operator operand)*``, left to right; ``||`` and ``&&`` return an operand, as GitHub's do."""
        value = operand()
        while self.peek() == operator:
            self.take()
            value = combine(value, operand())
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            value = _compare(op, value, self.unary())
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "number":
            return float(text)
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind != "ident":
            raise RunnerError(f"unexpected {text!r} in expression {self.text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self.peek() == "(":
            return self.call(text)
        if text not in self.scope.contexts:
            raise RunnerError(f"unknown context {text!r} in expression {self.text!r}")
        value = self.scope.contexts[text]
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "ident":
                    raise RunnerError(f"expected a property name after '.' in expression {self.text!r}")
                value = _lookup(value, name)
            else:
                key = self.or_()
                self.take("]")
                value = value[int(number(key))] if isinstance(value, list) else _lookup(value, to_text(key))
        return value

    def call(self, name: str) -> Any:
        self.take("(")
        args: list[Any] = []
        while self.peek() != ")":
            args.append(self.or_())
            if self.peek() == ",":
                self.take()
        self.take(")")
        status = self.scope.status
        folded = name.casefold()
        if folded == "success":
            return status.success
        if folded == "failure":
            return status.failure
        if folded == "cancelled":
            return False
        if folded == "always":
            return True
        if folded == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_equal(item, needle) for item in haystack)
            return to_text(needle).casefold() in to_text(haystack).casefold()
        if folded == "startswith":
            return to_text(args[0]).casefold().startswith(to_text(args[1]).casefold())
        if folded == "endswith":
            return to_text(args[0]).casefold().endswith(to_text(args[1]).casefold())
        if folded == "format":
            text = to_text(args[0])
            for index, arg in enumerate(args[1:]):
                text = text.replace("{" + str(index) + "}", to_text(arg))
            return text
        if folded == "tojson":
            return json.dumps(args[0], indent=2)
        if folded == "hashfiles":
            return hash_files(self.scope.workdir, [to_text(a) for a in args])
        raise RunnerError(f"unsupported function {name}() in expression {self.text!r}")


def evaluate(text: str, scope: ExpressionScope) -> Any:
    """Evaluate one expression (the part inside ``${{ }}``)."""
    return _Parser(text, scope).parse()


def interpolate(value: Any, scope: ExpressionScope) -> str:
    """A YAML value with ``${{ }}`` expressions replaced by their text."""
    if not isinstance(value, str):
        return to_text(value)
    return EXPRESSION.sub(lambda match: to_text(evaluate(match.group(1), scope)), value)


def condition(value: Any, scope: ExpressionScope) -> bool:
    """An ``if:``: with or without ``${{ }}``; ``success()`` is implied without a status function."""
    if value is None:
        return scope.status.success
    if isinstance(value, bool):
        return value and scope.status.success
    text = str(value).strip()
    whole = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.DOTALL)
    if whole:
        text = whole.group(1)
    if not re.search(r"\b(" + "|".join(STATUS_FUNCTIONS) + r")\s*\(", text):
        text = f"success() && ({text})"
    return truthy(evaluate(text, scope))


def hash_files(workdir: Path, patterns: list[str]) -> str:
    """GitHub's hashFiles(): SHA-256 over the SHA-256 of each matching file; '' when none matches."""
    matches: list[Path] = []
    for pattern in patterns:
        for path in sorted(workdir.rglob("*")):
            if path.is_file() and fnmatch.fnmatch(path.relative_to(workdir).as_posix(), pattern):
                matches.append(path)
    if not matches:
        return ""
    outer = hashlib.sha256()
    for path in dict.fromkeys(matches):
        outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.hexdigest()
