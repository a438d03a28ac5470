"""Server-sent events: decoding an upstream's stream, and encoding our own.

Pure: bytes in, events out (and back), no I/O. :class:`SSEDecoder` follows the WHATWG
event-stream grammar and takes the body in chunks cut anywhere, even inside a UTF-8
character or between the CR and LF of a line break.

Why not httpx-sse or ``httpx2.EventSource``: httpx-sse imports ``httpx`` (not ``httpx2``), so
it does not work here at all. httpx2's own ``EventSource`` parses well, but it reads the
body through async generators that are not closed when the reader stops early (at
``[DONE]``, or on a malformed chunk), which trio reports as a ``ResourceWarning`` per
stream; :class:`~responseloop.HttpxClient` must drive the body's iterator itself to end
it cleanly, and ``EventSource`` does not let it. This decoder is the small remainder.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from typing import Any

from .abc._http import ServerSentEvent
from .exceptions import UpstreamProtocolError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DONE_FRAME", "SSEDecoder", "encode_sse"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
"""The largest event (or unterminated line) a decoder buffers before giving up."""

DONE_FRAME = b"data: [DONE]\n\n"
"""The frame after a Responses stream's terminal event: the spec ends every stream with
the literal ``[DONE]``, and the ``openai`` SDKs stop reading at it."""


class SSEDecoder:
    """Turns the bytes of an event stream into :class:`ServerSentEvent` values.

    Feed the body with :meth:`feed` as it arrives; each call returns the events it
    completed. An event still open when the body ends is discarded, as the spec says, so
    a cut stream never yields half an event.

    Raises:
        UpstreamProtocolError: the body is not UTF-8, or one event grows past
            ``max_event_bytes`` (a stream without line breaks must not eat the memory).
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._max = max_event_bytes
        self._line = ""
        self._after_cr = False
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._size = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by ``chunk``, in order."""
        try:
            text = self._text.decode(chunk)
        except UnicodeDecodeError as exc:
            raise UpstreamProtocolError(f"the event stream is not UTF-8: {exc}") from None
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            # The LF of a CRLF whose CR ended the previous chunk: that line already ended.
            text = text[1:]
            self._after_cr = False
        if text:
            self._after_cr = text.endswith("\r")
        *lines, rest = _LINE_BREAK.split(text)
        events: list[ServerSentEvent] = []
        if lines:
            lines[0] = self._line + lines[0]
            self._line = ""
            for line in lines:
                event = self._line_done(line)
                if event is not None:
                    events.append(event)
        self._line += rest
        if self._size + len(self._line) > self._max:
            raise UpstreamProtocolError(f"an event of the stream exceeds {self._max} bytes")
        return events

    def _line_done(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, typically a keep-alive
        self._size += len(line)
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        # "retry" sets the reconnection delay of a browser EventSource; we never reconnect.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._size = [], "", 0
        if not data:
            return None
        return ServerSentEvent("\n".join(data), event or "message", self._last_id or None)


def encode_sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event carrying ``data`` as JSON, named ``event``.

    ``event`` defaults to ``data["type"]``, as the Responses stream requires (``event:``
    equals the payload's ``type``). Compact JSON escapes every line break inside strings,
    so one ``data:`` line always carries the whole payload.

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
    try:
        return f"event: {name}\ndata: {payload}\n\n".encode()
    except UnicodeEncodeError:
        # A string with no UTF-8 form (a lone surrogate an upstream or a tool produced)
        # goes escaped, which any JSON reader takes, rather than failing the stream.
        payload = json.dumps(data, separators=(",", ":"))
        return f"event: {name}\ndata: {payload}\n\n".encode()
