"""The Codex CLI's real requests (tests/data/codex, Codex 0.171.0) run end to end: the
in-process transport, the service, HttpxClient and a loopback chat-completions upstream.
The upstream sees the namespace flattened and no hosted declaration; the streams and
Responses validate against the SDK (and the spec, for what the spec defines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest

from responseloop import (
    HttpxClient,
    InMemoryStore,
    ResponseLoopTransport,
    ResponsesService,
)
from responseloop.chat._translate import upstream_call_id
from responseloop.openresponses import WireOptions
from responseloop.testing import ChatReply
from tests.in_process import sse_events
from tests.loopback_upstream import Upstream, running_upstream
from tests.openai_shapes import assert_no_unknown_fields, validate_response
from tests.openresponses.test_codex import (
    BODIES,
    PATCH_TOOL,
    codex_body,
    offered_names,
    validate_custom_response,
)
from tests.stream_checks import STREAM_EVENT, check_stream

URL = "http://responseloop.test/v1/responses"
HEADERS = {"Authorization": "Bearer sk-codex"}


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with running_upstream() as server:
        yield server


def service_for(upstream: Upstream, http_client: HttpxClient, **wire: Any) -> ResponsesService:
    return ResponsesService(
        store=InMemoryStore(),
        http_client=http_client,
        upstream=upstream.target("sk-up"),
        wire=WireOptions(**wire),
    )


async def stream(service: ResponsesService, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with (
        httpx2.AsyncClient(transport=ResponseLoopTransport(service)) as http,
        http.stream("POST", URL, json=body, headers=HEADERS) as answer,
    ):
        assert answer.status_code == 200, await answer.aread()
        return await sse_events(answer)


@pytest.mark.parametrize("name", BODIES)
async def test_each_codex_request_streams_a_valid_response(upstream: Upstream, name: str) -> None:
    body = codex_body(name)
    upstream.add(ChatReply.text("hi"))
    async with HttpxClient.create() as http_client:
        events = await stream(service_for(upstream, http_client), body)
    final = events[-1]["response"]
    check_stream(events, final)
    validate_response(final)
    assert final["status"] == "completed"
    assert final["output"][-1]["content"][0]["text"] == "hi"
    (sent,) = upstream.bodies
    assert [tool["function"]["name"] for tool in sent["tools"]] == offered_names(body)
    # The Response lists what the model was offered (the spec allows function tools only).
    assert [t["name"] for t in final["tools"]] == offered_names(body)


async def test_the_codex_tool_turn_ends_with_its_shell_call(upstream: Upstream) -> None:
    upstream.add(ChatReply.tool_call("exec_command", {"cmd": "echo hi"}, call_id="call_1"))
    async with HttpxClient.create() as http_client:
        events = await stream(service_for(upstream, http_client), codex_body("tool_call"))
    final = events[-1]["response"]
    check_stream(events, final)
    (call,) = final["output"]
    assert (call["type"], call["name"], call["call_id"]) == (
        "function_call",
        "exec_command",
        "call_" + final["id"].removeprefix("resp_") + "_1_0",
    )
    # Every streamed event showing the call shows the same call id.
    shown = {e["item"]["call_id"] for e in events if "item" in e}
    assert shown == {call["call_id"]}
    assert "namespace" not in call


async def test_a_streamed_namespace_call_names_its_namespace(upstream: Upstream) -> None:
    upstream.add(
        ChatReply.tool_call("multi_agent_v1__spawn_agent", {"message": "go"}, call_id="s1")
    )
    async with HttpxClient.create() as http_client:
        events = await stream(service_for(upstream, http_client), codex_body("plain"))
    final = events[-1]["response"]
    check_stream(events, final)
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [(i["name"], i["namespace"]) for i in added] == [("spawn_agent", "multi_agent_v1")]
    assert final["output"][0]["namespace"] == "multi_agent_v1"


async def test_a_custom_tool_round_trips_with_store_false(upstream: Upstream) -> None:
    patch = "*** Begin Patch\n*** End Patch"
    upstream.add(
        ChatReply.tool_call("apply_patch", {"input": patch}, call_id="p1"),
        ChatReply.text("patched"),
    )
    body: dict[str, Any] = {
        "model": "m",
        "input": [{"role": "user", "content": "patch it"}],
        "tools": [PATCH_TOOL],
        "store": False,
        "stream": True,
    }
    async with HttpxClient.create() as http_client:
        service = service_for(upstream, http_client)
        events = await stream(service, body)
        for event in events:
            assert_no_unknown_fields(STREAM_EVENT.validate_python(event))
        final = events[-1]["response"]
        validate_custom_response(final)
        (call,) = final["output"]
        assert call["type"] == "custom_tool_call"
        assert call["input"] == patch
        assert call["call_id"] == "call_" + call["id"].removeprefix("ctc_")  # not p1
        assert {e["item"]["call_id"] for e in events if "item" in e} == {call["call_id"]}
        types = [e["type"] for e in events]
        assert types.index("response.custom_tool_call_input.delta") < types.index(
            "response.custom_tool_call_input.done"
        )
        done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
        assert done["input"] == patch
        assert "response.function_call_arguments.delta" not in types
        # Codex sends the call back with its output, nothing stored.
        replay = {
            **body,
            "input": [
                *body["input"],
                call,
                {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done!"},
            ],
        }
        second = await stream(service, replay)
    assert second[-1]["response"]["output"][-1]["content"][0]["text"] == "patched"
    messages = upstream.bodies[1]["messages"]
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "apply_patch"
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": upstream_call_id(call["call_id"]),
        "content": "Done!",
    }


async def test_hosted_tools_refused_when_the_operator_says_so(upstream: Upstream) -> None:
    async with (
        HttpxClient.create() as http_client,
        httpx2.AsyncClient(
            transport=ResponseLoopTransport(
                service_for(upstream, http_client, hosted_tools="refuse")
            )
        ) as http,
    ):
        answer = await http.post(URL, json=codex_body("plain"), headers=HEADERS)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "tools[8].type"
    assert "web_search" in error["message"]
    assert upstream.bodies == []


async def test_the_openai_client_declares_a_namespace_and_gets_the_call_back(
    upstream: Upstream,
) -> None:
    upstream.add(ChatReply.tool_call("crm__lookup", {"id": 7}, call_id="k1"))
    async with HttpxClient.create() as http_client:
        http = httpx2.AsyncClient(
            transport=ResponseLoopTransport(service_for(upstream, http_client))
        )
        async with openai.AsyncOpenAI(
            base_url="http://responseloop.test/v1", api_key="sk", http_client=http, max_retries=0
        ) as client:
            response = await client.responses.create(
                model="m",
                input="find 7",
                tools=[
                    {
                        "type": "namespace",
                        "name": "crm",
                        "description": "The CRM.",
                        "tools": [{"type": "function", "name": "lookup", "parameters": {}}],
                    },
                    {"type": "web_search"},
                ],
            )
    validate_response(response.model_dump(mode="json", exclude_unset=True, by_alias=True))
    (call,) = response.output
    assert call.type == "function_call"
    assert (call.name, call.namespace) == ("lookup", "crm")
    assert [t["function"]["name"] for t in upstream.bodies[0]["tools"]] == ["crm__lookup"]


async def test_a_custom_and_a_function_call_stream_in_their_output_order(
    upstream: Upstream,
) -> None:
    upstream.add(
        ChatReply.calls(
            ("apply_patch", {"input": "*** Begin Patch"}, "p1"),
            ("exec_command", {"cmd": "ls"}, "e1"),
        )
    )
    body: dict[str, Any] = {
        "model": "m",
        "input": "go",
        "tools": [PATCH_TOOL, {"type": "function", "name": "exec_command"}],
        "stream": True,
    }
    async with HttpxClient.create() as http_client:
        events = await stream(service_for(upstream, http_client), body)
    for event in events:
        assert_no_unknown_fields(STREAM_EVENT.validate_python(event))
    final = events[-1]["response"]
    validate_custom_response(final)
    added = [e for e in events if e["type"] == "response.output_item.added"]
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [(e["output_index"], e["item"]["id"]) for e in added] == [
        (index, item["id"]) for index, item in enumerate(final["output"])
    ]
    assert [e["item"] for e in done] == final["output"]
    assert [item["type"] for item in final["output"]] == ["custom_tool_call", "function_call"]
    inputs = [e for e in events if e["type"].startswith("response.custom_tool_call_input")]
    assert [(e["type"], e["item_id"]) for e in inputs] == [
        ("response.custom_tool_call_input.delta", final["output"][0]["id"]),
        ("response.custom_tool_call_input.done", final["output"][0]["id"]),
    ]
