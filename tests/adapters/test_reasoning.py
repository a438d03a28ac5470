"""Reasoning round trips through the official openai client, the in-process transport and
a real loopback chat-completions server that streams reasoning: summaries, sealed
``encrypted_content``, and reasoning sent back reaching the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx2
import openai
import pytest

from responseloop import (
    HttpxClient,
    InMemoryStore,
    ResponseLoopTransport,
    ResponsesService,
)
from responseloop.chat._translate import upstream_call_id
from responseloop.openresponses import WireOptions
from responseloop.openresponses._sealing import open_reasoning
from responseloop.testing import ChatReply
from tests.in_process import sse_events
from tests.loopback_upstream import Upstream, running_upstream
from tests.openai_shapes import validate_response
from tests.stream_checks import check_stream

SECRET = b"operator secret for the tests"
CODEX: dict[str, Any] = {
    # What Codex sends on every turn (store: false, sealed reasoning, summaries).
    "model": "m",
    "instructions": "You are a coding agent.",
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "reasoning": {"effort": "medium", "summary": "auto"},
    "parallel_tool_calls": False,
    "tool_choice": "auto",
    "prompt_cache_key": "session-1",
    "tools": [
        {
            "type": "function",
            "name": "shell",
            "description": "Runs a command.",
            "strict": False,
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ],
}


@attrs.define
class World:
    model: Upstream
    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient


@pytest.fixture
def wire() -> WireOptions:
    return WireOptions(reasoning_key=SECRET)


@pytest.fixture
async def world(wire: WireOptions) -> AsyncIterator[World]:
    async with running_upstream() as upstream, HttpxClient.create() as http_client:
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target("sk-up"),
            wire=wire,
        )
        http = httpx2.AsyncClient(transport=ResponseLoopTransport(service))
        async with openai.AsyncOpenAI(
            base_url="http://responseloop.test/v1", api_key="sk-caller", http_client=http
        ) as client:
            yield World(upstream, client, http)


async def raw_stream(world: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with world.http.stream(
        "POST", "http://responseloop.test/v1/responses", json=body
    ) as answer:
        assert answer.status_code == 200, await answer.aread()
        return await sse_events(answer)


def items(*entries: Any) -> Any:
    """Input items as the SDK takes them (its TypedDicts do not cover every dict here)."""
    return list(entries)


def dumped(item: Any) -> dict[str, Any]:
    value: dict[str, Any] = item.model_dump(mode="json", exclude_none=True)
    return value


async def test_a_codex_turn_streams_its_summary_and_seals_its_reasoning(world: World) -> None:
    world.model.add(ChatReply.text("Done.", reasoning="First I list the files, then I read."))
    events = await raw_stream(world, {**CODEX, "input": "list the files"})
    response = events[-1]["response"]
    check_stream(events, response)
    validate_response(response)
    assert world.model.bodies[0]["stream"] is True
    deltas = [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"]
    assert len(deltas) > 1  # delta by delta, as the upstream streamed it
    assert "".join(deltas) == "First I list the files, then I read."
    reasoning = response["output"][0]
    assert reasoning["summary"] == [
        {"type": "summary_text", "text": "First I list the files, then I read."}
    ]
    sealed = reasoning["encrypted_content"]
    assert open_reasoning(sealed, SECRET) == "First I list the files, then I read."
    assert "First I list" not in sealed


async def test_the_sdk_helper_follows_the_summary_stream(world: World) -> None:
    world.model.add(ChatReply.text("4", reasoning="2 and 2"))
    async with world.client.responses.stream(
        model="m", input="2+2?", reasoning={"summary": "concise"}
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.reasoning_summary_part.added" in kinds
    assert final.output[0].type == "reasoning"
    assert final.output[0].summary[0].text == "2 and 2"


async def test_a_store_false_replay_brings_the_reasoning_back_to_the_upstream(
    world: World,
) -> None:
    world.model.add(
        ChatReply.tool_call("shell", {"command": "ls"}, call_id="c1", reasoning="Look first."),
        ChatReply.text("Two files.", reasoning="ls showed two."),
    )
    body = {**CODEX, "stream": False}
    first = await world.client.responses.create(**body, input="what is here?")
    reasoning, call = first.output
    assert reasoning.type == "reasoning"
    assert reasoning.encrypted_content
    second = await world.client.responses.create(
        **body,
        input=items(
            {"role": "user", "content": "what is here?"},
            dumped(reasoning),
            dumped(call),
            {"type": "function_call_output", "call_id": call.call_id, "output": "a.txt b.txt"},
        ),
    )
    validate_response(second.model_dump(mode="json", exclude_unset=True, by_alias=True))
    assert second.output_text == "Two files."
    messages = world.model.bodies[1]["messages"]
    assert messages[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": upstream_call_id(call.call_id),
                "type": "function",
                "function": {"name": "shell", "arguments": '{"command": "ls"}'},
            }
        ],
        "reasoning_content": "Look first.",
    }


async def test_a_tampered_blob_is_a_400_naming_it(world: World) -> None:
    world.model.add(ChatReply.text("4", reasoning="2 and 2"))
    first = await world.client.responses.create(**{**CODEX, "stream": False}, input="2+2?")
    reasoning = dumped(first.output[0])
    blob = reasoning["encrypted_content"]
    reasoning["encrypted_content"] = blob[:-6] + ("AAAAAA" if blob[-6:] != "AAAAAA" else "BBBBBB")
    with pytest.raises(openai.BadRequestError) as caught:
        await world.client.responses.create(
            **{**CODEX, "stream": False},
            input=items(
                {"role": "user", "content": "2+2?"},
                reasoning,
                {"role": "user", "content": "?"},
            ),
        )
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "input[1].encrypted_content"
    assert len(world.model.bodies) == 1  # nothing went upstream


async def test_previous_response_id_and_item_reference_carry_the_reasoning(
    world: World,
) -> None:
    world.model.add(
        ChatReply.text("Hi.", reasoning="Greet back."),
        ChatReply.text("Again."),
        ChatReply.text("Thrice."),
    )
    first = await world.client.responses.create(
        model="m", input="hello", include=["reasoning.encrypted_content"]
    )
    await world.client.responses.create(model="m", input="and again", previous_response_id=first.id)
    assert world.model.bodies[1]["messages"][1] == {
        "role": "assistant",
        "content": "Hi.",
        "reasoning_content": "Greet back.",
    }
    reasoning, message = first.output
    await world.client.responses.create(
        model="m",
        store=False,
        input=items(
            {"role": "user", "content": "hello"},
            {"type": "item_reference", "id": reasoning.id},
            {"type": "item_reference", "id": message.id},
            {"role": "user", "content": "once more"},
        ),
        previous_response_id=first.id,
    )
    replayed = [m for m in world.model.bodies[2]["messages"] if "reasoning_content" in m]
    assert [m["reasoning_content"] for m in replayed] == ["Greet back.", "Greet back."]


@pytest.mark.parametrize("wire", [WireOptions(replay_reasoning_as=None)], ids=["none"])
async def test_replay_can_be_turned_off_and_without_a_key_codex_still_completes(
    world: World,
) -> None:
    world.model.add(ChatReply.text("ok", reasoning="thinking"), ChatReply.text("ok again"))
    events = await raw_stream(world, {**CODEX, "input": "go"})
    response = events[-1]["response"]
    check_stream(events, response)
    assert response["status"] == "completed"
    assert "encrypted_content" not in response["output"][0]  # no key: nothing is sealed
    await world.client.responses.create(
        **{**CODEX, "stream": False},
        input=items(
            {"role": "user", "content": "go"},
            *response["output"],
            {"role": "user", "content": "next?"},
        ),
    )
    assert all("reasoning_content" not in m for m in world.model.bodies[1]["messages"])
