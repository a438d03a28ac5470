"""The Agents SDK's ``OpenAIResponsesCompactionSession`` (openai-agents 0.24.0) with
``Runner``: after each turn it asks its decision hook and, once that says so, replaces the
stored history with what ``responses.compact`` returns (the user's messages, then one
``compaction`` item), which later turns send back as their input. Through
``responseloop serve`` behind the checking proxy, which holds every Response and compacted
response to the wire checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from agents import Runner, SQLiteSession, set_tracing_disabled
from agents.memory import OpenAIResponsesCompactionSession

from responseloop.core import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX
from tests.clients import scripted_model
from tests.clients.conftest import Stack
from tests.clients.test_openai_agents import agent

# Tracing would export spans to the internet.
set_tracing_disabled(True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Agents SDK runs on asyncio only


@pytest.fixture
async def served(stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key="dummy") as client:
        yield client


def compacting_session(
    client: openai.AsyncOpenAI, mode: Any, name: str
) -> OpenAIResponsesCompactionSession:
    # Compact once two model-made items are stored (the SDK's default waits for ten).
    return OpenAIResponsesCompactionSession(
        name,
        SQLiteSession(name),
        client=client,
        model="gpt-4.1",  # the SDK takes OpenAI model names only; the upstream ignores it
        compaction_mode=mode,
        should_trigger_compaction=lambda context: len(context["compaction_candidate_items"]) >= 2,
    )


def compactions(stack: Stack) -> list[Any]:
    """The upstream calls that asked for a summary."""
    return [
        body
        for body in stack.upstream_bodies
        if body["messages"][-1].get("content") == DEFAULT_COMPACTION_PROMPT
    ]


@pytest.mark.parametrize("mode", ["input", "previous_response_id"])
async def test_the_session_compacts_through_the_server_and_continues_from_it(
    served: openai.AsyncOpenAI, stack: Stack, mode: str
) -> None:
    session = compacting_session(served, mode, f"compacting-{mode}")
    bot = agent(served)
    await Runner.run(bot, "my word is quince", session=session)
    assert compactions(stack) == []  # one model-made item: not yet
    second = await Runner.run(bot, "say hi", session=session)
    assert second.final_output == scripted_model.HELLO

    # The second turn's items passed the hook: the history is now the compacted window.
    [asked] = compactions(stack)
    roles = [m["role"] for m in asked["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    stored: list[Any] = await session.get_items()
    assert [(item.get("type"), item.get("role")) for item in stored] == [
        ("message", "user"),
        ("message", "user"),
        ("compaction", None),
    ]

    third = await Runner.run(bot, "what is my word?", session=session)
    # The user's own message survived the compaction beside the summary.
    assert third.final_output == "Your word is quince."
    (sent,) = [i for i in stack.requests[-1]["input"] if i.get("type") == "compaction"]
    assert sent["encrypted_content"] == stored[-1]["encrypted_content"]
    messages = stack.upstream_bodies[-1]["messages"]
    assert [m["content"] for m in messages] == [
        "my word is quince",
        "say hi",
        SUMMARY_PREFIX + f"{scripted_model.SUMMARY} (2 user messages)",
        "what is my word?",
    ]
    assert len(compactions(stack)) == 1  # one model-made item since: no second compaction
    compacts = [e for e in stack.proxy.exchanges if e.path == "/v1/responses/compact"]
    assert [e.status for e in compacts[-1:]] == [200]
    assert ("previous_response_id" in compacts[-1].body) == (mode == "previous_response_id")
    await session.clear_session()
