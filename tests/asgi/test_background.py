"""BackgroundResponses in-process: a finished response's stream, kept in memory or rebuilt
from the store, and the shape of what the routes give for background requests."""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import attrs
import pytest

from responseloop import (
    FunctionTools,
    InMemoryStore,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
    create_app,
)
from responseloop.adapters import BackgroundResponses
from responseloop.adapters._background import replayed_events
from responseloop.exceptions import InvalidRequestError
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.stream_checks import check_stream

tools = FunctionTools()


@tools.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
def get_weather(city: str) -> dict[str, Any]:
    """Weather in a city."""
    return {"city": city, "temperature_c": 18}


def service(model: ScriptedChatModel) -> ResponsesService:
    return ResponsesService(
        store=InMemoryStore(),
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
        resolver=StaticToolResolver(tools),
    )


def turn() -> list[ChatReply]:
    return [
        ChatReply.tool_call("get_weather", {"city": "Rome"}, call_id="w1", reasoning="Need it."),
        ChatReply.text("22 °C in Rome.", reasoning="Answer."),
    ]


async def collect(frames: Any) -> list[dict[str, Any]]:
    events = []
    async for frame in frames:
        data = next(line for line in frame.decode().splitlines() if line.startswith("data: "))
        if data != "data: [DONE]":
            events.append(json.loads(data.removeprefix("data: ")))
    return events


async def run_in_background(
    runner: BackgroundResponses, body: dict[str, Any]
) -> tuple[str, list[dict[str, Any]]]:
    prepared = await runner.service.prepare(body, api_key=None)
    await runner.start(prepared)
    live = await collect((await runner.resume(prepared.response_id, None)).events)
    return prepared.response_id, live


async def test_a_rebuilt_stream_equals_the_live_one_of_an_unstreamed_run() -> None:
    svc = service(ScriptedChatModel(turn()))
    async with BackgroundResponses(svc, keep_finished=1) as runner:
        response_id, live = await run_in_background(
            runner, {"model": "m", "input": "Rome?", "background": True}
        )
    record = await svc.store.get_response(response_id)
    chain = await svc.store.list_chain(response_id, None)
    rebuilt = replayed_events(
        response_id, record.request, record.created_at, record.status, record.response, chain
    )
    assert record.response is not None
    check_stream(rebuilt, dict(record.response))
    assert rebuilt[:-1] == live[:-1]
    assert rebuilt[-1] == {**live[-1], "response": record.response}


async def test_a_stream_no_longer_kept_is_rebuilt_from_the_store() -> None:
    svc = service(ScriptedChatModel(turn()))
    async with BackgroundResponses(svc, keep_finished=0) as runner:
        response_id, live = await run_in_background(
            runner, {"model": "m", "input": "Rome?", "background": True}
        )
        rebuilt = await collect((await runner.resume(response_id, 2)).events)
    assert [e["sequence_number"] for e in rebuilt] == list(range(3, len(live)))
    assert [e["type"] for e in rebuilt] == [e["type"] for e in live[3:]]


async def test_events_dropped_from_a_full_buffer_are_read_from_the_event_log() -> None:
    svc = service(ScriptedChatModel(turn()))
    live: list[dict[str, Any]] = []
    async with BackgroundResponses(svc, max_events=4) as runner:
        prepared = await svc.prepare(
            {"model": "m", "input": "Rome?", "background": True}, api_key=None
        )
        await runner.start(prepared)
        live = await collect((await runner.resume(prepared.response_id, None)).events)
        await runner.wait(prepared.response_id)
    # Nobody read while it ran: only the last four events are kept in memory, and the
    # store's event log has them all, with the numbers the live stream had.
    response_id = prepared.response_id
    whole = await collect((await runner.resume(response_id, None)).events)
    assert whole == live
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    assert whole[-1]["type"] == "response.completed"
    kept = await collect((await runner.resume(response_id, len(whole) - 5)).events)
    assert kept == whole[-4:]


async def test_starting_outside_the_lifespan_is_refused() -> None:
    svc = service(ScriptedChatModel(turn()))
    runner = BackgroundResponses(svc)
    prepared = await svc.prepare({"model": "m", "input": "x", "background": True}, api_key=None)
    with pytest.raises(InvalidRequestError, match="lifespan"):
        await runner.start(prepared)


async def test_leaving_cancels_running_responses_and_stores_them_cancelled() -> None:
    started = anyio.Event()

    def never(request: Any) -> ChatReply:
        started.set()
        return attrs.evolve(ChatReply.text("never"), delay=math.inf)

    svc = service(ScriptedChatModel([never]))
    async with BackgroundResponses(svc) as runner:
        prepared = await svc.prepare({"model": "m", "input": "x", "background": True}, api_key=None)
        await runner.start(prepared)
        await started.wait()
        assert runner.running == {prepared.response_id}
    record = await svc.store.get_response(prepared.response_id)
    assert record.status.value == "cancelled"
    assert runner.running == frozenset()


async def test_a_response_running_on_another_replica_is_streamed_from_the_event_log() -> None:
    model = ScriptedChatModel([ChatReply.text("Rome is the capital.", delay=0.3)])
    here = service(model)
    there = ResponsesService(store=here.store, http_client=model, upstream=here.upstream)
    prepared = await here.prepare({"model": "m", "input": "x", "background": True}, api_key=None)
    async with BackgroundResponses(here) as running, BackgroundResponses(there) as other:
        await running.start(prepared)
        live = await running.resume(prepared.response_id, None)
        followed = await other.resume(prepared.response_id, None)
        original = await collect(live.events)
        seen_elsewhere = await collect(followed.events)
    assert seen_elsewhere == original
    assert original[-1]["type"] == "response.completed"


async def test_the_apps_lifespan_keeps_every_lease_from_one_keeper() -> None:
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=ScriptedChatModel([]),
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
    )
    app = create_app(service, sweep_interval=0)
    assert service.lease_keeper is None
    async with app.lifespan():
        keeper = service.lease_keeper
        assert keeper is not None
        assert keeper.running
    assert service.lease_keeper is None
    assert not keeper.running
