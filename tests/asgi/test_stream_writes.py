"""A streamed response through the ASGI app: the loop events that arrive together go out
as one body message, each holding whole SSE frames, in order."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import anyio

from responseloop import InMemoryStore, ResponsesService, UpstreamTarget, create_app
from responseloop.abc import LoopEvent, LoopEventKind
from responseloop.adapters import EventChannel
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.in_process import post_responses_scope

UPSTREAM = UpstreamTarget("http://upstream.invalid/v1", "/chat/completions", "sk-upstream")


async def test_events_that_arrive_together_are_one_write_of_whole_frames() -> None:
    model = ScriptedChatModel([ChatReply.text("Hello there, friend.")])
    service = ResponsesService(store=InMemoryStore(), http_client=model, upstream=UPSTREAM)
    body = json.dumps({"model": "m", "input": "hi", "stream": True}).encode()
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    writes: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            writes.append(message["body"])

    app = create_app(service)
    async with app.lifespan():
        with anyio.fail_after(10):
            await app(post_responses_scope(spec_version="2.4"), receive, send)

    frames = [frame for write in writes for frame in write.split(b"\n\n") if frame]
    events = [
        json.loads(frame.split(b"data: ", 1)[1])
        for frame in frames
        if not frame.endswith(b"data: [DONE]")
    ]
    assert all(write.endswith(b"\n\n") for write in writes)  # no frame split across writes
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    assert frames[-1] == b"data: [DONE]"
    # The scripted model answers without waiting, so every event before the terminal one
    # was buffered by the time the reader woke: one write; the terminal event and [DONE]
    # follow once the run has stored the response.
    assert [write.count(b"\n\n") for write in writes] == [len(events) - 1, 2]


def _event(number: int) -> LoopEvent:
    return LoopEvent(LoopEventKind.MODEL_CHUNK, "resp_1", {"n": number}, sequence=number)


async def test_take_buffered_takes_what_waits_without_waiting() -> None:
    async with EventChannel[LoopEvent](max_buffer=8) as channel:
        assert channel.take_buffered() == []
        for number in range(3):
            await channel.emit(_event(number))
        first = await channel.__anext__()
        assert first.sequence == 0
        assert [e.sequence for e in channel.take_buffered()] == [1, 2]
        assert channel.buffered == 0
        await channel.emit(_event(3))
        channel.close()
        assert [e.sequence for e in channel.take_buffered()] == [3]
        assert channel.take_buffered() == []
        assert [e async for e in channel] == []
