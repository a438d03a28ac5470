"""ResponseLoopTransport: the Responses API as an httpx2 transport, so ``httpx2`` and the
official ``openai`` client run the loop in-process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import httpx2

from .._event_channel import EventChannel
from .._observer import LoopObserver
from .._protocols import HttpClient, ResponseStore, ToolExecutor, ToolResolver
from .._sse import encode_sse
from .._values import JSON, LoopConfig, LoopEvent, UpstreamTarget
from ..exceptions import InvalidRequestError, ResponseLoopError, ResponseNotFound
from ..http import HttpxClient
from ..openresponses import ResponsesEventMapper
from ..stores import InMemoryStore
from ._errors import error_body, exception_body
from ._service import PreparedResponse, ResponsesService

__all__ = ["ResponseLoopTransport", "caller_from_key"]

_ROUTE = re.compile(r"^(?:/v1)?/responses(?:/(?P<id>[^/]+)(?P<sub>/input_items|/cancel)?)?/?$")
_MAX_BODY_BYTES = 16 * 1024 * 1024


def caller_from_key(api_key: str | None) -> str | None:
    """The default caller identity: a digest of the API key, so responses stay private to
    the key that made them while no key is ever stored."""
    if not api_key:
        return None
    return "key_" + hashlib.sha256(api_key.encode()).hexdigest()[:32]


def _json_response(status: int, body: JSON) -> httpx2.Response:
    return httpx2.Response(
        status,
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={"content-type": "application/json"},
    )


def _not_found(response_id: str) -> httpx2.Response:
    return _json_response(
        404,
        error_body(
            f"No response found with id {response_id!r}.",
            type="invalid_request_error",
            code="response_not_found",
        ),
    )


class ResponseLoopTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport serving the Responses API from a :class:`ResponsesService`.

    Routes (with or without the ``/v1`` prefix): ``POST /responses`` (JSON, or SSE for
    ``stream: true``), ``GET /responses/{id}``, ``GET /responses/{id}/input_items``,
    ``POST /responses/{id}/cancel`` and ``DELETE /responses/{id}``. Unknown routes get 404,
    wrong methods 405, unknown ids 404, all with OpenAI-style error bodies.

    The caller's key (``Authorization: Bearer …``) picks the server-side tools through the
    resolver and, through ``caller_of``, which stored responses it may see; it is never
    sent upstream (the upstream's key is the :class:`UpstreamTarget`'s).

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
    ) -> None:
        self.service = service
        self._caller_of = caller_of
        self._owned: HttpxClient | None = None

    @classmethod
    def to_upstream(
        cls,
        base_url: str,
        *,
        api_key: str | None = None,
        tools: ToolExecutor | None = None,
        resolver: ToolResolver | None = None,
        store: ResponseStore | None = None,
        config: LoopConfig | None = None,
        http_client: HttpClient | None = None,
        observer: LoopObserver | None = None,
    ) -> ResponseLoopTransport:
        """A transport running the loop against the chat-completions server at
        ``base_url`` (``…/v1``; the ``/chat/completions`` path is added).

        ``tools`` are offered to every caller; pass a ``resolver`` instead to choose tools
        per caller key. The store defaults to an :class:`InMemoryStore` and the upstream
        client to an :class:`HttpxClient` that closes with the transport. An ``observer``
        (:class:`~responseloop.LoopObserver`) watches every run, and the retries of the
        upstream client created here.
        """
        if tools is not None and resolver is not None:
            raise ValueError("pass tools (for every caller) or a resolver, not both")
        if tools is not None:
            from ..tools import StaticToolResolver

            resolver = StaticToolResolver(tools)
        owned = None
        if http_client is None:
            owned = http_client = HttpxClient(observer=observer)
        service = ResponsesService(
            store=store if store is not None else InMemoryStore(),
            http_client=http_client,
            upstream=UpstreamTarget(base_url, "/chat/completions", api_key),
            resolver=resolver,
            config=config,
            observer=observer,
        )
        transport = cls(service)
        transport._owned = owned
        return transport

    async def aclose(self) -> None:
        """Close the upstream client this transport created (``httpx2.AsyncClient`` calls
        this when it closes); a client passed in is left to its owner."""
        if self._owned is not None:
            await self._owned.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        match = _ROUTE.match(request.url.path)
        if match is None:
            return _json_response(
                404,
                error_body(
                    f"Unknown route {request.method} {request.url.path}",
                    type="invalid_request_error",
                    code="unknown_route",
                ),
            )
        caller = self._caller_of(_bearer_key(request.headers))
        response_id, sub = match.group("id"), match.group("sub")
        allowed = _allowed_methods(response_id, sub)
        if request.method not in allowed:
            return _json_response(
                405,
                error_body(
                    f"Method {request.method} is not allowed here; use {' or '.join(allowed)}",
                    type="invalid_request_error",
                    code="method_not_allowed",
                ),
            )
        try:
            if response_id is None:
                return await self._create(request, caller)
            if sub == "/input_items":
                return await self._input_items(request, response_id, caller)
            if sub == "/cancel":
                return _json_response(200, await self.service.cancel(response_id, caller=caller))
            if request.method == "DELETE":
                await self.service.delete(response_id, caller=caller)
                deleted = {"id": response_id, "object": "response.deleted", "deleted": True}
                return _json_response(200, deleted)
            return await self._retrieve(request, response_id, caller)
        except ResponseNotFound:
            return _not_found(response_id or "")
        except ResponseLoopError as exc:
            return _json_response(exc.http_status, exception_body(exc))

    async def _create(self, request: httpx2.Request, caller: str | None) -> httpx2.Response:
        content = await request.aread()
        if len(content) > _MAX_BODY_BYTES:
            error = InvalidRequestError(f"the body is larger than {_MAX_BODY_BYTES} bytes")
            return _json_response(413, exception_body(error))
        try:
            body = json.loads(content)
        except ValueError as exc:
            error = InvalidRequestError(f"the body is not valid JSON: {exc}")
            return _json_response(400, exception_body(error))
        if not isinstance(body, Mapping):
            error = InvalidRequestError("the body must be a JSON object")
            return _json_response(400, exception_body(error))
        prepared = await self.service.prepare(
            body, api_key=_bearer_key(request.headers), caller=caller
        )
        if prepared.request.stream:
            return await self._stream(prepared)
        result = await self.service.run(prepared)
        return _json_response(200, result.response)

    async def _stream(self, prepared: PreparedResponse) -> httpx2.Response:
        return httpx2.Response(
            200,
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
            stream=_EventStream(self.service, prepared),
        )

    async def _retrieve(
        self, request: httpx2.Request, response_id: str, caller: str | None
    ) -> httpx2.Response:
        if request.url.params.get("stream") == "true":
            error = InvalidRequestError(
                "resuming an event stream needs the ASGI app", param="stream"
            )
            return _json_response(400, exception_body(error))
        return _json_response(200, await self.service.retrieve(response_id, caller=caller))

    async def _input_items(
        self, request: httpx2.Request, response_id: str, caller: str | None
    ) -> httpx2.Response:
        items = await self.service.input_items(response_id, caller=caller)
        params = request.url.params
        if params.get("order", "desc") == "desc":
            items.reverse()
        after = params.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = max(1, min(100, int(params.get("limit", "20"))))
        except ValueError:
            error = InvalidRequestError("limit must be an integer", param="limit")
            return _json_response(400, exception_body(error))
        page = items[:limit]
        body: dict[str, Any] = {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
        return _json_response(200, body)


def _bearer_key(headers: httpx2.Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def _allowed_methods(response_id: str | None, sub: str | None) -> tuple[str, ...]:
    if response_id is None or sub == "/cancel":
        return ("POST",)
    if sub == "/input_items":
        return ("GET",)
    return ("GET", "DELETE")


class _EventStream(httpx2.AsyncByteStream):
    """The SSE body of a streamed response, produced while the loop runs.

    The loop runs in a task of its own and hands its events through a bounded
    :class:`EventChannel`, so a slow reader slows the loop instead of growing a buffer;
    closing the body early cancels the loop (the response is stored as ``cancelled``), and
    so does closing it before reading it at all. Each event reaches the reader as soon as
    the loop produces it, except the terminal one: it waits until the Response is stored,
    so a client that reacts to it (a follow-up turn, a ``GET``) finds it finished.
    """

    def __init__(self, service: ResponsesService, prepared: PreparedResponse) -> None:
        self._service = service
        self._prepared = prepared
        self._events: _ClosingOnce | None = None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._events = _ClosingOnce(self._produce_events())
        return self._events

    async def aclose(self) -> None:
        # httpx2 closes the body when the reader leaves; closing the generator here, in
        # the reader's task, cancels the loop at once instead of at garbage collection.
        if self._closed:
            return
        self._closed = True
        if self._events is not None:
            await self._events.aclose()
        else:
            # Closed unread: the loop never started; the stored response must still end.
            prepared = self._prepared
            await self._service.cancel(prepared.response_id, caller=prepared.caller)

    async def _produce_events(self) -> AsyncGenerator[bytes, None]:
        prepared = self._prepared
        mapper = ResponsesEventMapper(
            prepared.request,
            response_id=prepared.response_id,
            created_at=prepared.created_at,
            clock=self._service.now,
        )
        failure: list[dict[str, Any]] = []
        stored: list[Mapping[str, Any]] = []
        channel: EventChannel[LoopEvent] = EventChannel(self._service.config.event_buffer)

        async def produce() -> None:
            # Never lets an error into the task group: it would cancel the reader's task
            # while this generator is suspended at a yield.
            try:
                stored.append((await self._service.run(prepared, events=channel)).response)
            except ResponseLoopError as exc:
                failure.append(exc.to_error())
            except Exception as exc:
                failure.append({"type": "internal_error", "message": type(exc).__name__})
            finally:
                channel.close()

        reader_left = False
        terminal: dict[str, Any] | None = None
        async with channel, anyio.create_task_group() as group:
            group.start_soon(produce)
            try:
                async for loop_event in channel:
                    for event in mapper.feed(loop_event):
                        if mapper.finished and _is_terminal(event):
                            terminal = event
                            continue
                        try:
                            yield encode_sse(event)
                        except GeneratorExit:
                            # The reader closed the body. Leave the task group normally
                            # (it cancels the loop, which stores the response as
                            # cancelled) rather than let GeneratorExit escape through it.
                            reader_left = True
                            break
                    if reader_left:
                        break
                last = None if reader_left else _closing_event(terminal, stored, failure, mapper)
                if last is not None:
                    with contextlib.suppress(GeneratorExit):  # the reader left at the end
                        yield encode_sse(last)
            finally:
                group.cancel_scope.cancel()


class _ClosingOnce:
    """An async iterator over a generator whose ``aclose`` may be called by several
    closers (the transport, httpx2's own stream wrappers, asyncio's generator finaliser):
    the first one closes it, the others find nothing left to do."""

    def __init__(self, generator: AsyncGenerator[bytes, None]) -> None:
        self._generator = generator
        self._closing = False

    def __aiter__(self) -> _ClosingOnce:
        return self

    async def __anext__(self) -> bytes:
        return await self._generator.__anext__()

    async def aclose(self) -> None:
        if not self._closing:
            self._closing = True
            await self._generator.aclose()


_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _is_terminal(event: Mapping[str, Any]) -> bool:
    return event.get("type") in _TERMINAL_EVENTS


def _closing_event(
    terminal: dict[str, Any] | None,
    stored: list[Mapping[str, Any]],
    failure: list[dict[str, Any]],
    mapper: ResponsesEventMapper,
) -> dict[str, Any] | None:
    """The stream's last event, sent once the run has ended: the terminal event carrying
    the Response exactly as stored, or an ``error`` event when the run ended without one
    (a store failure, or another worker holds the response)."""
    if terminal is not None:
        if stored:
            terminal = {**terminal, "response": dict(stored[0])}
        return terminal
    if failure:
        return {
            "type": "error",
            "code": failure[0].get("type"),
            "message": failure[0].get("message"),
            "param": None,
            "sequence_number": mapper.next_sequence_number,
        }
    return None
