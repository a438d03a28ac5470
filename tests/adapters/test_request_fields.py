"""Issue 15's request side, end to end: the official openai client through
ResponseLoopTransport, a real loopback chat-completions upstream behind it. What the
upstream received is the proof that a field was honoured (the tool subset it was offered,
the logprobs it was asked for); a refused field reaches no upstream at all."""

from __future__ import annotations

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
)
from responseloop.testing import ChatReply, scripted_logprobs
from responseloop.tools import MappingToolResolver
from tests.in_process import openai_client, sse_events
from tests.loopback_upstream import Upstream, running_upstream
from tests.openai_shapes import validate_response
from tests.stream_checks import check_stream

CALLER_KEY = "sk-caller"
CLIENT_TOOLS = [
    {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}},
    {"type": "function", "name": "send", "parameters": {"type": "object", "properties": {}}},
]


@attrs.define
class World:
    model: Upstream
    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient
    runs: list[str]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    runs: list[str] = []
    tools = FunctionTools()

    @tools.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    def get_weather(city: str) -> dict[str, Any]:
        """Weather in a city."""
        runs.append(f"get_weather {city}")
        return {"city": city, "temperature_c": 18}

    @tools.tool(parameters={"type": "object", "properties": {}})
    def get_time() -> str:
        """The time."""
        runs.append("get_time")
        return "noon"

    async with running_upstream() as upstream, HttpxClient.create() as http_client:
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target("sk-up"),
            resolver=MappingToolResolver({CALLER_KEY: tools}),
        )
        async with openai_client(service, CALLER_KEY) as (http, client):
            yield World(upstream, client, http, runs)


async def create(world: World, **params: Any) -> Any:
    """``responses.create`` with untyped parameters (the SDK's TypedDicts are narrower
    than the dicts these tests build)."""
    return await world.client.responses.create(**params)


def offered(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


def told(body: dict[str, Any]) -> dict[str, str]:
    """What the model was told each tool call returned, by call id."""
    return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}


ALLOWED = {
    "type": "allowed_tools",
    "mode": "required",
    "tools": [{"type": "function", "name": "lookup"}, {"type": "function", "name": "get_weather"}],
}


async def test_allowed_tools_offer_only_the_subset_and_refuse_calls_outside_it(
    world: World,
) -> None:
    world.model.add(
        ChatReply.calls(
            ("get_weather", {"city": "Oslo"}, "c1"),
            ("get_time", {}, "c2"),  # a server tool outside the subset
            ("send", {}, "c3"),  # a client tool outside the subset
        ),
        ChatReply.text("done"),
    )
    response = await create(
        world,
        model="m",
        input="go",
        tools=CLIENT_TOOLS,
        tool_choice=ALLOWED,
    )
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    first, second = world.model.bodies
    assert offered(first) == ["lookup", "get_weather"]
    assert first["tool_choice"] == "required"  # the mode, as the chat tool_choice
    assert offered(second) == ["lookup", "get_weather"]
    assert second["tool_choice"] == "auto"  # a forced choice binds only the first call
    assert world.runs == ["get_weather Oslo"]  # get_time never ran
    answers = told(second)
    assert "temperature_c" in answers["c1"]
    assert "not available" in answers["c2"]
    assert "not available" in answers["c3"]  # not handed to the client: the loop went on
    assert response.status == "completed"
    assert response.output_text == "done"
    assert response.model_dump(mode="json")["tool_choice"] == ALLOWED  # echoed as sent


async def test_allowed_tools_naming_no_tool_is_a_400(world: World) -> None:
    choice = {**ALLOWED, "tools": [*ALLOWED["tools"], {"type": "function", "name": "nope"}]}
    with pytest.raises(openai.BadRequestError) as caught:
        await create(
            world,
            model="m",
            input="go",
            tools=CLIENT_TOOLS,
            tool_choice=choice,
        )
    assert caught.value.body["param"] == "tool_choice.tools[2].name"  # type: ignore[index]
    assert world.model.bodies == []


async def test_included_logprobs_are_asked_for_and_put_on_the_text(world: World) -> None:
    world.model.add(ChatReply.text("Hello there"))
    response = await create(
        world, model="m", input="hi", include=["message.output_text.logprobs"], top_logprobs=2
    )
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    sent = world.model.bodies[0]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    part: Any = response.output[0].content[0]
    assert part.type == "output_text"
    dumped = [entry.model_dump(mode="json") for entry in part.logprobs or []]
    assert dumped == scripted_logprobs(["Hello", " there"], 2)


async def test_logprobs_without_top_logprobs_are_asked_for_too(world: World) -> None:
    world.model.add(ChatReply.text("Hello there"))
    await create(world, model="m", input="hi", include=["message.output_text.logprobs"])
    sent = world.model.bodies[0]
    assert sent["logprobs"] is True
    assert "top_logprobs" not in sent


async def test_without_the_include_no_logprobs_are_asked_for_or_given(world: World) -> None:
    world.model.add(ChatReply.text("Hello there"))
    response = await create(world, model="m", input="hi")
    assert "logprobs" not in world.model.bodies[0]
    raw = response.model_dump(mode="json", exclude_unset=True)
    assert "logprobs" not in raw["output"][0]["content"][0]


async def test_streamed_logprobs_ride_on_the_text_events(world: World) -> None:
    world.model.add(ChatReply.text("Hello there"))
    async with world.http.stream(
        "POST",
        "http://responseloop.test/v1/responses",
        json={
            "model": "m",
            "input": "hi",
            "stream": True,
            "include": ["message.output_text.logprobs"],
            "top_logprobs": 1,
        },
        headers={"Authorization": f"Bearer {CALLER_KEY}"},
    ) as answer:
        assert answer.status_code == 200
        events = await sse_events(answer)
    stored = await world.http.get(
        f"http://responseloop.test/v1/responses/{events[0]['response']['id']}",
        headers={"Authorization": f"Bearer {CALLER_KEY}"},
    )
    check_stream(events, stored.json())  # the item events rebuild the stored Response
    expected = scripted_logprobs(["Hello", " there"], 1)
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [(e["delta"], e["logprobs"]) for e in deltas] == [
        ("Hello", expected[:1]),
        (" there", expected[1:]),
    ]
    (done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert done["logprobs"] == expected
    final = events[-1]["response"]["output"][0]["content"][0]
    assert final["logprobs"] == expected
    assert world.model.bodies[0]["logprobs"] is True


REFUSED = {
    "prompt": {"prompt": {"id": "pmpt_1"}},
    # No threshold: the model's context window is unknown here, so none is guessed.
    "context_management[0].compact_threshold": {"context_management": [{"type": "compaction"}]},
    "moderation": {"moderation": {"model": "omni-moderation-latest"}},
    "prompt_cache_options": {"prompt_cache_options": {"mode": "explicit"}},
    "truncation": {"truncation": "auto"},
    "include[1]": {"include": ["reasoning.encrypted_content", "file_search_call.results"]},
}


@pytest.mark.parametrize("param", sorted(REFUSED))
async def test_fields_that_cannot_be_honoured_are_refused_by_name(world: World, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await create(
            world,
            model="m",
            input="hi",
            extra_body=REFUSED[param],
        )
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert world.model.bodies == []
