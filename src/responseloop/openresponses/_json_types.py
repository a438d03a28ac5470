"""How a JSON value is named in an error message ("got an array")."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["type_name"]


def type_name(value: object) -> str:
    """``value``'s JSON type as an error message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
