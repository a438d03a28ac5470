"""How stores turn payloads into JSON text and back."""

from __future__ import annotations

import json

from .._values import JSON
from ..exceptions import StoreError

__all__ = ["decode", "encode"]


def encode(value: JSON) -> str:
    """``value`` as JSON text, keeping every character and the order of keys.

    Raises :class:`StoreError` for a value JSON cannot carry (NaN, infinities, objects),
    so a payload that could not be persisted fails when it is stored, not when it is read.
    """
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"payload is not JSON-serialisable: {exc}") from exc


def decode(text: str | None) -> JSON:
    """The value of stored JSON text (``None`` for no text)."""
    return json.loads(text) if text is not None else None
