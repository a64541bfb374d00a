"""The shape of workspace.yaml, declared on plain classes and checked without a validation library.

The model (:mod:`infra.workspace.model`) is a tree of immutable :class:`Model` classes whose field types carry
their rules as ``Annotated`` metadata: ``Annotated[int, Ge(1), Le(65535), Doc("...")]``. :func:`validate` checks a
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
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Loc = tuple[str | int, ...]


# --- the model's base class -----------------------------------------------------------------------------


@typing.dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,))
class Model:
    """Base of the model's classes: keyword-only, immutable, compared and shown by their fields.

    What ``@dataclass(frozen=True, kw_only=True)`` gives, without its cost: the dataclass decorator compiles six
    methods per class at import (about a millisecond each class, tens of ms for the model), these are shared.
    A default is a class attribute or ``dataclasses.field(default_factory=...)``; a rule across the fields of one
    object is its ``__post_init__`` (raising ValueError).
    """

    __model_fields__: typing.ClassVar[tuple[tuple[str, Any, Any], ...]] = ()  # (name, default, factory)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs = list(cls.__model_fields__)  # a model's own fields follow its base model's
        # the class's own annotations (inspect is imported by dataclasses already; on Python 3.14 they are
        # evaluated lazily and no longer in the class's __dict__)
        for name, annotation in inspect.get_annotations(cls).items():
            if typing.get_origin(annotation) is typing.ClassVar or annotation is typing.ClassVar:
                continue
            default: Any = cls.__dict__.get(name, dataclasses.MISSING)
            factory: Any = dataclasses.MISSING
            if isinstance(default, dataclasses.Field):
                default, factory = default.default, default.default_factory
                if default is dataclasses.MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, default)
            specs.append((name, default, factory))
        cls.__model_fields__ = tuple(specs)

    def __init__(self, **values: Any) -> None:
        for name, default, factory in self.__model_fields__:
            if name in values:
                value = values.pop(name)
            elif factory is not dataclasses.MISSING:
                value = factory()
            elif default is not dataclasses.MISSING:
                value = default
            else:
                raise TypeError(f"{type(self).__name__}() is missing the keyword argument {name!r}")
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__}() got unknown keyword argument(s): {', '.join(map(repr, values))}")
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name, _, _ in self.__model_fields__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name, _, _ in self.__model_fields__)
        return f"{type(self).__name__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")


ModelT = TypeVar("ModelT", bound=Model)


def replace(model: ModelT, **changes: Any) -> ModelT:
    """A copy of ``model`` with ``changes`` (checked by its ``__post_init__``, not against its rules)."""
    values = {name: getattr(model, name) for name, _, _ in model.__model_fields__}
    return type(model)(**{**values, **changes})


# --- the rules, as Annotated metadata -----------------------------------------------------------------------


class Doc:
    """What the key means: the JSON schema's description and the fix of a problem at that key."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Alias:
    """The key in YAML, where the field's Python name differs (``schema_`` is written ``schema``)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


class Pattern:
    """The whole text matches ``regex`` (anchored with ``^...$``; ``$`` does not match before a final newline)."""

    __slots__ = ("regex",)

    def __init__(self, regex: str) -> None:
        self.regex = regex

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compiled(self.regex)


class Limit:
    """A bound on a number (Ge, Le, Gt) or on a length (MinLen, MaxLen: characters of text, items of a list or mapping)."""

    __slots__ = ("value",)

    def __init__(self, value: int | float) -> None:
        self.value = value


class Ge(Limit):
    pass


class Le(Limit):
    pass


class Gt(Limit):
    pass


class MinLen(Limit):
    pass


class MaxLen(Limit):
    pass


class Convert:
    """The value is checked and converted by ``function`` (a ValueError is the problem), described by ``schema``."""

    __slots__ = ("function", "schema")

    def __init__(self, function: Callable[[Any], Any], schema: dict[str, Any]) -> None:
        self.function = function
        self.schema = schema


_REGEXES: dict[str, re.Pattern[str]] = {}


def _compiled(regex: str) -> re.Pattern[str]:
    compiled = _REGEXES.get(regex)
    if compiled is None:
        # `$` at the end means the end of the text, as in JSON schema's (ECMAScript) regexes: not before a newline.
        compiled = _REGEXES[regex] = re.compile(regex[:-1] + r"\Z" if regex.endswith("$") else regex)
    return compiled


# --- errors ------------------------------------------------------------------------------------------------


class ShapeError:
    """One value that breaks the model: where it is, what kind of break (``type``), the message and the value."""

    __slots__ = ("loc", "type", "msg", "input", "ctx")

    def __init__(self, loc: Loc, type: str, msg: str, input: Any, ctx: dict[str, Any] | None = None) -> None:
        self.loc, self.type, self.msg, self.input, self.ctx = loc, type, msg, input, ctx or {}

    def __repr__(self) -> str:
        return f"ShapeError({self.loc!r}, {self.type!r}, {self.msg!r})"


class ShapeErrors(ValueError):
    """Every :class:`ShapeError` of one document."""

    def __init__(self, errors: list[ShapeError]) -> None:
        super().__init__(f"{len(errors)} problem(s), the first at {'.'.join(map(str, errors[0].loc))}: {errors[0].msg}")
        self.errors = errors


class _Bad:
    """The result of a value with an error (already recorded)."""


BAD: Any = _Bad()


# --- fields of a model -----------------------------------------------------------------------------------------


class FieldInfo:
    """One field of a model: its attribute, its key in YAML, its type and rules, its default."""

    __slots__ = ("name", "key", "annotation", "required", "default", "description")

    def __init__(
        self, name: str, key: str, annotation: Any, required: bool, default: Any, description: str | None
    ) -> None:
        self.name, self.key, self.annotation, self.required = name, key, annotation, required
        self.default = default  # dataclasses.MISSING when there is none or it comes from a factory
        self.description = description


_FIELDS: dict[type[Model], dict[str, FieldInfo]] = {}


def fields_of(model: type[Model]) -> dict[str, FieldInfo]:
    """The model's fields by their YAML key, in declaration order."""
    known = _FIELDS.get(model)
    if known is not None:
        return known
    found: dict[str, FieldInfo] = {}
    hints = typing.get_type_hints(model, include_extras=True)
    for name, default, factory in model.__model_fields__:
        annotation = hints[name]
        metadata = typing.get_args(annotation)[1:] if typing.get_origin(annotation) is typing.Annotated else ()
        key = next((m.key for m in metadata if isinstance(m, Alias)), name)
        description = next((m.text for m in metadata if isinstance(m, Doc)), None)
        required = default is dataclasses.MISSING and factory is dataclasses.MISSING
        found[key] = FieldInfo(name, key, annotation, required, default, description)
    _FIELDS[model] = found
    return found


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Model)


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
            error = _broken(limit, result, loc, value)
            if error is not None:
                errors.append(error)
                return BAD
        return result

    return limited


