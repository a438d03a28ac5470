"""``item_reference`` items naming items of any earlier stored response of the same caller
(issue 14): the Vercel AI SDK's multi-turn bodies, and the official openai client, through
the in-process transport with a real loopback upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx2
import openai
import pytest

from responseloop import (
    HttpxClient,
    ResponseLoopTransport,
    ResponsesService,
)
from responseloop.chat._translate import upstream_call_id
from responseloop.openresponses._references import MAX_REFERENCED_RESPONSES
from responseloop.testing import ChatReply
from tests.loop_helpers import CountingStore
from tests.loopback_upstream import Upstream, running_upstream

DATA = Path(__file__).parent.parent / "data" / "ai_sdk_item_reference_turns.json"
URL = "http://responseloop.test/v1/responses"


@attrs.define
class World:
    model: Upstream
    store: CountingStore
    http: httpx2.AsyncClient
    alice: openai.AsyncOpenAI
    bob: openai.AsyncOpenAI

    async def post(self, body: dict[str, Any], key: str = "sk-alice") -> httpx2.Response:
        return await self.http.post(URL, json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running_upstream() as upstream, HttpxClient.create() as http_client:
        store = CountingStore()
        service = ResponsesService(
            store=store,
            http_client=http_client,
            upstream=upstream.target("sk-upstream"),
        )
        http = httpx2.AsyncClient(transport=ResponseLoopTransport(service))
        clients = [
            openai.AsyncOpenAI(
                base_url="http://responseloop.test/v1", api_key=key, http_client=http, max_retries=0
            )
            for key in ("sk-alice", "sk-bob")
        ]
        async with clients[0] as alice, clients[1] as bob:
            yield World(upstream, store, http, alice, bob)


def _id(item_id: str | None) -> str:
    assert item_id is not None
    return item_id


def ref(item_id: str | None) -> Any:
    """An item_reference input item (the SDK's param types cannot tell it apart)."""
    return {"type": "item_reference", "id": _id(item_id)}


def _filled(value: Any, ids: dict[str, str], tools: Any) -> Any:
    if value == "$TOOLS":
        return tools
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_filled(v, ids, tools) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v, ids, tools) for k, v in value.items()}
    return value


async def test_the_ai_sdk_three_turn_chat_with_store_true(world: World) -> None:
    data = json.loads(DATA.read_text())
    world.model.add(
        ChatReply.text("I am a helpful assistant."),
        ChatReply.tool_call("weather", {"location": "Oslo"}, call_id="call_oslo"),
        ChatReply.text("It is 18 degrees in Oslo."),
    )
    ids: dict[str, str] = {}
    answers = []
    for turn in data["turns"]:
        answer = await world.post(_filled(turn, ids, data["tools"]))
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        for item in answers[-1]["output"]:
            ids.setdefault(
                {"message": "$MSG_1", "function_call": "$FC_2"}[item["type"]], item["id"]
            )
            if item["type"] == "function_call":
                # The recorded answer's call id stands for the one the server gave the call.
                ids["call_oslo"] = item["call_id"]

    assert answers[2]["output"][0]["content"][0]["text"] == "It is 18 degrees in Oslo."
    user_1 = {"role": "user", "content": "Hi, who are you?"}
    said_1 = {"role": "assistant", "content": "I am a helpful assistant."}
    user_2 = {"role": "user", "content": "What is the weather in Oslo?"}
    assert world.model.bodies[1]["messages"] == [user_1, said_1, user_2]
    called = world.model.bodies[2]["messages"][3]
    assert called["role"] == "assistant"
    assert [(c["id"], c["function"]["name"]) for c in called["tool_calls"]] == [
        (upstream_call_id(ids["call_oslo"]), "weather")
    ]
    assert json.loads(called["tool_calls"][0]["function"]["arguments"]) == {"location": "Oslo"}
    assert world.model.bodies[2]["messages"][:3] == [user_1, said_1, user_2]
    assert world.model.bodies[2]["messages"][4:] == [
        {
            "role": "tool",
            "tool_call_id": upstream_call_id(ids["call_oslo"]),
            "content": '{"temperature":18}',
        }
    ]


async def test_references_span_earlier_responses_with_one_read_each(world: World) -> None:
    world.model.add(ChatReply.text("one"), ChatReply.text("two"), ChatReply.text("three"))
    first = await world.alice.responses.create(model="m", input="first")
    second = await world.alice.responses.create(model="m", input="second")
    listed = await world.alice.responses.input_items.list(first.id)
    world.store.reads.clear()

    await world.alice.responses.create(
        model="m",
        input=[
            ref(listed.data[0].id),  # an input item
            ref(first.output[0].id),
            ref(second.output[0].id),
            {"role": "user", "content": "third"},
        ],
    )

    assert world.model.bodies[2]["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "third"},
    ]
    referenced = [r for r in world.store.reads if r in (first.id, second.id)]
    assert sorted(referenced) == sorted([first.id, second.id])


async def test_a_turn_after_a_referencing_one_continues_what_its_model_was_shown(
    world: World,
) -> None:
    world.model.add(ChatReply.text("one"), ChatReply.text("two"), ChatReply.text("three"))
    first = await world.alice.responses.create(model="m", input="first")
    second = await world.alice.responses.create(
        model="m",
        input=[
            ref(first.output[0].id),
            {"role": "user", "content": "again"},
        ],
    )
    await world.alice.responses.create(model="m", previous_response_id=second.id, input="more")

    assert world.model.bodies[2]["messages"] == [
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "more"},
    ]


async def _refused(world: World, item_id: str, key: str = "sk-alice") -> dict[str, Any]:
    answer = await world.post(
        {
            "model": "m",
            "input": [{"role": "user", "content": "hi"}, {"type": "item_reference", "id": item_id}],
        },
        key,
    )
    assert answer.status_code == 400, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["param"] == "input[1].id"
    return error


async def test_another_callers_item_looks_exactly_like_an_unknown_one(world: World) -> None:
    world.model.add(ChatReply.text("secret"))
    theirs = await world.bob.responses.create(model="m", input="mine")
    item_id = _id(theirs.output[0].id)
    unknown_id = item_id[:-1] + "9"

    refused = await _refused(world, item_id)
    unknown = await _refused(world, unknown_id)

    assert refused["message"] == unknown["message"].replace(unknown_id, item_id)
    assert len(world.model.bodies) == 1  # nothing was sent upstream


async def test_items_of_unstored_and_deleted_responses_are_gone(world: World) -> None:
    world.model.add(ChatReply.text("kept"), ChatReply.text("deleted"))
    unstored = await world.alice.responses.create(model="m", input="a", store=False)
    deleted = await world.alice.responses.create(model="m", input="b")
    await world.alice.responses.delete(deleted.id)

    for item_id in (_id(unstored.output[0].id), _id(deleted.output[0].id), "msg_nonsense", "x"):
        error = await _refused(world, item_id)
        assert item_id in error["message"]


async def test_references_may_name_a_bounded_number_of_responses(world: World) -> None:
    many = [
        {"type": "item_reference", "id": f"msg_{n:032x}_0"}
        for n in range(MAX_REFERENCED_RESPONSES + 5)
    ]
    answer = await world.post({"model": "m", "input": many})

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == f"input[{MAX_REFERENCED_RESPONSES}].id"
    assert len(set(world.store.reads)) <= MAX_REFERENCED_RESPONSES + 1  # + its own id
