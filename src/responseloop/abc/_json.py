"""The JSON value type the loop's values carry, how an upstream's JSON text is parsed into
one, and the copy they make of a mapping.

This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn, TypeAlias

__all__ = ["JSON", "parse_json"]


JSON: TypeAlias = Any
"""A JSON value as :func:`json.loads` returns it (dict, list, str, int, float, bool, None)."""


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not a JSON value")


def parse_json(text: str | bytes) -> JSON:
    """``json.loads(text)``, refusing ``NaN`` and ``Infinity``: json.loads takes them, but
    they are not JSON, and no store can keep a value holding them.

    Raises:
        ValueError: ``text`` is not JSON.
    """
    return json.loads(text, parse_constant=_not_json)


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value is not None else {}
