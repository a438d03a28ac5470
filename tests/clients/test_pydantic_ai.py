"""pydantic-ai (pydantic-ai-slim[openai] 2.68.0, over openai 3.57.0): ``Agent`` with
``OpenAIResponsesModel``, ``run`` and ``run_stream``, through ``responseloop serve`` and in
process through :class:`ResponseLoopTransport`."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIResponsesModel, OpenAIResponsesModelSettings
from pydantic_ai.providers.openai import OpenAIProvider

from tests.clients import scripted_model
from tests.clients.conftest import Stack, user_messages
from tests.clients.server_tools import WEATHER


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # pydantic-ai runs on asyncio only


def make_agent(
    client: openai.AsyncOpenAI, keys: list[str] | None = None, **settings: Any
) -> Agent[None, str]:
    model = OpenAIResponsesModel("m", provider=OpenAIProvider(openai_client=client))
    agent: Agent[None, str] = Agent(model, model_settings=OpenAIResponsesModelSettings(**settings))  # type: ignore[typeddict-item]
    if keys is not None:

        @agent.tool_plain
        def client_lookup(key: str) -> str:
            """Look a key up."""
            keys.append(key)
            return f"lookup-{key}"

    return agent


async def run(agent: Agent[None, str], streamed: bool, prompt: str, **kwargs: Any) -> Any:
    """The run's result (``output``, ``all_messages()``), streamed or not."""
    if not streamed:
        return await agent.run(prompt, **kwargs)
    async with agent.run_stream(prompt, **kwargs) as result:
        await result.get_output()
    return result


STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_stream"])


@STREAMED
async def test_plain_answer(client: openai.AsyncOpenAI, streamed: bool) -> None:
    result = await run(make_agent(client), streamed, "say hi")
    assert (await output(result, streamed)) == scripted_model.HELLO


async def output(result: Any, streamed: bool) -> str:
    return str(await result.get_output() if streamed else result.output)


@STREAMED
async def test_client_tool_round_trip(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    keys: list[str] = []
    result = await run(make_agent(client, keys), streamed, "client lookup please")
    assert (await output(result, streamed)) == "Result: lookup-k1"
    assert keys == ["k1"]
    assert stack.upstream_bodies[-1]["messages"][-1]["content"] == "lookup-k1"


@STREAMED
async def test_server_tool(client: openai.AsyncOpenAI, streamed: bool) -> None:
    result = await run(make_agent(client), streamed, "server weather in Paris?")
    assert (await output(result, streamed)) == f"Result: {WEATHER}"


# pydantic-ai replays the client's call and its output but drops the server's mcp_call
# item before it, so the model sees only half of that turn.
@STREAMED
async def test_server_and_client_tool_in_one_turn(
    client: openai.AsyncOpenAI, streamed: bool
) -> None:
    """With item ids sent, pydantic-ai replays the turn's ``mcp_call`` with a null output
    (which the server fills in from the stored item)."""
    keys: list[str] = []
    agent = make_agent(client, keys, openai_send_reasoning_ids=True)
    result = await run(agent, streamed, "both tools now")
    assert (await output(result, streamed)) == f"Result: {WEATHER} | lookup-k1"
    assert keys == ["k1"]


@STREAMED
async def test_server_and_client_tool_in_one_turn_without_item_ids(
    client: openai.AsyncOpenAI, streamed: bool
) -> None:
    """By default pydantic-ai sends no item ids and drops the ``mcp_call``: the client
    call's ``call_id`` (ours, naming the stored turn) brings it back."""
    keys: list[str] = []
    result = await run(make_agent(client, keys), streamed, "both tools now")
    assert (await output(result, streamed)) == f"Result: {WEATHER} | lookup-k1"
    assert keys == ["k1"]


@STREAMED
async def test_multi_turn_by_default_history(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    agent = make_agent(client)
    first = await run(agent, streamed, "my word is plum")
    second = await run(agent, streamed, "what is my word?", message_history=first.all_messages())
    assert (await output(second, streamed)) == "Your word is plum."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is plum", "what is my word?"]


@STREAMED
async def test_multi_turn_by_previous_response_id(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    agent = make_agent(client, openai_previous_response_id="auto")
    first = await run(agent, streamed, "my word is apple")
    second = await run(agent, streamed, "what is my word?", message_history=first.all_messages())
    assert (await output(second, streamed)) == "Your word is apple."
    assert stack.requests[-1].get("previous_response_id")
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is apple", "what is my word?"]


@STREAMED
async def test_multi_turn_by_replayed_history_unstored(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    agent = make_agent(client, openai_store=False)
    first = await run(agent, streamed, "my word is fig")
    second = await run(agent, streamed, "what is my word?", message_history=first.all_messages())
    assert (await output(second, streamed)) == "Your word is fig."
    assert [body.get("store") for body in stack.requests] == [False, False]


@STREAMED
async def test_reasoning_with_a_summary(client: openai.AsyncOpenAI, streamed: bool) -> None:
    agent = make_agent(client, openai_reasoning_summary="auto")
    result = await run(agent, streamed, "think hard")
    assert (await output(result, streamed)) == scripted_model.THOUGHT


@STREAMED
async def test_reasoning_summary_is_shown(client: openai.AsyncOpenAI, streamed: bool) -> None:
    agent = make_agent(client, openai_reasoning_summary="auto")
    result = await run(agent, streamed, "think hard")
    assert stack_reasoning(result) == [scripted_model.REASONING]


def stack_reasoning(result: Any) -> list[str]:
    """The thinking the client shows the user."""
    from pydantic_ai.messages import ModelResponse, ThinkingPart

    return [
        part.content
        for message in result.all_messages()
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ThinkingPart)
    ]
