"""Resume: the loop continues a stored chain, never re-running what completed."""

from __future__ import annotations

from typing import Any

import pytest

from responseloop import InMemoryStore, LoopConfig
from responseloop.abc import (
    Complete,
    Fail,
    HttpRequest,
    StepDescriptor,
    StepState,
    StepUpdate,
    ToolSchema,
)
from responseloop.testing import ChatReply, RecordingStore, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import RESPONSE_ID, chat_body, new_response, run

FIRST_BODY = chat_body()


def completion(reply: ChatReply) -> Any:
    return reply.completion(HttpRequest("http://upstream.invalid", FIRST_BODY), 1)


async def stored_step(
    store: InMemoryStore,
    descriptor: StepDescriptor,
    *,
    state: StepState,
    result: Any = None,
    prev: str | None = None,
) -> str:
    recorded = await store.record_step(RESPONSE_ID, None, prev, descriptor)
    if state is not StepState.PENDING:
        await store.update_step(RESPONSE_ID, recorded.id, StepUpdate.processing())
    if state is StepState.COMPLETED:
        await store.update_step(RESPONSE_ID, recorded.id, StepUpdate.completed(result))
    return recorded.id


async def a_store_after_a_tool_call(tool_state: StepState) -> tuple[InMemoryStore, str]:
    """A store whose worker died after the model asked for tool ``t``: the tool's step is in
    ``tool_state``."""
    store = InMemoryStore()
    await new_response(store)
    model_step = await stored_step(
        store,
        StepDescriptor.model_call(FIRST_BODY),
        state=StepState.COMPLETED,
        result=completion(ChatReply.tool_call("t", {"x": 1}, call_id="call_1")),
    )
    tool_step = await stored_step(
        store,
        StepDescriptor.tool_call("t", "call_1", {"x": 1}),
        state=tool_state,
        result={"value": 7},
        prev=model_step,
    )
    return store, tool_step


def tools_with(schema: ToolSchema) -> RecordingToolExecutor:
    tools = RecordingToolExecutor()
    tools.add(schema, lambda args: {"value": 8})
    return tools


async def test_a_chain_whose_last_step_completed_resumes_without_re_running_it() -> None:
    store, tool_step = await a_store_after_a_tool_call(StepState.COMPLETED)
    tools = tools_with(ToolSchema("t"))
    model = ScriptedChatModel([ChatReply.text("resumed")])

    outcome = await run(model, store=store, tools=tools, create=False)

    assert isinstance(outcome, Complete)
    assert tools.calls == []
    assert len(model.requests) == 1
    messages = model.requests[0].json["messages"]
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"value": 7}'}
    chain = await store.list_chain(RESPONSE_ID, None)
    assert [s.sequence for s in chain] == [1, 2, 3]
    assert chain[2].prev_step_id == tool_step


async def test_an_abandoned_tool_step_fails_the_response_by_default() -> None:
    store, _tool_step = await a_store_after_a_tool_call(StepState.PROCESSING)
    tools = tools_with(ToolSchema("t", idempotent=True))
    model = ScriptedChatModel([ChatReply.text("unused")])

    outcome = await run(model, store=store, tools=tools, create=False)

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "step_abandoned"
    assert tools.calls == []
    assert model.requests == []
    chain = await store.list_chain(RESPONSE_ID, None)
    assert chain[1].state is StepState.FAILED
    assert chain[1].error is not None
    assert chain[1].error["type"] == "step_abandoned"


async def test_an_abandoned_idempotent_tool_is_re_fired_when_allowed() -> None:
    store, tool_step = await a_store_after_a_tool_call(StepState.PROCESSING)
    tools = tools_with(ToolSchema("t", idempotent=True))
    model = ScriptedChatModel([ChatReply.text("resumed")])
    config = LoopConfig(refire_idempotent_tools=True)

    outcome = await run(model, store=store, tools=tools, config=config, create=False)

    assert isinstance(outcome, Complete)
    assert [(c.name, c.call_id) for c in tools.calls] == [("t", "call_1")]
    chain = await store.list_chain(RESPONSE_ID, None)
    assert chain[1].id == tool_step
    assert chain[1].state is StepState.COMPLETED
    assert chain[1].response_payload == {"value": 8}


async def test_a_non_idempotent_tool_is_never_re_fired() -> None:
    store, _ = await a_store_after_a_tool_call(StepState.PROCESSING)
    tools = tools_with(ToolSchema("t", idempotent=False))
    config = LoopConfig(refire_idempotent_tools=True, refire_model_calls=True)

    outcome = await run(ScriptedChatModel(), store=store, tools=tools, config=config, create=False)

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "step_abandoned"
    assert tools.calls == []


async def test_a_pending_step_never_started_and_is_simply_run() -> None:
    store, _ = await a_store_after_a_tool_call(StepState.PENDING)
    tools = tools_with(ToolSchema("t"))
    model = ScriptedChatModel([ChatReply.text("resumed")])

    outcome = await run(model, store=store, tools=tools, create=False)

    assert isinstance(outcome, Complete)
    assert len(tools.calls) == 1


