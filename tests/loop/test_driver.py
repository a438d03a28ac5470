"""run_response_loop through the public API, with the shipped fakes."""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import pytest

from responseloop import InMemoryStore, LoopConfig
from responseloop.abc import (
    AgentSpec,
    ChainStep,
    Complete,
    Fail,
    LoopEventKind,
    StepKind,
    StepState,
    StepUpdate,
    ToolExecutor,
    ToolKind,
    ToolSchema,
)
from responseloop.exceptions import StoreError
from responseloop.testing import (
    ChatReply,
    RecordingEventSink,
    RecordingStore,
    RecordingToolExecutor,
    ScriptedChatModel,
)
from tests.loop_helpers import RESPONSE_ID, Barrier, chat_body, run


def messages_of(model: ScriptedChatModel, call: int) -> list[dict[str, Any]]:
    body = model.requests[call].json
    assert isinstance(body, dict)
    messages = body["messages"]
    assert isinstance(messages, list)
    return messages


async def chain_of(store: InMemoryStore, scope: str | None = None) -> list[ChainStep]:
    return list(await store.list_chain(RESPONSE_ID, scope))


async def test_single_model_call_completes_with_the_completion() -> None:
    store = InMemoryStore()
    model = ScriptedChatModel([ChatReply.text("hello")])

    outcome = await run(model, store=store)

    assert isinstance(outcome, Complete)
    assert outcome.payload["choices"][0]["message"]["content"] == "hello"
    chain = await chain_of(store)
    assert [(s.kind, s.state, s.sequence) for s in chain] == [
        (StepKind.MODEL_CALL, StepState.COMPLETED, 1)
    ]
    assert chain[0].response_payload == outcome.payload
    request = model.requests[0]
    assert request.url == "http://upstream.invalid/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.correlation_id == chain[0].id
    assert request.json == chat_body()


async def test_three_server_tools_run_concurrently_and_answer_in_call_order() -> None:
    barrier = Barrier(3)
    finish_order: list[str] = []

    def tool(name: str) -> Any:
        async def handler(arguments: Any) -> Any:
            await barrier.wait()
            # Finish in reverse call order, so call order in the answer is not an accident.
            await anyio.sleep({"a": 0.03, "b": 0.02, "c": 0.0}[name])
            finish_order.append(name)
            return {"result": name, "arguments": arguments}

        return handler

    tools = RecordingToolExecutor()
    for name in "abc":
        tools.add(name, tool(name))
    model = ScriptedChatModel(
        [
            ChatReply.calls(
                ("a", {"n": 1}, "call_a"), ("b", {"n": 2}, "call_b"), ("c", {}, "call_c")
            ),
            ChatReply.text("done"),
        ]
    )
    store = InMemoryStore()

    outcome = await run(model, store=store, tools=tools)

    assert isinstance(outcome, Complete)
    assert barrier.max_concurrent == 3
    assert finish_order == ["c", "b", "a"]
    follow_up = messages_of(model, 1)
    assert [(m["role"], m.get("tool_call_id")) for m in follow_up[1:]] == [
        ("assistant", None),
        ("tool", "call_a"),
        ("tool", "call_b"),
        ("tool", "call_c"),
    ]
    assert json.loads(follow_up[2]["content"]) == {"result": "a", "arguments": {"n": 1}}
    assert sorted(c.call_id for c in tools.calls) == ["call_a", "call_b", "call_c"]


async def test_steps_are_chained_by_prev_step_id_in_sequence_order() -> None:
    store = InMemoryStore()
    tools = RecordingToolExecutor()
    tools.add("a")
    tools.add("b")
    model = ScriptedChatModel(
        [
            ChatReply.calls(("a", {}, "c1"), ("b", {}, "c2")),
            ChatReply.tool_call("a", {}, call_id="c3"),
            ChatReply.text("done"),
        ]
    )

    await run(model, store=store, tools=tools)

    chain = await chain_of(store)
    assert [s.sequence for s in chain] == [1, 2, 3, 4, 5, 6]
    assert [s.prev_step_id for s in chain] == [None, *[s.id for s in chain[:-1]]]
    assert [s.kind for s in chain] == [
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
    ]
    assert all(s.state is StepState.COMPLETED for s in chain)
    assert len({s.id for s in chain}) == 6


