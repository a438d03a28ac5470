"""The bounds of ``responseloop serve``, as a real uvicorn subprocess with a loopback
upstream in the test process: a body over ``--max-body-bytes`` is refused while it is read
(a client that has sent only the headers of a 300 MB body gets its 413; a chunked body is
cut off at the cap); an upstream whose stream never ends, or that never answers, fails its
response within ``--max-upstream-reply-bytes`` / ``--upstream-reply-timeout``; a client
that leaves a JSON request cancels its run.

The server process is what these tests exercise, so the client side runs on asyncio only.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx2
import pytest
from anyio.abc import SocketStream

from responseloop import HttpxClient
from tests.asgi.serving import Served, serving
from tests.http.test_reply_bounds import endless_stream
from tests.loopback_upstream import Reply, Upstream, running_upstream
from tests.wire_checks import check_emitted_response

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@attrs.define
class World:
    upstream: Upstream
    server: Served
    http: httpx2.AsyncClient

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.url.removeprefix("http://").split(":")
        return host, int(port)


@pytest.fixture
def reply_timeout() -> str:
    return "0.5"


@pytest.fixture
async def world(tmp_path: Path, reply_timeout: str) -> AsyncIterator[World]:
    async with running_upstream() as upstream:
        args = [
            "--upstream",
            upstream.url + "/v1",
            "--max-body-bytes",
            "4096",
            "--max-upstream-reply-bytes",
            "100000",
            "--upstream-reply-timeout",
            reply_timeout,
        ]
        async with (
            serving(args, log=tmp_path / "server.log") as server,
            httpx2.AsyncClient(base_url=server.url, timeout=30) as http,
        ):
            yield World(upstream, server, http)


async def read_answer(stream: SocketStream) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the one HTTP answer on ``stream`` (the server closes
    the connection after it: it cannot read on past a refused body)."""
    data = b""
    with anyio.fail_after(30):
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
            head, _, body = data.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def test_a_client_that_sent_only_the_headers_of_a_300_mb_body_gets_its_413(
    world: World,
) -> None:
    stream = await anyio.connect_tcp(*world.address)
    async with stream:
        await stream.send(
            b"POST /v1/responses HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n"
        )
        status, body = await read_answer(stream)
    assert status == 413
    assert body["error"]["type"] == "invalid_request_error"
    assert "larger than 4096 bytes" in body["error"]["message"]
    assert world.upstream.received == []


async def test_a_chunked_body_is_cut_off_at_the_cap(world: World) -> None:
    stream = await anyio.connect_tcp(*world.address)
    async with stream:
        await stream.send(
            b"POST /v1/responses HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1000
        for _ in range(5):  # 5000 bytes, past the 4096 cap; the body never ends
            await stream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = await read_answer(stream)
    assert status == 413
    assert "larger than 4096 bytes" in body["error"]["message"]


async def test_a_body_under_the_cap_is_served(world: World) -> None:
    world.upstream.add(Reply.json(completion("fine")))
    answer = await world.http.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert answer.status_code == 200, answer.text
    check_emitted_response(answer.json())
    assert answer.json()["status"] == "completed"


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }


@pytest.mark.parametrize("reply_timeout", ["none"])  # only the byte cap ends it, however slow
@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_stream_that_never_ends_fails_the_response_at_the_byte_cap(
    world: World, stream: bool
) -> None:
    reply, _ = endless_stream()
    world.upstream.add(reply)
    body = {"model": "m", "input": "hi", "stream": stream}
    response = await run(world, body)
    assert response["status"] == "failed"
    assert "max_reply_bytes" in response["error"]["message"]
    stored = await world.http.get(f"/v1/responses/{response['id']}")
    assert stored.json()["status"] == "failed"
    check_emitted_response(stored.json())


async def test_an_upstream_that_never_answers_fails_the_response_at_the_reply_timeout(
    world: World,
) -> None:
    world.upstream.add(Reply(hang=True))
    with anyio.fail_after(30):  # a guard against hanging the suite, not a timing check
        response = await run(world, {"model": "m", "input": "hi"})
    assert response["status"] == "failed"
    assert "longer than 0.5s (reply_timeout)" in response["error"]["message"]
    assert len(world.upstream.received) == 1


@pytest.mark.parametrize("reply_timeout", ["none"])  # only the client's leaving ends it
async def test_a_client_that_leaves_a_json_request_cancels_its_run(world: World) -> None:
    world.upstream.add(Reply(hang=True))
    world.upstream.add(Reply.json(completion("after")))
    post = functools.partial(world.http.post, json={"model": "m", "input": "hi"})
    async with anyio.create_task_group() as group:
        group.start_soon(post, "/v1/responses")
        with anyio.fail_after(10):
            await world.upstream.wait_for_requests(1)
        group.cancel_scope.cancel()  # the client goes away while the loop waits upstream
    with anyio.fail_after(10):
        # With no reply timeout, only the run's cancellation drops the upstream call.
        await world.upstream.client_left.wait()
    # The server goes on serving.
    answer = await world.http.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert answer.json()["status"] == "completed"


async def run(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """The final Response of ``body``: the JSON answer, or a stream's terminal event's."""
    if not body.get("stream"):
        answer = await world.http.post("/v1/responses", json=body)
        check_emitted_response(answer.json())
        result: dict[str, Any] = answer.json()
        return result
    async with world.http.stream("POST", "/v1/responses", json=body) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line.removeprefix("data: "))
                if event["type"] in ("response.failed", "response.completed"):
                    response: dict[str, Any] = event["response"]
                    return response
    raise AssertionError("the stream ended without a terminal event")


def test_serve_defaults_are_the_librarys() -> None:
    from responseloop import cli
    from responseloop.adapters._routes import MAX_BODY_BYTES
    from responseloop.http import DEFAULT_MAX_REPLY_BYTES

    assert cli.MAX_BODY_BYTES == MAX_BODY_BYTES
    assert cli.DEFAULT_MAX_REPLY_BYTES == DEFAULT_MAX_REPLY_BYTES
    create = inspect.signature(HttpxClient.create).parameters
    assert create["default_timeout"].default == cli.DEFAULT_UPSTREAM_TIMEOUT
    assert create["connect_timeout"].default == cli.DEFAULT_UPSTREAM_CONNECT_TIMEOUT
