"""The argument checker (against the reference jsonschema implementation) and to_json."""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import attrs
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responseloop.tools._schema import check_arguments, to_json

jsonschema = pytest.importorskip("jsonschema", reason="the reference validator comes with mcp")

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"enum": ["x", "y"]},
        },
        "required": ["name"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {"v": {"anyOf": [{"type": "number"}, {"type": "null"}]}},
        "additionalProperties": {"type": "boolean"},
    },
    {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P"}},
        "$defs": {
            "P": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
        },
    },
    {"type": "object", "properties": {"k": {"const": 3}, "b": {"type": ["boolean", "string"]}}},
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False, width=16)
    | st.sampled_from(["x", "y", "z", ""]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["a", "name", "tags", "mode", "v", "p", "x", "k", "b", "other"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(schema=st.sampled_from(SCHEMAS), value=json_values)
def test_the_checker_agrees_with_jsonschema(schema: dict[str, Any], value: Any) -> None:
    reference = jsonschema.Draft202012Validator(schema).is_valid(value)
    assert (not check_arguments(schema, value)) == reference


class Mood(enum.Enum):
    GOOD = "good"


@dataclasses.dataclass
class Inner:
    mood: Mood


@attrs.frozen
class Outer:
    inner: Inner
    items: tuple[int, ...]


class Model(pydantic.BaseModel):
    count: int


def test_to_json_converts_common_python_values() -> None:
    value = {"outer": Outer(Inner(Mood.GOOD), (1, 2)), "model": Model(count=2), Mood.GOOD: {3}}
    assert to_json(value) == {
        "outer": {"inner": {"mood": "good"}, "items": [1, 2]},
        "model": {"count": 2},
        "good": [3],
    }
    assert to_json("text") == "text"
    assert to_json({1: None}) == {"1": None}


@pytest.mark.parametrize("value", [math.nan, math.inf, object(), {(1, 2): 3}, b"bytes"])
def test_to_json_refuses_values_with_no_json_form(value: Any) -> None:
    with pytest.raises(TypeError):
        to_json(value)
