"""An approval that arrives at another replica: two services on one SQLite file (each its
own store connection, HTTP client and MCP connections, as two processes behind a load
balancer). The first pauses for approval; the second runs the approved call exactly once
(counted by the MCP server itself), however often the approval is retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import openai
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


@pytest.mark.parametrize("label", ["ops", "remote"], ids=["operator_stdio", "url_http"])
async def test_two_responses_approving_one_request_on_two_replicas_run_it_once(
    upstream: Upstream, stdio_log: McpLog, http_mcp: HttpMcp, tmp_path: Path, label: str
) -> None:
    """Two different responses continue the same paused one, each approving its request,
    one on each replica, at the same time: the store's claim lets one run the call and
    the other is a 400 naming the approval."""
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
            a.client, False, model="m", input='call record {"note": "twice"}', tools=tools
        )
        (request,) = first.items("mcp_approval_request")
        approve = {
            "type": "mcp_approval_response",
            "approval_request_id": request["id"],
            "approve": True,
        }
        ran: list[Any] = []
        refused: list[openai.BadRequestError] = []

        async def approve_on(client: openai.AsyncOpenAI) -> None:
            try:
                ran.append(
                    await create(
                        client,
                        False,
                        model="m",
                        previous_response_id=first.id,
                        input=[approve],
                        tools=tools,
                    )
                )
            except openai.BadRequestError as exc:
                refused.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(approve_on, a.client)
            group.start_soon(approve_on, b.client)
        (winner,) = ran
        (loser,) = refused
        assert winner.kinds == ["mcp_call", "message"]
        assert loser.param == "input[0].approval_request_id"
        assert f"already used by response {winner.id!r}" in str(loser)
        assert log.count("record twice") == 1