@pytest.mark.parametrize("refire", [False, True])
async def test_an_abandoned_model_call_is_re_fired_only_when_allowed(refire: bool) -> None:
    store = InMemoryStore()
    await new_response(store)
    await stored_step(store, StepDescriptor.model_call(FIRST_BODY), state=StepState.PROCESSING)
    model = ScriptedChatModel([ChatReply.text("second try")])

    outcome = await run(
        model, store=store, config=LoopConfig(refire_model_calls=refire), create=False
    )

    chain = await store.list_chain(RESPONSE_ID, None)
    assert len(chain) == 1
    if refire:
        assert isinstance(outcome, Complete)
        assert chain[0].state is StepState.COMPLETED
        assert model.requests[0].json == FIRST_BODY
    else:
        assert isinstance(outcome, Fail)
        assert outcome.error["type"] == "step_abandoned"
        assert chain[0].state is StepState.FAILED
        assert model.requests == []


async def test_a_fan_out_cut_short_while_recording_is_completed_not_lost() -> None:
    store = InMemoryStore()
    await new_response(store)
    reply = ChatReply.calls(("t", {"n": 1}, "call_1"), ("t", {"n": 2}, "call_2"))
    model_step = await stored_step(
        store,
        StepDescriptor.model_call(FIRST_BODY),
        state=StepState.COMPLETED,
        result=completion(reply),
    )
    await stored_step(
        store,
        StepDescriptor.tool_call("t", "call_1", {"n": 1}),
        state=StepState.COMPLETED,
        result="first",
        prev=model_step,
    )
    tools = tools_with(ToolSchema("t"))
    model = ScriptedChatModel([ChatReply.text("both answered")])

    outcome = await run(model, store=store, tools=tools, create=False)

    assert isinstance(outcome, Complete)
    assert [(c.call_id, c.arguments) for c in tools.calls] == [("call_2", {"n": 2})]
    answers = [m for m in model.requests[0].json["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in answers] == [
        ("call_1", "first"),
        ("call_2", '{"value": 8}'),
    ]


@pytest.mark.parametrize("rounds", [1, 5, 20])
async def test_store_round_trips_per_step_do_not_grow_with_the_chain(rounds: int) -> None:
    store = RecordingStore(InMemoryStore())
    tools = RecordingToolExecutor()
    tools.add("t")
    script = [ChatReply.tool_call("t", {"i": i}) for i in range(rounds)]
    model = ScriptedChatModel([*script, ChatReply.text("done")])

    outcome = await run(
        model, store=store, tools=tools, config=LoopConfig(max_iterations=rounds + 1)
    )

    assert isinstance(outcome, Complete)
    steps = 2 * rounds + 1
    assert store.counts == {
        "create_response": 1,
        "claim_response": 1,
        "release_response": 1,
        "list_chain": 1,
        "record_step": steps,
        "update_step:processing": steps,
        "update_step:completed": steps,
    }


async def test_a_compaction_killed_mid_summary_is_re_fired_even_without_refire_model_calls() -> (
    None
):
    from responseloop import ChatTransition, run_response_loop
    from responseloop.abc import StepKind
    from responseloop.core import SUMMARY_PREFIX
    from tests.loop_helpers import UPSTREAM

    store = InMemoryStore()
    await new_response(store)
    model_step = await stored_step(
        store,
        StepDescriptor.model_call(FIRST_BODY),
        state=StepState.COMPLETED,
        result=completion(ChatReply.tool_call("t", {"x": 1}, call_id="call_1")),
    )
    tool_step = await stored_step(
        store,
        StepDescriptor.tool_call("t", "call_1", {"x": 1}),
        state=StepState.COMPLETED,
        result={"value": 7},
        prev=model_step,
    )
    summary_body = {"model": "m", "messages": [{"role": "user", "content": "summarise"}]}
    # The worker died while the upstream was writing the summary.
    await stored_step(
        store,
        StepDescriptor.compaction(summary_body),
        state=StepState.PROCESSING,
        prev=tool_step,
    )
    model = ScriptedChatModel([ChatReply.text("the summary"), ChatReply.text("done")])

    outcome = await run_response_loop(
        RESPONSE_ID,
        store=store,
        http_client=model,
        upstream=UPSTREAM,
        transition=ChatTransition(FIRST_BODY, compact_threshold=1),
        tools=tools_with(ToolSchema("t")),
        config=LoopConfig(refire_model_calls=False),
    )

    assert isinstance(outcome, Complete)
    chain = await store.list_chain(RESPONSE_ID, None)
    assert [(s.kind, s.state) for s in chain] == [
        (StepKind.MODEL_CALL, StepState.COMPLETED),
        (StepKind.TOOL_CALL, StepState.COMPLETED),
        (StepKind.COMPACTION, StepState.COMPLETED),
        (StepKind.MODEL_CALL, StepState.COMPLETED),
    ]
    # Re-fired as it was recorded, then the model was sent the compacted window.
    assert model.requests[0].json == summary_body
    assert model.requests[1].json["messages"][-1] == {
        "role": "user",
        "content": SUMMARY_PREFIX + "the summary",
    }
