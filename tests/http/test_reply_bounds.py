"""The caps on one upstream reply in HttpxClient, against a real loopback server: its bytes
(``max_reply_bytes``: a declared length, a chunked body, an event stream that never ends)
and its duration (``reply_timeout``: an upstream that never answers, or answers part of a
stream and stalls), over httpx2's own transport and aiohttp's. Neither is retried."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, overload

import anyio
import pytest

from responseloop import HttpxClient, RetryPolicy
from responseloop.abc import HttpRequest
from responseloop.exceptions import UpstreamConnectionError, UpstreamProtocolError
from responseloop.http import DEFAULT_MAX_REPLY_BYTES
from responseloop.http.aiohttp import AiohttpClient
from tests.loopback_upstream import Reply, Upstream

RETRYING = RetryPolicy(attempts=3, initial_backoff=0.0, jitter=0)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": True}
CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "delta": {"content": "more "}, "finish_reason": None}],
}
FRAME = b"data: " + json.dumps(CHUNK).encode() + b"\n\n"


class Endless(Sequence[bytes]):
    """The same body part, forever (a stream that never ends); counts what was taken."""

    def __init__(self, part: bytes) -> None:
        self.part = part
        self.taken = 0

    def __len__(self) -> int:
        return 2**62

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            raise TypeError("an endless body has no slices")
        self.taken += 1
        return self.part

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield self[self.taken]


def endless_stream() -> tuple[Reply, Endless]:
    parts = Endless(FRAME)
    return Reply(200, (("content-type", "text/event-stream"),), parts), parts


def transports(anyio_backend: str) -> list[str]:
    return ["httpx2", "aiohttp", "aiohttp-native"] if anyio_backend == "asyncio" else ["httpx2"]


def client(kind: str, **options: Any) -> HttpxClient | AiohttpClient:
    if kind == "aiohttp-native":
        return AiohttpClient(retry=RETRYING, **options)
    if kind == "aiohttp":
        from responseloop.http.aiohttp import aiohttp_transport

        return HttpxClient.create(transport=aiohttp_transport(), retry=RETRYING, **options)
    return HttpxClient.create(retry=RETRYING, **options)


async def no_events(event: Any) -> bool:
    return False


@pytest.mark.parametrize("kind", ["httpx2", "aiohttp", "aiohttp-native"])
async def test_a_stream_that_never_ends_is_cut_off_at_the_byte_cap(
    anyio_backend: str, upstream: Upstream, kind: str
) -> None:
    if kind not in transports(anyio_backend):
        pytest.skip("aiohttp runs on asyncio only")
    reply, parts = endless_stream()
    upstream.add(reply)
    async with client(kind, max_reply_bytes=50_000) as http:
        with pytest.raises(UpstreamProtocolError, match=r"longer than 50000 bytes"):
            await http.stream(HttpRequest(upstream.chat_url, BODY), no_events)
    assert len(upstream.received) == 1  # not retried
    # Cut where it passed the cap (plus what the sockets held), not read on and on.
    assert parts.taken * len(FRAME) < 50_000 + 4 * 1024 * 1024


@pytest.mark.parametrize("kind", ["httpx2", "aiohttp", "aiohttp-native"])
async def test_a_reply_over_the_byte_cap_fails_declared_or_chunked(
    anyio_backend: str, upstream: Upstream, kind: str
) -> None:
    if kind not in transports(anyio_backend):
        pytest.skip("aiohttp runs on asyncio only")
    big = b'{"pad": "' + b"x" * 5000 + b'"}'
    declared = Reply(
        200, (("content-type", "application/json"), ("content-length", "5011")), (big,)
    )
    chunked = Reply(200, (("content-type", "application/json"),), [big[:2500], big[2500:]])
    upstream.add(declared, chunked)
    request = HttpRequest(upstream.chat_url, {"model": "m", "messages": []})
    async with client(kind, max_reply_bytes=4096) as http:
        for _ in range(2):
            with pytest.raises(UpstreamProtocolError, match="max_reply_bytes"):
                await http.execute(request)
    assert len(upstream.received) == 2  # one try each


async def test_a_reply_under_the_cap_is_read_whole(upstream: Upstream) -> None:
    upstream.add(Reply.json({"ok": "x" * 3000}))
    async with client("httpx2", max_reply_bytes=4096) as http:
        answer = await http.execute(HttpRequest(upstream.chat_url, {"model": "m"}))
    assert answer.json() == {"ok": "x" * 3000}
    assert HttpxClient().max_reply_bytes == DEFAULT_MAX_REPLY_BYTES


@pytest.mark.parametrize("kind", ["httpx2", "aiohttp", "aiohttp-native"])
async def test_an_upstream_that_never_answers_fails_at_the_reply_timeout(
    anyio_backend: str, upstream: Upstream, kind: str
) -> None:
    if kind not in transports(anyio_backend):
        pytest.skip("aiohttp runs on asyncio only")
    upstream.add(Reply(hang=True))
    async with client(kind, reply_timeout=0.3) as http:
        with anyio.fail_after(30):  # a guard against hanging the suite, not a timing check
            with pytest.raises(
                UpstreamConnectionError, match=r"longer than 0.3s \(reply_timeout\)"
            ):
                await http.execute(HttpRequest(upstream.chat_url, {"model": "m"}))
    assert len(upstream.received) == 1  # not retried
    with anyio.fail_after(10):
        await upstream.client_left.wait()  # the connection was dropped, not left open


@pytest.mark.parametrize("kind", ["httpx2", "aiohttp-native"])
async def test_a_stream_that_stalls_mid_way_fails_at_the_reply_timeout(
    anyio_backend: str, upstream: Upstream, kind: str
) -> None:
    if kind not in transports(anyio_backend):
        pytest.skip("aiohttp runs on asyncio only")
    never = anyio.Event()
    reply = Reply(200, (("content-type", "text/event-stream"),), [FRAME, FRAME], pause=(1, never))
    upstream.add(reply)
    seen: list[Any] = []

    async def record(event: Any) -> bool:
        seen.append(event)
        return False

    async with client(kind, reply_timeout=0.3) as http:
        with anyio.fail_after(30):
            with pytest.raises(UpstreamConnectionError, match="reply_timeout"):
                await http.stream(HttpRequest(upstream.chat_url, BODY), record)
    assert len(seen) == 1  # the event before the stall was handed on
    assert len(upstream.received) == 1


def test_the_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_reply_bytes"):
        HttpxClient(max_reply_bytes=0)
    with pytest.raises(ValueError, match="reply_timeout"):
        HttpxClient(reply_timeout=0)
