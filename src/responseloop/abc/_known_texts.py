"""JSON texts already known for values the loop holds, so a store need not encode again.

A model's reply arrives as JSON text and is parsed; a tool's result is encoded once to
check it. The store that keeps either would otherwise encode the same value a second time,
and a model's reply is the largest payload a step stores. The text is noted under the
value's identity (with a reference to the value, so the identity cannot be reused) and
taken, once, by the store's encoder. Stored payloads are values: nothing mutates a mapping
after it is noted. Bounded, oldest out: a value no store encodes is forgotten.

This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

__all__ = ["remember_text", "take_text"]

_TEXTS: collections.OrderedDict[int, tuple[object, str]] = collections.OrderedDict()
# Between a value's note and its store write there is no await in the loop, so only a
# few values are ever waiting; the bound only limits what a store that never takes keeps.
_LIMIT = 256
_LOCK = threading.Lock()  # a durable store may encode on a worker thread


def remember_text(value: dict[str, Any] | list[Any], text: str) -> None:
    """Note that ``text`` is JSON text of ``value``: it decodes to a value equal to it,
    with nothing JSON cannot carry (no NaN or infinities)."""
    with _LOCK:
        _TEXTS[id(value)] = (value, text)
        if len(_TEXTS) > _LIMIT:
            _TEXTS.popitem(last=False)


def take_text(value: object) -> str | None:
    """The text noted for ``value`` (this very object), forgotten as it is taken; ``None``
    when none was noted."""
    # The note holds its value, so no other object can have that identity meanwhile.
    with _LOCK:
        known = _TEXTS.pop(id(value), None)
    return known[1] if known is not None else None
