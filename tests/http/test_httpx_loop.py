"""run_response_loop with HttpxClient against the loopback upstream, end to end."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from responseloop import (
    ChatTransition,
    HttpxClient,
    InMemoryStore,
    ResponseRecord,
    RetryPolicy,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import Complete, Fail, LoopEventKind, StepState
from responseloop.testing import RecordingEventSink, RecordingToolExecutor
from tests.loopback_upstream import Reply, Upstream

USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def chat_body(**settings: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **settings}


def completion(message: dict[str, Any], finish: str, number: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": 1_700_000_000 + number,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


TOOL_MESSAGE = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_w",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        }
    ],
}
TEXT_MESSAGE = {"role": "assistant", "content": "It is sunny in Oslo."}


def as_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream an upstream would send for ``body``: arguments and text in fragments."""
    head = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    message = body["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    text = message.get("content") or ""
    chunks += [chunk({"content": text[i : i + 5]}) for i in range(0, len(text), 5)]
    for index, call in enumerate(message.get("tool_calls", [])):
        opening = {"index": index, "id": call["id"], "type": "function"}
        opening["function"] = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(chunk({"tool_calls": [opening]}))
        arguments = call["function"]["arguments"]
        for i in range(0, len(arguments), 4):
            part = {"index": index, "function": {"arguments": arguments[i : i + 4]}}
            chunks.append(chunk({"tool_calls": [part]}))
    chunks.append(chunk({}, body["choices"][0]["finish_reason"]))
    chunks.append({**head, "choices": [], "usage": body["usage"]})
    return chunks


async def run_weather_loop(
    upstream: Upstream, *, stream: bool, events: RecordingEventSink | None = None
) -> tuple[Complete | Fail, InMemoryStore, RecordingToolExecutor]:
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_1", request={"model": "m"}))
    tools = RecordingToolExecutor()
    tools.add("weather", lambda arguments: {"city": arguments["city"], "sky": "sunny"})
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Weather?"}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    async with HttpxClient.create() as http:
        outcome = await run_response_loop(
            "resp_1",
            store=store,
            http_client=http,
            upstream=UpstreamTarget(upstream.url, api_key="sk-e2e"),
            transition=ChatTransition(body),
            tools=tools,
            events=events,
        )
    return outcome, store, tools


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_model_tool_model_over_real_http(upstream: Upstream, stream: bool) -> None:
    first = completion(TOOL_MESSAGE, "tool_calls", 1)
    final = completion(TEXT_MESSAGE, "stop", 2)
    if stream:
        upstream.add(Reply.sse(as_chunks(first)), Reply.sse(as_chunks(final)))
    else:
        upstream.add(Reply.json(first), Reply.json(final))
    events = RecordingEventSink()

    outcome, store, tools = await run_weather_loop(upstream, stream=stream, events=events)

    assert outcome == Complete(final)  # the reassembled stream equals the unstreamed body
    assert [(c.name, c.call_id, c.arguments) for c in tools.calls] == [
        ("weather", "call_w", {"city": "Oslo"})
    ]
    chain = await store.list_chain("resp_1", None)
    assert [step.state for step in chain] == [StepState.COMPLETED] * 3
    assert chain[0].response_payload == first
    # Each model call carried its step's id, and the follow-up answered the exact call id.
    assert [r.headers["x-request-id"] for r in upstream.received] == [chain[0].id, chain[2].id]
    assert all(r.headers["authorization"] == "Bearer sk-e2e" for r in upstream.received)
    follow_up = upstream.received[1].json()["messages"]
    assert follow_up[-1]["role"] == "tool"
    assert follow_up[-1]["tool_call_id"] == "call_w"
    assert json.loads(follow_up[-1]["content"]) == {"city": "Oslo", "sky": "sunny"}
    chunks = events.of_kind(LoopEventKind.MODEL_CHUNK)
    if stream:
        assert [e.data for e in chunks] == as_chunks(first) + as_chunks(final)
    else:
        assert chunks == []


async def test_upstream_500_then_200_inside_the_loop(upstream: Upstream) -> None:
    upstream.add(
        Reply.text(500, "boom"),
        Reply.json(completion(TOOL_MESSAGE, "tool_calls", 1)),
        Reply.json(completion(TEXT_MESSAGE, "stop", 2)),
    )
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_1", request={"model": "m"}))
    tools = RecordingToolExecutor()
    tools.add("weather")
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with HttpxClient.create(sleep=sleep) as http:
        outcome = await run_response_loop(
            "resp_1",
            store=store,
            http_client=http,
            upstream=UpstreamTarget(upstream.url),
            transition=ChatTransition(chat_body()),
            tools=tools,
        )
    assert isinstance(outcome, Complete)
    assert len(upstream.received) == 3
    assert len(sleeps) == 1


async def test_upstream_400_fails_the_response_without_its_body(upstream: Upstream) -> None:
    upstream.add(Reply.text(400, "prompt too long: sk-echoed-secret"))
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_1", request={"model": "m"}))
    async with HttpxClient.create(retry=RetryPolicy(jitter=0)) as http:
        outcome = await run_response_loop(
            "resp_1",
            store=store,
            http_client=http,
            upstream=UpstreamTarget(upstream.url),
            transition=ChatTransition(chat_body()),
        )
    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "upstream_error"
    assert outcome.error["status"] == 400
    assert "sk-echoed-secret" not in json.dumps(dict(outcome.error))
    [step] = await store.list_chain("resp_1", None)
    assert step.state is StepState.FAILED


async def test_cancelling_the_loop_cancels_the_upstream_call(upstream: Upstream) -> None:
    upstream.add(Reply(hang=True))
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_1", request={"model": "m"}))
    async with HttpxClient.create() as http, anyio.create_task_group() as group:
        group.start_soon(
            lambda: run_response_loop(
                "resp_1",
                store=store,
                http_client=http,
                upstream=UpstreamTarget(upstream.url),
                transition=ChatTransition(chat_body(stream=True)),
            )
        )
        await upstream.wait_for_requests(1)
        group.cancel_scope.cancel()
    await upstream.client_left.wait()  # the server saw the request abandoned
    [step] = await store.list_chain("resp_1", None)
    assert step.state is StepState.CANCELLED
