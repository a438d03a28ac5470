"""The official openai-python client (openai 3.57.0), through ``responseloop serve`` (behind
the checking proxy) and in process through :class:`ResponseLoopTransport`."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from responseloop.chat._translate import upstream_call_id
from tests.clients import scripted_model
from tests.clients.conftest import Stack, user_messages
from tests.clients.server_tools import WEATHER

CLIENT_LOOKUP = {
    "type": "function",
    "name": "client_lookup",
    "description": "Look a key up (run by the client).",
    "parameters": {"type": "object", "properties": {"key": {"type": "string"}}},
}


async def create(client: openai.AsyncOpenAI, stream: bool, **kwargs: Any) -> Any:
    """``responses.create``, streamed or not; the final Response either way."""
    if not stream:
        return await client.responses.create(model="m", **kwargs)
    final = None
    async for event in await client.responses.create(model="m", stream=True, **kwargs):
        if event.type == "response.completed":
            final = event.response
    assert final is not None
    return final


async def answer_lookup(client: openai.AsyncOpenAI, stream: bool, first: Any, call_id: str) -> Any:
    """The turn after ``first``: the client ran its lookup (call ``call_id``) and answers
    ``lookup-k1``, continuing by ``previous_response_id``."""
    return await create(
        client,
        stream,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call_id, "output": "lookup-k1"}],
        tools=[CLIENT_LOOKUP],
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_plain_answer(client: openai.AsyncOpenAI, stream: bool) -> None:
    response = await create(client, stream, input="say hi")
    assert response.output_text == scripted_model.HELLO


@pytest.mark.parametrize("stream", [False, True])
async def test_client_tool_round_trip(
    client: openai.AsyncOpenAI, stream: bool, stack: Stack
) -> None:
    first = await create(client, stream, input="client lookup please", tools=[CLIENT_LOOKUP])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("client_lookup", scripted_model.CLIENT_LOOKUP)
    ]
    second = await answer_lookup(client, stream, first, calls[0].call_id)
    assert second.output_text == "Result: lookup-k1"
    # Our call id, cut to the 40 characters OpenAI's Chat Completions allows.
    assert stack.upstream_bodies[-1]["messages"][-1] == {
        "role": "tool", "tool_call_id": upstream_call_id(calls[0].call_id), "content": "lookup-k1"
    }  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_server_tool_answer(client: openai.AsyncOpenAI, stream: bool, stack: Stack) -> None:
    response = await create(client, stream, input="server weather in Paris?")
    assert response.output_text == f"Result: {WEATHER}"
    assert len(stack.upstream_bodies) == 2


async def test_server_tool_is_one_mcp_call(client: openai.AsyncOpenAI) -> None:
    response = await create(client, False, input="server weather in Paris?")
    assert [item.type for item in response.output] == ["mcp_call", "message"]
    assert response.output[0].name == "server_weather"
    assert response.output[0].output == WEATHER


@pytest.mark.parametrize("stream", [False, True])
async def test_server_and_client_tool_in_one_turn(
    client: openai.AsyncOpenAI, stream: bool, stack: Stack
) -> None:
    first = await create(client, stream, input="both tools now", tools=[CLIENT_LOOKUP])
    pending = [i for i in first.output if i.type == "function_call" and i.name == "client_lookup"]
    assert len(pending) == 1
    assert first.status == "completed"
    second = await answer_lookup(client, stream, first, pending[0].call_id)
    assert second.output_text == f"Result: {WEATHER} | lookup-k1"
    # The server ran its tool once, before handing the turn to the client.
    last = stack.upstream_bodies[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "tool"] == [WEATHER, "lookup-k1"]


@pytest.mark.parametrize("stream", [False, True])
async def test_multi_turn_by_previous_response_id(
    client: openai.AsyncOpenAI, stream: bool, stack: Stack
) -> None:
    first = await create(client, stream, input="my word is apple")
    second = await create(client, stream, previous_response_id=first.id, input="what is my word?")
    assert second.output_text == "Your word is apple."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is apple", "what is my word?"]


@pytest.mark.parametrize("stream", [False, True])
async def test_multi_turn_by_replayed_history(
    client: openai.AsyncOpenAI, stream: bool, stack: Stack
) -> None:
    history: list[Any] = [{"role": "user", "content": "my word is pear"}]
    first = await create(client, stream, input=history, store=False)
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"role": "user", "content": "what is my word?"})
    second = await create(client, stream, input=history, store=False)
    assert second.output_text == "Your word is pear."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is pear", "what is my word?"]


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_answer(client: openai.AsyncOpenAI, stream: bool) -> None:
    response = await create(client, stream, input="think hard", reasoning={"summary": "auto"})
    assert response.output_text == scripted_model.THOUGHT
    assert [item.type for item in response.output] == ["reasoning", "message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_summary(client: openai.AsyncOpenAI, stream: bool) -> None:
    response = await create(client, stream, input="think hard", reasoning={"summary": "auto"})
    summary = response.output[0].summary
    assert [part.text for part in summary] == [scripted_model.REASONING]
