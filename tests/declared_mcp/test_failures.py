"""What a request-declared MCP server that cannot be reached, or a response whose server's
credentials were never stored, comes to; and an ``mcp`` tool_choice end to end."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.responses.response_output_item import McpListTools

from responseloop import InMemoryStore
from responseloop.abc import ResponseStatus
from tests.declared_mcp.conftest import STREAMED, HttpMcp, McpLog, Stack, service_stack
from tests.loopback_upstream import Upstream

pytest.importorskip("mcp", reason="the MCP SDK is not installed: pip install 'responseloop[mcp]'")

from responseloop.tools.mcp import DeclaredMcpPolicy

DEAD = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens there


@STREAMED
async def test_a_server_that_cannot_be_listed_fails_the_response_and_says_why(
    upstream: Upstream, stdio_log: McpLog, http_mcp: HttpMcp, streamed: bool
) -> None:
    allow_dead = DeclaredMcpPolicy(allowed_urls=(DEAD,), allow_private_addresses=True, timeout=5)
    tool: Any = {"type": "mcp", "server_label": "dead", "server_url": DEAD}
    async with service_stack(upstream, stdio_log, http_mcp, declared=allow_dead) as stack:
        if streamed:
            events = [
                event
                async for event in await stack.client.responses.create(
                    model="m", input="hi", tools=[tool], stream=True
                )
            ]
            kinds = [event.type for event in events]
            assert "response.mcp_list_tools.failed" in kinds
            assert kinds[-1] == "response.failed"
            response = events[-1].response  # type: ignore[union-attr]
        else:
            response = await stack.client.responses.create(model="m", input="hi", tools=[tool])
    assert response.status == "failed"
    listing = response.output[0]
    assert isinstance(listing, McpListTools)
    assert listing.error is not None
    assert "dead" in listing.error
    assert response.error is not None
    assert upstream.received == []  # the model was never called


async def test_a_recovered_response_whose_server_secrets_were_withheld_is_abandoned(
    upstream: Upstream, stdio_log: McpLog, http_mcp: HttpMcp
) -> None:
    store = InMemoryStore()
    async with service_stack(upstream, stdio_log, http_mcp, store=store) as stack:
        body = {
            "model": "m",
            "input": "hi",
            "tools": [stack.declare("remote", require_approval="never")],
        }
        # Stored as a worker that died before running it would leave it.
        prepared = await stack.service.prepare(body, api_key="sk-caller")
        assert await stack.service.recover_expired(unclaimed_grace=0) == []
        record = await store.get_response(prepared.response_id)
    assert record.status is ResponseStatus.FAILED
    assert isinstance(record.response, dict)
    error = record.response["error"]
    assert error["code"] == "server_error"
    assert "credentials" in error["message"]
    assert upstream.received == []


async def test_an_mcp_tool_choice_forces_that_tool(stack: Stack) -> None:
    tool: Any = stack.declare("ops", require_approval="never")
    choice: Any = {"type": "mcp", "server_label": "ops", "name": "add"}
    response = await stack.client.responses.create(
        model="m", input="what is 2 plus 3", tools=[tool], tool_choice=choice
    )
    first_call = stack.upstream.received[0].json()
    assert first_call["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert response.tool_choice.type == "function"  # type: ignore[union-attr]
    other: Any = {"type": "mcp", "server_label": "elsewhere", "name": "add"}
    with pytest.raises(openai.BadRequestError):
        await stack.client.responses.create(model="m", input="q", tools=[tool], tool_choice=other)
