"""HttpxClient over the aiohttp transport (extra ``aiohttp``), against a real loopback
server: JSON and SSE calls, retries and connection errors behave as over httpx2's own
transport; under trio the transport refuses with a clear error."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from responseloop import HttpxClient, RetryPolicy
from responseloop.abc import HttpRequest
from responseloop.exceptions import UpstreamConnectionError, UpstreamStatusError
from responseloop.http.aiohttp import aiohttp_transport
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
    with pytest.raises(ImportError, match=r"pip install 'responseloop\[aiohttp\]'"):
        aiohttp_transport()