async def test_a_failing_tool_is_recorded_on_its_step_and_fed_back() -> None:
    def broken(arguments: Any) -> Any:
        raise RuntimeError("disk on fire")

    tools = RecordingToolExecutor()
    tools.add("broken", broken)
    store = InMemoryStore()
    model = ScriptedChatModel(
        [ChatReply.tool_call("broken", {}, call_id="c1"), ChatReply.text("sorry")]
    )

    outcome = await run(model, store=store, tools=tools)

    assert isinstance(outcome, Complete)
    tool_step = (await chain_of(store))[1]
    assert tool_step.state is StepState.FAILED
    assert tool_step.error is not None
    assert tool_step.error["type"] == "tool_error"
    assert "RuntimeError" in tool_step.error["message"]
    # The exception's text may hold secrets: only the type reaches the model.
    assert "disk on fire" not in json.dumps(tool_step.error)
    answer = messages_of(model, 1)[-1]
    assert answer["tool_call_id"] == "c1"
    assert "RuntimeError" in json.loads(answer["content"])["error"]


async def test_tool_errors_fail_the_response_when_configured() -> None:
    def broken(arguments: Any) -> Any:
        raise RuntimeError("no")

    tools = RecordingToolExecutor()
    tools.add("broken", broken)
    model = ScriptedChatModel([ChatReply.tool_call("broken", {}), ChatReply.text("unused")])

    outcome = await run(model, tools=tools, config=LoopConfig(tool_errors="fail"))

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "tool_error"
    assert model.remaining == 1


class FailingStore(RecordingStore):
    """Fails one method, to show store errors propagate."""

    def __init__(self, method: str) -> None:
        super().__init__(InMemoryStore())
        self.method = method

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, **fence: str | None
    ) -> None:
        if self.method == "update_step:completed" and update.state is StepState.COMPLETED:
            raise StoreError("database went away")
        await super().update_step(response_id, step_id, update, **fence)

    async def record_step(self, *args: Any, **fence: Any) -> Any:
        if self.method == "record_step":
            raise StoreError("database went away")
        return await super().record_step(*args, **fence)


@pytest.mark.parametrize("method", ["update_step:completed", "record_step"])
async def test_a_store_error_propagates(method: str) -> None:
    model = ScriptedChatModel([ChatReply.text("hello")])
    with pytest.raises(StoreError, match="database went away"):
        await run(model, store=FailingStore(method))


async def test_a_store_error_in_a_fan_out_propagates_and_cancels_siblings() -> None:
    store = FailingStore("none")
    started = anyio.Event()

    async def slow(arguments: Any) -> Any:
        started.set()
        await anyio.sleep_forever()

    async def quick(arguments: Any) -> Any:
        await started.wait()
        store.method = "update_step:completed"
        return "ok"

    tools = RecordingToolExecutor()
    tools.add("slow", slow)
    tools.add("quick", quick)
    model = ScriptedChatModel([ChatReply.calls(("slow", {}, "c1"), ("quick", {}, "c2"))])

    with pytest.raises(StoreError):
        await run(model, store=store, tools=tools)

    chain = list(await store.inner.list_chain(RESPONSE_ID, None))
    assert chain[1].state is StepState.CANCELLED  # the sibling did not run on forever


async def test_the_iteration_cap_ends_a_tool_ping_pong() -> None:
    tools = RecordingToolExecutor()
    tools.add("again")
    model = ScriptedChatModel(ChatReply.tool_call("again", {}) for _ in range(10))
    store = InMemoryStore()

    outcome = await run(model, store=store, tools=tools, config=LoopConfig(max_iterations=3))

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "max_iterations_exceeded"
    assert outcome.error["code"] == "server_error"
    assert len(model.requests) == 3
    assert all(s.state.is_terminal for s in await chain_of(store))


def nested_agents(levels: int, leaf: RecordingToolExecutor) -> tuple[AgentSpec, ToolExecutor]:
    """An agent whose tools hold an agent whose tools hold … ``levels`` deep: the top
    agent's spec, and its sub-agent's tools."""
    tools: ToolExecutor = leaf
    spec = AgentSpec(instructions="level 0")
    for level in range(1, levels):
        holder = RecordingToolExecutor()
        holder.add(ToolSchema("delegate", kind=ToolKind.AGENT, agent=spec), sub_agent_tools=tools)
        spec, tools = AgentSpec(instructions=f"level {level}"), holder
    return spec, tools


