"""Closing an in-process streamed body from another task than the one that read it, at any
point: before reading, mid-stream (with a read pending or not) and after the end. Each
leaves the response as a client disconnecting from the ASGI app does, and no task behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
import sniffio
import trio
from anyio.abc import TaskGroup

from responseloop import (
    InMemoryStore,
    ResponseLoopTransport,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.testing import ChatReply, ScriptedChatModel


def live_tasks() -> set[object]:
    """Every task of the running event loop, system tasks included."""
    if sniffio.current_async_library() == "asyncio":
        return set(asyncio.all_tasks())
    found: set[object] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None or task in found:
            continue
        found.add(task)
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


class Stack:
    def __init__(self, replies: list[ChatReply]) -> None:
        self.model = ScriptedChatModel(replies)
        self.store = InMemoryStore()
        self.service = ResponsesService(
            store=self.store,
            http_client=self.model,
            upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
            resolver=StaticToolResolver(None),
            new_response_id=lambda: "resp_closed",
        )
        self.transport = ResponseLoopTransport(self.service)

    async def stream(self) -> tuple[httpx2.Response, AsyncIterator[bytes]]:
        request = httpx2.Request(
            "POST", "http://t/v1/responses", json={"model": "m", "input": "hi", "stream": True}
        )
        answer = await self.transport.handle_async_request(request)
        assert isinstance(answer.stream, httpx2.AsyncByteStream)
        return answer, answer.stream.__aiter__()

    async def status(self) -> str:
        return (await self.store.get_response("resp_closed")).status.value

    async def chain_states(self) -> list[str]:
        return [step.state.value for step in await self.store.list_chain("resp_closed", None)]

    async def upstream_called(self) -> None:
        while not self.model.requests:
            await anyio.lowlevel.checkpoint()

    @asynccontextmanager
    async def reader_waiting(
        self, frames: AsyncIterator[bytes], read: list[bytes], *, after: int
    ) -> AsyncIterator[TaskGroup]:
        """A task group in which another task reads every frame into ``read``, entered once
        the upstream is called and ``after`` frames are read: the reader then waits for the
        next frame (the upstream never answers)."""
        async with anyio.create_task_group() as group:
            group.start_soon(read_all, frames, read)
            await self.upstream_called()
            while len(read) < after:
                await anyio.lowlevel.checkpoint()
            yield group


async def read_all(frames: AsyncIterator[bytes], read: list[bytes]) -> None:
    async for frame in frames:
        read.append(frame)


async def in_another_task(call: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(call)


def event_types(frames: list[bytes]) -> list[str]:
    return [
        json.loads(line[6:])["type"]
        for frame in frames
        for line in frame.decode().splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


async def test_closed_from_another_task_before_reading_stores_it_cancelled() -> None:
    stack = Stack([ChatReply.text("never sent")])
    before = live_tasks()
    answer, _ = await stack.stream()

    await in_another_task(answer.aclose)

    assert await stack.status() == "cancelled"
    assert stack.model.requests == []
    assert live_tasks() <= before


async def test_closed_from_another_task_mid_stream_cancels_the_loop() -> None:
    stack = Stack([ChatReply.text("never", delay=float("inf"))])
    before = live_tasks()
    answer, frames = await stack.stream()
    first: list[bytes] = []

    async def read_first() -> None:
        first.append(await anext(frames))

    await in_another_task(read_first)
    await stack.upstream_called()
    await in_another_task(answer.aclose)

    # Closing returns once the loop has stored the response, as an ASGI disconnect does.
    assert event_types(first) == ["response.created"]
    assert stack.service.running == frozenset()
    assert await stack.status() == "cancelled"
    assert await stack.chain_states() == ["cancelled"]
    assert live_tasks() <= before
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


async def test_closed_while_another_task_waits_for_a_frame_ends_that_read() -> None:
    stack = Stack([ChatReply.text("never", delay=float("inf"))])
    before = live_tasks()
    answer, frames = await stack.stream()
    read: list[bytes] = []

    async with stack.reader_waiting(frames, read, after=1):
        await answer.aclose()  # the reader's task is waiting for the next frame

    assert event_types(read) == ["response.created", "response.in_progress"]
    assert await stack.status() == "cancelled"
    assert await stack.chain_states() == ["cancelled"]
    assert live_tasks() <= before


async def test_closed_from_another_task_after_the_end_keeps_it_completed() -> None:
    stack = Stack([ChatReply.text("Hello")])
    before = live_tasks()
    answer, frames = await stack.stream()
    read: list[bytes] = []

    await in_another_task(lambda: read_all(frames, read))
    await in_another_task(answer.aclose)
    await answer.aclose()  # a second closer is harmless

    types = event_types(read)
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert read[-1].endswith(b"data: [DONE]\n\n")
    assert await stack.status() == "completed"
    assert live_tasks() <= before


async def test_read_across_tasks_and_scopes_left_between_reads() -> None:
    # pydantic-graph reads inside task groups it enters and leaves between two reads: the
    # body holds no scope of its own across reads, so none is exited out of order.
    stack = Stack([ChatReply.text("Hello")])
    before = live_tasks()
    answer, frames = await stack.stream()
    read: list[bytes] = []
    ended: list[bool] = []

    async def read_one() -> None:
        async with anyio.create_task_group():
            frame = await anext(frames, None)
        if frame is None:
            ended.append(True)
        else:
            read.append(frame)

    while not ended:
        await in_another_task(read_one)
    await in_another_task(answer.aclose)

    assert event_types(read)[-1] == "response.completed"
    assert await stack.status() == "completed"
    assert live_tasks() <= before


async def test_a_reader_cancelled_while_waiting_cancels_the_loop() -> None:
    stack = Stack([ChatReply.text("never", delay=float("inf"))])
    before = live_tasks()
    answer, frames = await stack.stream()
    read: list[bytes] = []

    async with stack.reader_waiting(frames, read, after=2) as group:
        group.cancel_scope.cancel()  # the reader is cancelled waiting for the next frame

    await answer.aclose()  # returns once the loop has stored the response
    assert await stack.status() == "cancelled"
    assert await stack.chain_states() == ["cancelled"]
    assert live_tasks() <= before
