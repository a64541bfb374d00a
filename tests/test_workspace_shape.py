"""infra.workspace.shape: the model's rules, checked strictly, every error collected, and the same rules as JSON schema."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

import jsonschema
import pytest

from infra.workspace import shape, yamlread
from infra.workspace.model import Workspace
from infra.workspace.shape import Alias, Doc, Ge, Gt, Le, MaxLen, MinLen, Model, Pattern, ShapeErrors


class Probe(Model):
    path: Annotated[str, Pattern(r"^/[a-z]*$")] = "/"
    timeout: Annotated[float, Gt(0)] = 1.0


class Box(Model):
    """A test model."""

    name: Annotated[str, Pattern(r"^[a-z]+$"), MaxLen(8), Doc("Its name.")]
    size: Annotated[int, Ge(1), Le(10)] = 1
    limit: Annotated[int | None, Ge(5)] = None
    kind: Literal["a", "b"] = "a"
    version: Literal[1] = 1
    on: bool = False
    tags: Annotated[list[str], MinLen(1)] = field(default_factory=lambda: ["x"])
    labels: dict[Annotated[str, Pattern(r"^[A-Z]+$")], int] = field(default_factory=dict)
    probe: Probe = field(default_factory=Probe)
    class_: Annotated[str | None, Alias("class")] = None

    def __post_init__(self) -> None:
        if self.kind == "b" and self.size < 2:
            raise ValueError("kind b needs size 2 or more")


def errors_of(document: Any) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ShapeErrors) as caught:
        shape.validate(Box, document)
    return [(error.loc, error.type) for error in caught.value.errors]


def test_a_valid_document_becomes_the_model_with_plain_containers() -> None:
    document = yamlread.read("name: box\ntags: [a]\nlabels: {A: 1}\nprobe: {timeout: 2}\nclass: k\n")
    box = shape.validate(Box, document)
    assert box == Box(name="box", tags=["a"], labels={"A": 1}, probe=Probe(timeout=2.0), class_="k")
    assert type(box.labels) is dict and type(box.tags) is list  # not the reader's positioned containers
    assert type(box.probe.timeout) is float  # a whole number is accepted for a number, as a float


def test_every_error_is_collected_with_its_location_and_type() -> None:
    document = {
        "name": "Box\n",
        "size": True,
        "limit": 3,
        "kind": "c",
        "version": True,
        "on": 1,
        "tags": [],
        "labels": {"a": 1, "B": "2"},
        "probe": {"path": "/x\n", "timeout": 0, "extra": 1},
        "colour": "red",
    }
    assert errors_of(document) == [
        (("name",), "string_pattern_mismatch"),  # `$` does not match before a final newline
        (("size",), "int_type"),  # YAML's true is no number
        (("limit",), "greater_than_equal"),
        (("kind",), "literal_error"),
        (("version",), "literal_error"),  # true == 1 in Python, yet it is no version
        (("on",), "bool_type"),
        (("tags",), "too_short"),
        (("labels", "a", "[key]"), "string_pattern_mismatch"),
        (("labels", "B"), "int_type"),
        (("probe", "path"), "string_pattern_mismatch"),
        (("probe", "timeout"), "greater_than"),
        (("probe", "extra"), "extra_forbidden"),
        (("colour",), "extra_forbidden"),
    ]


def test_missing_keys_wrong_containers_and_rules_across_fields() -> None:
    assert errors_of({}) == [(("name",), "missing")]
    assert errors_of([]) == [((), "model_type")]
    assert errors_of({"name": "b", "tags": "x", "labels": []}) == [(("tags",), "list_type"), (("labels",), "dict_type")]
    assert errors_of({"name": "box", "kind": "b"}) == [((), "value_error")]  # __post_init__, once fields are valid
    assert errors_of({"name": "toolongname"}) == [(("name",), "string_too_long")]
    assert errors_of({"name": "box", "schema_": 1, "class_": "k"}) == [
        (("schema_",), "extra_forbidden"),
        (("class_",), "extra_forbidden"),
    ]


def test_messages_keep_the_words_users_know() -> None:
    with pytest.raises(ShapeErrors) as caught:
        shape.validate(Box, {"name": "box", "kind": "c", "size": 11, "tags": []})
    assert [error.msg for error in caught.value.errors] == [
        "Input should be less than or equal to 10",
        "Input should be 'a' or 'b'",
        "List should have at least 1 item after validation, not 0",
    ]


def test_the_json_schema_accepts_and_refuses_as_the_validator_does() -> None:
    schema = shape.json_schema(Box)
    assert schema["properties"]["name"]["description"] == "Its name."
    assert schema["properties"]["limit"]["anyOf"][0] == {"minimum": 5, "type": "integer"}
    assert "class" in schema["properties"] and "class_" not in schema["properties"]
    good = {"name": "box", "limit": 5, "labels": {"A": 1}, "probe": {"path": "/a"}, "class": "k"}
    shape.validate(Box, good)
    jsonschema.validate(good, schema)
    for bad in ({**good, "limit": 4}, {**good, "labels": {"a": 1}}, {**good, "probe": {"x": 1}}, {"size": 1}):
        with pytest.raises(ShapeErrors):
            shape.validate(Box, bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_the_workspace_model_has_a_check_for_every_annotation() -> None:
    """Every field type of the real model is one the validator knows (an unknown one would raise TypeError)."""
    seen = {Workspace}
    todo = [Workspace]
    while todo:
        model = todo.pop()
        for info in shape.fields_of(model).values():
            shape._check_of(info.annotation)
            inner = shape.unwrap(info.annotation)
            for candidate in (inner, *getattr(inner, "__args__", ())):
                candidate = shape.unwrap(candidate)
                if shape.is_model(candidate) and candidate not in seen:
                    seen.add(candidate)
                    todo.append(candidate)
    assert len(seen) > 20


def test_a_model_is_immutable_compared_by_its_fields_and_checked_by_its_post_init() -> None:
    import dataclasses

    box = Box(name="box", size=3)
    assert box == Box(name="box", size=3) and box != Box(name="box", size=4)
    assert repr(Probe()) == "Probe(path='/', timeout=1.0)"
    assert hash(Probe()) == hash(Probe())
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.size = 4  # type: ignore[misc]
    assert box.tags == ["x"] and box.tags is not Box(name="box").tags  # a factory gives each its own
    with pytest.raises(TypeError, match="missing the keyword argument 'name'"):
        Box()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown keyword argument"):
        Box(name="box", colour="red")  # type: ignore[call-arg]
    assert shape.replace(box, size=5) == Box(name="box", size=5)
    with pytest.raises(ValueError, match="kind b needs size 2"):
        shape.replace(box, kind="b", size=1)


def test_an_error_shows_the_value_as_written_not_as_converted() -> None:
    with pytest.raises(ShapeErrors) as caught:
        shape.validate(Box, {"name": "box", "probe": {"timeout": 0}})
    (error,) = caught.value.errors
    assert error.type == "greater_than" and error.input == 0 and type(error.input) is int
