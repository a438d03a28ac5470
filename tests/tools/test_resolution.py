"""CompositeToolExecutor, resolvers, ResolvedTools, and tenant isolation through the loop."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest

from responseloop import (
    ChatTransition,
    FunctionTools,
    InMemoryStore,
    LoopConfig,
    RequestContext,
    ResponseRecord,
    StaticToolResolver,
    run_response_loop,
)
from responseloop.abc import (
    AppendSteps,
    ChainStep,
    Complete,
    Fail,
    NextAction,
    Scope,
    StepDescriptor,
    StepState,
    ToolExecutor,
    ToolResolver,
    ToolSchema,
)
from responseloop.exceptions import ToolExecutionError, ToolNotFound
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from responseloop.tools import (
    AgentTool,
    CompositeToolExecutor,
    HttpTool,
    HttpToolExecutor,
    MappingToolResolver,
    ResolvedTools,
)
from responseloop.tools.mcp import McpToolExecutor
from tests.tools._loop import UPSTREAM, run_loop, tool_outputs

CTX = RequestContext(response_id="r")


def named_tools(*names: str, calls: list[str] | None = None) -> FunctionTools:
    tools = FunctionTools()
    for name in names:

        def run(name: str = name) -> str:
            if calls is not None:
                calls.append(name)
            return f"{name} ran"

        tools.tool(run, name=name, parameters={"type": "object", "properties": {}})
    return tools


async def test_composite_merges_and_routes() -> None:
    calls: list[str] = []
    composite = CompositeToolExecutor(
        named_tools("a", "b", calls=calls), named_tools("c", calls=calls)
    )
    assert [s.name for s in await composite.tools(CTX)] == ["a", "b", "c"]
    assert composite.tool_names == frozenset({"a", "b", "c"})
    assert await composite.execute("c", "1", {}, CTX) == "c ran"
    assert await composite.execute("a", "2", {}, CTX) == "a ran"
    assert calls == ["c", "a"]
    with pytest.raises(ToolNotFound):
        await composite.execute("z", "3", {}, CTX)


def test_composite_rejects_duplicate_names_at_construction() -> None:
    with pytest.raises(ValueError, match=r"more than one executor: \['b'\]"):
        CompositeToolExecutor(named_tools("a", "b"), AgentTool("b", "Agent b."))
    with pytest.raises(ValueError, match="more than one executor"):
        CompositeToolExecutor(named_tools("x"), HttpToolExecutor([HttpTool("x", "http://h")]))


async def test_composite_checks_executors_that_cannot_name_their_tools_up_front() -> None:
    dynamic = RecordingToolExecutor()  # names known only through tools(ctx)
    dynamic.add("a")
    composite = CompositeToolExecutor(named_tools("a"), dynamic)
    assert composite.tool_names is None
    with pytest.raises(ToolExecutionError, match=r"more than one executor: \['a'\]"):
        await composite.tools(CTX)
    # An unconnected MCP executor cannot name its tools yet either.
    assert CompositeToolExecutor(McpToolExecutor([])).tool_names is None


async def test_resolved_subset_lists_and_runs_only_its_names() -> None:
    calls: list[str] = []
    shared = named_tools("public", "admin", calls=calls)
    subset = ResolvedTools.subset(shared, ["public", "absent"])
    assert [s.name for s in await subset.tools(CTX)] == ["public"]
    assert subset.tool_names == frozenset({"public"})
    assert await subset.execute("public", "1", {}, CTX) == "public ran"
    with pytest.raises(ToolNotFound):
        await subset.execute("admin", "2", {}, CTX)
    assert calls == ["public"]
    assert ResolvedTools(shared).tool_names == frozenset({"public", "admin"})
    with pytest.raises(TypeError, match="not one string"):
        ResolvedTools(shared, "public")


async def test_resolvers() -> None:
    a, b, fallback = named_tools("a"), named_tools("b"), named_tools("f")
    static: ToolResolver = StaticToolResolver(a)
    assert await static.resolve("anything", "m") is a
    by_key = MappingToolResolver({"key-a": a, "key-b": b}, default=fallback)
    assert await by_key.resolve("key-a", "m") is a
    assert await by_key.resolve("key-b", "m") is b
    assert await by_key.resolve("stranger", "m") is fallback
    assert await by_key.resolve(None, "m") is fallback
    assert "key-a" not in repr(by_key)
    only_gpt = MappingToolResolver({"key-a": a}, models=["gpt"])
    assert await only_gpt.resolve("key-a", "gpt") is a
    assert await only_gpt.resolve("key-a", "other") is None
    assert await MappingToolResolver({}).resolve("key-a", "m") is None


async def tenants() -> tuple[MappingToolResolver, list[str]]:
    calls: list[str] = []
    shared = named_tools("weather", "billing_admin", calls=calls)
    resolver = MappingToolResolver(
        {
            "key-a": shared,  # tenant A has every tool
            "key-b": ResolvedTools.subset(shared, ["weather"]),  # tenant B only weather
        }
    )
    return resolver, calls


async def test_a_tool_resolved_for_one_caller_never_runs_for_another_through_the_loop() -> None:
    resolver, calls = await tenants()
    tools_b = await resolver.resolve("key-b", "m")
    model = ScriptedChatModel(
        [
            ChatReply.calls(("billing_admin", {}, "c1"), ("weather", {}, "c2")),
            ChatReply.text("done"),
        ]
    )
    outcome = await run_loop(model, tools_b)
    assert isinstance(outcome, Complete)
    assert calls == ["weather"]
    assert [t["function"]["name"] for t in model.requests[0].json["tools"]] == ["weather"]
    assert tool_outputs(model, 1) == [
        {"error": "tool 'billing_admin' is not available"},
        "weather ran",
    ]

    # Tenant A, same model behaviour: both run.
    tools_a = await resolver.resolve("key-a", "m")
    model_a = ScriptedChatModel(
        [ChatReply.calls(("billing_admin", {}, "c1")), ChatReply.text("done")]
    )
    await run_loop(model_a, tools_a)
    assert calls == ["weather", "billing_admin"]


@attrs.frozen
class InsistentTransition:
    """A (buggy or hostile) transition that schedules a tool step whatever the scope
    offers: the loop itself must still refuse to run it."""

    tool: str

    def decide(self, chain: Sequence[ChainStep], scope: Scope, config: LoopConfig) -> NextAction:
        if not chain:
            return AppendSteps([StepDescriptor.tool_call(self.tool, "call_x", {})])
        return Complete(chain[-1].error)

    def sub_agent(self, step: ChainStep, tool: ToolSchema) -> ChatTransition:
        raise AssertionError("no sub-agents here")


async def test_the_loop_refuses_an_unresolved_tool_even_when_the_transition_schedules_it() -> None:
    resolver, calls = await tenants()
    tools_b: ToolExecutor | None = await resolver.resolve("key-b", "m")
    store = InMemoryStore()
    await store.create_response(ResponseRecord("resp_t", {"model": "m"}, model="m"))
    outcome = await run_response_loop(
        "resp_t",
        store=store,
        http_client=ScriptedChatModel([]),
        upstream=UPSTREAM,
        transition=InsistentTransition("billing_admin"),
        tools=tools_b,
    )
    assert calls == []
    assert isinstance(outcome, Complete)
    assert outcome.payload["message"] == "tool not found: billing_admin"
    [step] = await store.list_chain("resp_t", None)
    assert step.state is StepState.FAILED


async def test_a_caller_without_resolved_tools_runs_none() -> None:
    resolver, calls = await tenants()
    assert await resolver.resolve("key-unknown", "m") is None
    model = ScriptedChatModel([ChatReply.tool_call("weather", {}), ChatReply.text("no tools")])
    outcome = await run_loop(model, None)
    assert isinstance(outcome, Complete)
    assert calls == []
    assert tool_outputs(model, 1) == [{"error": "tool 'weather' is not available"}]


async def test_tool_output_size_cap_and_non_json_results() -> None:
    big = FunctionTools()

    @big.tool
    def huge() -> str:
        return "é" * 600  # 1200 bytes of UTF-8

    @big.tool
    def small() -> str:
        return "é" * 10

    model = ScriptedChatModel(
        [ChatReply.calls(("huge", {}, "c1"), ("small", {}, "c2")), ChatReply.text("ok")]
    )
    await run_loop(model, big, config=LoopConfig(max_tool_output_bytes=1000))
    assert tool_outputs(model, 1) == [
        {"error": "tool 'huge' returned 1200 bytes, more than the 1000-byte limit"},
        "é" * 10,
    ]

    odd = RecordingToolExecutor()
    odd.add("odd", lambda _arguments: {1j})
    model = ScriptedChatModel([ChatReply.tool_call("odd", {}), ChatReply.text("ok")])
    outcome = await run_loop(model, odd, config=LoopConfig(tool_errors="fail"))
    assert isinstance(outcome, Fail)
    assert outcome.error["message"] == "tool 'odd' returned a value that is not JSON"


def test_loop_config_rejects_a_non_positive_output_cap() -> None:
    with pytest.raises(ValueError, match="max_tool_output_bytes must be positive"):
        LoopConfig(max_tool_output_bytes=0)
    assert LoopConfig().max_tool_output_bytes == 1_048_576
    assert LoopConfig().tool_exception_detail == "type"
