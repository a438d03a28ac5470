"""Encoding of server-sent events, the framing of a ``stream: true`` response.

Pure: a value in, bytes out. Each event is ``event: <type>`` and one ``data:`` line of
compact JSON, then a blank line. Compact JSON escapes every newline inside strings, so one
``data:`` line always carries the whole payload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["encode_sse"]


def encode_sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event carrying ``data`` as JSON, named ``event``.

    ``event`` defaults to ``data["type"]``, as the Responses stream requires (``event:``
    equals the payload's ``type``).

    Raises:
        ValueError: there is no event name, or it contains a line break (which would end
            the field early and let the payload forge events).
    """
    name = event if event is not None else data.get("type")
    if not isinstance(name, str) or not name:
        raise ValueError("a server-sent event needs a name: pass event= or a 'type' in data")
    if "\n" in name or "\r" in name:
        raise ValueError(f"an event name cannot contain a line break: {name!r}")
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {payload}\n\n".encode()
