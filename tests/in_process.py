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
