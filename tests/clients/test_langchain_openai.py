"""langchain-openai (langchain-openai 1.7.4, langchain-core 1.8.3, over openai 3.57.0):
``ChatOpenAI(use_responses_api=True)``, ``ainvoke`` and ``astream``, through ``responseloop
serve`` and in process through :class:`ResponseLoopTransport`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.clients import scripted_model
from tests.clients.conftest import Stack, in_process_http, user_messages
from tests.clients.server_tools import WEATHER

Make = Callable[..., ChatOpenAI]
KEY = SecretStr("dummy")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # langchain runs on asyncio only


@pytest.fixture(params=["serve", "in_process"])
async def chat(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[Make]:
    """Makes a ``ChatOpenAI`` (with the given settings) pointed at the server."""
    if request.param == "serve":
        yield lambda **kw: ChatOpenAI(
            model="m", base_url=stack.base_url, api_key=KEY, use_responses_api=True, **kw
        )
        return
    async with in_process_http(stack) as http:
        yield lambda **kw: ChatOpenAI(
            model="m",
            base_url="http://responseloop/v1",
            api_key=KEY,
            use_responses_api=True,
            http_async_client=http,
            **kw,
        )


@tool
def client_lookup(key: str) -> str:
    """Look a key up."""
    return f"lookup-{key}"


async def ask(llm: Any, streamed: bool, messages: Any) -> AIMessage:
    if not streamed:
        answer: AIMessage = await llm.ainvoke(messages)
        return answer
    total: Any = None
    async for chunk in llm.astream(messages):
        total = chunk if total is None else total + chunk
    assert total is not None
    return AIMessage(
        content=total.content,
        tool_calls=total.tool_calls,
        response_metadata=total.response_metadata,
        id=total.id,
    )


STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["ainvoke", "astream"])


@STREAMED
async def test_plain_answer(chat: Make, streamed: bool) -> None:
    answer = await ask(chat(), streamed, "say hi")
    assert answer.text == scripted_model.HELLO


@STREAMED
async def test_client_tool_round_trip(chat: Make, streamed: bool, stack: Stack) -> None:
    llm = chat().bind_tools([client_lookup])
    history: list[BaseMessage] = [HumanMessage("client lookup please")]
    call = await ask(llm, streamed, history)
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [
        ("client_lookup", scripted_model.CLIENT_LOOKUP)
    ]
    output = client_lookup.invoke(call.tool_calls[0]["args"])
    history += [call, ToolMessage(output, tool_call_id=call.tool_calls[0]["id"])]
    answer = await ask(llm, streamed, history)
    assert answer.text == "Result: lookup-k1"
    assert stack.upstream_bodies[-1]["messages"][-1]["content"] == "lookup-k1"


@STREAMED
async def test_server_tool(chat: Make, streamed: bool) -> None:
    answer = await ask(chat(), streamed, "server weather in Paris?")
    assert answer.text == f"Result: {WEATHER}"
    assert answer.tool_calls == []  # nothing for the client to run


@STREAMED
async def test_server_and_client_tool_in_one_turn(chat: Make, streamed: bool) -> None:
    llm = chat().bind_tools([client_lookup])
    history: list[BaseMessage] = [HumanMessage("both tools now")]
    call = await ask(llm, streamed, history)
    assert [c["name"] for c in call.tool_calls] == ["client_lookup"]
    history += [call, ToolMessage("lookup-k1", tool_call_id=call.tool_calls[0]["id"])]
    answer = await ask(llm, streamed, history)
    assert answer.text == f"Result: {WEATHER} | lookup-k1"


@STREAMED
async def test_multi_turn_by_default_history(chat: Make, streamed: bool, stack: Stack) -> None:
    llm = chat()
    history: list[BaseMessage] = [HumanMessage("my word is plum")]
    history += [await ask(llm, streamed, history), HumanMessage("what is my word?")]
    answer = await ask(llm, streamed, history)
    assert answer.text == "Your word is plum."
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is plum", "what is my word?"]


@STREAMED
async def test_multi_turn_by_previous_response_id(chat: Make, streamed: bool, stack: Stack) -> None:
    llm = chat(use_previous_response_id=True)
    history: list[BaseMessage] = [HumanMessage("my word is apple")]
    history += [await ask(llm, streamed, history), HumanMessage("what is my word?")]
    answer = await ask(llm, streamed, history)
    assert answer.text == "Your word is apple."
    assert stack.requests[-1].get("previous_response_id")
    assert user_messages(stack.upstream_bodies[-1]) == ["my word is apple", "what is my word?"]


@STREAMED
async def test_multi_turn_by_replayed_history_unstored(
    chat: Make, streamed: bool, stack: Stack
) -> None:
    llm = chat(store=False)
    history: list[BaseMessage] = [HumanMessage("my word is fig")]
    history += [await ask(llm, streamed, history), HumanMessage("what is my word?")]
    answer = await ask(llm, streamed, history)
    assert answer.text == "Your word is fig."


@STREAMED
async def test_reasoning_answer(chat: Make, streamed: bool) -> None:
    answer = await ask(chat(reasoning={"summary": "auto"}), streamed, "think hard")
    assert answer.text == scripted_model.THOUGHT


@STREAMED
async def test_reasoning_summary_is_shown(chat: Make, streamed: bool) -> None:
    answer = await ask(chat(reasoning={"summary": "auto"}), streamed, "think hard")
    reasoning = [b.get("reasoning") for b in answer.content_blocks if b["type"] == "reasoning"]
    assert reasoning == [scripted_model.REASONING]
