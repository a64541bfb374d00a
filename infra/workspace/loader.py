"""Load workspace.yaml into the immutable model, turning every failure into located, fixable problems."""

from __future__ import annotations

import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML: its error classes (see yamlread)

from infra.errors import Problem, WorkspaceError, display_path
from infra.workspace import shape, yamlread
from infra.workspace.located import LoadedWorkspace, Loc, format_loc, position
from infra.workspace.model import NAME_PATTERN, Workspace
from infra.workspace.rules import rule_problems

DEFAULT_FILE = "workspace.yaml"


def parse_yaml(text: str, file: str) -> Any:
    """The round-trip (ruamel) document of ``text``, for files ws rewrites while keeping their comments.

    The text is read by the bounded reader first, so that aliases, nesting and key lengths are limited
    before the round-trip parser (slow, recursive) sees it.
    """
    # Imported here, not at the top: ruamel costs commands that only read workspace.yaml (`ws plan`) tens of ms.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    read_document(text, file)
    parser = YAML(typ="rt")
    parser.allow_duplicate_keys = False
    try:
        return parser.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise WorkspaceError(
            [Problem(file, line, column, "", f"YAML syntax error: {_short(what)}", "correct the YAML at that position")]
        ) from None
    except YAMLError as exc:
        raise WorkspaceError([Problem(file, 0, 0, "", f"YAML error: {_short(str(exc))}", "correct the YAML")]) from None


def read_document(text: str, file: str) -> Any:
    """The values of ``text`` (dicts and lists that know the positions of their keys), within the limits."""
    if len(text) > yamlread.MAX_BYTES:
        raise WorkspaceError(
            [Problem(file, 0, 0, "", f"larger than {yamlread.MAX_BYTES:,} characters, the limit", "use a smaller file")]
        )
    try:
        return yamlread.read(text)
    except yamlread.YamlProblem as exc:
        problem = exc
    except yaml.MarkedYAMLError as exc:
        problem = yamlread.syntax_problem(exc, text)
    except yaml.YAMLError as exc:  # the reader's errors (e.g. a control character) carry a character index
        index = getattr(exc, "position", None)
        line, column = _line_column(text, index) if isinstance(index, int) else (0, 0)
        what = getattr(exc, "reason", None) or str(exc)
        problem = yamlread.YamlProblem(line, column, f"YAML error: {_short(what)}", "correct the YAML")
    raise WorkspaceError([Problem(file, problem.line, problem.column, "", problem.message, problem.fix)]) from None


