"""Load workspace.yaml into the immutable model, turning every failure into located, fixable problems."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from infra.errors import Problem, WorkspaceError, display_path
from infra.workspace.located import LoadedWorkspace, Loc, format_loc, position
from infra.workspace.model import NAME_PATTERN, Workspace
from infra.workspace.rules import rule_problems

DEFAULT_FILE = "workspace.yaml"


def parse_yaml(text: str, file: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        if "duplicate key" in what:
            key = str(exc.problem).split('"')[1] if '"' in str(exc.problem) else ""
            first = exc.context_mark
            first_line = first.line + 1 if first else 0
            raise WorkspaceError(
                [
                    Problem(
                        file,
                        line,
                        column,
                        key,
                        f"duplicate key {key!r} (first defined in the mapping starting on line {first_line})",
                        "keep one of the two keys; YAML keeps only the last silently, ws refuses",
                    )
                ]
            ) from None
        raise WorkspaceError(
            [Problem(file, line, column, "", f"YAML syntax error: {what}", "correct the YAML at that position")]
        ) from None
    except YAMLError as exc:
        raise WorkspaceError([Problem(file, 0, 0, "", f"YAML error: {exc}", "correct the YAML")]) from None


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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkspaceError(
            [Problem(file, 0, 0, "", "file not found", "run ws from the folder holding workspace.yaml or pass -w")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkspaceError([Problem(file, 0, 0, "", f"cannot read: {exc}", "check the file")]) from None
    document = parse_yaml(text, file)
    if not isinstance(document, CommentedMap):
        raise WorkspaceError(
            [Problem(file, 1, 1, "", "the top level must be a mapping", "start with `version: 1` and `name: ...`")]
        )
    try:
        model = Workspace.model_validate(document)
    except ValidationError as exc:
        raise WorkspaceError(list(_validation_problems(exc, document, file))) from None
    loaded = LoadedWorkspace(model, path, document)
    if check_rules:
        problems = rule_problems(loaded)
        if problems:
            raise WorkspaceError(problems)
    return loaded


# --- pydantic errors -> located problems -------------------------------------------------------------


def _validation_problems(exc: ValidationError, document: Any, file: str) -> Iterable[Problem]:
    seen: set[tuple[str, str]] = set()
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        kind = error["type"]
        key_is_bad = bool(loc) and loc[-1] == "[key]"
        if key_is_bad:
            loc = loc[:-1]
        if kind == "missing":
            message = f"missing required key {loc[-1]!r}"
            fix = f"add `{loc[-1]}:` here" + _describe(loc)
            where = loc[:-1]
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            message = f"unknown key {loc[-1]!r}"
            fix = f"did you mean {close[0]!r}?" if close else f"allowed keys here: {', '.join(allowed)}"
            where = loc
        elif kind == "string_pattern_mismatch" and error["ctx"].get("pattern") == NAME_PATTERN:
            message = f"{error['input']!r} is not a safe name"
            fix = (
                "names must match ^[a-z][a-z0-9-]{0,62}$ (start with a lowercase letter; then lowercase letters,"
                " digits, hyphens) so they are safe in a shell, a Docker name and a YAML key"
            )
            where = loc
        else:
            message = f"{error['msg']} (got {_short(error.get('input'))})"
            fix = _describe(loc) or "see workspace.schema.json for the expected shape"
            where = loc
        problem = Problem(file, *position(document, where), format_loc(loc), message, fix.lstrip("; "))
        if (problem.key, problem.message) not in seen:
            seen.add((problem.key, problem.message))
            yield problem


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(loc: Loc) -> Any:
    """The annotation that validates the value at ``loc`` (walking models, dicts and lists)."""
    annotation: Any = Workspace
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = next(
                (f for name, f in annotation.model_fields.items() if (f.alias or name) == part),
                None,
            )
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    return _unwrap(annotation)


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(models) != 1:
                return annotation
            annotation = models[0]
        else:
            return annotation


def _allowed_keys(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _describe(loc: Loc) -> str:
    model = _model_at(loc)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return ""
    parent = _model_at(loc[:-1])
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        for name, f in parent.model_fields.items():
            if (f.alias or name) == loc[-1] and f.description:
                return f"; {loc[-1]}: {f.description}"
    return ""
