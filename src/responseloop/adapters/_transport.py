"""ResponseLoopTransport: the Responses API as an httpx2 transport, so ``httpx2`` and the
official ``openai`` client run the loop in-process."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Unpack

import httpx2

from ..http._httpx import HttpxClient
from ..service import ResponsesService, UpstreamOptions
from ._body import read_capped
from ._routes import MAX_BODY_BYTES, EventFrames, ResponsesRoutes, StreamReply, bearer_key

__all__ = ["ResponseLoopTransport", "caller_from_key"]


def caller_from_key(api_key: str | None) -> str | None:
    """The default caller identity: a digest of the API key, so responses stay private to
    the key that made them while no key is ever stored."""
    if not api_key:
        return None
    return "key_" + hashlib.sha256(api_key.encode()).hexdigest()[:32]


class ResponseLoopTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport serving the Responses API from a :class:`ResponsesService`.

    Routes (with or without the ``/v1`` prefix): ``POST /responses`` (JSON, or SSE for
    ``stream: true``), ``GET /responses/{id}``, ``GET /responses/{id}/input_items``,
    ``POST /responses/{id}/cancel`` and ``DELETE /responses/{id}``. Unknown routes get 404,
    wrong methods 405, unknown ids 404, all with OpenAI-style error bodies. Background
    responses (``background: true``, ``GET …?stream=true``) need a task group that outlives
    the request: the ASGI app in :mod:`responseloop.asgi` has one; here they get a 400.

    The caller's key (``Authorization: Bearer …``) picks the server-side tools through the
    resolver and, through ``caller_of``, which stored responses it may see; it is never
    sent upstream (the upstream's key is the :class:`UpstreamTarget`'s). A request body
    longer than ``max_body_bytes`` (default 16 MiB) is a 413, refused while it is read.

    The common case in a few lines::

        transport = ResponseLoopTransport.to_upstream("http://localhost:8000/v1", tools=tools)
        client = openai.AsyncOpenAI(
            base_url="http://responseloop.local/v1",
            api_key="caller-key",
            http_client=httpx2.AsyncClient(transport=transport),
        )
    """

    def __init__(
        self,
        service: ResponsesService,
        *,
        caller_of: Callable[[str | None], str | None] = caller_from_key,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.service = service
        self._routes = ResponsesRoutes(service, caller_of=caller_of, max_body_bytes=max_body_bytes)
        self._owned: HttpxClient | None = None

    @classmethod
    def to_upstream(
        cls, base_url: str, **options: Unpack[UpstreamOptions]
    ) -> ResponseLoopTransport:
        """A transport running the loop against the chat-completions server at
        ``base_url`` (``…/v1``; the ``/chat/completions`` path is added).

        ``tools`` are offered to every caller; pass a ``resolver`` instead to choose tools
        per caller key. The store defaults to an :class:`InMemoryStore` and the upstream
        client to an :class:`HttpxClient` that closes with the transport. An ``observer``
        sees every response and step (and the retries of the client created here). The
        keywords are :class:`~responseloop.service.UpstreamOptions`.
        """
        service, owned = ResponsesService.to_upstream(base_url, **options)
        transport = cls(service)
        transport._owned = owned
        return transport

    async def aclose(self) -> None:
        """Close the upstream client this transport created (``httpx2.AsyncClient`` calls
        this when it closes); a client passed in is left to its owner."""
        if self._owned is not None:
            await self._owned.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        async def read_body(limit: int) -> bytes:
            stream = request.stream
            if not isinstance(stream, AsyncIterable):
                raise TypeError("ResponseLoopTransport needs an async request body")
            return await read_capped(stream, request.headers.get("content-length"), limit)

        reply = await self._routes.handle(
            request.method,
            request.url.path,
            request.url.params,
            bearer_key(request.headers.get("authorization")),
            read_body,
        )
        if isinstance(reply, StreamReply):
            return httpx2.Response(
                200,
                headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
                stream=_EventStream(reply.events),
            )
        return httpx2.Response(
            reply.status, content=reply.encode(), headers={"content-type": "application/json"}
        )


class _EventStream(httpx2.AsyncByteStream):
    """The SSE body of a streamed response; closing it early, even unread and from any
    task, cancels the loop (the response is stored as ``cancelled``)."""

    def __init__(self, events: EventFrames) -> None:
        self._events = events

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events.__aiter__()

    async def aclose(self) -> None:
        # httpx2 closes the body when the reader leaves early, and frameworks may do it
        # from another task (pydantic-ai, langchain): either way the loop is cancelled at
        # once, as when an HTTP client disconnects, instead of at garbage collection.
        await self._events.aclose()
