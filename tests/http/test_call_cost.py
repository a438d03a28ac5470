"""What a call pays for, not how long it takes: a successful call never enters tenacity,
a call with no time limit enters no cancel scope, and a body read in one go because it
declares its length still fails, and is retried, like any cut reply. Over httpx2 on
asyncio and trio and over aiohttp on asyncio, against the loopback upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import tenacity

from responseloop import HttpxClient, RetryPolicy
from responseloop.abc import HttpRequest
from responseloop.exceptions import UpstreamConnectionError
from responseloop.http import _calls
from responseloop.http.aiohttp import AiohttpClient
from tests.loopback_upstream import Reply, Upstream

NO_WAIT = RetryPolicy(attempts=3, initial_backoff=0.0, jitter=0)
ANSWER = {"ok": True}

Client = HttpxClient | AiohttpClient


def make_client(kind: str, **options: Any) -> Client:
    if kind == "aiohttp":
        return AiohttpClient(**options)
    return HttpxClient.create(**options)


@pytest.fixture(params=["httpx2", "aiohttp"])
def kind(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "aiohttp" and anyio_backend != "asyncio":
        pytest.skip("aiohttp runs on asyncio only")
    return str(request.param)


@pytest.fixture
async def http(kind: str) -> AsyncIterator[Client]:
    async with make_client(kind, retry=NO_WAIT, default_timeout=None) as client:
        yield client


def cut_short() -> Reply:
    """A JSON reply declaring 100 bytes that sends 5 and drops the connection."""
    headers = (("content-type", "application/json"), ("content-length", "100"))
    return Reply(200, headers, (b'{"ok"',), cut=True)


def chat(upstream: Upstream, **fields: Any) -> HttpRequest:
    return HttpRequest(upstream.chat_url, {"model": "m", "messages": []}, **fields)


async def no_events(event: Any) -> bool:
    return False


class Entered:
    """Counts what a spied-on callable was entered for, and calls the real one."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.count = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return self.real(*args, **kwargs)


class SpiedAnyio:
    """The ``anyio`` that :mod:`responseloop.http._calls` sees, counting cancel scopes."""

    def __init__(self) -> None:
        self.scopes = Entered(anyio.CancelScope)
        self.move_on_after = Entered(anyio.move_on_after)
        self.CancelScope = self.scopes

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    @property
    def entered(self) -> int:
        return self.scopes.count + self.move_on_after.count


async def test_a_body_cut_short_of_its_content_length_is_retried(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(cut_short(), Reply.json(ANSWER))
    answer = await http.execute(chat(upstream))
    assert answer.json() == ANSWER
    assert len(upstream.received) == 2


async def test_a_body_cut_short_fails_as_a_cut_reply_without_retries(
    upstream: Upstream, kind: str
) -> None:
    upstream.add(cut_short())
    async with make_client(kind, retry=RetryPolicy.no_retries()) as http:
        with pytest.raises(UpstreamConnectionError, match="cut its reply"):
            await http.execute(chat(upstream))
    assert len(upstream.received) == 1


async def test_a_successful_call_never_enters_tenacity(
    upstream: Upstream, http: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    retrying = Entered(tenacity.AsyncRetrying)
    monkeypatch.setattr(tenacity, "AsyncRetrying", retrying)
    upstream.add(Reply.json(ANSWER), Reply.sse([{"n": 1}]))
    assert (await http.execute(chat(upstream))).json() == ANSWER
    await http.stream(chat(upstream), no_events)
    assert retrying.count == 0
    # The spy does see the retry path: a failure worth retrying hands the call to tenacity.
    upstream.add(Reply.text(503, "busy"), Reply.json(ANSWER))
    assert (await http.execute(chat(upstream))).json() == ANSWER
    assert retrying.count == 1


async def test_a_call_with_no_time_limit_enters_no_cancel_scope(
    upstream: Upstream, http: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    spied = SpiedAnyio()
    monkeypatch.setattr(_calls, "anyio", spied)
    upstream.add(Reply.json(ANSWER), Reply.sse([{"n": 1}]))
    assert (await http.execute(chat(upstream))).json() == ANSWER
    await http.stream(chat(upstream), no_events)
    assert spied.entered == 0
    # With a time limit the same calls are bounded, so the spy can tell the two apart.
    upstream.add(Reply.json(ANSWER), Reply.sse([{"n": 1}]))
    assert (await http.execute(chat(upstream, timeout=30.0))).json() == ANSWER
    await http.stream(chat(upstream, timeout=30.0), no_events)
    assert spied.entered == 2


async def test_a_reply_timeout_alone_bounds_each_try(upstream: Upstream, kind: str) -> None:
    spied = SpiedAnyio()
    upstream.add(Reply.json(ANSWER))
    async with make_client(kind, default_timeout=None, reply_timeout=30.0) as http:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_calls, "anyio", spied)
            assert (await http.execute(chat(upstream))).json() == ANSWER
    assert (spied.scopes.count, spied.move_on_after.count) == (1, 0)
