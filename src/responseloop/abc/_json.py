"""The JSON value type the loop's values carry, and the copy they make of a mapping.

This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

__all__ = ["JSON"]


JSON: TypeAlias = Any
"""A JSON value as :func:`json.loads` returns it (dict, list, str, int, float, bool, None)."""


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value is not None else {}