def _plural(count: int | float, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _broken(limit: Any, value: Any, loc: Loc, written: Any) -> ShapeError | None:
    """The error of ``value`` against one limit, or None when it holds; ``written`` is the value as the document
    has it (``0``, where the number checked is ``0.0``)."""
    if isinstance(limit, Pattern):
        if limit.compiled.search(value) is None:
            message = f"String should match pattern '{limit.regex}'"
            return ShapeError(loc, "string_pattern_mismatch", message, written, {"pattern": limit.regex})
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
        return ShapeError(loc, error_type, f"Input should be {words} {limit.value}", written)
    length = len(value)
    too_short = isinstance(limit, MinLen) and length < limit.value
    if not too_short and not (isinstance(limit, MaxLen) and length > limit.value):
        return None
    bound = "at least" if too_short else "at most"
    if isinstance(value, str):
        message = f"String should have {bound} {_plural(limit.value, 'character')}"
        return ShapeError(loc, "string_too_short" if too_short else "string_too_long", message, written)
    kind = "Dictionary" if isinstance(value, dict) else "List"
    message = f"{kind} should have {bound} {_plural(limit.value, 'item')} after validation, not {length}"
    return ShapeError(loc, "too_short" if too_short else "too_long", message, written)


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
        if not plan:  # built whole, then published: another thread sees it empty or complete
            plan[:] = [(f.key, f.name, _check_of(f.annotation), f.required) for f in fields_of(model).values()]
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
    if model.__doc__:
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
