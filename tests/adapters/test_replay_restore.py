"""A client that replays its history by itself (no ``previous_response_id``) and leaves part
of a stored turn out: the server restores it from the caller's stored responses, so the
upstream sees the whole turn. Through the official openai client and the loopback upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx2
import openai
import pytest

from responseloop import (
    HttpxClient,
    ResponseLoopTransport,
    ResponsesService,
    RetryPolicy,
)
from responseloop.chat._translate import upstream_call_id
from responseloop.openresponses._references import MAX_REFERENCED_RESPONSES
from responseloop.testing import ChatReply
from responseloop.tools import MappingToolResolver
from tests.adapters.test_server_tool_items import CLIENT_TOOL, KEY, _tools
from tests.loop_helpers import CountingStore
from tests.loopback_upstream import Upstream, running_upstream
from tests.openai_shapes import validate_response

OTHER_KEY = "sk-other"
WEATHER = '{"city": "Oslo", "temperature_c": 18}'


def answer(call: dict[str, Any]) -> dict[str, Any]:
    """The client's answer to its call, by the call's ``call_id`` (ours, not the upstream's)."""
    return {"type": "function_call_output", "call_id": call["call_id"], "output": "opened"}


@attrs.define
class World:
    model: Upstream
    client: openai.AsyncOpenAI
    other: openai.AsyncOpenAI  # another caller of the same server
    store: CountingStore


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with (
        running_upstream() as upstream,
        HttpxClient.create(retry=RetryPolicy(initial_backoff=0.0, jitter=0.0)) as http_client,
    ):
        store = CountingStore()
        service = ResponsesService(
            store=store,
            http_client=http_client,
            upstream=upstream.target("sk-up"),
            resolver=MappingToolResolver({KEY: _tools(), OTHER_KEY: _tools()}),
        )
        http = httpx2.AsyncClient(transport=ResponseLoopTransport(service))
        url = "http://responseloop.test/v1"
        async with (
            openai.AsyncOpenAI(base_url=url, api_key=KEY, http_client=http, max_retries=0) as a,
            openai.AsyncOpenAI(
                base_url=url, api_key=OTHER_KEY, http_client=http, max_retries=0
            ) as b,
        ):
            yield World(upstream, a, b, store)


async def create(client: openai.AsyncOpenAI, **params: Any) -> dict[str, Any]:
    response = await client.responses.create(**params)
    data: dict[str, Any] = response.model_dump(mode="json", exclude_unset=True, by_alias=True)
    validate_response(data)
    return data


async def mixed_turn(world: World, *, replied: bool = True, **params: Any) -> list[dict[str, Any]]:
    """The output of a turn where the model called a server tool and a client tool (and
    the model's reply to the next request scripted, if ``replied``)."""
    world.model.add(
        ChatReply.calls(("get_weather", {"city": "Oslo"}, "s1"), ("open_door", {}, "d1"))
    )
    if replied:
        world.model.add(ChatReply.text("Door open; 18 °C."))
    first = await create(world.client, model="m", input="both", tools=[CLIENT_TOOL], **params)
    assert [item["type"] for item in first["output"]] == ["mcp_call", "function_call"]
    output: list[dict[str, Any]] = first["output"]
    return output


async def replay(world: World, items: list[Any], client: openai.AsyncOpenAI | None = None) -> Any:
    """The chat messages the upstream got for a replayed history of ``items``."""
    (call,) = [item for item in items if item["type"] in ("function_call", "item_reference")]
    called = call.get("call_id") or "call_" + call["id"].removeprefix("fc_")
    history = [{"role": "user", "content": "both"}, *items, answer({"call_id": called})]
    await create(client or world.client, model="m", tools=[CLIENT_TOOL], input=history)
    messages = world.model.bodies[-1]["messages"]
    # OpenAI's Chat Completions refuses longer tool call ids.
    assert all(len(c["id"]) <= 40 for m in messages for c in m.get("tool_calls", []))
    return messages


def opened(call: dict[str, Any]) -> tuple[str, str]:
    """The client's answer as the upstream sees it: under the call's id, cut to fit."""
    return upstream_call_id(call["call_id"]), "opened"


def tool_results(messages: Any) -> list[tuple[str, str]]:
    return [(m["tool_call_id"], m["content"]) for m in messages if m["role"] == "tool"]


def calls(messages: Any) -> list[str]:
    return [c["function"]["name"] for m in messages for c in m.get("tool_calls", [])]


async def test_a_dropped_mcp_call_is_put_back_before_the_client_call(world: World) -> None:
    mcp, call = await mixed_turn(world)
    messages = await replay(world, [call])  # pydantic-ai drops the mcp_call
    assert calls(messages) == ["get_weather", "open_door"]
    assert tool_results(messages) == [
        (mcp["id"], WEATHER),
        opened(call),
    ]


async def test_a_replay_without_item_ids_is_restored_by_the_call_id(world: World) -> None:
    """pydantic-ai's default: the client's call by ``call_id`` alone, the mcp_call dropped;
    the call id is ours, so it names the stored turn."""
    mcp, call = await mixed_turn(world)
    assert call["call_id"] == "call_" + call["id"].removeprefix("fc_")
    bare = {k: call[k] for k in ("type", "call_id", "name", "arguments")}
    messages = await replay(world, [bare])
    assert calls(messages) == ["get_weather", "open_door"]
    assert tool_results(messages) == [
        (mcp["id"], WEATHER),
        opened(call),
    ]


async def test_an_answer_to_a_call_named_by_item_reference(world: World) -> None:
    mcp, call = await mixed_turn(world)
    messages = await replay(world, [{"type": "item_reference", "id": call["id"]}])
    assert calls(messages) == ["get_weather", "open_door"]
    assert tool_results(messages) == [
        (mcp["id"], WEATHER),
        opened(call),
    ]


async def test_a_call_id_the_client_made_up_is_left_as_sent(world: World) -> None:
    await mixed_turn(world)
    made_up = {"type": "function_call", "call_id": "d1", "name": "open_door", "arguments": "{}"}
    messages = await replay(world, [made_up])
    assert calls(messages) == ["open_door"]
    assert tool_results(messages) == [("d1", "opened")]


@pytest.mark.parametrize("left_out", [{"output": None}, {}], ids=["null", "absent"])
async def test_a_replayed_mcp_calls_missing_output_comes_from_the_store(
    world: World, left_out: dict[str, Any]
) -> None:
    mcp, call = await mixed_turn(world)
    sent = {k: v for k, v in mcp.items() if k not in ("output", "error", "status")}
    messages = await replay(world, [{**sent, **left_out}, call])  # as @openai/agents does
    assert tool_results(messages) == [
        (mcp["id"], WEATHER),
        opened(call),
    ]


async def test_the_restored_replay_shows_the_model_what_previous_response_id_does(
    world: World,
) -> None:
    mcp, call = await mixed_turn(world)
    first_id = "resp_" + mcp["id"].split("_")[1]
    world.model.add(ChatReply.text("again"))
    await create(
        world.client,
        model="m",
        previous_response_id=first_id,
        tools=[CLIENT_TOOL],
        input=[answer(call)],
    )
    by_id = world.model.bodies[-1]["messages"]
    assert await replay(world, [call]) == by_id


async def test_what_a_client_edits_is_kept(world: World) -> None:
    mcp, call = await mixed_turn(world)
    messages = await replay(world, [{**mcp, "output": "rainy"}, call])
    assert tool_results(messages) == [
        (mcp["id"], "rainy"),
        opened(call),
    ]


async def test_a_turn_stored_with_store_false_is_left_as_sent(world: World) -> None:
    _, call = await mixed_turn(world, store=False)
    messages = await replay(world, [call])
    assert calls(messages) == ["open_door"]


async def test_another_callers_turn_is_left_as_sent(world: World) -> None:
    mcp, call = await mixed_turn(world)
    world.model.add(ChatReply.text("Door open; 18 °C."))
    messages = await replay(world, [{**mcp, "output": None}, call], client=world.other)
    assert calls(messages) == ["get_weather", "open_door"]
    nothing_filled = [(mcp["id"], ""), opened(call)]
    assert tool_results(messages) == nothing_filled
    messages = await replay(world, [call], client=world.other)
    assert calls(messages) == ["open_door"]


async def test_the_next_turn_continues_the_restored_conversation(world: World) -> None:
    mcp, call = await mixed_turn(world)
    history = [{"role": "user", "content": "both"}, call, answer(call)]
    second = await create(world.client, model="m", tools=[CLIENT_TOOL], input=history)
    world.model.add(ChatReply.text("bye"))
    await create(world.client, model="m", previous_response_id=second["id"], input="thanks")
    assert tool_results(world.model.bodies[-1]["messages"]) == [
        (mcp["id"], WEATHER),
        opened(call),
    ]


async def test_each_response_is_read_once_and_at_most_the_cap_of_them(world: World) -> None:
    turns = [await mixed_turn(world, replied=False) for _ in range(MAX_REFERENCED_RESPONSES + 1)]
    world.store.reads.clear()
    world.model.add(ChatReply.text("all done"))
    # Every client call and its answer, each call twice: the earliest turn is past the cap.
    items: list[Any] = []
    for index, (_, call) in enumerate(turns):
        # Call ids the client made up, so only the item ids name the turns.
        items += [{**call, "call_id": f"d1-{index}"}, {**answer(call), "call_id": f"d1-{index}"}]
    items += [{"role": "user", "content": "again"}, items[-2]]
    await create(world.client, model="m", tools=[CLIENT_TOOL], input=items)
    stored = {"resp_" + mcp["id"].split("_")[1] for mcp, _ in turns}
    reads = [read for read in world.store.reads if read in stored]  # not the new response's
    assert len(reads) == len(set(reads)) == MAX_REFERENCED_RESPONSES
    messages = world.model.bodies[-1]["messages"]
    ids = [c["id"] for m in messages for c in m.get("tool_calls", [])]
    assert turns[0][0]["id"] not in ids  # the earliest turn: left as sent
    assert all(mcp["id"] in ids for mcp, _ in turns[1:])  # the latest: restored
