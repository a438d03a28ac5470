"""HttpxClient against a real loopback HTTP server: JSON, SSE, retries, timeouts, cuts.

The behaviour every client of ``responseloop.http`` shares runs against AiohttpClient too
(the ``http`` fixture's ``aiohttp`` case; asyncio only, aiohttp does not run on trio)."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx2
import pytest

from responseloop import HttpxClient, RetryPolicy, UpstreamTarget
from responseloop.abc import HttpRequest, ServerSentEvent
from responseloop.exceptions import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from responseloop.http.aiohttp import AiohttpClient
from tests.http.reassembly import Reassembling
from tests.loopback_upstream import Reply, Upstream

NO_JITTER = RetryPolicy(attempts=3, initial_backoff=0.5, multiplier=2, jitter=0)
TARGET_KEY = "sk-loopback-secret"


class Sleeps:
    """Records the waits between tries instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


Client = HttpxClient | AiohttpClient


@pytest.fixture(params=["httpx2", "aiohttp"])
async def http(
    request: pytest.FixtureRequest, anyio_backend: str, sleeps: Sleeps
) -> AsyncIterator[Client]:
    if request.param == "httpx2":
        async with HttpxClient.create(retry=NO_JITTER, sleep=sleeps) as client:
            yield client
        return
    if anyio_backend != "asyncio":
        pytest.skip("aiohttp runs on asyncio only")
    async with AiohttpClient(retry=NO_JITTER, sleep=sleeps) as aio:
        yield aio


def request(upstream: Upstream, body: Any = None, **fields: Any) -> HttpRequest:
    target = UpstreamTarget(upstream.url, api_key=TARGET_KEY)
    return HttpRequest(
        target.url,
        json=body if body is not None else {"model": "m", "messages": []},
        headers=target.headers(),
        **fields,
    )


def completion(text: str = "hi") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }


def chunk(delta: dict[str, Any], finish: str | None = None, **top: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 9,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **top,
    }


TOOL_CALL_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Oslo"}'}}]}),
    chunk({}, "tool_calls"),
    {
        **chunk({}),
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    },
]


class Collector:
    def __init__(self) -> None:
        self.events: list[ServerSentEvent] = []

    async def __call__(self, event: ServerSentEvent) -> None:
        self.events.append(event)


# --- plain calls ---------------------------------------------------------------------------


