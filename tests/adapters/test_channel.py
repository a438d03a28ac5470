"""EventChannel: bounded buffering, backpressure, a reader that leaves or stalls."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import LoopEvent, LoopEventKind
from responseloop.adapters import EventChannel
from responseloop.exceptions import EventSinkError
from responseloop.testing import ChatReply, ScriptedChatModel


def event(number: int) -> LoopEvent:
    return LoopEvent(LoopEventKind.MODEL_CHUNK, "resp_1", {"n": number}, sequence=number)


async def test_events_arrive_in_order_and_iteration_ends_on_close() -> None:
    async with EventChannel[LoopEvent](max_buffer=8) as channel:
        for number in range(5):
            await channel.emit(event(number))
        channel.close()
        assert [e.sequence async for e in channel] == [0, 1, 2, 3, 4]
        with pytest.raises(EventSinkError):
            await channel.emit(event(5))


async def test_a_reader_that_stops_reading_holds_the_writer_at_the_bound() -> None:
    channel = EventChannel[LoopEvent](max_buffer=4, stall_timeout=None)
    emitted: list[int] = []

    async def writer() -> None:
        for number in range(100):
            await channel.emit(event(number))
            emitted.append(number)

    async with channel, anyio.create_task_group() as group:
        group.start_soon(writer)
        await anyio.wait_all_tasks_blocked()
        # The writer is parked on the fifth event: memory holds four, not a hundred.
        assert emitted == [0, 1, 2, 3]
        assert channel.buffered == channel.max_buffer == 4
        assert (await anext(channel)).sequence == 0
        await anyio.wait_all_tasks_blocked()
        assert emitted == [0, 1, 2, 3, 4]  # one read frees exactly one slot
        assert channel.buffered == 4
        group.cancel_scope.cancel()


async def test_emit_fails_once_the_reader_is_gone() -> None:
    channel = EventChannel[LoopEvent](max_buffer=2)
    await channel.aclose()
    with pytest.raises(EventSinkError, match="gone"):
        await channel.emit(event(0))


async def test_a_stalled_reader_is_given_up_on() -> None:
    async with EventChannel[LoopEvent](max_buffer=1, stall_timeout=0.05) as channel:
        await channel.emit(event(0))
        with pytest.raises(EventSinkError, match="took nothing"):
            await channel.emit(event(1))
        # What was buffered can still be read; the stream then ends rather than hang.
        assert [e.sequence async for e in channel] == [0]


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        EventChannel(max_buffer=0)
    with pytest.raises(ValueError, match="stall_timeout"):
        EventChannel(stall_timeout=0)


async def test_the_loop_streams_through_a_channel_to_a_slow_reader() -> None:
    """A whole response through a one-slot channel: the loop waits for the reader at every
    event, and the reader still sees all of them, the terminal one last."""
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_1", request={"model": "m"}))
    model = ScriptedChatModel([ChatReply.text("hello there")])
    channel = EventChannel[LoopEvent](max_buffer=1)
    body: dict[str, Any] = {"model": "m", "messages": [], "stream": True}
    seen: list[LoopEventKind] = []

    async def run_loop() -> None:
        try:
            await run_response_loop(
                "resp_1",
                store=store,
                http_client=model,
                upstream=UpstreamTarget("http://upstream.invalid"),
                transition=ChatTransition(body),
                config=LoopConfig(event_buffer=1),
                events=channel,
            )
        finally:
            channel.close()

    async with channel, anyio.create_task_group() as group:
        group.start_soon(run_loop)
        async for loop_event in channel:
            assert channel.buffered <= 1
            seen.append(loop_event.kind)
            await anyio.lowlevel.checkpoint()  # a reader slower than the loop
    assert seen[0] is LoopEventKind.RESPONSE_STARTED
    assert seen[-1] is LoopEventKind.RESPONSE_COMPLETED
    assert LoopEventKind.MODEL_CHUNK in seen
