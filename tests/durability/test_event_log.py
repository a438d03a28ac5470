"""The event log: a run's stream events kept in the store, batched and fenced by its lease;
a run that takes a dead worker's response over continues the log, so a stream read from
any replica is one well-formed stream with the original sequence numbers."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from responseloop import InMemoryStore, ResponseRecord
from responseloop.abc import ResponseStatus
from responseloop.adapters import BackgroundResponses
from responseloop.adapters._event_log import EventLogWriter, follow_log, last_logged
from responseloop.testing import ChatReply, ManualClock, ScriptedChatModel
from tests.durability.test_runtime import (
    BODY,
    LEASE,
    Died,
    booking_tools,
    dies_on_second,
    service_on,
)
from tests.reliability.harness import HookedStore
from tests.stream_checks import check_stream


async def collect(frames: Any) -> list[dict[str, Any]]:
    events = []
    async for frame in frames:
        data = next(line for line in frame.decode().splitlines() if line.startswith("data: "))
        if data != "data: [DONE]":
            events.append(json.loads(data.removeprefix("data: ")))
    return events


def event(number: int, kind: str = "response.output_text.delta") -> dict[str, Any]:
    return {"type": kind, "sequence_number": number}


async def test_the_writer_batches_and_writes_in_order() -> None:
    store = InMemoryStore()
    await store.create_response(ResponseRecord("resp_1", {}))
    writer = EventLogWriter(store, "resp_1", max_pending=3, max_delay=3600)
    writer.add([event(0)])
    await writer.flush_due()  # the first events go at once, so a follower sees the start
    assert await last_logged(store, "resp_1") == 0
    writer.add([event(1), event(2)])
    await writer.flush_due()
    assert await last_logged(store, "resp_1") == 0  # not due yet
    writer.add([event(3)])
    await writer.flush_due()  # three wait: due
    writer.add([event(4)])
    await writer.flush()
    logged = await store.list_events("resp_1", -1, 10)
    assert [number for number, _ in logged] == [0, 1, 2, 3, 4]
    assert [json.loads(text) for _, text in logged] == [event(n) for n in range(5)]


async def test_a_writer_whose_lease_was_taken_over_writes_nothing_more() -> None:
    store = InMemoryStore(clock=ManualClock())
    await store.create_response(ResponseRecord("resp_1", {}))
    assert await store.claim_response("resp_1", "run_a", 30)
    writer = EventLogWriter(store, "resp_1")
    writer.hold("run_a")
    writer.add([event(0)])
    await writer.flush()
    await store.release_response("resp_1", "run_a")
    assert await store.claim_response("resp_1", "run_b", 30)
    writer.add([event(1)])
    await writer.flush()
    assert writer.lost
    assert [n for n, _ in await store.list_events("resp_1", -1, 10)] == [0]


async def test_a_follower_ends_a_stream_its_run_never_ended() -> None:
    """A response closed without a logged end (cancelled while nobody ran it) still ends
    its followed stream, with an event made from the stored record."""
    store = InMemoryStore()
    await store.create_response(ResponseRecord("resp_1", {}, status=ResponseStatus.CANCELLED))
    await store.append_events("resp_1", 0, [json.dumps(event(0, "response.created"))])
    with anyio.fail_after(10):
        events = await collect(follow_log(store, "resp_1", -1, poll_interval=0.01))
    assert [e["type"] for e in events] == ["response.created", "error"]
    assert events[-1]["sequence_number"] == 1
    assert events[-1]["code"] == "response_cancelled"


async def test_a_recovered_background_run_continues_the_dead_workers_stream() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock=clock)
    calls: list[str] = []
    model = ScriptedChatModel(
        [ChatReply.tool_call("book", {"room": 1}, call_id="c1"), ChatReply.text("booked")]
    )
    tools = booking_tools(calls)
    dead = service_on(
        HookedStore(store, dies_on_second("update_step:completed:after")), model, tools
    )
    prepared = await dead.prepare({**BODY, "background": True}, api_key=None, caller="tenant")
    with pytest.raises(BaseExceptionGroup) as died:
        async with BackgroundResponses(dead) as runner:
            await runner.start(prepared)
            await anyio.sleep(10)
    assert died.group_contains(Died)
    before = await last_logged(store, prepared.response_id)
    assert before >= 1  # the dead worker's stream had begun

    clock.advance(LEASE + 1)
    survivor = service_on(store, model, tools)
    async with BackgroundResponses(survivor) as runner:
        (recovered,) = await survivor.recoverable()
        await runner.start(recovered, continuing=True)
        with anyio.fail_after(10):
            events = await collect((await runner.resume(prepared.response_id, None)).events)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events].count("response.created") == 1
    assert events[-1]["type"] == "response.completed"
    assert calls == ["{'room': 1}"]
    record = await store.get_response(prepared.response_id)
    assert record.response is not None
    check_stream(events, dict(record.response))
