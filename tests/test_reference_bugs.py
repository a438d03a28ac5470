"""Bugs of the Rust reference (REFERENCE-SPEC §9.1) that this library does not have, where
no other test already shows it; docs/migrating.md cites these."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from responseloop import InMemoryStore, LoopConfig, ResponseLoopTransport
from responseloop.abc import Complete, Fail, HttpRequest, StepDescriptor, StepKind, StepUpdate
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import RESPONSE_ID, chat_body, new_response, run


def fails_for(bad: set[str]) -> Any:
    def tool(arguments: Any) -> Any:
        if arguments["q"] in bad:
            raise RuntimeError("boom")
        return {"found": arguments["q"]}

    return tool


async def test_a_failed_tool_before_a_successful_sibling_still_fails_the_response() -> None:
    # §9.1.5: the reference decided from the last terminal sibling only, so a failure
    # followed by a success was masked.
    tools = RecordingToolExecutor()
    tools.add("lookup", fails_for({"a"}))
    model = ScriptedChatModel(
        [ChatReply.calls(("lookup", {"q": "a"}, "call_a"), ("lookup", {"q": "b"}, "call_b"))]
    )
    outcome = await run(model, tools=tools, config=LoopConfig(tool_errors="fail"))
    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "tool_error"
    assert sorted(call.call_id for call in tools.calls) == ["call_a", "call_b"]


async def test_every_sibling_is_answered_under_its_own_call_id_when_fed_back() -> None:
    # §9.1.1, §9.1.5 and §9.1.13: each tool result reaches the model under the model's own
    # call id, a failed one as an error, and the executor is given that call id too.
    tools = RecordingToolExecutor()
    tools.add("lookup", fails_for({"a"}))
    model = ScriptedChatModel(
        [
            ChatReply.calls(("lookup", {"q": "a"}, "call_a"), ("lookup", {"q": "b"}, "call_b")),
            ChatReply.text("done"),
        ]
    )
    outcome = await run(model, tools=tools)
    assert isinstance(outcome, Complete)
    answers = {
        message["tool_call_id"]: message["content"]
        for message in model.requests[1].json["messages"]
        if message["role"] == "tool"
    }
    assert answers == {
        "call_a": json.dumps({"error": "tool 'lookup' failed: RuntimeError"}),
        "call_b": json.dumps({"found": "b"}),
    }
    assert {call.call_id for call in tools.calls} == {"call_a", "call_b"}


async def test_the_iteration_cap_counts_model_calls_already_in_the_stored_chain() -> None:
    # §9.1.12: the reference counted decisions in memory, so a resumed response started its
    # count again. Here a stored chain with one model call and its tool call, resumed
    # under max_iterations=1, may not make a second model call.
    store = InMemoryStore()
    await new_response(store)
    body = chat_body()
    reply = ChatReply.tool_call("lookup", {"q": "a"}, call_id="call_a")
    first = await store.record_step(RESPONSE_ID, None, None, StepDescriptor.model_call(body))
    await store.update_step(RESPONSE_ID, first.id, StepUpdate.processing())
    await store.update_step(
        RESPONSE_ID,
        first.id,
        StepUpdate.completed(reply.completion(HttpRequest("http://x", body), 1)),
    )
    tool = StepDescriptor.tool_call("lookup", "call_a", {"q": "a"})
    second = await store.record_step(RESPONSE_ID, None, first.id, tool)
    await store.update_step(RESPONSE_ID, second.id, StepUpdate.processing())
    await store.update_step(RESPONSE_ID, second.id, StepUpdate.completed({"found": "a"}))
    tools = RecordingToolExecutor()
    tools.add("lookup")
    model = ScriptedChatModel([ChatReply.text("unreached")])

    outcome = await run(
        model, store=store, tools=tools, config=LoopConfig(max_iterations=1), create=False
    )

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "max_iterations_exceeded"
    assert model.requests == []
    assert tools.calls == []


@pytest.mark.parametrize(
    "payload", [{"call_id": "c"}, {"name": "", "call_id": "c"}, {"name": "t", "call_id": None}]
)
def test_a_tool_step_without_a_name_or_call_id_is_refused_before_it_is_recorded(
    payload: dict[str, Any],
) -> None:
    # §9.1.6: the reference aborted on such a step after recording it, leaving it stuck in
    # processing; here the descriptor cannot be built, so it never reaches the store.
    with pytest.raises(ValueError, match="tool_call step needs"):
        StepDescriptor(StepKind.TOOL_CALL, payload)


async def test_get_on_a_failed_response_shows_its_error_not_a_payload() -> None:
    # §9.1.11: GET on a failed multi-step response showed server_error with the payload's
    # JSON text as its message.
    model = ScriptedChatModel([ChatReply.error(429, '{"provider": "details"}')])
    transport = ResponseLoopTransport.to_upstream("http://upstream.invalid/v1", http_client=model)
    async with openai.AsyncOpenAI(
        base_url="http://responseloop.local/v1",
        api_key="caller-key",
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    ) as client:
        created = await client.responses.create(model="m", input="hi")
        fetched = await client.responses.retrieve(created.id)
    assert fetched.status == "failed"
    assert fetched.error is not None
    assert (fetched.error.code, fetched.error.type) == ("rate_limit_exceeded", "upstream_error")
    assert fetched.error.message == "upstream answered HTTP 429"
    assert fetched.model_dump() == created.model_dump()