async def test_execute_sends_the_body_headers_and_correlation_id(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(Reply.json(completion("hello")))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    response = await http.execute(request(upstream, body, correlation_id="step_42"))

    assert response.status == 200
    assert response.json() == completion("hello")
    assert response.headers["content-type"] == "application/json"
    [seen] = upstream.received
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.json() == body
    assert seen.headers["authorization"] == f"Bearer {TARGET_KEY}"
    assert seen.headers["x-request-id"] == "step_42"
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["content-type"] == "application/json"


async def test_no_authorization_header_without_a_key(upstream: Upstream, http: Client) -> None:
    upstream.add(Reply.json(completion()))
    target = UpstreamTarget(upstream.url)
    await http.execute(HttpRequest(target.url, json={}, headers=target.headers()))
    assert "authorization" not in upstream.received[0].headers
    assert "x-request-id" not in upstream.received[0].headers


async def test_the_correlation_header_name_is_configurable(upstream: Upstream) -> None:
    upstream.add(Reply.json(completion()))
    async with HttpxClient.create(correlation_header="X-Step-Id") as http:
        await http.execute(request(upstream, correlation_id="step_1"))
    assert upstream.received[0].headers["x-step-id"] == "step_1"


# --- retries -------------------------------------------------------------------------------


async def test_429_waits_as_long_as_retry_after_says(
    upstream: Upstream, http: Client, sleeps: Sleeps
) -> None:
    upstream.add(Reply.text(429, "slow down", [("Retry-After", "2")]), Reply.json(completion()))
    response = await http.execute(request(upstream))
    assert response.json() == completion()
    assert sleeps.waits == [2.0]
    assert len(upstream.received) == 2


async def test_retry_after_as_an_http_date(
    upstream: Upstream, http: Client, sleeps: Sleeps
) -> None:
    when = email.utils.formatdate(time.time() + 3600 * 24 * 365, usegmt=True)
    upstream.add(Reply.text(503, "maintenance", [("Retry-After", when)]))
    with pytest.raises(UpstreamStatusError) as caught:
        await http.execute(request(upstream))
    # A year is past the policy's bound: it gives up at once rather than wait or ignore it.
    assert caught.value.status == 503
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 3600
    assert sleeps.waits == []
    assert len(upstream.received) == 1


async def test_500_then_200_is_retried_with_backoff(
    upstream: Upstream, http: Client, sleeps: Sleeps
) -> None:
    upstream.add(Reply.text(500, "oops"), Reply.text(502, "bad gateway"), Reply.json(completion()))
    response = await http.execute(request(upstream))
    assert response.json() == completion()
    assert sleeps.waits == [NO_JITTER.backoff(1), NO_JITTER.backoff(2)] == [0.5, 1.0]


async def test_a_wait_past_the_deadline_gives_up_with_the_upstream_error(
    upstream: Upstream, http: Client, sleeps: Sleeps
) -> None:
    upstream.add(Reply.text(429, "slow down", [("Retry-After", "30")]), Reply.json(completion()))
    with pytest.raises(UpstreamStatusError) as caught:
        await http.execute(request(upstream, timeout=5))
    # Not a timeout after sleeping 5 of the 30 seconds: the 429 itself, at once.
    assert (caught.value.status, caught.value.retry_after) == (429, 30.0)
    assert sleeps.waits == []
    assert len(upstream.received) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_exhausted_retries_raise_the_last_error(
    upstream: Upstream, http: Client, sleeps: Sleeps, status: int
) -> None:
    upstream.add(Reply.text(500, "first"), Reply.text(500, "second"), Reply.text(status, "last"))
    with pytest.raises(UpstreamStatusError) as caught:
        await http.execute(request(upstream))
    assert (caught.value.status, caught.value.body) == (status, "last")
    assert len(upstream.received) == NO_JITTER.attempts
    assert len(sleeps.waits) == NO_JITTER.attempts - 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_4xx_are_not_retried(
    upstream: Upstream, http: Client, sleeps: Sleeps, status: int
) -> None:
    upstream.add(Reply.text(status, '{"error": "bad"}'), Reply.json(completion()))
    with pytest.raises(UpstreamStatusError) as caught:
        await http.execute(request(upstream))
    assert (caught.value.status, caught.value.body) == (status, '{"error": "bad"}')
    assert caught.value.to_error()["code"] == "invalid_prompt"
    assert len(upstream.received) == 1
    assert sleeps.waits == []


async def test_connection_refused_is_retried_then_raised(sleeps: Sleeps) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there now
    async with HttpxClient.create(retry=NO_JITTER, sleep=sleeps) as http:
        with pytest.raises(UpstreamConnectionError) as caught:
            await http.execute(HttpRequest(f"http://127.0.0.1:{port}/v1/chat/completions"))
    assert isinstance(caught.value.__cause__, httpx2.ConnectError)
    assert len(sleeps.waits) == NO_JITTER.attempts - 1


async def test_retry_logs_never_show_the_key(
    upstream: Upstream, http: Client, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.add(Reply.text(500, "oops"), Reply.json(completion()))
    with caplog.at_level(logging.DEBUG):
        await http.execute(request(upstream, correlation_id="step_7"))
    [retry] = [r for r in caplog.records if r.getMessage().startswith("upstream call failed")]
    assert retry.levelno == logging.WARNING
    assert retry.name == "responseloop.http"
    assert (retry.__dict__["step_id"], retry.__dict__["attempt"]) == ("step_7", 1)
    logged = "".join(f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in caplog.records)
    assert TARGET_KEY not in logged
    assert "oops" not in logged  # nor the upstream's body
    assert TARGET_KEY not in repr(request(upstream))


# --- timeouts and cancellation ---------------------------------------------------------------


async def test_a_slow_upstream_hits_the_request_timeout(upstream: Upstream, http: Client) -> None:
    upstream.add(Reply(hang=True))
    with pytest.raises(UpstreamConnectionError, match="timed out"):
        await http.execute(request(upstream, timeout=0.2))
    await upstream.client_left.wait()  # the abandoned request's connection was closed


async def test_cancelling_the_caller_cancels_the_upstream_request(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(Reply(hang=True))
    async with anyio.create_task_group() as group:
        group.start_soon(http.execute, request(upstream))
        await upstream.wait_for_requests(1)
        group.cancel_scope.cancel()
    await upstream.client_left.wait()
    assert upstream.disconnects == 1


async def test_cancelling_mid_stream_closes_the_upstream_connection(
    upstream: Upstream, http: Client
) -> None:
    never = anyio.Event()
    first_event = anyio.Event()
    upstream.add(Reply.sse(TOOL_CALL_STREAM, pause=(2, never)))

    async def on_event(event: ServerSentEvent) -> None:
        first_event.set()

    async with anyio.create_task_group() as group:
        group.start_soon(http.stream, request(upstream), on_event)
        await first_event.wait()
        group.cancel_scope.cancel()
    await upstream.client_left.wait()


# --- streaming -----------------------------------------------------------------------------


async def test_stream_hands_on_each_event_and_reassembles_the_tool_call(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(Reply.sse(TOOL_CALL_STREAM))
    events = Reassembling()
    response = await http.stream(request(upstream, correlation_id="step_3"), events)

    assert [e.data for e in events.events][-1] == "[DONE]"
    assert [e.json() for e in events.events[:-1]] == TOOL_CALL_STREAM
    assert response.status == 200
    assert events.result() == {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 9,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    seen = upstream.received[0]
    assert seen.headers["accept"] == "text/event-stream"
    assert seen.headers["x-request-id"] == "step_3"


async def test_events_reach_the_caller_before_the_stream_ends(
    upstream: Upstream, http: Client
) -> None:
    release = anyio.Event()
    upstream.add(Reply.sse(TOOL_CALL_STREAM, pause=(3, release)))
    handed_on: list[int] = []

    reassembled = Reassembling()

    async def on_event(event: ServerSentEvent) -> bool:
        handed_on.append(len(handed_on))
        if len(handed_on) == 3:
            # The server holds the rest until we have the first three: a client that
            # buffered the whole body would never get here.
            release.set()
        return await reassembled(event)

    await http.stream(request(upstream), on_event)
    assert len(handed_on) == len(TOOL_CALL_STREAM) + 1


async def test_finished_streams_leave_their_connection_for_the_next_call(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(Reply.sse(TOOL_CALL_STREAM), Reply.sse(TOOL_CALL_STREAM), Reply.json({}))
    await http.stream(request(upstream), Reassembling())
    await http.stream(request(upstream), Reassembling())
    await http.execute(request(upstream))
    assert len(upstream.received) == 3
    assert upstream.connections == 1  # kept alive, not reopened per call


async def test_stream_open_is_retried_after_a_5xx(
    upstream: Upstream, http: Client, sleeps: Sleeps
) -> None:
    upstream.add(Reply.text(503, "busy"), Reply.sse(TOOL_CALL_STREAM))
    events = Reassembling()
    await http.stream(request(upstream), events)
    assert events.result()["choices"][0]["finish_reason"] == "tool_calls"
    assert len(events.events) == len(TOOL_CALL_STREAM) + 1  # only the good try's events
    assert sleeps.waits == [0.5]


async def test_stream_400_is_a_status_error_with_the_body(upstream: Upstream, http: Client) -> None:
    upstream.add(Reply.text(400, "context too long"))
    with pytest.raises(UpstreamStatusError) as caught:
        await http.stream(request(upstream), Collector())
    assert (caught.value.status, caught.value.body) == (400, "context too long")


async def test_a_truncated_stream_is_a_connection_error(
    upstream: Upstream, http: Client, sleeps: Sleeps
) -> None:
    upstream.add(Reply.sse(TOOL_CALL_STREAM[:3], done=False, cut=True), Reply.sse(TOOL_CALL_STREAM))
    events = Reassembling()
    with pytest.raises(UpstreamConnectionError, match="cut the stream"):
        await http.stream(request(upstream), events)
    # What arrived was handed on; the cut stream is not retried behind the caller's back.
    assert [e.json() for e in events.events] == TOOL_CALL_STREAM[:3]
    assert len(upstream.received) == 1


async def test_a_stream_ending_unfinished_without_done_is_a_protocol_error(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(Reply.sse(TOOL_CALL_STREAM[:3], done=False))
    events = Reassembling()
    await http.stream(request(upstream), events)
    with pytest.raises(UpstreamProtocolError, match="ended before"):
        events.result()


async def test_a_finished_stream_without_done_is_accepted(upstream: Upstream, http: Client) -> None:
    upstream.add(Reply.sse(TOOL_CALL_STREAM, done=False))
    events = Reassembling()
    await http.stream(request(upstream), events)
    assert events.result()["usage"]["total_tokens"] == 7


async def test_invalid_json_in_a_stream_is_a_protocol_error(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(Reply.sse([TOOL_CALL_STREAM[0], "{not json", *TOOL_CALL_STREAM[1:]]))
    events = Reassembling()
    with pytest.raises(UpstreamProtocolError, match="not JSON"):
        await http.stream(request(upstream), events)
    assert [e.json() for e in events.events] == [TOOL_CALL_STREAM[0]]


async def test_a_json_answer_to_a_stream_request_is_a_protocol_error(
    upstream: Upstream, http: Client
) -> None:
    upstream.add(Reply.json(completion()))
    with pytest.raises(UpstreamProtocolError, match="text/event-stream"):
        await http.stream(request(upstream), Collector())


async def test_a_slow_stream_hits_the_request_timeout(upstream: Upstream, http: Client) -> None:
    never = anyio.Event()
    upstream.add(Reply.sse(TOOL_CALL_STREAM, pause=(1, never)))
    events = Collector()
    with pytest.raises(UpstreamConnectionError, match="timed out"):
        await http.stream(request(upstream, timeout=0.2), events)
    assert len(events.events) == 1
    await upstream.client_left.wait()


# --- pool and ownership --------------------------------------------------------------------


async def test_hundreds_of_calls_are_in_flight_at_once(upstream: Upstream) -> None:
    concurrent = 300  # past httpx2's default pool of 100, which would deadlock here
    all_in = anyio.Event()
    upstream.add(*(Reply(200, (), (b"{}",), before=all_in) for _ in range(concurrent)))
    async with HttpxClient.create() as http, anyio.create_task_group() as group:
        for _ in range(concurrent):
            group.start_soon(http.execute, request(upstream))
        await upstream.wait_for_requests(concurrent)
        all_in.set()
    assert len(upstream.received) == concurrent


async def test_an_injected_client_is_never_closed(upstream: Upstream) -> None:
    upstream.add(Reply.json(completion()))
    async with httpx2.AsyncClient() as client:
        async with HttpxClient(client) as http:
            await http.execute(request(upstream))
        assert not client.is_closed


@pytest.mark.parametrize("make", [HttpxClient, HttpxClient.create])
async def test_a_client_made_here_owns_and_closes_its_pool(
    upstream: Upstream, make: Callable[[], HttpxClient]
) -> None:
    upstream.add(Reply.json(completion()))
    async with make() as http:
        assert http.owns_client
        await http.execute(request(upstream))
    assert http.client.is_closed
