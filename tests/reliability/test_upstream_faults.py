"""Upstream faults through HttpxClient against the loopback server, streamed and not.

Each fault ends the response in its documented terminal state with a stable error
(``error.type`` ours, ``error.code`` the SDK's), with no step left in flight, no exception
out of the service and no task left running.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx2
import pytest

from responseloop import FunctionTools, LoopConfig, ResponseLoopTransport
from responseloop.abc import LoopEventKind, StepState
from responseloop.testing import ChatReply, RecordingEventSink
from tests.loopback_upstream import Reply, Upstream
from tests.reliability.harness import (
    RecordedSleeps,
    assert_settled,
    leftover_tasks,
    service_for,
    task_ids,
)
from tests.stream_checks import check_stream


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [choice]}  # fmt: skip


def no_choices(**extra: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion", "created": 1, "model": "m", "choices": [],
            **extra}  # fmt: skip


def output_text(response: Mapping[str, Any]) -> str:
    """The text of the Response's message items (the SDK's ``output_text``)."""
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


USAGE = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}


@attrs.frozen
class Fault:
    """A scripted upstream misbehaviour and how the response must end."""

    replies: Callable[[bool], list[Reply]]  # by whether the call streams
    error_type: str = "upstream_error"
    error_code: str = "server_error"
    message: str = ""  # a fragment the stored error's message names
    requests: Callable[[bool], int] = lambda stream: 1  # upstream requests it takes
    waits: Callable[[bool], list[float]] = lambda stream: []  # retry waits


def reset_mid_body(stream: bool) -> list[Reply]:
    if stream:
        return [Reply.sse([chunk({"role": "assistant", "content": "Hel"})], done=False, cut=True)]
    partial = Reply(200, (("content-type", "application/json"),), (b'{"id": "c1", "cho',), cut=True)
    return [partial] * 3  # a connection lost before the answer is retried


def invalid_json(stream: bool) -> list[Reply]:
    if stream:
        return [Reply.sse([chunk({"content": "a"}), "{not json"])]
    return [Reply(200, (("content-type", "application/json"),), (b"{not json",))]


def truncated(stream: bool) -> list[Reply]:
    if stream:  # the body ends cleanly, but before the finish_reason and [DONE]
        return [Reply.sse([chunk({"role": "assistant", "content": "Hel"})], done=False)]
    return [Reply(200, (("content-type", "application/json"),), (b'{"id": "c1", "choices": [',))]


def wrong_content_type(stream: bool) -> list[Reply]:
    if stream:  # a JSON answer to a streamed call
        return [Reply.json({"id": "c1", "object": "chat.completion", "choices": []})]
    return [Reply(200, (("content-type", "text/html"),), (b"<html>Bad gateway</html>",))]


def empty_choices(stream: bool) -> list[Reply]:
    if stream:
        return [Reply.sse([{**chunk({}), "choices": []}, {**chunk({}), "choices": [],
                                                          "usage": USAGE}])]  # fmt: skip
    return [Reply.json(no_choices(usage=USAGE))]


FAULTS = {
    "connection_refused": Fault(
        lambda stream: [],
        message="could not reach the upstream",
        requests=lambda stream: 0,
        waits=lambda stream: [0.0, 0.0],
    ),
    "reset_mid_body": Fault(
        reset_mid_body,
        requests=lambda stream: 1 if stream else 3,
        waits=lambda stream: [] if stream else [0.0, 0.0],
    ),
    "429_with_retry_after": Fault(
        lambda stream: [Reply.text(429, "slow down", [("retry-after", "7")])] * 3,
        error_code="rate_limit_exceeded",
        message="HTTP 429",
        requests=lambda stream: 3,
        waits=lambda stream: [7.0, 7.0],
    ),
    "500_502_503": Fault(
        lambda stream: [Reply.text(500, "a"), Reply.text(502, "b"), Reply.text(503, "c")],
        message="HTTP 503",
        requests=lambda stream: 3,
        waits=lambda stream: [0.0, 0.0],
    ),
    "timeout": Fault(lambda stream: [Reply(hang=True)], message="timed out"),
    "invalid_json": Fault(invalid_json, message="not JSON"),
    "truncated": Fault(truncated),
    "wrong_content_type": Fault(wrong_content_type),
    "empty_choices": Fault(empty_choices, message="choices"),
}


async def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on (bound, then closed)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("name", list(FAULTS))
async def test_an_upstream_fault_fails_the_response_cleanly(
    upstream: Upstream, name: str, stream: bool
) -> None:
    fault = FAULTS[name]
    upstream.add(*fault.replies(stream))
    url = await closed_port_url() if name == "connection_refused" else upstream.url + "/v1"
    sleeps = RecordedSleeps()
    events = RecordingEventSink()
    before = task_ids()
    config = LoopConfig(step_timeout=0.5) if name == "timeout" else None

    async with service_for(url, sleeps=sleeps, config=config) as service:
        prepared = await service.prepare(
            {"model": "m", "input": "Hi", "stream": stream}, api_key=None
        )
        result = await service.run(prepared, events=events)

        error = result.response["error"]
        assert result.response["status"] == "failed"
        assert (error["type"], error["code"]) == (fault.error_type, fault.error_code)
        assert fault.message in error["message"]
        assert await assert_settled(service.store, prepared.response_id) == "failed"
        chain = await service.store.list_chain(prepared.response_id, None)
        assert [step.state for step in chain] == [StepState.FAILED]
        assert events.events[-1].kind is LoopEventKind.RESPONSE_FAILED
        assert service.running == frozenset()
    assert len(upstream.received) == fault.requests(stream)
    assert sleeps.waits == fault.waits(stream)
    assert leftover_tasks(before) == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    "failures",
    [
        [Reply.text(429, "slow down", [("retry-after", "2")])],
        [Reply.text(500, "a"), Reply.text(502, "b")],
        [Reply.text(503, "c")],
    ],
    ids=["429", "500_502", "503"],
)
async def test_transient_statuses_are_retried_to_a_completed_response(
    upstream: Upstream, failures: list[Reply], stream: bool
) -> None:
    upstream.add(*failures, ChatReply.text("Hello!"))
    sleeps = RecordedSleeps()

    async with service_for(upstream.url + "/v1", sleeps=sleeps) as service:
        prepared = await service.prepare(
            {"model": "m", "input": "Hi", "stream": stream}, api_key=None
        )
        result = await service.run(prepared)
        assert await assert_settled(service.store, prepared.response_id) == "completed"

    assert output_text(result.response) == "Hello!"
    assert len(upstream.received) == len(failures) + 1
    retry_after = [2.0] if failures[0].status == 429 else [0.0] * len(failures)
    assert sleeps.waits == retry_after


def lookup_tools() -> tuple[FunctionTools, list[dict[str, Any]]]:
    tools = FunctionTools()
    calls: list[dict[str, Any]] = []
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    @tools.tool(parameters=schema)
    def lookup(q: str) -> dict[str, str]:
        """Look a word up."""
        calls.append({"q": q})
        return {"q": q}

    return tools, calls


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_tool_call_arguments_that_are_not_json_are_fed_back_to_the_model(
    upstream: Upstream, stream: bool
) -> None:
    upstream.add(
        ChatReply.tool_call("lookup", '{"q": "x"', call_id="call_1"), ChatReply.text("Sorry.")
    )
    tools, calls = lookup_tools()

    async with service_for(upstream.url + "/v1", tools=tools) as service:
        prepared = await service.prepare(
            {"model": "m", "input": "Hi", "stream": stream}, api_key=None
        )
        result = await service.run(prepared)
        chain = await service.store.list_chain(prepared.response_id, None)
        assert await assert_settled(service.store, prepared.response_id) == "completed"

    assert calls == []  # the tool never ran on arguments it could not read
    assert [s.state for s in chain] == [StepState.COMPLETED, StepState.FAILED, StepState.COMPLETED]
    assert chain[1].error is not None
    assert (chain[1].error["type"], chain[1].error["code"]) == ("tool_error", "server_error")
    tool_message = upstream.bodies[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_1"
    assert output_text(result.response) == "Sorry."


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_tool_call_arguments_that_are_not_json_fail_the_response_when_configured(
    upstream: Upstream, stream: bool
) -> None:
    upstream.add(ChatReply.tool_call("lookup", "{bad", call_id="call_1"))
    tools, calls = lookup_tools()
    config = LoopConfig(tool_errors="fail")

    async with service_for(upstream.url + "/v1", tools=tools, config=config) as service:
        prepared = await service.prepare(
            {"model": "m", "input": "Hi", "stream": stream}, api_key=None
        )
        result = await service.run(prepared)
        assert await assert_settled(service.store, prepared.response_id) == "failed"

    assert calls == []
    error = result.response["error"]
    assert (error["type"], error["code"]) == ("tool_error", "server_error")
    assert len(upstream.received) == 1
    call = result.response["output"][0]
    assert (call["type"], call["name"], call["arguments"]) == ("mcp_call", "lookup", "{bad")
    assert call["status"] == "failed"  # its arguments were refused, the tool never ran


def sse_events(text: str) -> list[dict[str, Any]]:
    """The ``data`` of each event of an SSE body."""
    events = []
    for block in text.split("\n\n"):
        data = [
            line[len("data: ") :]
            for line in block.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


@pytest.mark.parametrize("name", list(FAULTS))
async def test_an_upstream_fault_ends_the_callers_event_stream_with_response_failed(
    upstream: Upstream, name: str
) -> None:
    fault = FAULTS[name]
    upstream.add(*fault.replies(True))
    url = await closed_port_url() if name == "connection_refused" else upstream.url + "/v1"
    config = LoopConfig(step_timeout=0.5) if name == "timeout" else None
    before = task_ids()

    async with (
        service_for(url, config=config) as service,
        httpx2.AsyncClient(
            transport=ResponseLoopTransport(service), base_url="http://responseloop.test"
        ) as client,
    ):
        answer = await client.post(
            "/v1/responses", json={"model": "m", "input": "Hi", "stream": True}
        )
        events = sse_events(answer.text)
        stored = await service.retrieve(events[-1]["response"]["id"])
        await assert_settled(service.store, stored["id"])

    assert answer.status_code == 200
    check_stream(events, dict(stored), exact_items=False)
    error = events[-1]["response"]["error"]
    assert events[-1]["type"] == "response.failed"
    assert (error["type"], error["code"]) == (fault.error_type, fault.error_code)
    assert leftover_tasks(before) == []