async def test_an_agent_tool_runs_a_sub_loop_in_its_own_scope() -> None:
    leaf = RecordingToolExecutor()
    leaf.add("lookup", lambda args: {"found": args["q"]})
    tools = RecordingToolExecutor()
    tools.add(
        ToolSchema(
            "research",
            kind=ToolKind.AGENT,
            agent=AgentSpec(instructions="You research.", model="small-model"),
        ),
        sub_agent_tools=leaf,
    )
    model = ScriptedChatModel(
        [
            ChatReply.tool_call("research", {"input": "find x"}, call_id="top"),
            ChatReply.tool_call("lookup", {"q": "x"}, call_id="sub"),
            ChatReply.text("x is 42"),
            ChatReply.text("The answer is 42."),
        ]
    )
    store = InMemoryStore()

    outcome = await run(model, store=store, tools=tools)

    assert isinstance(outcome, Complete)
    top = await chain_of(store)
    assert [s.kind for s in top] == [StepKind.MODEL_CALL, StepKind.TOOL_CALL, StepKind.MODEL_CALL]
    agent_step = top[1]
    assert agent_step.response_payload == "x is 42"
    sub = await chain_of(store, agent_step.id)
    assert [s.kind for s in sub] == [StepKind.MODEL_CALL, StepKind.TOOL_CALL, StepKind.MODEL_CALL]
    assert all(s.scope == agent_step.id for s in sub)
    assert [s.sequence for s in sub] == [3, 4, 5]  # sequences are per response, across scopes
    sub_request = model.requests[1].json
    assert sub_request["model"] == "small-model"
    assert sub_request["messages"][:2] == [
        {"role": "system", "content": "You research."},
        {"role": "user", "content": "find x"},
    ]
    assert [c.name for c in leaf.calls] == ["lookup"]
    assert [c.name for c in tools.calls] == []  # agent tools are never "executed"
    assert messages_of(model, 3)[-1] == {
        "role": "tool",
        "tool_call_id": "top",
        "content": "x is 42",
    }


async def test_the_depth_cap_fails_the_agent_step_that_would_nest_too_deep() -> None:
    top_tools = RecordingToolExecutor()
    spec, sub_agent_tools = nested_agents(3, RecordingToolExecutor())
    top_tools.add(
        ToolSchema("delegate", kind=ToolKind.AGENT, agent=spec), sub_agent_tools=sub_agent_tools
    )

    def delegate_or_answer(request: Any) -> ChatReply:
        names = [t["function"]["name"] for t in request.json.get("tools", [])]
        if "delegate" in names and request.json["messages"][-1]["role"] != "tool":
            return ChatReply.tool_call("delegate", {"input": "go deeper"})
        return ChatReply.text("stopped")

    model = ScriptedChatModel([delegate_or_answer] * 20)
    store = InMemoryStore()

    outcome = await run(model, store=store, tools=top_tools, config=LoopConfig(max_depth=2))

    assert isinstance(outcome, Complete)
    depth1 = (await chain_of(store))[1]
    depth2 = (await chain_of(store, depth1.id))[1]
    depth3 = (await chain_of(store, depth2.id))[1]
    assert depth3.state is StepState.FAILED
    assert depth3.error is not None
    assert depth3.error["type"] == "max_depth_exceeded"
    assert await chain_of(store, depth3.id) == []  # the too-deep sub-loop never started
    assert depth2.state is StepState.COMPLETED
    assert depth1.state is StepState.COMPLETED


async def test_unknown_tools_are_never_executed_and_are_answered_as_unavailable() -> None:
    tools = RecordingToolExecutor()
    tools.add("allowed")
    model = ScriptedChatModel(
        [
            ChatReply.calls(("allowed", {}, "c1"), ("secret_admin_tool", {}, "c2")),
            ChatReply.text("ok"),
        ]
    )

    outcome = await run(model, tools=tools)

    assert isinstance(outcome, Complete)
    assert [c.name for c in tools.calls] == ["allowed"]
    answers = {
        m["tool_call_id"]: m["content"] for m in messages_of(model, 1) if m["role"] == "tool"
    }
    assert "not available" in json.loads(answers["c2"])["error"]


async def test_client_tools_complete_the_response_after_server_tools_ran() -> None:
    tools = RecordingToolExecutor()
    tools.add("server_side")
    client_tool = {"type": "function", "function": {"name": "client_side", "parameters": {}}}
    model = ScriptedChatModel(
        [ChatReply.calls(("server_side", {}, "s1"), ("client_side", {"x": 1}, "c1"))]
    )
    store = InMemoryStore()

    outcome = await run(model, store=store, tools=tools, body=chat_body(tools=[client_tool]))

    assert isinstance(outcome, Complete)
    assert [c.name for c in tools.calls] == ["server_side"]
    assert len(model.requests) == 1
    chain = await chain_of(store)
    assert [s.kind for s in chain] == [StepKind.MODEL_CALL, StepKind.TOOL_CALL]


