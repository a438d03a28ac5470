"""FunctionTools schemas from type hints and docstrings, compared with literal schemas."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, Optional

import attrs
import pydantic
import pytest
from typing_extensions import TypedDict

from responseloop import FunctionTools, RequestContext
from responseloop.tools._schema import parse_docstring


def schema_of(fn: Any) -> dict[str, Any]:
    tools = FunctionTools()
    tools.tool(fn)
    return dict(tools.schemas()[0].parameters)


def obj(properties: dict[str, Any], required: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        **extra,
    }


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


class Address(TypedDict):
    street: str
    number: int


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


@attrs.define
class Box:
    label: str
    corners: list[Point]
    colour: Colour = Colour.RED


class Person(pydantic.BaseModel):
    name: str
    age: int | None = None


def test_scalars() -> None:
    def f(s: str, i: int, x: float, b: bool) -> None:
        pass

    assert schema_of(f) == obj(
        {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
        },
        ["s", "i", "x", "b"],
    )


def test_optional_and_defaults() -> None:
    def f(a: Optional[int], b: str | None = None, c: int = 3) -> None:  # noqa: UP045
        pass

    assert schema_of(f) == obj(
        {
            "a": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "c": {"type": "integer", "default": 3},
        },
        ["a"],
    )


def test_literal_and_enums() -> None:
    def f(mode: Literal["fast", "slow"], colour: Colour, size: Size) -> None:
        pass

    assert schema_of(f) == obj(
        {
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "colour": {"$ref": "#/$defs/Colour"},
            "size": {"$ref": "#/$defs/Size"},
        },
        ["mode", "colour", "size"],
        **{
            "$defs": {
                "Colour": {"type": "string", "enum": ["red", "green"]},
                "Size": {"type": "integer", "enum": [1, 2]},
            }
        },
    )


def test_lists_and_dicts() -> None:
    def f(ids: list[int], scores: dict[str, float], tags: list[Literal["a", "b"]]) -> None:
        pass

    assert schema_of(f) == obj(
        {
            "ids": {"type": "array", "items": {"type": "integer"}},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        },
        ["ids", "scores", "tags"],
    )


def test_typed_dict_dataclass_attrs_and_pydantic_models() -> None:
    def f(address: Address, where: Point, box: Box, people: list[Person]) -> None:
        pass

    point = {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
        "required": ["x"],
    }
    schema = schema_of(f)
    defs = schema.pop("$defs")
    assert schema == obj(
        {
            "address": {"$ref": "#/$defs/Address"},
            "where": {"$ref": "#/$defs/Point"},
            "box": {"$ref": "#/$defs/Box"},
            "people": {"type": "array", "items": {"$ref": "#/$defs/Person"}},
        },
        ["address", "where", "box", "people"],
    )
    # The function's "forbid extra arguments" reaches nested classes without their own
    # config (TypedDicts, dataclasses, attrs), not a pydantic model with its own.
    assert defs == {
        "Address": obj(
            {"street": {"type": "string"}, "number": {"type": "integer"}}, ["street", "number"]
        ),
        "Point": {**point, "additionalProperties": False},
        "Box": obj(
            {
                "label": {"type": "string"},
                "corners": {"type": "array", "items": {"$ref": "#/$defs/Point"}},
                "colour": {"$ref": "#/$defs/Colour", "default": "red"},
            },
            ["label", "corners"],
        ),
        "Colour": {"type": "string", "enum": ["red", "green"]},
        "Person": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            },
            "required": ["name"],
        },
    }


def test_docstring_gives_description_and_argument_descriptions() -> None:
    tools = FunctionTools()

    @tools.tool
    def weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        """Current weather of a city.

        Uses the national service.

        Args:
            city: the city's name,
                as people write it.
            unit (str): the temperature unit.

        Returns:
            a short report.
        """
        return city

    schema = tools.schemas()[0]
    assert schema.name == "weather"
    assert schema.description == "Current weather of a city.\n\nUses the national service."
    assert schema.parameters == obj(
        {
            "city": {"type": "string", "description": "the city's name, as people write it."},
            "unit": {
                "type": "string",
                "enum": ["C", "F"],
                "default": "C",
                "description": "the temperature unit.",
            },
        },
        ["city"],
    )


def test_sphinx_docstring() -> None:
    assert parse_docstring(
        """Add numbers.

        :param a: the first
            number.
        :param int b: the second.
        :returns: the sum.
        """
    ) == ("Add numbers.", {"a": "the first number.", "b": "the second."})


def test_explicit_name_description_and_flags() -> None:
    tools = FunctionTools()

    def f(ctx: RequestContext, a: int) -> int:
        return a

    tools.tool(f, name="renamed", description="Said so.", idempotent=True, strict=True)
    schema = tools.schemas()[0]
    assert (schema.name, schema.description, schema.idempotent, schema.strict) == (
        "renamed",
        "Said so.",
        True,
        True,
    )
    # The context parameter is not something the model fills in.
    assert schema.parameters == obj({"a": {"type": "integer"}}, ["a"])


def test_parameter_names_that_clash_with_pydantic_still_work() -> None:
    def f(schema: str, model_config: int, title: str) -> None:
        pass

    assert schema_of(f) == obj(
        {
            "schema": {"type": "string"},
            "model_config": {"type": "integer"},
            "title": {"type": "string"},
        },
        ["schema", "model_config", "title"],
    )


def test_registration_errors_are_clear() -> None:
    tools = FunctionTools()

    def f(*args: int) -> None:
        pass

    with pytest.raises(TypeError, match=r"\*args or \*\*kwargs"):
        tools.tool(f)

    def g(a: int) -> None:
        pass

    tools.tool(g)
    with pytest.raises(ValueError, match="already registered"):
        tools.tool(g)
    with pytest.raises(ValueError, match="timeout must be positive"):
        tools.tool(g, name="h", timeout=0)
    with pytest.raises(ValueError, match="needs a name"):
        tools.tool(lambda: None)


def test_without_pydantic_an_explicit_schema_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pydantic", None)
    tools = FunctionTools()

    def f(a: int) -> int:
        return a

    with pytest.raises(ImportError, match=r"responseloop\[pydantic\].*parameters="):
        tools.tool(f)
    explicit = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    tools.tool(f, parameters=explicit)
    assert tools.schemas()[0].parameters == explicit
