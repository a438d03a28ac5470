"""Fewer store writes on a :class:`~responseloop.abc.StepAdvancingStore`: a model call
that ran alone has its completion written with the start of the steps after it, and on
every way out of the scope (its end, a cap, a failing transition) the completion is still
written before anything else happens. A tool call's result is stored as it returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from responseloop import ChatTransition, InMemoryStore, LoopConfig, run_response_loop
from responseloop.abc import (
    ChainStep,
    Complete,
    Fail,
    LoopEventKind,
    NextAction,
    Scope,
    StepKind,
    StepState,
    ToolSchema,
    Transition,
)
from responseloop.exceptions import MaxToolCallsExceeded
from responseloop.testing import (
    ChatReply,
    RecordingEventSink,
    RecordingToolExecutor,
    ScriptedChatModel,
)
from tests.loop_helpers import RESPONSE_ID, UPSTREAM, chat_body, new_response, run
from tests.reliability.harness import HookedAdvancingStore


class Writes:
    """A hook keeping the store writes in the order they land."""

    def __init__(self) -> None:
        self.landed: list[str] = []

    async def __call__(self, point: str) -> None:
        method, _, when = point.rpartition(":")
        if when == "after" and not method.startswith(("get_", "list_")):
            self.landed.append(method)


def lookup_tools() -> RecordingToolExecutor:
    tools = RecordingToolExecutor()
    tools.add("lookup", lambda arguments: {"found": arguments})
    return tools


def two_rounds() -> ScriptedChatModel:
    return ScriptedChatModel(
        [
            ChatReply.tool_call("lookup", {"i": 1}, call_id="c1"),
            ChatReply.tool_call("lookup", {"i": 2}, call_id="c2"),
            ChatReply.text("done"),
        ]
    )


async def test_a_model_calls_completion_is_written_with_the_steps_after_it() -> None:
    inner, writes = InMemoryStore(), Writes()
    store = HookedAdvancingStore(inner, writes)
    outcome = await run(two_rounds(), store=store, tools=lookup_tools())

    assert isinstance(outcome, Complete)
    step_writes = [w for w in writes.landed if "step" in w]
    assert step_writes == [
        "record_started_steps",  # the first model call
        "complete_and_start_steps",  # it completes, the first tool starts
        "update_step:completed",  # the tool's result, stored as it returns
        "record_started_steps",  # the second model call
        "complete_and_start_steps",
        "update_step:completed",
        "record_started_steps",
        "update_step:completed",  # the last model call: nothing follows it
    ]
    chain = list(await inner.list_chain(RESPONSE_ID, None))
    assert [(s.kind, s.state) for s in chain] == [
        (StepKind.MODEL_CALL, StepState.COMPLETED),
        (StepKind.TOOL_CALL, StepState.COMPLETED),
        (StepKind.MODEL_CALL, StepState.COMPLETED),
        (StepKind.TOOL_CALL, StepState.COMPLETED),
        (StepKind.MODEL_CALL, StepState.COMPLETED),
    ]
    assert chain[1].response_payload is not None
    assert [s.prev_step_id for s in chain] == [None, *(s.id for s in chain[:-1])]


async def test_the_chain_and_the_events_are_those_of_the_two_write_path() -> None:
    """The same response over an advancing store and over one that only starts steps."""

    class StartingOnly(InMemoryStore):
        complete_and_start_steps = None  # type: ignore[assignment]

    found = []
    for store in (InMemoryStore(step_ids=iter_ids()), StartingOnly(step_ids=iter_ids())):
        sink = RecordingEventSink()
        outcome = await run(two_rounds(), store=store, tools=lookup_tools(), events=sink)
        chain = list(await store.list_chain(RESPONSE_ID, None))
        found.append((outcome, chain, [(e.kind, e.step_id, e.data) for e in sink.events]))
    assert found[0] == found[1]
    events = found[0][2]
    completed = [i for i, (kind, _, _) in enumerate(events) if kind is LoopEventKind.STEP_COMPLETED]
    started = [i for i, (kind, _, _) in enumerate(events) if kind is LoopEventKind.STEP_STARTED]
    assert len(completed) == len(started) == 5
    # Each step's completion is told before the next step's start.
    assert all(done < start for done, start in zip(completed, started[1:], strict=False))


def iter_ids() -> Any:
    numbers = iter(range(1, 100))
    return lambda: f"step_{next(numbers)}"


async def test_a_decision_ending_the_scope_still_writes_the_held_completion() -> None:
    store, writes = InMemoryStore(), Writes()
    sink = RecordingEventSink()
    outcome = await run(
        ScriptedChatModel([ChatReply.text("hi")]),
        store=HookedAdvancingStore(store, writes),
        events=sink,
    )

    assert isinstance(outcome, Complete)
    (only,) = await store.list_chain(RESPONSE_ID, None)
    assert (only.kind, only.state) == (StepKind.MODEL_CALL, StepState.COMPLETED)
    assert [w for w in writes.landed if "step" in w] == [
        "record_started_steps",
        "update_step:completed",
    ]
    assert len(sink.of_kind(LoopEventKind.STEP_COMPLETED)) == 1


async def test_the_tool_call_cap_writes_the_held_completion_before_it_ends_the_response() -> None:
    store = InMemoryStore()
    outcome = await run(
        two_rounds(),
        store=HookedAdvancingStore(store, Writes()),
        tools=lookup_tools(),
        config=LoopConfig(max_tool_calls=1),
    )
    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == MaxToolCallsExceeded.error_type
    chain = list(await store.list_chain(RESPONSE_ID, None))
    assert [(s.kind, s.state) for s in chain] == [
        (StepKind.MODEL_CALL, StepState.COMPLETED),
        (StepKind.TOOL_CALL, StepState.COMPLETED),
        (StepKind.MODEL_CALL, StepState.COMPLETED),
    ]


class Broken(Exception):
    """A transition's own bug."""


class FailsOnDecision:
    """ChatTransition, but its ``fails_at``-th decision raises."""

    def __init__(self, fails_at: int) -> None:
        self.inner = ChatTransition(chat_body())
        self.fails_at = fails_at
        self.decisions = 0

    def decide(self, chain: Sequence[ChainStep], scope: Scope, config: LoopConfig) -> NextAction:
        self.decisions += 1
        if self.decisions == self.fails_at:
            raise Broken("the transition failed")
        return self.inner.decide(chain, scope, config)

    def sub_agent(self, step: ChainStep, tool: ToolSchema) -> Transition:
        return self.inner.sub_agent(step, tool)


async def test_a_failing_transition_still_leaves_the_step_that_ran_completed() -> None:
    store = InMemoryStore()
    await new_response(store)
    with pytest.raises(Broken):
        await run_response_loop(
            RESPONSE_ID,
            store=HookedAdvancingStore(store, Writes()),
            http_client=two_rounds(),
            upstream=UPSTREAM,
            transition=FailsOnDecision(fails_at=2),
            tools=lookup_tools(),
        )
    (only,) = await store.list_chain(RESPONSE_ID, None)
    assert (only.kind, only.state) == (StepKind.MODEL_CALL, StepState.COMPLETED)
    assert only.response_payload is not None
