"""What the loop's model calls share instead of copying (each copy is held by every call in
flight): the upstream's URL and headers, one chat tool per server-side tool; and what still
copies, so that a caller's value stays its own."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from responseloop import UpstreamTarget
from responseloop.abc import Complete, HttpRequest, StepDescriptor, StepKind, ToolSchema
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import UPSTREAM, run


def tools_of(request: HttpRequest) -> list[dict[str, Any]]:
    assert isinstance(request.json, dict)
    tools = request.json["tools"]
    assert isinstance(tools, list)
    return tools


async def test_model_calls_share_the_upstreams_url_headers_and_chat_tools() -> None:
    lookup = ToolSchema("lookup", parameters={"type": "object", "properties": {}})
    tools = RecordingToolExecutor()
    tools.add(lookup)
    model = ScriptedChatModel(
        [
            ChatReply.tool_call("lookup", {"q": 1}, call_id="c1"),
            ChatReply.tool_call("lookup", {"q": 2}, call_id="c2"),
            ChatReply.text("done"),
        ]
    )

    outcome = await run(model, tools=tools)

    assert isinstance(outcome, Complete)
    first, *later = model.requests
    assert len(later) == 2
    for request in later:
        assert request.url is first.url
        assert request.headers is first.headers
        assert tools_of(request)[0] is tools_of(first)[0]
    assert first.headers == {"Authorization": "Bearer sk-test"}
    with pytest.raises(TypeError):
        first.headers["Authorization"] = "Bearer other"  # type: ignore[index]
    assert tools_of(first)[0] == lookup.to_chat_tool()


def test_an_upstream_computes_its_url_once_and_still_answers_fresh_headers() -> None:
    target = UpstreamTarget("http://model.invalid/", "/v1/chat/completions", api_key="k")

    assert target.url == "http://model.invalid/v1/chat/completions"
    assert target.url is target.url
    given = target.headers()
    given["X-Extra"] = "1"  # a caller's own dict
    assert target.headers() == {"Authorization": "Bearer k"}
    assert UPSTREAM.url == "http://upstream.invalid/v1/chat/completions"


def test_a_request_keeps_a_read_only_view_and_copies_a_dict() -> None:
    shared = MappingProxyType({"Authorization": "Bearer k"})
    own = {"Authorization": "Bearer k"}

    assert HttpRequest("http://x.invalid", headers=shared).headers is shared
    copied = HttpRequest("http://x.invalid", headers=own).headers
    own["Authorization"] = "Bearer changed"
    assert copied == {"Authorization": "Bearer k"}


def test_to_chat_tool_answers_a_new_value_each_time() -> None:
    schema = ToolSchema("lookup", parameters={"type": "object", "properties": {}}, strict=True)

    one, two = schema.to_chat_tool(), schema.to_chat_tool()

    assert one == two
    assert one is not two
    assert one["function"]["parameters"] is not two["function"]["parameters"]
    assert one["function"]["strict"] is True


def test_a_descriptor_built_from_a_callers_body_keeps_its_own_copy() -> None:
    body: dict[str, Any] = {"model": "m", "messages": []}

    descriptor = StepDescriptor.model_call(body)
    body["model"] = "changed"

    assert descriptor.request_payload == {"model": "m", "messages": []}


def test_a_tool_descriptor_still_checks_its_payload() -> None:
    descriptor = StepDescriptor.tool_call("lookup", "c1", {"q": 1}, server_label="s")

    assert descriptor.kind is StepKind.TOOL_CALL
    assert descriptor.request_payload == {
        "name": "lookup",
        "call_id": "c1",
        "arguments": {"q": 1},
        "server_label": "s",
    }
    with pytest.raises(ValueError, match="needs a string 'name'"):
        StepDescriptor.tool_call("", "c1", {})
