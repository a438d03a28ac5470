"""Server-side tool calls on the wire, end to end: the official openai client through
ResponseLoopTransport, a real loopback chat-completions upstream, and both
``WireOptions.server_tool_items`` shapes. Every Response is checked against the SDK's types
(no unknown field) and every stream with tests/stream_checks.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx2
import openai
import pytest

from responseloop import (
    FunctionTools,
    HttpxClient,
    InMemoryStore,
    ResponsesService,
    RetryPolicy,
)
from responseloop.chat._translate import upstream_call_id
from responseloop.openresponses import WireOptions
from responseloop.testing import ChatReply
from responseloop.tools import MappingToolResolver
from tests.in_process import openai_client, sse_events
from tests.loopback_upstream import Upstream, running_upstream
from tests.openai_shapes import validate_response
from tests.stream_checks import check_stream

KEY = "sk-caller"
CLIENT_TOOL: Any = {
    "type": "function",
    "name": "open_door",
    "parameters": {"type": "object", "properties": {"door": {"type": "string"}}},
    "strict": False,
}


@attrs.define
class World:
    model: Upstream
    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient


def _tools() -> FunctionTools:
    tools = FunctionTools()

    @tools.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    def get_weather(city: str) -> dict[str, Any]:
        """Weather in a city."""
        return {"city": city, "temperature_c": 18}

    @tools.tool(parameters={"type": "object", "properties": {}})
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("the tool blew up")

    return tools


async def _world(wire: WireOptions | None) -> AsyncIterator[World]:
    async with (
        running_upstream() as upstream,
        HttpxClient.create(retry=RetryPolicy(initial_backoff=0.0, jitter=0.0)) as http_client,
    ):
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target("sk-up"),
            resolver=MappingToolResolver({KEY: _tools()}),
            wire=wire,
        )
        async with openai_client(service, KEY) as (http, client):
            yield World(upstream, client, http)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async for made in _world(None):
        yield made


@pytest.fixture
async def old_world() -> AsyncIterator[World]:
    async for made in _world(WireOptions(server_tool_items="function_call")):
        yield made


async def create(world: World, **params: Any) -> dict[str, Any]:
    """A non-streamed create, and the same request streamed (the upstream scripted
    twice), which must give the same Response: the JSON of the non-streamed one."""
    response = await world.client.responses.create(**params)
    data: dict[str, Any] = response.model_dump(mode="json", exclude_unset=True, by_alias=True)
    validate_response(data)
    return data


async def streamed(world: World, body: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The SSE events of a streamed create, checked, and the final Response."""
    async with world.http.stream(
        "POST",
        "http://responseloop.test/v1/responses",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as answer:
        assert answer.status_code == 200
        events = await sse_events(answer)
    final = events[-1]["response"]
    check_stream(events, final)
    return events, final


def _without_times(response: dict[str, Any]) -> Any:
    """``response`` without what differs between two runs: its id (in every item id too)
    and its times."""
    kept = {k: v for k, v in response.items() if k not in ("id", "created_at", "completed_at")}
    return json.loads(json.dumps(kept).replace(response["id"].removeprefix("resp_"), "BASE"))


def _weather_script(world: World) -> None:
    world.model.add(
        ChatReply.tool_call("get_weather", {"city": "Paris"}, call_id="c1"),
        ChatReply.text("18 °C in Paris."),
    )


async def test_a_server_tool_call_is_one_completed_mcp_call(world: World) -> None:
    _weather_script(world)
    response = await create(world, model="m", input="Weather in Paris?")
    call, message = response["output"]
    base = response["id"].removeprefix("resp_")
    assert call == {
        "id": f"mcp_{base}_1_0",
        "type": "mcp_call",
        "server_label": "responseloop",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "output": '{"city": "Paris", "temperature_c": 18}',
        "error": None,
        "status": "completed",
    }
    assert message["type"] == "message"
    assert world.model.bodies[1]["messages"][-1]["tool_call_id"] == "c1"


async def test_the_stream_announces_the_mcp_call_as_openai_does(world: World) -> None:
    _weather_script(world)
    plain = await create(world, model="m", input="Weather in Paris?")
    _weather_script(world)
    events, final = await streamed(world, {"model": "m", "input": "Weather in Paris?"})
    assert _without_times(final) == _without_times(plain)
    mcp = [e["type"] for e in events if "mcp" in e["type"] or "mcp" in e.get("item_id", "")]
    assert mcp == [
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
    ]
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "mcp_call"
    assert (added["item"]["status"], added["item"]["output"]) == ("in_progress", None)


async def test_a_failed_server_tool_is_a_failed_mcp_call_with_its_error(world: World) -> None:
    world.model.add(ChatReply.tool_call("explode", {}, call_id="x1"), ChatReply.text("Sorry."))
    response = await create(world, model="m", input="explode")
    call = response["output"][0]
    assert (call["type"], call["status"]) == ("mcp_call", "failed")
    told = world.model.bodies[1]["messages"][-1]["content"]
    assert call["output"] == told  # what the model was told of the failure
    assert call["error"] == {
        "type": "mcp_tool_execution_error",
        "content": [{"type": "text", "text": told}],
    }
    world.model.add(ChatReply.tool_call("explode", {}, call_id="x1"), ChatReply.text("Sorry."))
    events, final = await streamed(world, {"model": "m", "input": "explode"})
    assert "response.mcp_call.failed" in [event["type"] for event in events]
    assert final["output"][0]["error"] == call["error"]


async def test_a_mixed_turn_ends_with_the_mcp_call_and_the_client_call(world: World) -> None:
    world.model.add(
        ChatReply.calls(("get_weather", {"city": "Oslo"}, "s1"), ("open_door", {}, "d1")),
        ChatReply.text("Door open; 18 °C."),
    )
    first = await create(world, model="m", input="both", tools=[CLIENT_TOOL])
    assert [(item["type"], item["name"]) for item in first["output"]] == [
        ("mcp_call", "get_weather"),
        ("function_call", "open_door"),
    ]
    ours = first["output"][1]["call_id"]
    assert ours == "call_" + first["id"].removeprefix("resp_") + "_1_1"
    assert len(world.model.bodies) == 1  # the client answers its call next

    second = await create(
        world,
        model="m",
        previous_response_id=first["id"],
        tools=[CLIENT_TOOL],
        input=[{"type": "function_call_output", "call_id": ours, "output": "opened"}],
    )
    assert second["output"][-1]["content"][0]["text"] == "Door open; 18 °C."
    messages = world.model.bodies[1]["messages"]
    tool_results = [(m["tool_call_id"], m["content"]) for m in messages if m["role"] == "tool"]
    mcp_id = first["output"][0]["id"]
    assert tool_results == [
        (mcp_id, '{"city": "Oslo", "temperature_c": 18}'),
        (upstream_call_id(ours), "opened"),
    ]
    calls = [c["function"]["name"] for m in messages for c in m.get("tool_calls", [])]
    assert calls == ["get_weather", "open_door"]


async def test_the_mixed_turn_streams_the_items_in_the_responses_order(world: World) -> None:
    world.model.add(
        ChatReply.calls(("get_weather", {"city": "Oslo"}, "s1"), ("open_door", {}, "d1"))
    )
    events, final = await streamed(world, {"model": "m", "input": "both", "tools": [CLIENT_TOOL]})
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["mcp_call", "function_call"]
    assert [item["type"] for item in final["output"]] == ["mcp_call", "function_call"]


async def test_replaying_the_output_with_store_false_shows_the_model_the_same(
    world: World,
) -> None:
    world.model.add(
        ChatReply.calls(("get_weather", {"city": "Oslo"}, "s1"), ("open_door", {}, "d1")),
        ChatReply.text("by id"),
        ChatReply.text("by replay"),
    )
    first = await create(world, model="m", input="both", tools=[CLIENT_TOOL])
    called = first["output"][1]["call_id"]
    answer = {"type": "function_call_output", "call_id": called, "output": "opened"}
    await create(
        world, model="m", previous_response_id=first["id"], tools=[CLIENT_TOOL], input=[answer]
    )
    replay: Any = [{"role": "user", "content": "both"}, *first["output"], answer]
    replayed = await create(world, model="m", store=False, tools=[CLIENT_TOOL], input=replay)
    assert replayed["output"][-1]["content"][0]["text"] == "by replay"
    by_id, by_replay = world.model.bodies[1]["messages"], world.model.bodies[2]["messages"]
    assert by_replay == by_id


async def test_an_item_reference_to_an_mcp_call_is_resolved(world: World) -> None:
    _weather_script(world)
    first = await create(world, model="m", input="Weather in Paris?")
    world.model.add(ChatReply.text("again"))
    await create(
        world,
        model="m",
        previous_response_id=first["id"],
        input=[{"type": "item_reference", "id": first["output"][0]["id"]}],
    )
    tool_messages = [m for m in world.model.bodies[2]["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 2  # the call once from history, once by reference


async def test_a_bad_mcp_call_input_names_its_field(world: World) -> None:
    item: Any = {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "s",
        "name": "n",
        "arguments": 1,
    }
    with pytest.raises(openai.BadRequestError) as raised:
        await world.client.responses.create(model="m", input=[item])
    assert raised.value.body["param"] == "input[0].arguments"  # type: ignore[index]


async def test_function_call_items_keep_the_0_1_shape(old_world: World) -> None:
    _weather_script(old_world)
    response = await create(old_world, model="m", input="Weather in Paris?")
    assert [item["type"] for item in response["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]
    _weather_script(old_world)
    events, final = await streamed(old_world, {"model": "m", "input": "Weather in Paris?"})
    assert not [event for event in events if "mcp" in event["type"]]
    assert _without_times(final) == _without_times(response)
