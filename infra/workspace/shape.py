"""The shape of workspace.yaml, declared on plain dataclasses and checked without a validation library.

The model (:mod:`infra.workspace.model`) is a tree of frozen dataclasses whose field types carry their rules
as ``Annotated`` metadata: ``Annotated[int, Ge(1), Le(65535), Doc("...")]``. :func:`validate` checks a
document against them in strict mode (a value has the type it is written with: YAML's ``true`` is no port,
``"5"`` no number; unknown keys are refused) and collects every error, each with its location, a stable type
(``missing``, ``extra_forbidden``, ``string_pattern_mismatch``...) and a message; :func:`json_schema` writes
the same rules as a JSON schema for editors.

Why not pydantic: importing it and building the model's validators cost ``ws plan`` more time than the
command itself (issue 13: every command answers in under 0.3 s). The rules here are the few the model uses,
and their error types and messages are pydantic's, so that messages users learned keep their words.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

Loc = tuple[str | int, ...]


# --- the rules, as Annotated metadata -----------------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """What the key means: the JSON schema's description and the fix of a problem at that key."""

    text: str


@dataclass(frozen=True)
class Alias:
    """The key in YAML, where the field's Python name differs (``schema_`` is written ``schema``)."""

    key: str


@dataclass(frozen=True)
class Pattern:
    """The whole text matches ``regex`` (anchored with ``^...$``; ``$`` does not match before a final newline)."""

    regex: str

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compiled(self.regex)


@dataclass(frozen=True)
class Ge:
    value: int | float


@dataclass(frozen=True)
class Le:
    value: int | float


@dataclass(frozen=True)
class Gt:
    value: int | float


@dataclass(frozen=True)
class MinLen:
    """At least ``value`` characters (text) or items (a list or a mapping)."""

    value: int


@dataclass(frozen=True)
class MaxLen:
    value: int


@dataclass(frozen=True)
class Convert:
    """The value is checked and converted by ``function`` (a ValueError is the problem), described by ``schema``."""

    function: Callable[[Any], Any]
    schema: dict[str, Any] = dataclasses.field(hash=False, compare=False)


_REGEXES: dict[str, re.Pattern[str]] = {}


def _compiled(regex: str) -> re.Pattern[str]:
    compiled = _REGEXES.get(regex)
    if compiled is None:
        # `$` at the end means the end of the text, as in JSON schema's (ECMAScript) regexes: not before a newline.
        compiled = _REGEXES[regex] = re.compile(regex[:-1] + r"\Z" if regex.endswith("$") else regex)
    return compiled


# --- errors ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeError:
    """One value that breaks the model: where it is, what kind of break (``type``), the message and the value."""

    loc: Loc
    type: str
    msg: str
    input: Any
    ctx: dict[str, Any] = dataclasses.field(default_factory=dict)


class ShapeErrors(ValueError):
    """Every :class:`ShapeError` of one document."""

    def __init__(self, errors: list[ShapeError]) -> None:
        super().__init__(f"{len(errors)} problem(s), the first at {'.'.join(map(str, errors[0].loc))}: {errors[0].msg}")
        self.errors = errors


class _Bad:
    """The result of a value with an error (already recorded)."""


BAD: Any = _Bad()


# --- fields of a model -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldInfo:
    name: str  # the attribute
    key: str  # the key in YAML
    annotation: Any
    required: bool
    default: Any  # the default value, dataclasses.MISSING when there is none or it comes from a factory
    description: str | None


_FIELDS: dict[type, dict[str, FieldInfo]] = {}


