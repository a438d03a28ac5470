"""The Responses API routes, written once for every HTTP adapter.

:class:`ResponsesRoutes` turns one HTTP request (method, path, query, bearer key, body)
into a :class:`JsonReply` or a :class:`StreamReply` by calling a
:class:`~responseloop.ResponsesService`. The httpx2 transport and the ASGI app
only convert their own request and response types to and from these.
"""

from __future__ import annotations

import asyncio  # noqa: TID251  (only _start_detached: anyio has no detached task)
import contextvars
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import attrs

from .._sse import DONE_FRAME, encode_sse
from ..abc._events import LoopEvent, LoopEventKind
from ..abc._json import JSON
from ..access._policy import Grant
from ..exceptions import InvalidRequestError, ResponseLoopError, ResponseNotFound
from ..openresponses._events import ResponsesEventMapper
from ..service import PreparedResponse, ResponsesService
from ._body import parse_body
from ._channel import EventChannel
from ._errors import error_body, exception_body
from ._event_log import EventLogWriter, error_event
from ._models import ModelsUnavailable, UpstreamModels

__all__ = [
    "MAX_BODY_BYTES",
    "TERMINAL_EVENTS",
    "BackgroundRunner",
    "EventFrames",
    "JsonReply",
    "ResponsesRoutes",
    "StreamReply",
    "bearer_key",
    "ended_here",
    "event_mapper",
    "pushed_run",
    "streamed_run",
]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The default cap on a request body (16 MiB); a longer one is refused with 413."""
_ROUTE = re.compile(r"^(?:/v1)?/responses(?:/(?P<id>[^/]+)(?P<sub>/input_items|/cancel)?)?/?$")
_MODELS_ROUTE = re.compile(r"^(?:/v1)?/models(?:/(?P<id>[^/]+))?/?$")
_CONVERSATIONS_ROUTE = re.compile(
    r"^(?:/v1)?/conversations"
    r"(?:/(?P<id>[^/]+)(?:/(?P<items>items)(?:/(?P<item>[^/]+))?)?)?/?$"
)


@attrs.frozen
class JsonReply:
    """A JSON answer: its HTTP status and body."""

    status: int
    body: JSON

    def encode(self) -> bytes:
        """The body as UTF-8 JSON (a string with no UTF-8 form, such as a lone surrogate
        from an upstream or a tool, is sent escaped, so a stored response is always
        readable)."""
        try:
            return json.dumps(self.body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return json.dumps(self.body).encode()


@attrs.frozen
class StreamReply:
    """A ``text/event-stream`` answer: the SSE frames, produced while they are read.

    Close ``events`` (``aclose``) when the reader leaves early, from any task.
    """

    events: EventFrames


class BackgroundRunner(Protocol):
    """What the routes need of whoever runs ``background: true`` responses (the ASGI app)."""

    @property
    def accepting(self) -> bool:
        """Whether :meth:`start` can run a response now (the app's lifespan is running)."""
        ...

    async def start(self, prepared: PreparedResponse) -> None:
        """Start running ``prepared`` and return at once."""
        ...

    async def resume(self, response_id: str, starting_after: int | None) -> StreamReply:
        """The event stream of a response from after sequence number ``starting_after``.

        Raises:
            InvalidRequestError: the stream cannot be given (e.g. the events were dropped).
        """
        ...


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer …`` header value, or ``None``."""
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def _error(status: int, message: str, code: str) -> JsonReply:
    return JsonReply(status, error_body(message, type="invalid_request_error", code=code))


def _model_not_found(model: str) -> JsonReply:
    # OpenAI's answer for a model that does not exist or the key may not use.
    message = f"The model `{model}` does not exist or you do not have access to it."
    return _error(404, message, "model_not_found")


def _invalid(status: int, exc: ResponseLoopError) -> JsonReply:
    return JsonReply(status, exception_body(exc))


class ResponsesRoutes:
    """The routes of the Responses API (with or without the ``/v1`` prefix) over a service.

    ``POST /responses`` (JSON; SSE for ``stream: true``; ``background: true`` when a
    ``background`` runner is given), ``GET /responses/{id}`` (``?stream=true&starting_after=N``
    resumes a stream, with a runner), ``GET /responses/{id}/input_items``,
    ``POST /responses/{id}/cancel``, ``DELETE /responses/{id}``, the Conversations API
    (``/conversations``, ``/conversations/{id}``, ``/conversations/{id}/items``,
    ``/conversations/{id}/items/{item_id}``: :class:`~responseloop.ResponsesService`'s
    ``conversations``), and ``GET /models``
    (``GET /models/{id}``) from the upstream's list (:class:`UpstreamModels`; a failure
    there is a 502). Unknown routes get 404,
    wrong methods 405, unknown ids 404, all with OpenAI-style error bodies.

    Args:
        service: what every route calls.
        caller_of: the caller identity of a bearer key (which stored responses it sees).
        background: runs ``background: true`` responses; without one they are refused.
        max_body_bytes: the largest request body accepted; a longer one is a 413, refused
            while it is read (the adapter's body reader enforces it).
    """

    def __init__(
        self,
        service: ResponsesService,
        *,
        caller_of: Callable[[str | None], str | None],
        background: BackgroundRunner | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes!r}")
        self.service = service
        self._caller_of = caller_of
        self._background = background
        self.max_body_bytes = max_body_bytes
        self._upstream_models = UpstreamModels(service.http_client, service.upstream)

    async def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        api_key: str | None,
        read_body: Callable[[int], Awaitable[bytes]],
        grant: Grant | None = None,
    ) -> JsonReply | StreamReply:
        """Answer one request. ``path`` is relative to where the routes are mounted.

        ``grant`` is what the adapter's authenticator granted the caller (``None``: no
        authenticator, every model allowed): a request for a model outside it is a 404
        ``model_not_found``, and ``GET /models`` lists only the models inside it.

        ``read_body(limit)`` reads the body, raising
        :class:`~responseloop.adapters._body.BodyTooLarge` as soon as it passes ``limit``
        bytes (:func:`~responseloop.adapters._body.read_capped`); it is called only by
        the routes that take a body.
        """
        match = _ROUTE.match(path)
        if match is None:
            models = _MODELS_ROUTE.match(path)
            if models is not None:
                return await self._models(method, models.group("id"), grant)
            conversations = _CONVERSATIONS_ROUTE.match(path)
            if conversations is not None:
                return await self._conversations(
                    method, conversations, query, self._caller_of(api_key), read_body
                )
            return _error(404, f"Unknown route {method} {path}", "unknown_route")
        caller = self._caller_of(api_key)
        response_id, sub = match.group("id"), match.group("sub")
        if response_id == "compact" and sub is None:
            return await self._compact_route(method, api_key, caller, read_body, grant)
        allowed = _allowed_methods(response_id, sub)
        if method not in allowed:
            return _error(
                405,
                f"Method {method} is not allowed here; use {' or '.join(allowed)}",
                "method_not_allowed",
            )
        try:
            if response_id is None:
                content = await read_body(self.max_body_bytes)
                return await self._create(content, api_key, caller, grant)
            if sub == "/input_items":
                return await self._input_items(query, response_id, caller)
            if sub == "/cancel":
                return JsonReply(200, await self.service.cancel(response_id, caller=caller))
            if method == "DELETE":
                await self.service.delete(response_id, caller=caller)
                return JsonReply(
                    200, {"id": response_id, "object": "response.deleted", "deleted": True}
                )
            return await self._retrieve(query, response_id, caller)
        except ResponseNotFound:
            return _error(404, f"No response found with id {response_id!r}.", "response_not_found")
        except ResponseLoopError as exc:
            return _invalid(exc.http_status, exc)

    async def _conversations(
        self,
        method: str,
        match: re.Match[str],
        query: Mapping[str, str],
        caller: str | None,
        read_body: Callable[[int], Awaitable[bytes]],
    ) -> JsonReply:
        """The Conversations API: ``/conversations[/{id}[/items[/{item_id}]]]``."""
        conversation_id, items, item_id = match.group("id", "items", "item")
        allowed = _conversation_methods(conversation_id, items, item_id)
        if method not in allowed:
            return _error(
                405,
                f"Method {method} is not allowed here; use {' or '.join(allowed)}",
                "method_not_allowed",
            )
        conversations = self.service.conversations

        async def body() -> Mapping[str, Any]:
            return parse_body(await read_body(self.max_body_bytes))

        try:
            if conversation_id is None:
                return JsonReply(200, await conversations.create(await body(), caller=caller))
            if items is None:
                if method == "GET":
                    answer = await conversations.retrieve(conversation_id, caller=caller)
                elif method == "DELETE":
                    answer = await conversations.delete(conversation_id, caller=caller)
                else:
                    answer = await conversations.update(
                        conversation_id, await body(), caller=caller
                    )
            elif item_id is None:
                if method == "GET":
                    answer = await conversations.list_items(conversation_id, query, caller=caller)
                else:
                    answer = await conversations.add_items(
                        conversation_id, await body(), caller=caller
                    )
            elif method == "GET":
                answer = await conversations.retrieve_item(conversation_id, item_id, caller=caller)
            else:
                answer = await conversations.delete_item(conversation_id, item_id, caller=caller)
        except ResponseLoopError as exc:
            return _invalid(exc.http_status, exc)
        return JsonReply(200, answer)

    async def _models(self, method: str, model_id: str | None, grant: Grant | None) -> JsonReply:
        if method != "GET":
            return _error(
                405, f"Method {method} is not allowed here; use GET", "method_not_allowed"
            )
        try:
            models = await self._upstream_models.models()
        except ModelsUnavailable as exc:
            return JsonReply(502, error_body(str(exc), type="server_error", code="upstream_error"))
        if grant is not None:
            models = [model for model in models if grant.allows(model["id"])]
        if model_id is None:
            return JsonReply(200, {"object": "list", "data": models})
        for model in models:
            if model["id"] == model_id:
                return JsonReply(200, model)
        return _model_not_found(model_id)

    async def _create(
        self, content: bytes, api_key: str | None, caller: str | None, grant: Grant | None
    ) -> JsonReply | StreamReply:
        # Nothing the store or an encoder cannot hold gets past here (a 400 naming it).
        body = parse_body(content)
        model = body.get("model")
        if grant is not None and isinstance(model, str) and not grant.allows(model):
            return _model_not_found(model)  # before anything is stored
        if body.get("background") is True and (
            self._background is None or not self._background.accepting
        ):
            # Refused before anything is stored: nothing here outlives the request (an app
            # whose lifespan is not running cannot run it).
            raise InvalidRequestError(
                "background responses need the ASGI app (responseloop.asgi)",
                param="background",
            )
        if body.get("background") is True and body.get("store") is False:
            # Its only way back to the client is the store: GET, resume, cancel.
            raise InvalidRequestError("background responses must be stored", param="store")
        prepared = await self.service.prepare(body, api_key=api_key, caller=caller)
        if prepared.request.background and self._background is not None:
            if prepared.finished is None:
                await self._background.start(prepared)
            if prepared.request.stream:
                return await self._background.resume(prepared.response_id, None)
            return JsonReply(200, await self.service.retrieve(prepared.response_id, caller=caller))
        if prepared.request.stream:
            return StreamReply(streamed_run(self.service, prepared))
        result = await self.service.run(prepared)
        return JsonReply(200, result.response)

    async def _compact_route(
        self,
        method: str,
        api_key: str | None,
        caller: str | None,
        read_body: Callable[[int], Awaitable[bytes]],
        grant: Grant | None,
    ) -> JsonReply:
        """``POST /responses/compact`` (no response id is ``compact``: ours are ``resp_…``)."""
        if method != "POST":
            return _error(
                405, f"Method {method} is not allowed here; use POST", "method_not_allowed"
            )
        try:
            body = parse_body(await read_body(self.max_body_bytes))
            model = body.get("model")
            if grant is not None and isinstance(model, str) and not grant.allows(model):
                return _model_not_found(model)
            return JsonReply(200, await self.service.compact(body, api_key=api_key, caller=caller))
        except ResponseNotFound:
            return _error(404, "No such previous response.", "response_not_found")
        except ResponseLoopError as exc:
            return _invalid(exc.http_status, exc)

    async def _retrieve(
        self, query: Mapping[str, str], response_id: str, caller: str | None
    ) -> JsonReply | StreamReply:
        response = await self.service.retrieve(response_id, caller=caller)
        if query.get("stream") != "true":
            return JsonReply(200, response)
        if self._background is None:
            raise InvalidRequestError("resuming an event stream needs the ASGI app", param="stream")
        starting_after: int | None = None
        if "starting_after" in query:
            try:
                starting_after = int(query["starting_after"])
            except ValueError:
                raise InvalidRequestError(
                    "starting_after must be an integer", param="starting_after"
                ) from None
        return await self._background.resume(response_id, starting_after)

    async def _input_items(
        self, query: Mapping[str, str], response_id: str, caller: str | None
    ) -> JsonReply:
        items = await self.service.input_items(response_id, caller=caller)
        if query.get("order", "desc") == "desc":
            items.reverse()
        after = query.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        try:
            limit = max(1, min(100, int(query.get("limit", "20"))))
        except ValueError:
            return _invalid(400, InvalidRequestError("limit must be an integer", param="limit"))
        page = items[:limit]
        body: dict[str, Any] = {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
        return JsonReply(200, body)


def _conversation_methods(
    conversation_id: str | None, items: str | None, item_id: str | None
) -> tuple[str, ...]:
    if conversation_id is None:
        return ("POST",)
    if items is None:
        return ("GET", "POST", "DELETE")
    if item_id is None:
        return ("GET", "POST")
    return ("GET", "DELETE")


def _allowed_methods(response_id: str | None, sub: str | None) -> tuple[str, ...]:
    if response_id is None or sub == "/cancel":
        return ("POST",)
    if sub == "/input_items":
        return ("GET",)
    return ("GET", "DELETE")


def event_mapper(service: ResponsesService, prepared: PreparedResponse) -> ResponsesEventMapper:
    """The mapper of a run of ``prepared`` by ``service``: its clock and wire options."""
    return ResponsesEventMapper(
        prepared.request,
        response_id=prepared.response_id,
        created_at=prepared.created_at,
        clock=service.now,
        wire=service.wire,
    )


class EventFrames(Protocol):
    """SSE frames produced while they are read; ``aclose`` stops whatever produces them."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def __anext__(self) -> Awaitable[bytes]: ...

    async def aclose(self) -> None: ...