async def test_max_tool_calls_caps_the_whole_response() -> None:
    tools = RecordingToolExecutor()
    tools.add("t")
    model = ScriptedChatModel(
        [ChatReply.calls(("t", {}, "1"), ("t", {}, "2")), ChatReply.tool_call("t", {}, call_id="3")]
    )

    outcome = await run(model, tools=tools, config=LoopConfig(max_tool_calls=2))

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "max_tool_calls_exceeded"
    assert len(tools.calls) == 2


async def test_a_step_timeout_fails_the_step_not_the_loop() -> None:
    async def hangs(arguments: Any) -> Any:
        await anyio.sleep_forever()

    tools = RecordingToolExecutor()
    tools.add("hangs", hangs)
    model = ScriptedChatModel([ChatReply.tool_call("hangs", {}), ChatReply.text("gave up")])
    store = InMemoryStore()

    outcome = await run(model, store=store, tools=tools, config=LoopConfig(step_timeout=0.05))

    assert isinstance(outcome, Complete)
    tool_step = (await chain_of(store))[1]
    assert tool_step.state is StepState.FAILED
    assert tool_step.error is not None
    assert "timed out" in tool_step.error["message"]


async def test_the_response_deadline_fails_the_response_and_cancels_in_flight_steps() -> None:
    model = ScriptedChatModel([ChatReply.text("never", delay=math.inf)])
    store = InMemoryStore()

    outcome = await run(model, store=store, config=LoopConfig(response_timeout=0.05))

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "deadline_exceeded"
    assert [s.state for s in await chain_of(store)] == [StepState.CANCELLED]


async def test_cancellation_mid_fan_out_leaves_no_step_in_flight() -> None:
    barrier = Barrier(3)

    async def hangs(arguments: Any) -> Any:
        await barrier.wait()
        await anyio.sleep_forever()

    tools = RecordingToolExecutor()
    tools.add("hangs", hangs)
    model = ScriptedChatModel([ChatReply.calls(*[("hangs", {}, f"c{i}") for i in range(3)])])
    store = InMemoryStore()

    async with anyio.create_task_group() as group:

        async def runner() -> None:
            await run(model, store=store, tools=tools)

        group.start_soon(runner)
        await barrier.all_arrived.wait()
        group.cancel_scope.cancel()

    chain = await chain_of(store)
    assert [s.state for s in chain] == [StepState.COMPLETED] + [StepState.CANCELLED] * 3


async def test_events_follow_the_loop_and_streamed_calls_forward_chunks() -> None:
    tools = RecordingToolExecutor()
    tools.add("t")
    sink = RecordingEventSink()
    model = ScriptedChatModel([ChatReply.tool_call("t", {"a": 1}), ChatReply.text("Hello world")])

    outcome = await run(model, tools=tools, events=sink, body=chat_body(stream=True))

    assert isinstance(outcome, Complete)
    kinds = [e.kind for e in sink.events]
    assert kinds[0] is LoopEventKind.RESPONSE_STARTED
    assert kinds[-1] is LoopEventKind.RESPONSE_COMPLETED
    assert sink.events[-1].data == outcome.payload
    started = sink.of_kind(LoopEventKind.STEP_STARTED)
    assert [e.step_kind for e in started] == [
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
    ]
    assert [e.sequence for e in started] == [1, 2, 3]
    chunks = [e for e in sink.of_kind(LoopEventKind.MODEL_CHUNK) if e.sequence == 3]
    text = "".join(c.data["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Hello world"
    tool_done = sink.of_kind(LoopEventKind.STEP_COMPLETED)[1]
    assert tool_done.data == {"tool": "t", "arguments": {"a": 1}}


async def test_a_failing_event_sink_does_not_stop_the_loop() -> None:
    class GoneSink:
        calls = 0

        async def emit(self, event: Any) -> None:
            GoneSink.calls += 1
            raise ConnectionResetError("client went away")

    model = ScriptedChatModel([ChatReply.text("still done")])
    outcome = await run(model, events=GoneSink())
    assert isinstance(outcome, Complete)
    assert GoneSink.calls == 1  # after the first failure the sink is left alone


async def test_an_upstream_error_fails_the_model_step_and_the_response() -> None:
    store = InMemoryStore()
    model = ScriptedChatModel([ChatReply.error(400, "bad prompt with sk-secret")])

    outcome = await run(model, store=store)

    assert isinstance(outcome, Fail)
    assert outcome.error == {
        "type": "upstream_error",
        "code": "invalid_prompt",
        "message": "upstream answered HTTP 400: bad prompt with [redacted]",
        "status": 400,
    }
    assert "sk-secret" not in json.dumps(dict(outcome.error))
    assert [s.state for s in await chain_of(store)] == [StepState.FAILED]
