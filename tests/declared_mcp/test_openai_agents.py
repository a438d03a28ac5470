"""The OpenAI Agents SDK's ``HostedMCPTool`` against the stack, in process (the
official client over :class:`ResponseLoopTransport`): a server that needs no approval,
approvals given by ``on_approval_request`` (approved and refused), and without it, the
run interrupted and resumed from its state with the approval; and against ``responseloop
serve --mcp-servers`` (a TOML policy) behind the checking proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
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

from tests.asgi.serving import subprocess_env
from tests.clients.checking_proxy import CheckingProxy, checking_proxy
from tests.declared_mcp import model
from tests.declared_mcp.conftest import SERVER, STREAMED, HttpMcp, McpLog, Stack
from tests.loopback_upstream import Upstream, loopback_upstream

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


@pytest.fixture
def served(
    tmp_path: Path, http_mcp: HttpMcp, stdio_log: McpLog
) -> Iterator[tuple[CheckingProxy, Upstream]]:
    """``responseloop serve --mcp-servers`` over a threaded loopback upstream, behind the
    checking proxy; the proxy and the upstream."""
    config = tmp_path / "mcp.toml"
    config.write_text(
        f"allowed_urls = [{json.dumps(http_mcp.url)}]\n"
        "allow_private_addresses = true\n"
        "[servers.ops]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(SERVER)}]\n"
        f"env = {{ MCP_TEST_LOG = {json.dumps(str(stdio_log.path))} }}\n"
    )
    with loopback_upstream() as upstream:
        upstream.responder = model.answer
        command = [
            sys.executable, "-m", "responseloop", "serve", "--port", "0",
            "--log-level", "warning", "--upstream", upstream.url + "/v1",
            "--mcp-servers", str(config),
        ]  # fmt: skip
        process = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE)
        try:
            assert process.stdout is not None
            line = process.stdout.readline().decode()
            assert line.startswith("responseloop serving on http://127.0.0.1:"), line
            # Through the checking proxy: every Response and event serve emits is checked.
            with checking_proxy(line.rsplit(" ", 1)[-1].strip()) as proxy:
                yield proxy, upstream
            assert not proxy.problems, "\n".join(proxy.problems)
        finally:
            process.terminate()
            process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()


async def test_hosted_mcp_tool_against_responseloop_serve(
    served: tuple[CheckingProxy, Upstream], stdio_log: McpLog, http_mcp: HttpMcp
) -> None:
    proxy, _upstream = served
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="dummy") as client:
        bot = Agent(
            name="tester",
            model=OpenAIResponsesModel(model="m", openai_client=client),
            tools=[
                HostedMCPTool(
                    tool_config={
                        "type": "mcp",
                        "server_label": "ops",
                        "require_approval": "never",
                        "allowed_tools": ["add"],
                    }
                ),
                HostedMCPTool(
                    tool_config={
                        "type": "mcp",
                        "server_label": "remote",
                        "server_url": http_mcp.url,
                        "authorization": "sk-mcp",
                        "allowed_tools": ["peek"],
                    },
                    on_approval_request=lambda _request: {"approve": True},
                ),
            ],
        )
        plain = await Runner.run(bot, 'call add {"a": 20, "b": 22}')
        assert "42" in str(plain.final_output)  # ran on the operator's stdio server
        gated = await Runner.run(bot, 'call peek {"key": "s"}')
        assert gated.final_output == "Result: value-of-s"
    assert stdio_log.count("list") >= 1
    assert http_mcp.log.count("list") >= 1
