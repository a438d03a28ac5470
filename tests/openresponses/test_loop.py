"""The Open Responses core driven by the real loop, store and fakes of responseloop.testing."""

from __future__ import annotations

from typing import Any

from responseloop import (
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.chat import ResponsesTransition
from responseloop.openresponses import assemble_response, parse_request
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.openai_shapes import validate_response


async def run(
    body: dict[str, Any], script: list[ChatReply], tools: RecordingToolExecutor
) -> tuple[dict[str, Any], ScriptedChatModel]:
    request = parse_request(body)
    store = InMemoryStore()
    await store.create_response(ResponseRecord("resp_loop", body, model=request.model))
    model = ScriptedChatModel(script)
    outcome = await run_response_loop(
        "resp_loop",
        store=store,
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid"),
        transition=ResponsesTransition(request),
        tools=tools,
        config=LoopConfig(),
    )
    chain = await store.list_chain("resp_loop", None)
    response = assemble_response(
        chain, request, response_id="resp_loop", created_at=1, outcome=outcome
    )
    validate_response(response)
    return response, model


async def test_server_tool_then_answer() -> None:
    tools = RecordingToolExecutor()
    tools.add("lookup", lambda arguments: {"found": arguments})
    response, model = await run(
        {"model": "m", "input": "find x", "instructions": "sys"},
        [ChatReply.tool_call("lookup", {"q": "x"}, call_id="c1"), ChatReply.text("x is here")],
        tools,
    )
    assert [call.call_id for call in tools.calls] == ["c1"]
    assert [item["type"] for item in response["output"]] == ["mcp_call", "message"]
    assert response["output"][0]["output"] == '{"found": {"q": "x"}}'
    assert response["usage"]["total_tokens"] == 30  # two calls of the default 15
    follow_up = model.requests[1].json
    assert follow_up["messages"][0] == {"role": "system", "content": "sys"}
    assert follow_up["messages"][-1]["tool_call_id"] == "c1"


async def test_streamed_calls_report_usage_and_a_client_call_completes() -> None:
    tools = RecordingToolExecutor()
    tools.add("lookup")
    body = {
        "model": "m",
        "input": "go",
        "stream": True,
        "tools": [{"type": "function", "name": "confirm"}],
    }
    response, model = await run(
        body,
        [ChatReply.calls(("lookup", {}, "c1"), ("confirm", {"ok": True}, "c2"))],
        tools,
    )
    assert model.requests[0].json["stream_options"] == {"include_usage": True}
    assert response["usage"]["total_tokens"] == 15
    assert response["status"] == "completed"
    # The server ran lookup (one mcp_call); the client's confirm call waits for it.
    assert [(item["type"], item["name"]) for item in response["output"]] == [
        ("mcp_call", "lookup"),
        ("function_call", "confirm"),
    ]
    assert response["output"][1]["call_id"] == "c2"
