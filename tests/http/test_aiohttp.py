"""AiohttpClient (extra ``aiohttp``) and the deprecated HttpxClient over the aiohttp
transport, against a real loopback server: what is particular to aiohttp (the session's
ownership, its connection errors, trio refused with a clear error, the loop over it). The
behaviour every client shares runs against AiohttpClient in test_httpx_client.py."""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import anyio
import anyio.abc
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
from responseloop.abc import Complete, HttpRequest
from responseloop.exceptions import UpstreamConnectionError, UpstreamStatusError
from responseloop.http.aiohttp import AiohttpClient, aiohttp_transport
from responseloop.testing import RecordingToolExecutor
from tests.http.reassembly import Reassembling
from tests.loopback_upstream import Reply, Upstream

NO_WAIT = RetryPolicy(attempts=3, initial_backoff=0.0, jitter=0)
COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


async def no_wait(seconds: float) -> None:
    pass


async def test_model_calls_go_over_aiohttp_on_asyncio_and_are_refused_under_trio(
    anyio_backend: str, upstream: Upstream
) -> None:
    upstream.add(Reply.json(COMPLETION))
    async with HttpxClient.create(transport=aiohttp_transport(), retry=NO_WAIT) as http:
        if anyio_backend != "asyncio":
            with pytest.raises(RuntimeError, match="asyncio only, not trio"):
                await http.execute(HttpRequest(upstream.chat_url, BODY))
            assert upstream.received == []
            return
        response = await http.execute(HttpRequest(upstream.chat_url, BODY, correlation_id="step_1"))
    assert response.json() == COMPLETION
    (received,) = upstream.received
    assert received.json() == BODY
    assert received.headers["x-request-id"] == "step_1"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stream_is_read_event_by_event_over_aiohttp(upstream: Upstream) -> None:
    chunk = {
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}],
    }
    end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    upstream.add(Reply.sse([chunk, end]))
    collect = Reassembling()

    async with HttpxClient.create(transport=aiohttp_transport()) as http:
        await http.stream(HttpRequest(upstream.chat_url, BODY), collect)
    events = collect.events
    assert [event.data for event in events][-1] == "[DONE]"
    assert len(events) == 3
    assert collect.result()["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_statuses_are_retried_and_surfaced_as_over_httpx2(upstream: Upstream) -> None:
    upstream.add(Reply.text(503, "busy"), Reply.json(COMPLETION), Reply.text(400, "bad"))
    async with HttpxClient.create(
        transport=aiohttp_transport(), retry=NO_WAIT, sleep=no_wait
    ) as http:
        assert (await http.execute(HttpRequest(upstream.chat_url, BODY))).json() == COMPLETION
        with pytest.raises(UpstreamStatusError) as refused:
            await http.execute(HttpRequest(upstream.chat_url, BODY))
    assert refused.value.status == 400
    assert refused.value.body == "bad"
    assert len(upstream.received) == 3


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_unreachable_upstream_is_a_connection_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens on the port now
    async with HttpxClient.create(
        transport=aiohttp_transport(), retry=NO_WAIT, sleep=no_wait
    ) as http:
        with pytest.raises(UpstreamConnectionError, match="could not reach"):
            await http.execute(HttpRequest(f"http://127.0.0.1:{port}/v1/chat/completions", BODY))


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx_aiohttp.httpx2", None)
    with pytest.raises(ImportError, match=r"pip install 'httpx-aiohttp\[httpx2\]'"):
        aiohttp_transport()


async def test_the_native_client_calls_on_asyncio_and_is_refused_under_trio(
    anyio_backend: str, upstream: Upstream
) -> None:
    upstream.add(Reply.json(COMPLETION))
    async with AiohttpClient(retry=NO_WAIT) as http:
        if anyio_backend != "asyncio":
            with pytest.raises(RuntimeError, match="asyncio only, not trio"):
                await http.execute(HttpRequest(upstream.chat_url, BODY))
            assert upstream.received == []
            assert http.session is None  # nothing was made
            return
        response = await http.execute(HttpRequest(upstream.chat_url, BODY, correlation_id="s1"))
        session = http.session
    assert response.json() == COMPLETION
    assert response.headers["content-type"] == "application/json"
    (received,) = upstream.received
    assert received.json() == BODY
    assert received.headers["x-request-id"] == "s1"
    assert received.headers["content-type"] == "application/json"
    assert session is not None
    assert session.closed  # made here, closed with the client


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_native_client_sends_the_body_as_httpx2_does(upstream: Upstream) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo ☃"}]}
    upstream.add(Reply.json(COMPLETION), Reply.json(COMPLETION))
    async with AiohttpClient() as aio, HttpxClient.create() as httpx:
        await aio.execute(HttpRequest(upstream.chat_url, body))
        await httpx.execute(HttpRequest(upstream.chat_url, body))
    first, second = upstream.received
    assert first.body == second.body  # byte for byte: compact, UTF-8, not ASCII-escaped


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_injected_session_is_never_closed(upstream: Upstream) -> None:
    upstream.add(Reply.json(COMPLETION))
    async with aiohttp.ClientSession() as session:
        async with AiohttpClient(session) as http:
            await http.execute(HttpRequest(upstream.chat_url, BODY))
            assert not http.owns_session
        assert not session.closed


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_native_client_retries_a_refused_connection_then_raises() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens on the port now
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with AiohttpClient(retry=NO_WAIT, sleep=record) as http:
        with pytest.raises(UpstreamConnectionError, match=r"upstream at 127\.0\.0\.1") as e:
            await http.execute(HttpRequest(f"http://127.0.0.1:{port}/v1/chat/completions", BODY))
    assert isinstance(e.value.__cause__, aiohttp.ClientConnectorError)
    assert len(waits) == NO_WAIT.attempts - 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_invalid_url_is_a_connection_error_not_retried() -> None:
    async with AiohttpClient(retry=NO_WAIT, sleep=no_wait) as http:
        with pytest.raises(UpstreamConnectionError, match="invalid") as caught:
            await http.execute(HttpRequest("ftp://nowhere/v1/chat/completions", BODY))
    assert isinstance(caught.value.__cause__, aiohttp.NonHttpUrlClientError)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_hundreds_of_calls_are_in_flight_at_once_over_aiohttp(upstream: Upstream) -> None:
    concurrent = 300
    all_in = anyio.Event()
    upstream.add(*(Reply(200, (), (b"{}",), before=all_in) for _ in range(concurrent)))
    async with AiohttpClient() as http, anyio.create_task_group() as group:
        for _ in range(concurrent):
            group.start_soon(http.execute, HttpRequest(upstream.chat_url, BODY))
        await upstream.wait_for_requests(concurrent)
        all_in.set()
    assert len(upstream.received) == concurrent


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_loop_runs_over_the_native_client(upstream: Upstream) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
    tool_call = {
        **COMPLETION,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
    }
    upstream.add(Reply.json(tool_call), Reply.json(COMPLETION))
    tools = RecordingToolExecutor()
    tools.add("add", lambda arguments: {"sum": 3})
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_1", request=BODY))
    async with AiohttpClient() as http:
        outcome = await run_response_loop(
            "resp_1",
            store=store,
            http_client=http,
            upstream=UpstreamTarget(upstream.url),
            transition=ChatTransition(BODY),
            tools=tools,
        )
    assert isinstance(outcome, Complete)
    assert outcome.payload == COMPLETION
    follow_up = upstream.received[1].json()
    assert follow_up["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"sum": 3}',
    }
