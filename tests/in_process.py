"""The official openai client talking to a :class:`ResponsesService` through the in-process
transport, and the events of a streamed answer: what the end-to-end adapter tests share."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai

from responseloop import ResponseLoopTransport, ResponsesService

BASE_URL = "http://responseloop.test/v1"


@asynccontextmanager
async def openai_client(
    service: ResponsesService, key: str, *, max_retries: int = 0
) -> AsyncIterator[tuple[httpx2.AsyncClient, openai.AsyncOpenAI]]:
    """An httpx2 client over ``service``'s transport and the openai client using it with
    the API key ``key``. No retries unless asked: a test sees each request's own answer."""
    http = httpx2.AsyncClient(transport=ResponseLoopTransport(service))
    async with openai.AsyncOpenAI(
        base_url=BASE_URL, api_key=key, http_client=http, max_retries=max_retries
    ) as client:
        yield http, client


async def sse_events(answer: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON events of a streamed answer's ``data:`` lines (without ``[DONE]``)."""
    events: list[dict[str, Any]] = []
    async for line in answer.aiter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line.removeprefix("data: ")))
    return events


def post_responses_scope(
    *extra_headers: tuple[bytes, bytes], spec_version: str | None = None
) -> dict[str, Any]:
    """The ASGI scope of a JSON ``POST /v1/responses``, for tests that call an app directly
    (to see each message it sends, or to leave mid-request)."""
    asgi = (
        {"version": "3.0"}
        if spec_version is None
        else {"version": "3.0", "spec_version": spec_version}
    )
    return {
        "type": "http",
        "asgi": asgi,
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/responses",
        "raw_path": b"/v1/responses",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *extra_headers],
        "server": ("test", 80),
        "client": ("test", 1),
    }