def read_text(path: Path, file: str) -> str:
    """The file's text: at most 2 MB of UTF-8, or a located problem."""
    try:
        with path.open("rb") as handle:
            data = handle.read(yamlread.MAX_BYTES + 1)
    except FileNotFoundError:
        raise WorkspaceError(
            [Problem(file, 0, 0, "", "file not found", "run ws from the folder holding workspace.yaml or pass -w")]
        ) from None
    except OSError as exc:
        raise WorkspaceError(
            [Problem(file, 0, 0, "", f"cannot read: {exc.strerror or exc}", "check the file")]
        ) from None
    if len(data) > yamlread.MAX_BYTES:
        limit = yamlread.MAX_BYTES
        raise WorkspaceError(
            [
                Problem(
                    file,
                    0,
                    0,
                    "",
                    f"the file is larger than {limit // (1024 * 1024)} MB ({limit:,} bytes), the limit of a workspace file",
                    "keep workspace.yaml to the declaration of the repos; it never needs megabytes",
                )
            ]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        raise WorkspaceError(
            [
                Problem(
                    file,
                    line,
                    column,
                    "",
                    f"byte 0x{data[exc.start]:02x} is not UTF-8 text",
                    "save the file as UTF-8 (or replace the character at that position)",
                )
            ]
        ) from None


def _line_column(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def find_workspace_file(path: Path | None) -> Path:
    if path is not None:
        return path
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_FILE
        if candidate.is_file():
            return candidate
    return here / DEFAULT_FILE


def load_workspace(path: Path | None = None, *, check_rules: bool = True) -> LoadedWorkspace:
    """Read, parse and validate workspace.yaml; raise :class:`WorkspaceError` with every problem found."""
    path = find_workspace_file(path)
    file = display_path(path)
    document = read_document(read_text(path, file), file)
    if not isinstance(document, dict):
        raise WorkspaceError(
            [Problem(file, 1, 1, "", "the top level must be a mapping", "start with `version: 1` and `name: ...`")]
        )
    try:
        model = shape.validate(Workspace, document)
    except shape.ShapeErrors as exc:
        raise WorkspaceError(_at_most(_validation_problems(exc.errors, document, file), file)) from None
    loaded = LoadedWorkspace(model, path, document)
    if check_rules:
        problems = rule_problems(loaded)
        if problems:
            raise WorkspaceError(_at_most(problems, file))
    return loaded


MAX_PROBLEMS = 50


def _at_most(problems: Iterable[Problem], file: str) -> list[Problem]:
    """The first problems and a count of the rest: a hostile file may hold a million mistakes."""
    kept: list[Problem] = []
    more = 0
    for problem in problems:
        if len(kept) < MAX_PROBLEMS:
            kept.append(problem)
        else:
            more += 1
    if more:
        kept.append(Problem(file, 0, 0, "", f"... and {more:,} more problems", "fix the ones above first"))
    return kept


# --- errors of the model's shape -> located problems ------------------------------------------------


def _validation_problems(errors: list[shape.ShapeError], document: Any, file: str) -> Iterable[Problem]:
    seen: set[tuple[str, str]] = set()
    for error in errors:
        loc = list(error.loc)
        kind = error.type
        key_is_bad = bool(loc) and loc[-1] == "[key]"
        if key_is_bad:
            loc = loc[:-1]
        if kind == "missing":
            message = f"missing required key {loc[-1]!r}"
            fix = f"add `{loc[-1]}:` here" + _describe(loc)
            where = loc[:-1]
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            import difflib  # here: only a document with an unknown key needs it

            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            message = f"unknown key {_short(loc[-1])}"
            fix = f"did you mean {close[0]!r}?" if close else f"allowed keys here: {', '.join(allowed)}"
            where = loc
        elif kind == "string_pattern_mismatch" and error.ctx.get("pattern") == NAME_PATTERN:
            message = f"{_short(error.input)} is not a safe name"
            fix = (
                "names must match ^[a-z][a-z0-9-]{0,62}$ (start with a lowercase letter; then lowercase letters,"
                " digits, hyphens) so they are safe in a shell, a Docker name and a YAML key"
            )
            where = loc
        elif kind in ("int_type", "float_type") and isinstance(error.input, bool):
            message = f"expected a number, got the boolean {str(error.input).lower()}"
            fix = "write a number; YAML reads true/false (unquoted) as booleans, and a boolean is not a number"
            where = loc
        elif kind == "string_type" and isinstance(error.input, int | float) and loc:
            value = error.input
            text = str(value).lower() if isinstance(value, bool) else str(value)
            message = f"expected text, got the {type(value).__name__.replace('bool', 'boolean')} {text}"
            fix = f'put the value in quotes so YAML reads it as text: {loc[-1]}: "{text}"'
            where = loc
        else:
            message = f"{error.msg} (got {_short(error.input)})"
            fix = _describe(loc) or "see workspace.schema.json for the expected shape"
            where = loc
        problem = Problem(file, *position(document, where), format_loc(loc), message, fix.lstrip("; "))
        if (problem.key, problem.message) not in seen:
            seen.add((problem.key, problem.message))
            yield problem


def _short(value: Any) -> str:
    """``repr`` of a value cut to 60 characters, never rendering it whole (an alias can make it huge)."""
    return yamlread.short(value)


def _model_at(loc: Loc) -> Any:
    """The type (model, mapping, list or scalar) that checks the value at ``loc``, or None off the model."""
    annotation: Any = Workspace
    for part in loc:
        annotation = shape.unwrap(annotation)
        if shape.is_model(annotation):
            field = shape.fields_of(annotation).get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    return shape.unwrap(annotation)


def _allowed_keys(loc: Loc) -> list[str]:
    model = _model_at(loc)
    return list(shape.fields_of(model)) if shape.is_model(model) else []


def _describe(loc: Loc) -> str:
    if not loc or shape.is_model(_model_at(loc)):
        return ""
    parent = _model_at(loc[:-1])
    if shape.is_model(parent):
        field = shape.fields_of(parent).get(str(loc[-1]))
        if field is not None and field.description:
            return f"; {loc[-1]}: {field.description}"
    return ""