class _RunFrames:
    """The frames of one streamed run, pulled by a reader (the httpx2 transport's body) or
    pushed by :meth:`pump` (the ASGI app).

    A pulled run's loop runs in a task of its own (:func:`_start_detached`), never under the
    reader's cancel scopes or task groups, so any task may read the frames or close them,
    at any point: the reader only takes events from the loop's :class:`EventChannel` and
    maps them to frames. Closing (``aclose``, by whichever of its closers comes first: an
    adapter, httpx2's stream wrappers, a framework finalising it in another task) is what
    a client disconnecting from the ASGI app is: unread, the stored response is cancelled;
    mid-stream, the loop is cancelled and ``aclose`` returns once the response is stored
    ``cancelled``; after the end, nothing is left to do. A reader cancelled or failing
    while it waits for a frame leaves the same way.
    """

    def __init__(self, service: ResponsesService, prepared: PreparedResponse) -> None:
        self._service = service
        self._prepared = prepared
        self._source: _FrameSource | None = None
        self._scope = anyio.CancelScope()
        self._ended = anyio.Event()
        self._task: object = None  # keeps the asyncio task of the loop referenced
        self._pending: deque[bytes] = deque()
        self._closed = False
        self._finished = False

    def __aiter__(self) -> _RunFrames:
        return self

    async def __anext__(self) -> bytes:
        while not self._pending:
            if self._closed or self._finished:
                raise StopAsyncIteration
            source = self._source if self._source is not None else self._start()
            try:
                loop_event: LoopEvent | None = await anext(source.channel, None)
                if loop_event is None:
                    # The run closed the channel (or gave up on a stalled reader): the
                    # closing frame needs the run's outcome, known once its task has ended.
                    await self._ended.wait()
            except BaseException:
                await self._abandon()
                raise
            if loop_event is not None:
                self._pending.extend(source.frames(loop_event))
                await source.log_due(loop_event)
                continue
            if self._closed:  # closed by another task while this one waited
                raise StopAsyncIteration
            self._finished = True
            last = source.closing()
            await source.log_end()
            if last is None:
                raise StopAsyncIteration
            return last
        return self._pending.popleft()

    def _start(self) -> _FrameSource:
        source = self._source = _FrameSource(self._service, self._prepared)
        scope, ended = self._scope, self._ended

        async def run() -> None:
            try:
                with scope:
                    await source.run()
            finally:
                source.channel.close()
                ended.set()

        self._task = _start_detached(run)
        return source

    async def _abandon(self) -> None:
        """The reader left: cancel the loop (a no-op once it has ended) and close the
        reader's end of the channel. Never waits, so a cancelled reader may call it."""
        self._closed = True
        self._pending.clear()
        self._scope.cancel()
        if self._source is not None:
            await self._source.channel.aclose()

    async def pump(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Run the response and ``send`` every frame, for a server that pushes them (the
        ASGI app); an alternative to iterating, never used together with it."""
        if self._source is not None or self._closed:
            raise RuntimeError("these frames are already being read")
        self._closed = True
        await _FrameSource(self._service, self._prepared).pump(send)

    async def aclose(self) -> None:
        if self._closed and self._source is None:
            return  # pumped, or closed unread by an earlier closer
        if self._source is None:
            self._closed = True
            prepared = self._prepared
            with anyio.CancelScope(shield=True):
                await self._service.cancel(prepared.response_id, caller=prepared.caller)
            return
        await self._abandon()
        with anyio.CancelScope(shield=True):
            # Every closer returns once the run is over and its response stored.
            await self._ended.wait()


def _start_detached(run: Callable[[], Coroutine[Any, Any, None]]) -> object:
    """Start ``run`` in a task that no caller's scope holds, and return what keeps it alive.

    A pulled stream has no task group of its own that outlives the request, and the reader
    may be any task, inside scopes entered and left between two reads (pydantic-graph's
    task groups) or gone when a finaliser closes the body: a task group held open by the
    body across reads would be exited in the wrong task or out of order. anyio has no
    detached task, so this is the one place that asks the backend: asyncio's loop makes a
    task (held weakly by asyncio, so the caller keeps the returned one); trio makes a
    system task, given the caller's context variables, which system tasks do not inherit.
    ``run`` must not raise: it is nobody's child to report to.
    """
    native = anyio.lowlevel.current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        return native.create_task(run())
    import trio  # noqa: TID251  (reached only under trio)

    trio.lowlevel.spawn_system_task(run, context=contextvars.copy_context())
    return None


async def send_frames(events: EventFrames, send: Callable[[bytes], Awaitable[None]]) -> None:
    """Send every frame of ``events``: a streamed run is pumped (its task group then lives
    in this coroutine, not in a suspended generator), anything else is iterated."""
    if isinstance(events, _RunFrames):
        await events.pump(send)
    else:
        async for frame in events:
            await send(frame)


def streamed_run(service: ResponsesService, prepared: PreparedResponse) -> EventFrames:
    """Run ``prepared`` and give its SSE frames as the loop produces them.

    The loop runs in a task of its own and hands its events through a bounded
    :class:`EventChannel`, so a slow reader slows the loop instead of growing a buffer;
    closing the frames early, from any task (or cancelling the task that reads them), even
    before reading any, cancels the loop and the response is stored as ``cancelled``. Each
    event is sent as soon as the loop produces it, except the terminal one: it waits until
    the Response is stored, so a client that reacts to it (a follow-up turn, a ``GET``)
    finds it finished, and it carries the Response exactly as stored.
    """
    return _RunFrames(service, prepared)


async def pushed_run(
    service: ResponsesService,
    prepared: PreparedResponse,
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> Mapping[str, Any] | None:
    """Run ``prepared`` and ``send`` each stream event as the loop produces it: the very
    events of :func:`streamed_run` (the same sequence numbers, the terminal event held
    back until the Response is stored), as JSON objects, for a transport that frames them
    itself (the WebSocket mode). Cancelling the caller cancels the loop, and the response
    is stored ``cancelled``, as when an SSE reader leaves.

    Returns the Response as stored, or ``None`` when the run ended without one (its last
    event is then an ``error`` event).
    """
    source = _FrameSource(service, prepared)

    async def send_events(events: list[dict[str, Any]], _last: bool) -> None:
        for event in events:
            await send(event)

    await source.pump_events(send_events)
    return source.stored


TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _FrameSource:
    """One streamed run: the loop's task, and the mapping of its events to SSE frames.

    The loop's events cross a bounded :class:`EventChannel`, so a slow reader slows the
    loop instead of growing a buffer. The terminal event is held back until the run has
    stored the Response, and then carries it exactly as stored.
    """

    def __init__(self, service: ResponsesService, prepared: PreparedResponse) -> None:
        self._service = service
        self._prepared = prepared
        self._mapper = event_mapper(service, prepared)
        self.channel: EventChannel[LoopEvent] = EventChannel(service.config.event_buffer)
        self._failure: list[dict[str, Any]] = []
        self._stored: list[Mapping[str, Any]] = []
        self._terminal: dict[str, Any] | None = None
        self._log = EventLogWriter(service.store, prepared.response_id)
        self._last: dict[str, Any] | None = None

    async def run(self) -> None:
        """Run the response. Never lets an error out: in the ASGI app's task group it would
        cancel the sender, and a pulled run's task has nobody to report to."""
        try:
            result = await self._service.run(
                self._prepared, events=self.channel, on_claimed=self._log.hold
            )
            self._stored.append(result.response)
        except ResponseLoopError as exc:
            self._failure.append(exc.to_error())
        except Exception as exc:
            self._failure.append({"type": "internal_error", "message": type(exc).__name__})
        finally:
            self.channel.close()

    def frames(self, loop_event: LoopEvent) -> list[bytes]:
        """The frames to send for one loop event (none for the held-back terminal)."""
        return [encode_sse(event) for event in self.events(loop_event)]

    def events(self, loop_event: LoopEvent) -> list[dict[str, Any]]:
        """The stream events to send for one loop event (none for the held-back terminal)."""
        events = []
        for event in self._mapper.feed(loop_event):
            if event["type"] in TERMINAL_EVENTS:
                self._terminal = event
            else:
                events.append(event)
        self._log.add(events)
        return events

    async def log_due(self, loop_event: LoopEvent) -> None:
        """Write what the event log holds back, when a batch is due, and always before a
        step starts (a wait follows it: what was sent is logged before a crash in it)."""
        if loop_event.kind is LoopEventKind.STEP_STARTED:
            await self._log.flush()
        else:
            await self._log.flush_due()

    def closing(self) -> bytes | None:
        """The last frame, once the run has ended (see :func:`_closing_event`), with the
        ``[DONE]`` that ends the stream."""
        last = self.closing_event()
        return encode_sse(last) + DONE_FRAME if last is not None else None

    def closing_event(self) -> dict[str, Any] | None:
        """The last event, once the run has ended (see :func:`_closing_event`)."""
        last = self._last = _closing_event(
            self._terminal, self._stored, self._failure, self._mapper
        )
        return last

    @property
    def stored(self) -> Mapping[str, Any] | None:
        """The Response as the run stored it, once it has; ``None`` for a run that ended
        without one (cancelled, failed to store, handed over)."""
        return self._stored[0] if self._stored else None

    async def log_end(self) -> None:
        """Log the rest of the stream, its last event with it, when this run ended the
        response. A run that left it to another worker (handed over at shutdown, or taken
        over) logs nothing more: the run that finishes it continues the log."""
        if not ended_here(self._stored, self._failure):
            return
        if self._last is not None:
            self._log.add([self._last])
        with anyio.CancelScope(shield=True):
            await self._log.flush(fenced=False)

    async def pump(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Run the response and ``send`` its SSE frames (the last one with ``[DONE]``), the
        frames of the loop events that arrived together as one write."""

        async def send_frames(events: list[dict[str, Any]], last: bool) -> None:
            frames = b"".join(map(encode_sse, events))
            await send(frames + DONE_FRAME if last else frames)

        await self.pump_events(send_frames)

    async def pump_events(
        self, send: Callable[[list[dict[str, Any]], bool], Awaitable[None]]
    ) -> None:
        """Run the response and ``send`` the events of the loop events buffered together (``last``
        with the closing one), in one coroutine: no generator holds the task group across a
        suspension, so the caller's cancel scopes stay intact."""
        async with self.channel, anyio.create_task_group() as group:
            group.start_soon(self.run)
            try:
                async for first in self.channel:
                    # The loop often emits several events between two waits: what is
                    # already buffered goes out with the first as one write.
                    events: list[dict[str, Any]] = []
                    for loop_event in (first, *self.channel.take_buffered()):
                        events += self.events(loop_event)
                        await self.log_due(loop_event)
                    if events:
                        await send(events, False)
                last = self.closing_event()
                await self.log_end()
                if last is not None:
                    await send([last], True)
            finally:
                group.cancel_scope.cancel()


# Error types of a run that stopped without ending its response (another worker finishes
# it): such a run's stream ends with an error event that the event log does not keep.
_LEFT_TO_ANOTHER = frozenset({"server_shutting_down", "response_already_running", "store_error"})


def ended_here(stored: Sequence[Mapping[str, Any]], failure: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a run ended its response (stored it, or failed it), rather than leaving it
    for another worker to finish."""
    if stored:
        return True
    return not failure or failure[0].get("type") not in _LEFT_TO_ANOTHER


def _closing_event(
    terminal: dict[str, Any] | None,
    stored: list[Mapping[str, Any]],
    failure: list[dict[str, Any]],
    mapper: ResponsesEventMapper,
) -> dict[str, Any] | None:
    """The stream's last event, sent once the run has ended: the terminal event carrying
    the Response exactly as stored, or an ``error`` event when the run ended without one
    (a store failure, another worker holds the response, or it was cancelled)."""
    if terminal is not None:
        if stored:
            terminal = {**terminal, "response": dict(stored[0])}
        return terminal
    if failure:
        return error_event(
            str(failure[0].get("message")),
            str(failure[0].get("type")),
            mapper.next_sequence_number,
        )
    # The run ended with no terminal event and no error: it was cancelled (POST .../cancel).
    # Say so, or the reader could not tell it from a dropped connection.
    return error_event(
        "the response was cancelled", "response_cancelled", mapper.next_sequence_number
    )
