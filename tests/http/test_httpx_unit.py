"""HttpxClient unit cases over httpx2.MockTransport: no sockets, exact control of the bytes."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx2
import pytest

from responseloop import HttpxClient, RetryPolicy
from responseloop.abc import HttpRequest, ServerSentEvent
from responseloop.exceptions import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from tests.http.reassembly import Reassembling

URL = "http://upstream.test/v1/chat/completions"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":"Gr\xc3\xbc"},"finish_reason":null}]}\r\n\r\n'
    b": keep-alive\r\n\r\n"
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"content":"\xc3\x9fe"},"finish_reason":"stop"}]}\r\n\r\n'
    b"data: [DONE]\r\n\r\n"
)


class Pieces(httpx2.AsyncByteStream):
    """A response body sent in the given pieces, optionally failing after them."""

    def __init__(self, pieces: Sequence[bytes], error: Exception | None = None) -> None:
        self.pieces = pieces
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error


def sse(pieces: Sequence[bytes], error: Exception | None = None) -> httpx2.Response:
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Pieces(pieces, error)
    )


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(
    handler: Callable[[httpx2.Request], httpx2.Response], **options: Any
) -> tuple[HttpxClient, list[httpx2.Request]]:
    seen: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return handler(request)

    options.setdefault("sleep", Sleeps())
    http = HttpxClient.create(transport=httpx2.MockTransport(record), **options)
    return http, seen


async def ignore(event: ServerSentEvent) -> None:
    pass


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
async def test_a_stream_cut_into_any_pieces_reassembles_the_same(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    http, _ = client(lambda request: sse(pieces))
    collect = Reassembling()

    async with http:
        await http.stream(HttpRequest(URL, json={"stream": True}), collect)
    events = collect.events
    assert collect.result()["choices"][0]["message"] == {"role": "assistant", "content": "Grüße"}
    assert [e.data for e in events][-1] == "[DONE]"
    assert len(events) == 3


async def test_a_compressed_stream_is_decoded() -> None:
    packed = gzip.compress(STREAM)
    pieces = [packed[i : i + 10] for i in range(0, len(packed), 10)]
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    http, _ = client(lambda r: httpx2.Response(200, headers=headers, stream=Pieces(pieces)))
    reassembled = Reassembling()
    async with http:
        await http.stream(HttpRequest(URL), reassembled)
    assert reassembled.result()["choices"][0]["message"]["content"] == "Grüße"


async def test_a_body_that_does_not_decode_is_a_protocol_error() -> None:
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    http, _ = client(lambda r: httpx2.Response(200, headers=headers, content=b"not gzip"))
    async with http:
        with pytest.raises(UpstreamProtocolError, match="not decodable"):
            await http.stream(HttpRequest(URL), ignore)
        with pytest.raises(UpstreamProtocolError, match="not decodable"):
            await http.execute(HttpRequest(URL))


async def test_an_invalid_url_fails_like_an_unreachable_upstream() -> None:
    http, seen = client(lambda r: httpx2.Response(200))
    async with http:
        with pytest.raises(UpstreamConnectionError, match="invalid"):
            await http.execute(HttpRequest("http://upstream:port/"))
    assert seen == []


async def test_the_request_timeout_reaches_httpx2() -> None:
    http, seen = client(lambda request: httpx2.Response(200, json={}), default_timeout=30)
    async with http:
        await http.execute(HttpRequest(URL, timeout=5))
        await http.execute(HttpRequest(URL))
    assert seen[0].extensions["timeout"] == dict.fromkeys(("connect", "read", "write", "pool"), 5)
    assert seen[1].extensions["timeout"]["read"] == 30  # the client's default otherwise


async def test_method_headers_and_no_body() -> None:
    http, seen = client(lambda request: httpx2.Response(200, json={"ok": True}))
    async with http:
        response = await http.execute(
            HttpRequest(URL, method="GET", headers={"Accept": "text/plain", "X-Tenant": "acme"})
        )
    assert response.json() == {"ok": True}
    assert seen[0].method == "GET"
    assert seen[0].content == b""
    assert seen[0].headers["accept"] == "text/plain"  # the caller's own Accept wins
    assert seen[0].headers["x-tenant"] == "acme"


async def test_connect_errors_are_retried() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    sleeps = Sleeps()
    http, seen = client(refuse, retry=RetryPolicy(attempts=4, jitter=0), sleep=sleeps)
    async with http:
        with pytest.raises(UpstreamConnectionError, match="could not reach"):
            await http.execute(HttpRequest(URL))
    assert len(seen) == 4
    assert sleeps.waits == [0.5, 1.0, 2.0]


async def test_errors_that_would_repeat_are_not_retried() -> None:
    def unsupported(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.UnsupportedProtocol("no", request=request)

    http, seen = client(unsupported)
    async with http:
        with pytest.raises(UpstreamConnectionError):
            await http.execute(HttpRequest(URL))
    assert len(seen) == 1


async def test_a_retry_after_past_the_bound_is_not_waited_for() -> None:
    sleeps = Sleeps()
    http, seen = client(
        lambda request: httpx2.Response(429, headers={"Retry-After": "120"}, text="later"),
        retry=RetryPolicy(max_retry_after=30),
        sleep=sleeps,
    )
    async with http:
        with pytest.raises(UpstreamStatusError) as caught:
            await http.execute(HttpRequest(URL))
    assert (caught.value.status, caught.value.retry_after) == (429, 120.0)
    assert caught.value.to_error()["code"] == "rate_limit_exceeded"
    assert len(seen) == 1
    assert sleeps.waits == []


async def test_no_retries_policy_surfaces_the_first_5xx() -> None:
    http, seen = client(lambda r: httpx2.Response(503), retry=RetryPolicy.no_retries())
    async with http:
        with pytest.raises(UpstreamStatusError):
            await http.execute(HttpRequest(URL))
    assert len(seen) == 1


async def test_a_read_error_mid_stream_is_a_connection_error() -> None:
    first = b"data: " + json.dumps(chunk({"content": "a"})).encode() + b"\n\n"
    http, _ = client(lambda r: sse([first], httpx2.ReadError("reset")))
    async with http:
        with pytest.raises(UpstreamConnectionError, match="cut the stream"):
            await http.stream(HttpRequest(URL), ignore)


async def test_an_error_event_is_a_protocol_error() -> None:
    http, _ = client(lambda r: sse([b'event: error\ndata: {"message": "overloaded"}\n\n']))
    async with http:
        with pytest.raises(UpstreamProtocolError, match="error event"):
            await http.stream(HttpRequest(URL), Reassembling())


async def test_an_in_band_error_chunk_is_a_protocol_error() -> None:
    body = b'data: {"error": {"type": "server_error", "message": "boom"}}\n\n'
    http, _ = client(lambda r: sse([body]))
    async with http:
        with pytest.raises(UpstreamProtocolError, match="mid-stream"):
            await http.stream(HttpRequest(URL), Reassembling())


async def test_anything_after_done_is_not_read() -> None:
    http, _ = client(lambda r: sse([STREAM, b"data: {not json\n\n"]))
    reassembled = Reassembling()
    async with http:
        await http.stream(HttpRequest(URL), reassembled)
    assert reassembled.result()["choices"][0]["finish_reason"] == "stop"


async def test_an_error_in_the_callback_propagates_and_releases_the_stream() -> None:
    async def explode(event: ServerSentEvent) -> None:
        raise RuntimeError("consumer failed")

    http, _ = client(lambda r: sse([STREAM]))
    async with http:
        with pytest.raises(RuntimeError, match="consumer failed"):
            await http.stream(HttpRequest(URL), explode)


async def test_an_owned_injected_client_is_closed_with_us() -> None:
    inner = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(200)))
    async with HttpxClient(inner, owns_client=True):
        pass
    assert inner.is_closed


def test_nonsense_default_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="default_timeout"):
        HttpxClient(httpx2.AsyncClient(), default_timeout=0)
