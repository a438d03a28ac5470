"""AgentTool: sub-agents end to end through run_response_loop, and the depth cap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from responseloop import FunctionTools, InMemoryStore, LoopConfig, RequestContext
from responseloop.abc import (
    AgentSpec,
    AgentToolExecutor,
    Complete,
    StepKind,
    StepState,
    ToolKind,
    ToolSchema,
)
from responseloop.exceptions import ToolExecutionError, ToolNotFound
from responseloop.testing import ChatReply, ScriptedChatModel
from responseloop.tools import AgentTool, CompositeToolExecutor, ResolvedTools
from tests.tools._loop import ModelRouter, run_loop, tool_outputs


def lookup_tools(seen: list[str]) -> FunctionTools:
    tools = FunctionTools()

    @tools.tool
    def lookup(topic: str) -> str:
        """Look a topic up."""
        seen.append(topic)
        return f"facts about {topic}"

    return tools


async def test_a_sub_agent_runs_with_its_own_model_instructions_and_tools() -> None:
    seen: list[str] = []
    researcher = AgentTool(
        "researcher",
        "Researches a topic.",
        instructions="You research carefully.",
        model="small-model",
        tools=lookup_tools(seen),
    )
    top = ScriptedChatModel(
        [
            ChatReply.tool_call("researcher", {"input": "owls"}, call_id="call_r"),
            ChatReply.text("Owls are birds."),
        ]
    )
    sub = ScriptedChatModel(
        [ChatReply.tool_call("lookup", {"topic": "owls"}), ChatReply.text("owls: nocturnal")]
    )
    store = InMemoryStore()
    outcome = await run_loop(ModelRouter({"m": top, "small-model": sub}), researcher, store=store)

    assert isinstance(outcome, Complete)
    assert seen == ["owls"]
    # The sub-agent's final text is the agent tool's output at the top level.
    assert tool_outputs(top, 1) == ["owls: nocturnal"]
    first = sub.requests[0].json
    assert first["model"] == "small-model"
    assert first["messages"] == [
        {"role": "system", "content": "You research carefully."},
        {"role": "user", "content": "owls"},
    ]
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup"]
    # The top-level model saw the agent as a tool, and not the sub-agent's own tools.
    assert [t["function"]["name"] for t in top.requests[0].json["tools"]] == ["researcher"]

    top_chain = await store.list_chain("resp_1", None)
    agent_step = next(step for step in top_chain if step.tool_name == "researcher")
    assert agent_step.state is StepState.COMPLETED
    sub_chain = await store.list_chain("resp_1", agent_step.id)
    assert [(s.kind, s.tool_name) for s in sub_chain] == [
        (StepKind.MODEL_CALL, None),
        (StepKind.TOOL_CALL, "lookup"),
        (StepKind.MODEL_CALL, None),
    ]


async def test_the_depth_cap_stops_nested_agents_and_the_error_reaches_the_model() -> None:
    seen: list[str] = []
    inner = AgentTool("inner", "Goes deeper.", model="inner-model", tools=lookup_tools(seen))
    outer = AgentTool("outer", "Delegates.", model="outer-model", tools=inner)
    top = ScriptedChatModel(
        [ChatReply.tool_call("outer", {"input": "dig"}), ChatReply.text("gave up")]
    )
    outer_model = ScriptedChatModel(
        [ChatReply.tool_call("inner", {"input": "deeper"}), ChatReply.text("could not go deeper")]
    )
    inner_model = ScriptedChatModel([])
    router = ModelRouter({"m": top, "outer-model": outer_model, "inner-model": inner_model})

    outcome = await run_loop(router, outer, config=LoopConfig(max_depth=1))

    assert isinstance(outcome, Complete)
    assert inner_model.requests == []  # the depth-2 sub-loop never started
    assert tool_outputs(outer_model, 1) == [{"error": "sub-agent 'inner' would nest deeper than 1"}]
    assert tool_outputs(top, 1) == ["could not go deeper"]
    assert seen == []


async def test_agent_tool_schema_and_direct_execution() -> None:
    agent = AgentTool("helper", "Helps.", instructions="Be brief.")
    [schema] = await agent.tools(RequestContext())
    assert schema.kind is ToolKind.AGENT
    assert schema.agent is not None
    assert schema.agent.instructions == "Be brief."
    assert schema.parameters["required"] == ["input"]
    assert agent.tool_names == frozenset({"helper"})
    with pytest.raises(ToolExecutionError, match="runs as a sub-loop"):
        await agent.execute("helper", "c", {"input": "x"}, RequestContext())
    with pytest.raises(ToolNotFound):
        await agent.execute("other", "c", {}, RequestContext())


async def test_agent_tools_mix_with_function_tools_in_a_composite() -> None:
    seen: list[str] = []
    composite = CompositeToolExecutor(
        lookup_tools(seen), AgentTool("helper", "Helps.", model="helper-model")
    )
    top = ScriptedChatModel(
        [
            ChatReply.calls(("lookup", {"topic": "bats"}, "c1"), ("helper", {"input": "hi"}, "c2")),
            ChatReply.text("done"),
        ]
    )
    helper = ScriptedChatModel([ChatReply.text("hello from helper")])
    outcome = await run_loop(ModelRouter({"m": top, "helper-model": helper}), composite)
    assert isinstance(outcome, Complete)
    assert tool_outputs(top, 1) == ["facts about bats", "hello from helper"]


async def test_an_agent_tool_gives_its_tools_to_its_own_sub_agent_only() -> None:
    lookup = lookup_tools([])
    agent = AgentTool("helper", "Helps.", tools=lookup)
    assert isinstance(agent, AgentToolExecutor)
    assert await agent.sub_agent_tools("helper", RequestContext()) is lookup
    assert await agent.sub_agent_tools("other", RequestContext()) is None
    bare = AgentTool("bare", "Has no tools.")
    assert await bare.sub_agent_tools("bare", RequestContext()) is None


async def test_composites_and_subsets_hand_on_the_sub_agent_tools_of_the_agent_they_offer() -> None:
    lookup = lookup_tools([])
    other = lookup_tools([])
    composite = CompositeToolExecutor(
        lookup_tools([]),
        AgentTool("plain", "Has no tools."),
        AgentTool("helper", "Helps.", tools=lookup),
        AgentTool("second", "Helps too.", tools=other),
    )
    ctx = RequestContext()
    assert await composite.sub_agent_tools("helper", ctx) is lookup
    assert await composite.sub_agent_tools("second", ctx) is other
    assert await composite.sub_agent_tools("plain", ctx) is None
    assert await composite.sub_agent_tools("lookup", ctx) is None
    subset = ResolvedTools.subset(composite, ["helper"])
    assert await subset.sub_agent_tools("helper", ctx) is lookup
    assert await subset.sub_agent_tools("second", ctx) is None  # outside the subset
    assert await ResolvedTools(lookup_tools([])).sub_agent_tools("helper", ctx) is None


async def test_a_sub_agent_behind_a_resolved_composite_runs_with_its_own_tools() -> None:
    seen: list[str] = []
    researcher = AgentTool(
        "researcher", "Researches.", model="small-model", tools=lookup_tools(seen)
    )
    tools = ResolvedTools.subset(
        CompositeToolExecutor(lookup_tools([]), researcher), ["researcher"]
    )
    top = ScriptedChatModel(
        [ChatReply.tool_call("researcher", {"input": "owls"}), ChatReply.text("Owls.")]
    )
    sub = ScriptedChatModel(
        [ChatReply.tool_call("lookup", {"topic": "owls"}), ChatReply.text("nocturnal")]
    )
    outcome = await run_loop(ModelRouter({"m": top, "small-model": sub}), tools)
    assert isinstance(outcome, Complete)
    assert seen == ["owls"]  # the sub-agent's own lookup, not the top level's
    assert [t["function"]["name"] for t in top.requests[0].json["tools"]] == ["researcher"]
    assert [t["function"]["name"] for t in sub.requests[0].json["tools"]] == ["lookup"]


class _AgentWithoutSubAgentTools:
    """A ToolExecutor offering an agent tool but not saying what its sub-agent may use."""

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        return [ToolSchema("helper", kind=ToolKind.AGENT, agent=AgentSpec(model="helper-model"))]

    async def execute(self, name: str, call_id: str, arguments: Any, ctx: RequestContext) -> Any:
        raise ToolNotFound(name)


async def test_an_executor_that_gives_no_sub_agent_tools_runs_its_sub_agents_without_tools() -> (
    None
):
    top = ScriptedChatModel(
        [ChatReply.tool_call("helper", {"input": "hi"}), ChatReply.text("done")]
    )
    helper = ScriptedChatModel([ChatReply.text("hello")])
    executor = _AgentWithoutSubAgentTools()
    assert not isinstance(executor, AgentToolExecutor)
    outcome = await run_loop(ModelRouter({"m": top, "helper-model": helper}), executor)
    assert isinstance(outcome, Complete)
    assert tool_outputs(top, 1) == ["hello"]
    assert "tools" not in helper.requests[0].json
