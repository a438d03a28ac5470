"""How stores turn payloads into JSON text and back."""

from __future__ import annotations

import json
import re

from ..abc._json import JSON
from ..abc._steps import StepState, StepUpdate
from ..exceptions import StoreError

__all__ = ["decode", "encode", "encode_step_update"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def encode(value: JSON) -> str:
    """``value`` as JSON text, keeping every character and the order of keys.

    Raises :class:`StoreError` for a value JSON cannot carry (NaN, infinities, objects),
    so a payload that could not be persisted fails when it is stored, not when it is read.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        if _SURROGATE.search(text):
            # A lone surrogate (JSON allows "\ud800") has no UTF-8 form, so no database
            # could store the text: keep such strings escaped, which round-trips exactly.
            text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"payload is not JSON-serialisable: {exc}") from exc
    return text


def decode(text: str | None) -> JSON:
    """The value of stored JSON text (``None`` for no text)."""
    return json.loads(text) if text is not None else None


def encode_step_update(update: StepUpdate) -> tuple[str | None, str | None]:
    """The step's stored ``(response, error)`` texts after ``update``: a completed step
    keeps its payload and a failed one its error; every other move clears both.

    Raises :class:`StoreError` as :func:`encode` does.
    """
    response = encode(update.payload) if update.state is StepState.COMPLETED else None
    error = encode(update.error) if update.state is StepState.FAILED else None
    return response, error
