"""ResponsesApp: the Responses API as an ASGI application (Starlette), to serve with uvicorn
or mount in FastAPI or any ASGI framework."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import anyio
import anyio.lowlevel

from ..access._policy import Authenticator, Grant
from ..adapters._background import BackgroundResponses
from ..adapters._body import read_capped
from ..adapters._errors import error_body
from ..adapters._routes import (
    MAX_BODY_BYTES,
    EventFrames,
    JsonReply,
    ResponsesRoutes,
    StreamReply,
    bearer_key,
    send_frames,
)
from ..adapters._transport import caller_from_key
from ..adapters._websocket import (
    CONNECTION_LIMIT_SECONDS,
    QueuedMessages,
    ResponsesSocket,
    encode_message,
)
from ..exceptions import ResponseLoopError, ResponseNotFound
from ..http._httpx import HttpxClient
from ..service import ResponsesService, UpstreamOptions

if TYPE_CHECKING:
    from ..observe.prometheus import PrometheusMetrics

try:
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.types import Receive, Scope, Send
    from starlette.websockets import WebSocket, WebSocketDisconnect
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "responseloop.asgi needs Starlette: pip install 'responseloop[server]'"
    ) from exc

__all__ = ["ResponsesApp", "app_to_upstream", "create_app"]

_Reply = TypeVar("_Reply")

logger = logging.getLogger("responseloop.asgi")

# How long shutting down waits for cancelled responses to be stored as such.
_SHUTDOWN_WAIT = 30.0
# How long /ready waits for the store to answer before it says the app is not ready.
_READY_WAIT = 5.0
# Every method reaches the routes, which answer a wrong one with an OpenAI-style 405.
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# How many client messages a WebSocket connection holds while its response runs: one
# past it is answered ``too_many_queued_messages`` in its turn (the socket is always
# read, so a disconnect is seen while the queue is full).
_QUEUED_MESSAGES = 16
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must pass each event on at once
]


class _EventStreamResponse:
    """Sends SSE frames as they are produced. A client that disconnects cancels the
    producer (for a streamed run, the loop, which stores the response as ``cancelled``),
    whatever ASGI server runs the app."""

    def __init__(self, events: EventFrames) -> None:
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        events = self._events
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)

                async def send_frame(frame: bytes) -> None:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})

                try:
                    await send_frames(events, send_frame)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    pass  # the client left while we sent (ASGI 2.4 servers say so this way)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await events.aclose()


class ResponsesApp:
    """The Responses API as an ASGI app, routing to a :class:`ResponsesService`.

    Routes: ``POST /v1/responses`` (JSON; SSE for ``stream: true``; ``background: true``
    answers at once with the ``in_progress`` response and runs it in the app's task group),
    ``GET /v1/responses/{id}`` (``?stream=true&starting_after=N`` resumes the event stream of
    a background response), ``POST /v1/responses/{id}/cancel``, ``DELETE /v1/responses/{id}``,
    ``GET /v1/responses/{id}/input_items`` and ``GET /health``. The ``/v1`` prefix is optional.

    A WebSocket connection to ``/v1/responses`` is the Responses WebSocket mode: each
    ``response.create`` message runs a response and is answered with its stream events,
    one response at a time (:mod:`responseloop.adapters._websocket`); the upgrade request
    is authenticated as an HTTP one, a refused key is answered 401 before the upgrade. A
    connection lasts ``websocket_connection_limit`` seconds, then gets the error
    ``websocket_connection_limit_reached`` and is closed; a client that disconnects while
    a response runs cancels it, as one leaving an event stream does.

    A client that disconnects from a streamed (not background) response cancels its loop,
    and so does one that leaves while it waits for a JSON (not streamed) response: the
    response is stored ``cancelled``. A request body is refused with 413 while it is read
    once it passes ``max_body_bytes`` (a ``Content-Length`` over it, before reading any).
    Background responses run in a task group that :meth:`lifespan` owns.

    While the lifespan runs, the app watches the store: every ``sweep_interval`` seconds it
    finds the responses whose worker died (their lease lapsed) or that a replica shutting
    down handed over, and finishes them here as background responses
    (:meth:`ResponsesService.recoverable`); every ``cancel_poll_interval`` seconds it
    stops the responses running here that a cancel on another replica asked for
    (:meth:`ResponsesService.poll_cancels`). Leaving the lifespan (the server shutting
    down) waits up to ``shutdown_grace`` seconds for the responses still running, then hands
    the rest over (:meth:`ResponsesService.drain`): their leases are released for another
    replica, or this one after its restart, to finish them; none is cancelled by a
    shutdown. :meth:`drain` does the same while requests are still being served.

    Served on its own (``uvicorn``), the app runs its lifespan itself. Mounted in another
    app, run :meth:`lifespan` from the host's lifespan (Starlette and FastAPI do not run the
    lifespans of mounted apps)::

        responses = create_app(service)

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with responses.lifespan():
                yield

        api = FastAPI(lifespan=lifespan)
        api.mount("/llm", responses)

    Args:
        service: what every route calls.
        caller_of: the caller identity of a bearer key (default: a digest of the key).
        max_buffered_events: the most stream events kept per background response.
        keep_finished: how many finished background responses keep their events in memory
            (older ones are rebuilt from the store when a stream is resumed).
        on_close: closed when the lifespan ends (e.g. an upstream client the app created).
        max_body_bytes: the largest request body accepted (default 16 MiB).
        sweep_interval: seconds between two recovery sweeps (default: half the service's
            ``lease_seconds``); ``None`` keeps the default, ``0`` turns sweeping off (for
            a host that runs :meth:`ResponsesService.recover_expired` itself).
        cancel_poll_interval: seconds between two looks for cancels asked on other
            replicas (``0``: never look).
        shutdown_grace: how long leaving the lifespan waits for running responses before
            handing them over.
        sweep_limit: the most responses one sweep takes.
        authenticator: who may call (default: anyone).
        metrics: served at ``GET /metrics`` (pass it as the service's observer too).
        websocket_connection_limit: how many seconds a WebSocket connection lasts
            (default: 60 minutes, as the spec says).
    """

    def __init__(
        self,
        service: ResponsesService,
        *,
        caller_of: Callable[[str | None], str | None] = caller_from_key,
        max_buffered_events: int = 10_000,
        keep_finished: int = 256,
        on_close: HttpxClient | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        sweep_interval: float | None = None,
        cancel_poll_interval: float = 1.0,
        shutdown_grace: float = 0.0,
        sweep_limit: int = 100,
        authenticator: Authenticator | None = None,
        metrics: PrometheusMetrics | None = None,
        websocket_connection_limit: float = CONNECTION_LIMIT_SECONDS,
    ) -> None:
        if not websocket_connection_limit > 0:
            raise ValueError(
                f"websocket_connection_limit must be positive, got {websocket_connection_limit}"
            )
        if sweep_interval is not None and sweep_interval < 0:
            raise ValueError(f"sweep_interval must be >= 0, got {sweep_interval}")
        if cancel_poll_interval < 0 or shutdown_grace < 0 or sweep_limit < 1:
            raise ValueError(
                "cancel_poll_interval and shutdown_grace must be >= 0, sweep_limit >= 1"
            )
        self.service = service
        self.sweep_interval = (
            service.config.lease_seconds / 2 if sweep_interval is None else sweep_interval
        )
        self.cancel_poll_interval = cancel_poll_interval
        self.shutdown_grace = shutdown_grace
        self.sweep_limit = sweep_limit
        self.authenticator = authenticator
        self.metrics = metrics
        self.websocket_connection_limit = websocket_connection_limit
        self._caller_of = caller_of
        self.background = BackgroundResponses(
            service, max_events=max_buffered_events, keep_finished=keep_finished
        )
        self._routes = ResponsesRoutes(
            service,
            caller_of=caller_of,
            background=self.background,
            max_body_bytes=max_body_bytes,
        )
        self._on_close = on_close
        self._serving = False

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            async with self.lifespan():
                yield

        self.starlette = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/ready", self._ready, methods=["GET"]),
                *([Route("/metrics", self._metrics, methods=["GET"])] if metrics else []),
                WebSocketRoute("/v1/responses", self._websocket),
                WebSocketRoute("/responses", self._websocket),
                Route("/{path:path}", self._dispatch, methods=_ANY_METHOD),
            ],
            lifespan=lifespan,
        )
        # What the path route cannot match (a path holding a line break) gets the routes'
        # own JSON 404 too, not Starlette's plain-text one.
        self.starlette.router.default = self._unmatched

    def __repr__(self) -> str:
        return f"<ResponsesApp {self.service!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.starlette(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[ResponsesApp]:
        """Serve background responses and watch the store while inside; on exit drain
        (running responses finish within ``shutdown_grace``, the rest are handed over)
        and close what the app owns."""
        try:
            # The keeper outlives the drain: responses finishing in it keep their leases.
            async with (
                self.service.keeping_leases(),
                self.background,
                anyio.create_task_group() as watching,
            ):
                watching.start_soon(self._watch_store)
                self._serving = True
                try:
                    yield self
                finally:
                    self._serving = False
                    watching.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await self.service.drain(self.shutdown_grace)
        finally:
            # Requests the server gave up on (uvicorn cancels those still open after its
            # graceful timeout, without waiting for them) finish storing what they must
            # before anything they use is closed.
            with anyio.CancelScope(shield=True), anyio.move_on_after(_SHUTDOWN_WAIT):
                await self.service.hand_over_running()
            if self._on_close is not None:
                with anyio.CancelScope(shield=True):
                    await self._on_close.aclose()

    async def drain(self, grace: float) -> None:
        """Stop taking work (new requests get 503 ``server_shutting_down``), let running
        responses finish for up to ``grace`` seconds, then hand the rest over: what
        ``responseloop serve`` does on SIGTERM before its connections close, so a stream
        still open ends with an ``error`` event rather than being cut."""
        await self.service.drain(grace)

    async def _watch_store(self) -> None:
        """Recovery sweeps and cross-replica cancels, for as long as the lifespan runs."""
        sweep, poll = self.sweep_interval, self.cancel_poll_interval
        if not sweep and not poll:
            return
        next_sweep = anyio.current_time() if sweep else math.inf
        while True:
            now = anyio.current_time()
            if now >= next_sweep:
                await self._sweep()
                next_sweep = now + sweep
            if poll:
                try:
                    await self.service.poll_cancels()
                except ResponseLoopError as exc:
                    logger.warning("could not look for cancels: %s", exc)
            wait = min(poll or math.inf, next_sweep - anyio.current_time())
            await anyio.sleep(max(wait, 0.0))

    async def _sweep(self) -> None:
        try:
            recovered = await self.service.recoverable(limit=self.sweep_limit)
        except ResponseLoopError as exc:
            logger.warning("the recovery sweep failed: %s", exc)
            return
        except Exception:
            logger.exception("the recovery sweep failed")
            return
        for prepared in recovered:
            if prepared.response_id in self.background.running:
                continue
            try:
                await self.background.start(prepared, continuing=True)
            except Exception:
                # One response that cannot start must not stop the sweeps for the others.
                logger.exception(
                    "could not start recovered response %s",
                    prepared.response_id,
                    extra={"response_id": prepared.response_id},
                )

    async def _health(self, request: Request) -> Response:
        body: dict[str, Any] = {
            "status": "ok" if self._serving else "starting",
            "running": len(self.service.running),
            "background": len(self.background.running),
        }
        return JSONResponse(body, status_code=200 if self._serving else 503)

    async def _ready(self, request: Request) -> Response:
        """Ready when the lifespan runs and the store answers a cheap read in time."""
        if not self._serving:
            return JSONResponse({"status": "starting"}, status_code=503)
        problem: str | None = "timeout"
        with anyio.move_on_after(_READY_WAIT):
            try:
                await self.service.store.get_response("resp_readiness_check")
                problem = None
            except ResponseNotFound:
                problem = None
            except Exception as exc:  # the store is down: not ready, and never a 500
                problem = type(exc).__name__
        if problem is not None:
            return JSONResponse({"status": "unavailable", "store": problem}, status_code=503)
        return JSONResponse({"status": "ready"}, status_code=200)

    async def _metrics(self, request: Request) -> Response:
        assert self.metrics is not None  # the route exists only with metrics
        body, content_type = self.metrics.exposition()
        return Response(body, status_code=200, headers={"content-type": content_type})

    async def _unmatched(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await (await self._dispatch(Request(scope, receive)))(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})  # refused: a 403

    async def _authenticate(self, api_key: str | None) -> tuple[Grant | None, Response | None]:
        """What the authenticator grants ``api_key`` (``None`` without an authenticator),
        or the answer that refuses it: a 401, or a 503 when the authenticator fails."""
        if self.authenticator is None:
            return None, None
        try:
            grant = await self.authenticator.authenticate(api_key)
        except Exception as exc:
            # Failing closed, and never a 500 (only the type: a message may quote the key).
            logger.warning("the authenticator failed (%s); refusing", type(exc).__name__)
            body = error_body(
                "the server could not check the API key; try again later",
                type="server_error",
                code="authentication_unavailable",
            )
            return None, JSONResponse(body, status_code=503)
        if grant is None:
            return None, _unauthorized(api_key)
        return grant, None

    async def _websocket(self, websocket: WebSocket) -> None:
        """One connection of the WebSocket mode (see the class docstring)."""
        api_key = bearer_key(websocket.headers.get("authorization"))
        grant, refusal = await self._authenticate(api_key)
        if refusal is not None:
            if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
                await websocket.send_denial_response(refusal)  # HTTP's very answer
            else:
                await websocket.close(code=1008)  # a server without denial responses: a 403
            return
        await websocket.accept()
        inbox = QueuedMessages(_QUEUED_MESSAGES)
        async with anyio.create_task_group() as connection:

            async def send(event: dict[str, Any]) -> None:
                try:
                    await websocket.send_text(encode_message(event))
                except (OSError, WebSocketDisconnect):
                    # The client is gone: as a disconnect, cancel what runs for it.
                    connection.cancel_scope.cancel()
                    await anyio.lowlevel.checkpoint()

            async def read() -> None:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        # A response in flight is cancelled, as for a client leaving an
                        # event stream (stored ``cancelled``).
                        connection.cancel_scope.cancel()
                        return
                    data = message.get("text")
                    data = message.get("bytes") if data is None else data
                    if data is not None:
                        inbox.put(data)  # never waits: the socket is read all the time

            session = ResponsesSocket(
                self.service,
                caller=self._caller_of(api_key),
                api_key=api_key,
                grant=grant,
                send=send,
                max_message_bytes=self._routes.max_body_bytes,
            )
            connection.start_soon(read)
            with anyio.move_on_after(self.websocket_connection_limit) as limit:
                while True:  # until the reader cancels it all
                    entry = await inbox.get()
                    if isinstance(entry, int):
                        for _ in range(entry):
                            await session.refuse_queued(_QUEUED_MESSAGES)
                    else:
                        await session.handle(entry)
            if limit.cancelled_caught:
                await session.connection_limit_reached()
                with contextlib.suppress(OSError, WebSocketDisconnect):
                    await websocket.close(code=1000)  # unless the client left meanwhile
            connection.cancel_scope.cancel()

    async def _dispatch(self, request: Request) -> Response | _EventStreamResponse:
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]  # mounted under a prefix: route what follows it
        query: Mapping[str, str] = request.query_params
        api_key = bearer_key(request.headers.get("authorization"))
        grant, refusal = await self._authenticate(api_key)
        if refusal is not None:
            return refusal
        body_read = anyio.Event()

        async def read_body(limit: int) -> bytes:
            try:
                return await read_capped(
                    request.stream(), request.headers.get("content-length"), limit
                )
            finally:
                body_read.set()

        reply = await _unless_client_leaves(
            request,
            body_read,
            self._routes.handle(
                request.method,
                path or "/",
                query,
                api_key,
                read_body,
                grant,
            ),
        )
        if reply is None:  # nobody is left to read an answer
            return Response(status_code=400)
        if isinstance(reply, StreamReply):
            return _EventStreamResponse(reply.events)
        return _json(reply)


async def _unless_client_leaves(
    request: Request, body_read: anyio.Event, handling: Awaitable[_Reply]
) -> _Reply | None:
    """``handling``'s reply, or ``None`` when the client disconnected first: once the body
    is read, a JSON request that is still running (a foreground run of the loop) is
    cancelled when the client goes away, and its response is stored ``cancelled``."""
    reply: list[_Reply] = []
    failure: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def watch_disconnect() -> None:
            await body_read.wait()
            while (await request.receive())["type"] != "http.disconnect":
                pass  # the rest of a body refused as too large
            group.cancel_scope.cancel()

        group.start_soon(watch_disconnect)
        try:
            reply.append(await handling)
        except ClientDisconnect:
            pass  # the client left while it sent the body
        except Exception as exc:  # raised below, as itself rather than in a group
            failure.append(exc)
        finally:
            group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return reply[0] if reply else None


def _unauthorized(api_key: str | None) -> Response:
    # OpenAI's answers, which never quote the key.
    message = (
        "Incorrect API key provided."
        if api_key
        else "You didn't provide an API key. Send it as the bearer token of the "
        "Authorization header (Authorization: Bearer YOUR_KEY)."
    )
    body = error_body(message, type="invalid_request_error", code="invalid_api_key")
    return JSONResponse(body, status_code=401, headers={"www-authenticate": "Bearer"})


def _json(reply: JsonReply) -> Response:
    return Response(reply.encode(), status_code=reply.status, media_type="application/json")


def create_app(
    service: ResponsesService,
    *,
    caller_of: Callable[[str | None], str | None] = caller_from_key,
    max_buffered_events: int = 10_000,
    keep_finished: int = 256,
    max_body_bytes: int = MAX_BODY_BYTES,
    sweep_interval: float | None = None,
    cancel_poll_interval: float = 1.0,
    shutdown_grace: float = 0.0,
    authenticator: Authenticator | None = None,
    metrics: PrometheusMetrics | None = None,
    websocket_connection_limit: float = CONNECTION_LIMIT_SECONDS,
) -> ResponsesApp:
    """The Responses API over ``service`` as an ASGI app (see :class:`ResponsesApp`)."""
    return ResponsesApp(
        service,
        caller_of=caller_of,
        max_buffered_events=max_buffered_events,
        keep_finished=keep_finished,
        max_body_bytes=max_body_bytes,
        sweep_interval=sweep_interval,
        cancel_poll_interval=cancel_poll_interval,
        shutdown_grace=shutdown_grace,
        authenticator=authenticator,
        metrics=metrics,
        websocket_connection_limit=websocket_connection_limit,
    )


def app_to_upstream(base_url: str, **options: Unpack[UpstreamOptions]) -> ResponsesApp:
    """An app running the loop against the chat-completions server at ``base_url``
    (``…/v1``; ``/chat/completions`` is added), with ``api_key`` as the upstream's key.

    ``tools`` are offered to every caller; pass a ``resolver`` instead to choose tools per
    caller key. The store defaults to an :class:`InMemoryStore`, the upstream client to an
    :class:`HttpxClient` closed when the app's lifespan ends; an ``observer`` sees every
    run and that client's retries. The keywords are
    :class:`~responseloop.service.UpstreamOptions`.
    """
    service, owned = ResponsesService.to_upstream(base_url, **options)
    return ResponsesApp(service, on_close=owned)
