"""A background response declaring an MCP server: its runner is another task than the
request's, and opens (and closes) the server's connections there; the pause for approval
is answered by an ordinary request after it."""

from __future__ import annotations

import json
from typing import Any

from responseloop.adapters import BackgroundResponses, caller_from_key
from tests.declared_mcp.conftest import KEY, Stack, create


async def _events(frames: Any) -> list[dict[str, Any]]:
    events = []
    async for frame in frames:
        data = next(line for line in frame.decode().splitlines() if line.startswith("data: "))
        if data != "data: [DONE]":
            events.append(json.loads(data.removeprefix("data: ")))
    return events


async def test_a_background_response_lists_calls_and_pauses(stack: Stack) -> None:
    tools = [stack.declare("ops", require_approval={"never": ["add"]})]
    body = {
        "model": "m",
        "background": True,
        "input": 'call add {"a": 4, "b": 5} and call record {"note": "b1"}',
        "tools": tools,
    }
    async with BackgroundResponses(stack.service) as runner:
        prepared = await stack.service.prepare(body, api_key=KEY, caller=caller_from_key(KEY))
        await runner.start(prepared)
        events = await _events((await runner.resume(prepared.response_id, None)).events)
    final = events[-1]
    assert final["type"] == "response.completed"
    output = final["response"]["output"]
    assert [item["type"] for item in output] == [
        "mcp_list_tools",
        "mcp_call",
        "mcp_approval_request",
    ]
    assert "9" in output[1]["output"]
    assert stack.stdio_log.count("record b1") == 0
    approve = {
        "type": "mcp_approval_response",
        "approval_request_id": output[2]["id"],
        "approve": True,
    }
    second = await create(
        stack.client,
        False,
        model="m",
        previous_response_id=prepared.response_id,
        input=[approve],
        tools=tools,
    )
    assert second.kinds == ["mcp_call", "message"]
    assert stack.stdio_log.count("record b1") == 1
    # The model's second call sees both results: the one run in the background and the
    # approved one.
    assert second.text.startswith("Result: ")
    assert "recorded b1" in second.text
