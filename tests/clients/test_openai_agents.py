"""The OpenAI Agents SDK (openai-agents 0.24.0, over openai 3.57.0): ``Runner.run`` and
``Runner.run_streamed`` with ``OpenAIResponsesModel``, through ``responseloop serve`` and in
process through :class:`ResponseLoopTransport`."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIConversationsSession,
    OpenAIResponsesModel,
    Runner,
    RunResult,
    RunResultStreaming,
    function_tool,
    set_tracing_disabled,
)
from openai.types.shared import Reasoning

from tests.clients import scripted_model
from tests.clients.conftest import Stack, user_messages
from tests.clients.server_tools import WEATHER

# Tracing would export spans to the internet.
set_tracing_disabled(True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Agents SDK runs on asyncio only


class Lookups:
    """The client's tool, counting its runs."""

    def __init__(self) -> None:
        self.keys: list[str] = []

        @function_tool
        def client_lookup(key: str) -> str:
            """Look a key up."""
            self.keys.append(key)
            return f"lookup-{key}"

        self.tool = client_lookup


def agent(client: openai.AsyncOpenAI, *tools: Any, **settings: Any) -> Agent[Any]:
    return Agent(
        name="tester",
        model=OpenAIResponsesModel(model="m", openai_client=client),
        tools=list(tools),
        model_settings=ModelSettings(**settings),
    )


async def run(
    bot: Agent[Any], streamed: bool, input: Any, **kwargs: Any
) -> RunResult | RunResultStreaming:
    if not streamed:
        return await Runner.run(bot, input, **kwargs)
    result = Runner.run_streamed(bot, input, **kwargs)
    async for _ in result.stream_events():
        pass
    return result


STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])


@STREAMED
async def test_plain_answer(client: openai.AsyncOpenAI, streamed: bool) -> None:
    result = await run(agent(client), streamed, "say hi")
    assert result.final_output == scripted_model.HELLO


@STREAMED
async def test_client_tool_round_trip(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    lookups = Lookups()
    result = await run(agent(client, lookups.tool), streamed, "client lookup please")
    assert result.final_output == "Result: lookup-k1"
    assert lookups.keys == ["k1"]
    assert stack.upstream_bodies[-1]["messages"][-1]["content"] == "lookup-k1"


@STREAMED
async def test_server_tool(client: openai.AsyncOpenAI, streamed: bool, stack: Stack) -> None:
    result = await run(agent(client), streamed, "server weather in Paris?")
    assert result.final_output == f"Result: {WEATHER}"
    assert len(stack.upstream_bodies) == 2


@STREAMED
async def test_server_and_client_tool_in_one_turn(
    client: openai.AsyncOpenAI, streamed: bool
) -> None:
    lookups = Lookups()
    result = await run(agent(client, lookups.tool), streamed, "both tools now")
    assert result.final_output == f"Result: {WEATHER} | lookup-k1"
    assert lookups.keys == ["k1"]


@STREAMED
async def test_multi_turn_by_previous_response_id(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    bot = agent(client)
    first = await run(bot, streamed, "my word is apple")
    second = await run(
        bot, streamed, "what is my word?", previous_response_id=first.last_response_id
    )
    assert second.final_output == "Your word is apple."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is apple", "what is my word?"]


@STREAMED
async def test_multi_turn_by_default_history(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    bot = agent(client)
    first = await run(bot, streamed, "my word is plum")
    history = [*first.to_input_list(), {"role": "user", "content": "what is my word?"}]
    second = await run(bot, streamed, history)
    assert second.final_output == "Your word is plum."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is plum", "what is my word?"]


@STREAMED
async def test_multi_turn_by_replayed_history_unstored(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    bot = agent(client, store=False)
    first = await run(bot, streamed, "my word is fig")
    history = [*first.to_input_list(), {"role": "user", "content": "what is my word?"}]
    second = await run(bot, streamed, history)
    assert second.final_output == "Your word is fig."
    assert all(body.get("store") is False for body in stack.requests)


@STREAMED
async def test_reasoning_with_a_summary(client: openai.AsyncOpenAI, streamed: bool) -> None:
    bot = agent(client, reasoning=Reasoning(summary="auto"))
    result = await run(bot, streamed, "think hard")
    assert result.final_output == scripted_model.THOUGHT
    assert [item.type for item in result.new_items] == ["reasoning_item", "message_output_item"]


@STREAMED
async def test_multi_turn_by_conversations_session(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    """``OpenAIConversationsSession`` keeps the history in a server conversation: it lists
    the items before each turn and adds the turn's items after it."""
    session = OpenAIConversationsSession(openai_client=client)
    bot = agent(client)
    await run(bot, streamed, "my word is pear", session=session)
    second = await run(bot, streamed, "what is my word?", session=session)
    assert second.final_output == "Your word is pear."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is pear", "what is my word?"]
    items = await session.get_items()
    assert [item.get("role") for item in items] == ["user", "assistant", "user", "assistant"]
    await session.clear_session()


@STREAMED
async def test_multi_turn_by_conversation_id(
    client: openai.AsyncOpenAI, streamed: bool, stack: Stack
) -> None:
    """``conversation_id``: the server continues the conversation and adds each turn."""
    conversation = await client.conversations.create()
    bot = agent(client)
    await run(bot, streamed, "my word is kiwi", conversation_id=conversation.id)
    second = await run(bot, streamed, "what is my word?", conversation_id=conversation.id)
    assert second.final_output == "Your word is kiwi."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is kiwi", "what is my word?"]
    assert all(body["conversation"] == conversation.id for body in stack.requests)
    listed = [item async for item in client.conversations.items.list(conversation.id)]
    assert len(listed) == 4