def fields_of(model: type) -> dict[str, FieldInfo]:
    """The model's fields by their YAML key, in declaration order."""
    known = _FIELDS.get(model)
    if known is not None:
        return known
    found: dict[str, FieldInfo] = {}
    hints = typing.get_type_hints(model, include_extras=True)
    for field in dataclasses.fields(model):
        annotation = hints[field.name]
        metadata = typing.get_args(annotation)[1:] if typing.get_origin(annotation) is typing.Annotated else ()
        key = next((m.key for m in metadata if isinstance(m, Alias)), field.name)
        description = next((m.text for m in metadata if isinstance(m, Doc)), None)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        found[key] = FieldInfo(field.name, key, annotation, required, field.default, description)
    _FIELDS[model] = found
    return found


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def unwrap(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``: the model, dict or list a value is checked against."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


# --- validation ------------------------------------------------------------------------------------------------


Check = Callable[[Any, Loc, list[ShapeError]], Any]
_CHECKS: dict[Any, Check] = {}


M = TypeVar("M")


def validate(model: type[M], document: Any) -> M:
    """``document`` as an instance of ``model``; raise :class:`ShapeErrors` with every error found."""
    errors: list[ShapeError] = []
    value = _check_of(model)(document, (), errors)
    if errors:
        raise ShapeErrors(errors)
    assert isinstance(value, model)
    return value


def _check_of(annotation: Any) -> Check:
    check = _CHECKS.get(annotation)
    if check is None:
        check = _CHECKS[annotation] = _build(annotation)
    return check


def _build(annotation: Any) -> Check:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        return _annotated(base, metadata)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if len(members) != 2 or type(None) not in members:
            raise TypeError(f"unsupported union {annotation!r}: use Convert for anything but X | None")
        inner = _check_of(next(m for m in members if m is not type(None)))
        return lambda value, loc, errors: None if value is None else inner(value, loc, errors)
    if origin is typing.Literal:
        return _literal(typing.get_args(annotation))
    if origin is dict:
        return _mapping(*typing.get_args(annotation))
    if origin is list:
        return _sequence(typing.get_args(annotation)[0])
    if is_model(annotation):
        return _model(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"unsupported annotation {annotation!r}")


def _scalar(kind: str, accepts: Callable[[Any], bool], convert: Callable[[Any], Any] = lambda v: v) -> Check:
    message = f"Input should be a valid {kind}"
    error_type = {"string": "string_type", "integer": "int_type", "number": "float_type", "boolean": "bool_type"}[kind]

    def check(value: Any, loc: Loc, errors: list[ShapeError]) -> Any:
        if accepts(value):
            return convert(value)
        errors.append(ShapeError(loc, error_type, message, value))
        return BAD

    return check


_SCALARS: dict[Any, Check] = {
    str: _scalar("string", lambda v: type(v) is str),
    int: _scalar("integer", lambda v: type(v) is int),
    # strict, yet a whole number is a number: 5 is accepted for 5.0 (as pydantic's strict mode does)
    float: _scalar("number", lambda v: type(v) is float or type(v) is int, float),
    bool: _scalar("boolean", lambda v: type(v) is bool),
}


def _annotated(base: Any, metadata: Sequence[Any]) -> Check:
    convert = next((m.function for m in metadata if isinstance(m, Convert)), None)
    if convert is not None:

        def converted(value: Any, loc: Loc, errors: list[ShapeError]) -> Any:
            try:
                return convert(value)
            except ValueError as exc:
                errors.append(ShapeError(loc, "value_error", f"Value error, {exc}", value))
                return BAD

        return converted
    inner = _check_of(base)
    limits = [m for m in metadata if isinstance(m, Pattern | Ge | Le | Gt | MinLen | MaxLen)]
    if not limits:
        return inner

    def limited(value: Any, loc: Loc, errors: list[ShapeError]) -> Any:
        result = inner(value, loc, errors)
        if result is BAD or result is None:  # the limits of `Annotated[X | None, ...]` are X's
            return result
        for limit in limits:
            error = _broken(limit, result, loc)
            if error is not None:
                errors.append(error)
                return BAD
        return result

    return limited


def _plural(count: int | float, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _broken(limit: Any, value: Any, loc: Loc) -> ShapeError | None:
    """The error of ``value`` against one limit, or None when it holds."""
    if isinstance(limit, Pattern):
        if limit.compiled.search(value) is None:
            message = f"String should match pattern '{limit.regex}'"
            return ShapeError(loc, "string_pattern_mismatch", message, value, {"pattern": limit.regex})
        return None
    if isinstance(limit, Ge | Le | Gt):
        holds = {Ge: value >= limit.value, Le: value <= limit.value, Gt: value > limit.value}[type(limit)]
        if holds:
            return None
        error_type, words = {
            Ge: ("greater_than_equal", "greater than or equal to"),
            Le: ("less_than_equal", "less than or equal to"),
            Gt: ("greater_than", "greater than"),
        }[type(limit)]
        return ShapeError(loc, error_type, f"Input should be {words} {limit.value}", value)
    length = len(value)
    if isinstance(value, str):
        if isinstance(limit, MinLen) and length < limit.value:
            message = f"String should have at least {_plural(limit.value, 'character')}"
            return ShapeError(loc, "string_too_short", message, value)
        if isinstance(limit, MaxLen) and length > limit.value:
            message = f"String should have at most {_plural(limit.value, 'character')}"
            return ShapeError(loc, "string_too_long", message, value)
        return None
    kind = "Dictionary" if isinstance(value, dict) else "List"
    if isinstance(limit, MinLen) and length < limit.value:
        message = f"{kind} should have at least {_plural(limit.value, 'item')} after validation, not {length}"
        return ShapeError(loc, "too_short", message, value)
    if isinstance(limit, MaxLen) and length > limit.value:
        message = f"{kind} should have at most {_plural(limit.value, 'item')} after validation, not {length}"
        return ShapeError(loc, "too_long", message, value)
    return None


def _literal(choices: tuple[Any, ...]) -> Check:
    shown = [repr(c) for c in choices]
    expected = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    message = f"Input should be {expected}"

    def check(value: Any, loc: Loc, errors: list[ShapeError]) -> Any:
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return choice
        errors.append(ShapeError(loc, "literal_error", message, value, {"expected": expected}))
        return BAD

    return check


def _mapping(key_type: Any, value_type: Any) -> Check:
    check_key, check_value = _check_of(key_type), _check_of(value_type)

    def check(value: Any, loc: Loc, errors: list[ShapeError]) -> Any:
        if not isinstance(value, dict):
            errors.append(ShapeError(loc, "dict_type", "Input should be a valid dictionary", value))
            return BAD
        result = {}
        bad = False
        for key, item in value.items():
            checked_key = check_key(key, (*loc, key, "[key]"), errors)
            checked = check_value(item, (*loc, key), errors)
            if checked_key is BAD or checked is BAD:
                bad = True
            else:
                result[checked_key] = checked
        return BAD if bad else result

    return check


def _sequence(item_type: Any) -> Check:
    check_item = _check_of(item_type)

    def check(value: Any, loc: Loc, errors: list[ShapeError]) -> Any:
        if not isinstance(value, list):
            errors.append(ShapeError(loc, "list_type", "Input should be a valid list", value))
            return BAD
        result = [check_item(item, (*loc, index), errors) for index, item in enumerate(value)]
        return BAD if any(item is BAD for item in result) else result

    return check


def _model(model: type[Any]) -> Check:
    plan: list[tuple[str, str, Check, bool]] = []  # (key, attribute, check, required), filled on first use
    name = model.__name__
    message = f"Input should be a valid dictionary or instance of {name}"

    def check(value: Any, loc: Loc, errors: list[ShapeError]) -> Any:
        if not plan:
            plan.extend((f.key, f.name, _check_of(f.annotation), f.required) for f in fields_of(model).values())
        if not isinstance(value, dict):
            errors.append(ShapeError(loc, "model_type", message, value, {"class_name": name}))
            return BAD
        before = len(errors)
        arguments = {}
        for key, attribute, check_field, required in plan:
            if key in value:
                checked = check_field(value[key], (*loc, key), errors)
                if checked is not BAD:
                    arguments[attribute] = checked
            elif required:
                errors.append(ShapeError((*loc, key), "missing", "Field required", value))
        for key in value:
            if not isinstance(key, str) or key not in fields_of(model):
                errors.append(ShapeError((*loc, key), "extra_forbidden", "Extra inputs are not permitted", value[key]))
        if len(errors) > before:
            return BAD
        try:
            return model(**arguments)
        except ValueError as exc:  # a rule across fields, raised by the model's __post_init__
            errors.append(ShapeError(loc, "value_error", f"Value error, {exc}", value))
            return BAD

    return check


# --- JSON schema -----------------------------------------------------------------------------------------------


def json_schema(model: type[Any]) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of ``model``: every nested model once under ``$defs``."""
    definitions: dict[str, dict[str, Any]] = {}
    root = _model_schema(model, definitions)
    definitions.pop(model.__name__, None)
    return {**root, "$defs": dict(sorted(definitions.items()))} if definitions else root


def _model_schema(model: type[Any], definitions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for key, field in fields_of(model).items():
        schema = {**_schema_of(field.annotation, definitions), "title": key.replace("_", " ").title()}
        if field.description:
            schema["description"] = field.description
        if field.required:
            required.append(key)
        elif field.default is not dataclasses.MISSING:
            schema["default"] = field.default
        properties[key] = dict(sorted(schema.items()))
    schema = {"additionalProperties": False, "properties": properties, "title": model.__name__, "type": "object"}
    if model.__doc__ and not model.__doc__.startswith(f"{model.__name__}("):  # dataclass writes a signature
        schema["description"] = " ".join(model.__doc__.split())
    if required:
        schema["required"] = required
    return schema


def _schema_of(annotation: Any, definitions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        convert = next((m for m in metadata if isinstance(m, Convert)), None)
        if convert is not None:
            return dict(convert.schema)
        outer = _schema_of(base, definitions)
        # the limits of `Annotated[X | None, ...]` are X's: they go on X's branch
        schema = next((s for s in outer["anyOf"] if s != {"type": "null"}), outer) if "anyOf" in outer else outer
        items = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems")}
        short, long = items.get(schema.get("type", ""), ("minProperties", "maxProperties"))
        for limit in metadata:
            if isinstance(limit, Pattern):
                schema["pattern"] = limit.regex
            elif isinstance(limit, Ge | Le | Gt | MinLen | MaxLen):
                word = {Ge: "minimum", Le: "maximum", Gt: "exclusiveMinimum", MinLen: short, MaxLen: long}
                schema[word[type(limit)]] = limit.value
        return outer
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_of(member, definitions) for member in typing.get_args(annotation)]}
    if origin is typing.Literal:
        choices = list(typing.get_args(annotation))
        kind = {str: "string", int: "integer", bool: "boolean"}[type(choices[0])]
        return {"const": choices[0], "type": kind} if len(choices) == 1 else {"enum": choices, "type": kind}
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        schema = {"additionalProperties": _schema_of(value_type, definitions), "type": "object"}
        names = _schema_of(key_type, definitions)
        if set(names) != {"type"}:
            schema["propertyNames"] = names
        return schema
    if origin is list:
        return {"items": _schema_of(typing.get_args(annotation)[0], definitions), "type": "array"}
    if annotation is type(None):
        return {"type": "null"}
    if is_model(annotation):
        if annotation.__name__ not in definitions:
            definitions[annotation.__name__] = {}  # a placeholder while it is built: models may nest
            definitions[annotation.__name__] = _model_schema(annotation, definitions)
        return {"$ref": f"#/$defs/{annotation.__name__}"}
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[annotation]}
