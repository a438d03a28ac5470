"""DESIGN §15's acceptance scenarios, driven by the official openai client through
ResponseLoopTransport, with HttpxClient calling a real loopback chat-completions server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import httpx2
import openai
import pytest

from responseloop import (
    FunctionTools,
    HttpxClient,
    InMemoryStore,
    LoopConfig,
    ResponsesService,
    RetryPolicy,
)
from responseloop.chat._translate import upstream_call_id
from responseloop.testing import ChatReply
from responseloop.tools import MappingToolResolver
from tests.in_process import openai_client, sse_events
from tests.loopback_upstream import Upstream, running_upstream
from tests.openai_shapes import validate_response
from tests.stream_checks import check_stream

CALLER_KEY = "sk-caller-a"
UPSTREAM_KEY = "sk-upstream"


@attrs.define
class World:
    model: Upstream  # the scripted chat model behind the service
    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient
    service: ResponsesService
    tools: FunctionTools
    barrier_hits: list[str] = attrs.field(factory=list)


def make_tools(world_hits: list[str]) -> FunctionTools:
    tools = FunctionTools()
    arrived = {"count": 0}
    all_arrived = anyio.Event()

    @tools.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    def get_weather(city: str) -> dict[str, Any]:
        """Weather in a city."""
        return {"city": city, "temperature_c": 18}

    @tools.tool(parameters={"type": "object", "properties": {"n": {"type": "integer"}}})
    async def together(n: int) -> dict[str, Any]:
        """Waits until three calls run at once: proof of concurrency, not timing."""
        arrived["count"] += 1
        world_hits.append(f"start {n}")
        if arrived["count"] >= 3:
            all_arrived.set()
        with anyio.fail_after(10):
            await all_arrived.wait()
        await anyio.sleep(0.01 * (3 - n))  # finish in reverse order
        world_hits.append(f"end {n}")
        return {"n": n}

    @tools.tool(parameters={"type": "object", "properties": {}})
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("the tool blew up")

    return tools


@pytest.fixture
async def world() -> AsyncIterator[World]:
    hits: list[str] = []
    tools = make_tools(hits)
    async with (
        running_upstream() as upstream,
        HttpxClient.create(retry=RetryPolicy(initial_backoff=0.0, jitter=0.0)) as http_client,
    ):
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target(UPSTREAM_KEY),
            resolver=MappingToolResolver({CALLER_KEY: tools}),
            config=LoopConfig(max_iterations=4),
        )
        async with openai_client(service, CALLER_KEY) as (http, client):
            yield World(upstream, client, http, service, tools, hits)


async def create(world: World, **params: Any) -> Any:
    response = await world.client.responses.create(**params)
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    return response


async def raw_stream(world: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events of a streamed create, as the transport sent them."""
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    async with world.http.stream(
        "POST", "http://responseloop.test/v1/responses", json=body, headers=headers
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/event-stream"
        return await sse_events(answer)


async def test_1_text_in_text_out(world: World) -> None:
    world.model.add(ChatReply.text("Hello there."))
    response = await create(world, model="m", input="Hi")
    assert response.status == "completed"
    assert response.output_text == "Hello there."
    assert world.model.bodies[0]["messages"] == [{"role": "user", "content": "Hi"}]


async def test_2_one_server_tool(world: World) -> None:
    world.model.add(
        ChatReply.tool_call("get_weather", {"city": "Paris"}, call_id="c1"),
        ChatReply.text("18 °C in Paris."),
    )
    response = await create(world, model="m", input="Weather in Paris?")
    assert [item.type for item in response.output] == ["mcp_call", "message"]
    assert json.loads(response.output[0].output) == {"city": "Paris", "temperature_c": 18}
    assert world.model.bodies[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": '{"city": "Paris", "temperature_c": 18}',
    }


async def test_3_three_parallel_server_tools_run_concurrently_in_call_order(world: World) -> None:
    world.model.add(
        ChatReply.calls(*[("together", {"n": n}, f"c{n}") for n in range(3)]),
        ChatReply.text("all done"),
    )
    response = await create(world, model="m", input="go")
    assert sorted(world.barrier_hits[:3]) == ["start 0", "start 1", "start 2"]
    assert world.barrier_hits[3:] == ["end 2", "end 1", "end 0"]
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [json.loads(item.output)["n"] for item in calls] == [0, 1, 2]
    tool_messages = [m for m in world.model.bodies[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["c0", "c1", "c2"]


CLIENT_TOOL: Any = {
    "type": "function",
    "name": "open_door",
    "parameters": {"type": "object", "properties": {"door": {"type": "string"}}},
    "strict": False,
}


async def test_4_client_function_round_trip(world: World) -> None:
    world.model.add(
        ChatReply.tool_call("open_door", {"door": "front"}, call_id="door_1"),
        ChatReply.text("The door is open."),
    )
    first = await create(world, model="m", input="Open the front door", tools=[CLIENT_TOOL])
    assert first.status == "completed"
    # The call id is ours (it names the response, as the item id does), not the upstream's.
    ours = "call_" + first.id.removeprefix("resp_") + "_1_0"
    assert [(i.type, i.call_id) for i in first.output] == [("function_call", ours)]

    second = await create(
        world,
        model="m",
        previous_response_id=first.id,
        tools=[CLIENT_TOOL],
        input=[{"type": "function_call_output", "call_id": ours, "output": "opened"}],
    )

    assert second.output_text == "The door is open."
    messages = world.model.bodies[1]["messages"]
    # In history the upstream sees ours (cut to its 40 characters), the same in both.
    shown = upstream_call_id(ours)
    assert [c["id"] for c in messages[-2]["tool_calls"]] == [shown]
    assert messages[-1] == {"role": "tool", "tool_call_id": shown, "content": "opened"}


async def test_4_client_function_round_trip_by_replay_unstored(world: World) -> None:
    world.model.add(
        ChatReply.tool_call("open_door", {"door": "front"}, call_id="door_1"),
        ChatReply.text("The door is open."),
    )
    history: list[Any] = [{"role": "user", "content": "Open the front door"}]
    first = await create(world, model="m", input=history, tools=[CLIENT_TOOL], store=False)
    (call,) = [item.model_dump(exclude_none=True) for item in first.output]
    answer = {"type": "function_call_output", "call_id": call["call_id"], "output": "opened"}
    second = await create(
        world, model="m", input=[*history, call, answer], tools=[CLIENT_TOOL], store=False
    )
    assert second.output_text == "The door is open."
    messages = world.model.bodies[1]["messages"]
    assert [c["id"] for c in messages[-2]["tool_calls"]] == [upstream_call_id(call["call_id"])]
    assert messages[-1]["tool_call_id"] == upstream_call_id(call["call_id"])


async def test_5_mixed_server_and_client_calls_in_one_turn(world: World) -> None:
    world.model.add(
        ChatReply.calls(("get_weather", {"city": "Oslo"}, "s1"), ("open_door", {}, "d1"))
    )
    response = await create(world, model="m", input="both", tools=[CLIENT_TOOL])
    assert [(i.type, i.name) for i in response.output] == [
        ("mcp_call", "get_weather"),
        ("function_call", "open_door"),
    ]
    assert response.output[1].call_id == "call_" + response.id.removeprefix("resp_") + "_1_1"
    assert len(world.model.bodies) == 1  # the client answers its call next


async def test_7_the_iteration_cap_fails_the_response(world: World) -> None:
    world.model.add(*[ChatReply.tool_call("get_weather", {"city": "x"}) for _ in range(10)])
    response = await create(world, model="m", input="loop forever")
    assert response.status == "failed"
    assert response.error.code == "server_error"
    assert len(world.model.bodies) == 4


async def test_8_a_failing_tool_is_fed_back_and_the_model_recovers(world: World) -> None:
    world.model.add(ChatReply.tool_call("explode", {}, call_id="e1"), ChatReply.text("Sorry."))
    response = await create(world, model="m", input="try")
    assert response.status == "completed"
    assert response.output_text == "Sorry."
    fed_back = json.loads(world.model.bodies[1]["messages"][-1]["content"])
    assert "RuntimeError" in fed_back["error"]
    assert "blew up" not in fed_back["error"]


async def test_9_upstream_500_is_retried_and_400_fails_the_response(world: World) -> None:
    world.model.add(ChatReply.error(500, "flaky"), ChatReply.text("recovered"))
    response = await create(world, model="m", input="hi")
    assert response.output_text == "recovered"
    assert len(world.model.bodies) == 2

    world.model.add(ChatReply.error(400, "bad prompt"))
    failed = await create(world, model="m", input="hi")
    assert failed.status == "failed"
    assert failed.error.code == "invalid_prompt"
    assert failed.error.message == "upstream answered HTTP 400: bad prompt"  # its own words


async def test_10_stopping_on_length_is_incomplete(world: World) -> None:
    world.model.add(ChatReply.text("cut sh", finish_reason="length"))
    response = await create(world, model="m", input="long story", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert world.model.bodies[0]["max_completion_tokens"] == 16


def tool_turn() -> list[ChatReply]:
    return [
        ChatReply.tool_call("get_weather", {"city": "Rome"}, call_id="w1", reasoning="Need it."),
        ChatReply.text("22 °C in Rome.", reasoning="Answer."),
    ]


async def test_11_streaming_equals_non_streaming(world: World) -> None:
    world.model.add(*tool_turn())
    plain = await create(world, model="m", input="Rome?")
    world.model.add(*tool_turn())
    body = {"model": "m", "input": "Rome?", "stream": True}

    events = await raw_stream(world, body)

    streamed = events[-1]["response"]
    check_stream(events, streamed)
    assert world.model.bodies[-1]["stream"] is True
    stored = await world.client.responses.retrieve(streamed["id"])
    assert stored.model_dump(mode="json", exclude_unset=True, by_alias=True) == streamed

    def comparable(response: dict[str, Any]) -> str:
        response = {k: v for k, v in response.items() if k not in ("created_at", "completed_at")}
        text = json.dumps(response, sort_keys=True)
        return text.replace(response["id"].removeprefix("resp_"), "ID")

    assert comparable(streamed) == comparable(
        plain.model_dump(mode="json", exclude_unset=True, by_alias=True)
    )


async def test_11_the_sdk_stream_helper_rebuilds_the_response(world: World) -> None:
    world.model.add(*tool_turn())
    async with world.client.responses.stream(model="m", input="Rome?") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    stored = await world.client.responses.retrieve(final.id)
    assert stored.model_dump(exclude_none=True) == final.model_dump(exclude_none=True)


async def test_14_request_settings_round_trip(world: World) -> None:
    world.model.add(ChatReply.text('{"answer": 4}'))
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    response = await create(
        world,
        model="m",
        input="2+2?",
        instructions="Answer in JSON.",
        tool_choice="required",
        tools=[CLIENT_TOOL],
        text={"format": {"type": "json_schema", "name": "sum", "schema": schema, "strict": True}},
        max_output_tokens=50,
        metadata={"ticket": "T-1"},
    )
    assert response.instructions == "Answer in JSON."
    assert response.tool_choice == "required"
    assert response.max_output_tokens == 50
    assert response.metadata == {"ticket": "T-1"}
    assert response.text.format.type == "json_schema"
    sent = world.model.bodies[0]
    assert sent["messages"][0] == {"role": "system", "content": "Answer in JSON."}
    assert sent["tool_choice"] == "required"
    assert sent["max_completion_tokens"] == 50
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "sum", "schema": schema, "strict": True},
    }


async def test_15_a_tool_the_caller_may_not_use_is_never_run(world: World) -> None:
    world.model.add(
        ChatReply.tool_call("get_weather", {"city": "x"}, call_id="c1"), ChatReply.text("no")
    )
    async with openai.AsyncOpenAI(
        base_url="http://responseloop.test/v1",
        api_key="sk-other-caller",
        http_client=world.http,
        max_retries=0,
    ) as other:
        response: Any = await other.responses.create(model="m", input="weather?")
    assert [item.type for item in response.output] == ["mcp_call", "message"]
    assert "not available" in response.output[0].output  # answered, never run
    assert "temperature_c" not in response.output[0].output
    assert "tools" not in world.model.bodies[0]
    answer = json.loads(world.model.bodies[1]["messages"][-1]["content"])
    assert "not available" in answer["error"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": 3}, "input"),
        ({"model": "m", "input": [{"type": "function_call_output"}]}, "input[0].call_id"),
        ({"model": "m", "input": "x", "temperature": "hot"}, "temperature"),
    ],
)
async def test_16_malformed_bodies_get_400_naming_the_field(
    world: World, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await world.client.responses.create(**params)
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert world.model.bodies == []


async def test_17_usage_is_summed_over_every_model_call(world: World) -> None:
    world.model.add(
        ChatReply.tool_call(
            "get_weather",
            {},
            usage={
                "prompt_tokens": 10,
                "completion_tokens": 20,
                "total_tokens": 30,
                "prompt_tokens_details": {"cached_tokens": 3},
                "completion_tokens_details": {"reasoning_tokens": 4},
            },
        ),
        ChatReply.text(
            "done", usage={"prompt_tokens": 5, "completion_tokens": 15, "total_tokens": 20}
        ),
    )
    response = await create(world, model="m", input="x")
    assert response.usage.input_tokens == 15
    assert response.usage.output_tokens == 35
    assert response.usage.total_tokens == 50
    assert response.usage.input_tokens_details.cached_tokens == 3
    assert response.usage.output_tokens_details.reasoning_tokens == 4


async def test_the_caller_key_is_never_sent_upstream_nor_stored(world: World) -> None:
    world.model.add(ChatReply.tool_call("get_weather", {}), ChatReply.text("ok"))
    response = await create(world, model="m", input="x")
    for received in world.model.received:
        assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert CALLER_KEY not in received.body.decode()
    record = await world.service.store.get_response(response.id)
    chain = await world.service.store.list_chain(response.id, None)
    assert CALLER_KEY not in json.dumps([record.request, record.response, record.caller])
    assert CALLER_KEY not in repr(chain)
