"""How stores turn payloads into JSON text and back."""

from __future__ import annotations

import collections
import json
import re
from typing import Any

from ..abc._json import JSON
from ..abc._known_texts import take_text
from ..abc._steps import StepState, StepUpdate
from ..exceptions import StoreError

__all__ = ["decode", "encode", "encode_step_update"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# Built once: json.dumps with any option set builds a new encoder on every call.
_TEXT = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_ASCII_TEXT = json.JSONEncoder(ensure_ascii=True, allow_nan=False).encode


def _has_lone_surrogate(text: str) -> bool:
    # Most payloads are ASCII, which isascii() settles at C speed; the search is slower.
    return not text.isascii() and _SURROGATE.search(text) is not None


# A model call's request holds the whole conversation so far, and each call's messages are
# the previous call's (the same objects: the transition extends its translation of the
# chain rather than rebuilding it) plus a few new ones. Encoding every request whole would
# cost O(messages) per step, O(n²) per response; so the text of each message is kept under
# the message object's identity, with a reference to it so the identity cannot be reused,
# and a request's text is joined from its messages' texts. Stored payloads are values:
# nothing mutates a mapping after handing it to a store. Bounded, least recently used out.
_MESSAGE_TEXTS: collections.OrderedDict[int, tuple[object, str, bool]] = collections.OrderedDict()
_MESSAGE_TEXTS_LIMIT = 4096
_FEW_MESSAGES = 8  # below this, one json.dumps is as cheap


def _message_text(message: object) -> tuple[str, bool]:
    """The JSON text of one message, and whether it holds a lone surrogate."""
    key = id(message)
    known = _MESSAGE_TEXTS.get(key)
    if known is not None and known[0] is message:
        _MESSAGE_TEXTS.move_to_end(key)
        return known[1], known[2]
    text = _TEXT(message)
    lone = _has_lone_surrogate(text)
    _MESSAGE_TEXTS[key] = (message, text, lone)
    if len(_MESSAGE_TEXTS) > _MESSAGE_TEXTS_LIMIT:
        _MESSAGE_TEXTS.popitem(last=False)
    return text, lone


def _request_text(value: dict[str, Any]) -> tuple[str, bool] | None:
    """``json.dumps(value, ensure_ascii=False)`` of a request with many messages, joined
    from its messages' known texts (byte for byte the same), or ``None`` where the shape
    does not allow it."""
    parts: list[str] = []
    lone = False
    for key, item in value.items():
        if type(key) is not str:
            return None  # json.dumps would turn it into a string its own way
        if key == "messages" and type(item) is list:
            texts = []
            for message in item:
                text, surrogate = _message_text(message)
                texts.append(text)
                lone = lone or surrogate
            encoded = "[" + ", ".join(texts) + "]"
        else:
            encoded = _TEXT(item)
            lone = lone or _has_lone_surrogate(encoded)
        parts.append(_TEXT(key) + ": " + encoded)
    return "{" + ", ".join(parts) + "}", lone or _has_lone_surrogate("".join(value))


def encode(value: JSON) -> str:
    """``value`` as JSON text, keeping every character and the order of keys.

    Raises :class:`StoreError` for a value JSON cannot carry (NaN, infinities, objects),
    so a payload that could not be persisted fails when it is stored, not when it is read.
    A text already noted for this very value (a model's reply as it arrived, a tool's
    result as it was checked) is taken instead of encoding the value again.
    """
    if type(value) is dict or type(value) is list:
        known = take_text(value)
        if known is not None and not _has_lone_surrogate(known):
            return known
    try:
        joined = None
        if type(value) is dict:
            messages = value.get("messages")
            if type(messages) is list and len(messages) >= _FEW_MESSAGES:
                joined = _request_text(value)
        if joined is not None:
            text, lone = joined
        else:
            text = _TEXT(value)
            lone = _has_lone_surrogate(text)
        if lone:
            # A lone surrogate (JSON allows "\ud800") has no UTF-8 form, so no database
            # could store the text: keep such strings escaped, which round-trips exactly.
            text = _ASCII_TEXT(value)
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
