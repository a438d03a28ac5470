"""An upstream's own error message reaches the caller (issue 14): read from the usual error
shapes, bounded, and with anything secret-looking removed. Through the official openai
client and the in-process transport, with a real loopback upstream answering the error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from responseloop import (
    HttpxClient,
    InMemoryStore,
    ResponsesService,
    RetryPolicy,
)
from responseloop.abc import HttpRequest
from responseloop.exceptions import UpstreamConnectionError, UpstreamStatusError
from tests.in_process import openai_client
from tests.loopback_upstream import Reply, Upstream, running_upstream

SAID = "This model's maximum context length is 4096 tokens"
SHAPES: list[tuple[str, Any]] = [
    ("openai", {"error": {"message": SAID, "type": "invalid_request_error", "code": None}}),
    ("vllm", {"object": "error", "message": SAID, "type": "BadRequestError", "code": 400}),
    ("fastapi", {"detail": SAID}),
    ("fastapi-validation", {"detail": [{"loc": ["body", "model"], "msg": SAID}]}),
    ("error-string", {"error": SAID}),
    ("plain", SAID),
]


@pytest.fixture
async def served() -> AsyncIterator[tuple[Upstream, openai.AsyncOpenAI]]:
    async with (
        running_upstream() as upstream,
        HttpxClient.create(retry=RetryPolicy(attempts=1)) as http_client,
    ):
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target("sk-upstream"),
        )
        # The openai client's default retries, as a caller has them.
        async with openai_client(service, "sk-caller", max_retries=openai.DEFAULT_MAX_RETRIES) as (
            _http,
            client,
        ):
            yield upstream, client


def _reply(status: int, body: Any) -> Reply:
    return Reply.text(status, body) if isinstance(body, str) else Reply.json(body, status)


@pytest.mark.parametrize("status", [400, 422, 500])
@pytest.mark.parametrize(("shape", "body"), SHAPES, ids=[s for s, _ in SHAPES])
async def test_the_upstreams_message_is_kept(
    served: tuple[Upstream, openai.AsyncOpenAI], status: int, shape: str, body: Any
) -> None:
    upstream, client = served
    upstream.add(_reply(status, body))

    response = await client.responses.create(model="m", input="hi")

    assert response.status == "failed"
    assert response.error is not None
    expected = f"body.model: {SAID}" if shape == "fastapi-validation" else SAID
    assert response.error.message == f"upstream answered HTTP {status}: {expected}"
    stored = await client.responses.retrieve(response.id)
    assert stored.error is not None
    assert stored.error.message == response.error.message


async def test_secrets_in_the_upstreams_message_are_removed(
    served: tuple[Upstream, openai.AsyncOpenAI],
) -> None:
    upstream, client = served
    said = (
        "Incorrect API key provided: sk-proj-abcdef1234567890. Header was "
        "'Authorization: Bearer eyJhbGciOi.payload.sig' calling "
        "https://user:hunter2@llm.internal/v1 with api_key=abc123"
    )
    upstream.add(Reply.json({"error": {"message": said}}, 401))

    response = await client.responses.create(model="m", input="hi")

    assert response.error is not None
    message = response.error.message
    for secret in ("sk-proj-abcdef1234567890", "eyJhbGciOi", "hunter2", "user:", "abc123"):
        assert secret not in message
    assert message.startswith("upstream answered HTTP 401: Incorrect API key provided: ")
    assert "llm.internal/v1" in message  # the host says where; only its credentials go


async def test_a_long_message_is_cut(served: tuple[Upstream, openai.AsyncOpenAI]) -> None:
    upstream, client = served
    upstream.add(Reply.json({"error": {"message": "word " * 1000}}, 400))

    response = await client.responses.create(model="m", input="hi")

    assert response.error is not None
    told = response.error.message.removeprefix("upstream answered HTTP 400: ")
    assert len(told) == 500
    assert told.endswith("…")


@pytest.mark.parametrize(
    "body", ["", "<html><body>502 Bad Gateway</body></html>", json.dumps({"error": {}}), "null"]
)
def test_a_body_with_no_message_gives_the_status_alone(body: str) -> None:
    assert UpstreamStatusError(502, body).message == "upstream answered HTTP 502"


def test_an_explicit_message_wins() -> None:
    assert UpstreamStatusError(400, '{"message": "x"}', message="mine").message == "mine"


async def test_connection_errors_name_the_upstreams_url_without_its_secrets() -> None:
    async with HttpxClient.create(retry=RetryPolicy.no_retries()) as http_client:
        request = HttpRequest("http://bob:pw-s3cret@127.0.0.1:9/v1/chat/completions?k=s3cret", {})
        with pytest.raises(UpstreamConnectionError) as unreachable:
            await http_client.execute(request)
    message = str(unreachable.value)
    assert "could not reach the upstream at http://127.0.0.1:9/v1/chat/completions" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (Reply(hang=True), "the upstream's reply took longer than 0.5s (reply_timeout) from "),
        (Reply(200, (("content-type", "application/json"),), (b"{",), cut=True), "cut its reply"),
    ],
    ids=["reply-timeout", "cut"],
)
async def test_a_failing_reply_names_the_upstreams_url(reply: Reply, said: str) -> None:
    async with (
        running_upstream() as upstream,
        HttpxClient.create(retry=RetryPolicy.no_retries(), reply_timeout=0.5) as http_client,
    ):
        upstream.add(reply)
        with pytest.raises(UpstreamConnectionError) as failed:
            await http_client.execute(HttpRequest(upstream.chat_url, {}))
    assert said in str(failed.value)
    assert upstream.chat_url in str(failed.value)
