"""Validation of every object the server emits, in every test, in-process.

:func:`checking_emissions` wraps the one place every HTTP adapter gets its answers from
(:meth:`ResponsesRoutes.handle`): a JSON Response body is checked with
:func:`check_emitted_response`; an SSE stream is checked frame by frame as it is read
(:func:`check_emitted_event`) and, when it was read to its end, as a whole (the grammar
of :func:`check_emitted_stream`). ``tests/conftest.py`` applies it to every test; a test that
deliberately makes the server emit broken objects opts out with
``@pytest.mark.wire_unchecked``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from responseloop._sse import SSEDecoder
from responseloop.adapters import _routes
from responseloop.adapters._routes import EventFrames, JsonReply, ResponsesRoutes, StreamReply
from responseloop.asgi import _app
from tests.wire_checks import check_emitted_event, check_emitted_response, check_stream_grammar

__all__ = ["checking_emissions"]


class _Recorder:
    """Decodes the frames of one stream, checking each event as it passes."""

    def __init__(self, *, resumed: bool) -> None:
        self._decoder = SSEDecoder()
        self._resumed = resumed
        self.events: list[dict[str, Any]] = []
        self.done = False

    def feed(self, frame: bytes) -> None:
        for sse in self._decoder.feed(frame):
            assert not self.done, "the stream went on after 'data: [DONE]'"
            if sse.data == "[DONE]":
                self.done = True
                continue
            event = json.loads(sse.data)
            assert sse.event == event.get("type"), (
                f"the SSE event name {sse.event!r} is not the payload's type {event.get('type')!r}"
            )
            check_emitted_event(event)
            self.events.append(event)

    def finish(self) -> None:
        """The stream was read to its end: check it as a whole."""
        assert self.done, "the stream did not end with 'data: [DONE]'"
        check_stream_grammar(self.events, resumed=self._resumed)  # each event was checked


class _CheckedFrames:
    """The frames of a stream, recorded as an adapter reads (or pumps) them."""

    def __init__(self, inner: EventFrames, *, resumed: bool) -> None:
        self.inner = inner
        self.recorder = _Recorder(resumed=resumed)
        self._iterator: AsyncIterator[bytes] | None = None
        self._closed = False

    def __aiter__(self) -> _CheckedFrames:
        return self

    async def __anext__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self.inner.__aiter__()
        try:
            frame = await self._iterator.__anext__()
        except StopAsyncIteration:
            if not self._closed:  # a stream closed early (from any task) ends unfinished
                self.recorder.finish()
            raise
        self.recorder.feed(frame)
        return frame

    async def aclose(self) -> None:
        self._closed = True
        await self.inner.aclose()


def _checked_routes_handle(
    original: Callable[..., Awaitable[JsonReply | StreamReply]],
) -> Callable[..., Awaitable[JsonReply | StreamReply]]:
    async def handle(
        self: ResponsesRoutes, method: str, path: str, query: Any, *args: Any, **kwargs: Any
    ) -> JsonReply | StreamReply:
        reply = await original(self, method, path, query, *args, **kwargs)
        if isinstance(reply, StreamReply):
            resumed = method == "GET" and query.get("starting_after") is not None
            return StreamReply(_CheckedFrames(reply.events, resumed=resumed))
        body = reply.body
        if reply.status < 300 and isinstance(body, dict) and body.get("object") == "response":
            check_emitted_response(body)
        return reply

    return handle


def _checked_send_frames(
    original: Callable[[EventFrames, Callable[[bytes], Awaitable[None]]], Awaitable[None]],
) -> Callable[[EventFrames, Callable[[bytes], Awaitable[None]]], Awaitable[None]]:
    """The ASGI app pumps a streamed run rather than iterating it: record what it sends."""

    async def send_frames(events: EventFrames, send: Callable[[bytes], Awaitable[None]]) -> None:
        if not isinstance(events, _CheckedFrames):
            await original(events, send)
            return
        recorder = events.recorder

        async def recording_send(frame: bytes) -> None:
            recorder.feed(frame)
            await send(frame)

        await original(events.inner, recording_send)
        recorder.finish()

    return send_frames


@contextmanager
def checking_emissions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Within it, every Response and event a route answers is validated (see the module)."""
    monkeypatch.setattr(ResponsesRoutes, "handle", _checked_routes_handle(ResponsesRoutes.handle))
    monkeypatch.setattr(_app, "send_frames", _checked_send_frames(_routes.send_frames))
    yield
