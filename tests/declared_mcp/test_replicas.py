"""An approval that arrives at another replica: two services on one SQLite file (each its
own store connection, HTTP client and MCP connections, as two processes behind a load
balancer). The first pauses for approval; the second runs the approved call exactly once
(counted by the MCP server itself), however often the approval is retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from responseloop.stores.sqlite import SQLiteStore
from tests.declared_mcp.conftest import STREAMED, HttpMcp, McpLog, create, service_stack
from tests.loopback_upstream import Upstream


@STREAMED
@pytest.mark.parametrize("label", ["ops", "remote"], ids=["operator_stdio", "url_http"])
async def test_the_approval_runs_the_call_once_on_another_replica(
    upstream: Upstream,
    stdio_log: McpLog,
    http_mcp: HttpMcp,
    tmp_path: Path,
    streamed: bool,
    label: str,
) -> None:
    path = tmp_path / "shared.db"
    async with (
        SQLiteStore(path) as store_a,
        SQLiteStore(path) as store_b,
        service_stack(upstream, stdio_log, http_mcp, store=store_a) as a,
        service_stack(upstream, stdio_log, http_mcp, store=store_b) as b,
    ):
        tools = [a.declare(label)]
        log = a.log(label)
        first = await create(
            a.client, streamed, model="m", input='call record {"note": "x1"}', tools=tools
        )
        (request,) = first.items("mcp_approval_request")
        approve = {
            "type": "mcp_approval_response",
            "approval_request_id": request["id"],
            "approve": True,
        }
        second = await create(
            b.client,
            streamed,
            model="m",
            previous_response_id=first.id,
            input=[approve],
            tools=tools,
        )
        assert second.kinds == ["mcp_call", "message"]
        assert second.items("mcp_call")[0]["approval_request_id"] == request["id"]
        assert second.text == "Result: recorded x1"
        assert log.count("record x1") == 1
        assert await b.listings(second.id) == 0  # replica b reused a's listing

        # The next turn, back on replica a: the call is in the conversation, never rerun.
        third = await create(
            a.client,
            streamed,
            model="m",
            previous_response_id=second.id,
            input='call peek {"key": "k"}',
            tools=tools,
        )
        assert third.kinds == ["mcp_approval_request"]
        assert log.count("record x1") == 1
        stored = await a.client.responses.retrieve(second.id)
        assert [item.type for item in stored.output] == ["mcp_call", "message"]
