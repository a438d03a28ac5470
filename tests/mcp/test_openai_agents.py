"""The OpenAI Agents SDK's ``HostedMCPTool`` against the stack (in process, through the
official client over :class:`ResponseLoopTransport`): a server that needs no approval,
approvals given by ``on_approval_request`` (approved and refused), and without it, the
run interrupted and resumed from its state with the approval."""

from __future__ import annotations

from typing import Any

import pytest
from agents import (
    Agent,
    HostedMCPTool,
    MCPToolApprovalRequest,
    OpenAIResponsesModel,
    Runner,
    RunResult,
    RunResultStreaming,
    set_tracing_disabled,
)

from tests.mcp.conftest import STREAMED, Stack

set_tracing_disabled(True)  # tracing would export spans to the internet


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Agents SDK runs on asyncio only


def agent(stack: Stack, tool: HostedMCPTool) -> Agent[Any]:
    return Agent(
        name="tester",
        model=OpenAIResponsesModel(model="m", openai_client=stack.client),
        tools=[tool],
    )


async def run(bot: Agent[Any], streamed: bool, input: Any) -> RunResult | RunResultStreaming:
    if not streamed:
        return await Runner.run(bot, input)
    result = Runner.run_streamed(bot, input)
    async for _ in result.stream_events():
        pass
    return result


def item_types(result: RunResult | RunResultStreaming) -> list[str]:
    """The wire type of each item the run made (raw items are SDK models or dicts)."""
    types = []
    for item in result.new_items:
        raw: Any = item.raw_item
        types.append(str(raw["type"] if isinstance(raw, dict) else raw.type))
    return types


@STREAMED
async def test_hosted_mcp_tool_without_approval(stack: Stack, streamed: bool) -> None:
    tool = HostedMCPTool(
        tool_config={"type": "mcp", "server_label": "ops", "require_approval": "never"}
    )
    result = await run(agent(stack, tool), streamed, 'call record {"note": "g1"}')
    assert result.final_output == "Result: recorded g1"
    assert stack.stdio_log.count("record g1") == 1
    assert item_types(result)[:2] == ["mcp_list_tools", "mcp_call"]


@STREAMED
@pytest.mark.parametrize("approve", [True, False], ids=["approved", "refused"])
async def test_hosted_mcp_tool_with_on_approval_request(
    stack: Stack, streamed: bool, approve: bool
) -> None:
    asked: list[str] = []

    def decide(request: MCPToolApprovalRequest) -> Any:
        asked.append(request.data.name)
        return {"approve": True} if approve else {"approve": False, "reason": "not now"}

    tool = HostedMCPTool(
        tool_config={
            "type": "mcp",
            "server_label": "remote",
            "server_url": stack.http_mcp.url,
            "authorization": "sk-mcp",
            "require_approval": "always",
        },
        on_approval_request=decide,
    )
    result = await run(agent(stack, tool), streamed, 'call record {"note": "h1"}')
    assert asked == ["record"]
    log = stack.http_mcp.log
    if approve:
        assert result.final_output == "Result: recorded h1"
        assert log.count("record h1") == 1
    else:
        assert "refused" in str(result.final_output)
        assert "not now" in str(result.final_output)
        assert log.count("record h1") == 0
    # The second turn reused the first turn's listing.
    assert item_types(result).count("mcp_list_tools") == 1


async def test_hosted_mcp_tool_interrupted_then_approved(stack: Stack) -> None:
    tool = HostedMCPTool(tool_config={"type": "mcp", "server_label": "ops"})
    bot = agent(stack, tool)
    paused = await Runner.run(bot, 'call record {"note": "i1"}')
    assert stack.stdio_log.count("record i1") == 0
    (interruption,) = paused.interruptions
    state = paused.to_state()
    state.approve(interruption)
    resumed = await Runner.run(bot, state)
    assert resumed.final_output == "Result: recorded i1"
    assert stack.stdio_log.count("record i1") == 1
