"""The Responses WebSocket mode (Open Responses 2026-04-24, "WebSocket Transport"), written
once over any WebSocket server: what one connection's messages do.

:class:`ResponsesSocket` takes the client's messages one at a time (the server feeds it in
order and never two at once: one response in flight per connection) and sends back the
very stream events a streamed ``POST /v1/responses`` carries (:func:`pushed_run`), or an
error envelope ``{"type": "error", "status": N, "error": {...}}`` for a message it refuses.
The ASGI app owns the socket: reading, the connection limit, disconnects.

A ``store: false`` response is deleted from the store as it ends, as over HTTP; the
connection keeps the last one in memory (:attr:`ResponsesSocket.latest`) so the next
turn on the same socket can continue it by ``previous_response_id``.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs

from ..abc._records import ResponseRecord, ResponseStatus
from ..access._policy import Grant
from ..exceptions import PreviousResponseNotFound, ResponseLoopError
from ..service import PreparedResponse, ResponsesService
from ._body import parse_body
from ._errors import exception_body
from ._routes import pushed_run

__all__ = [
    "CONNECTION_LIMIT_SECONDS",
    "QueuedMessages",
    "ResponsesSocket",
    "encode_message",
    "socket_error",
]

CONNECTION_LIMIT_SECONDS = 60 * 60.0
"""How long a WebSocket connection lasts by default: the spec's 60 minutes."""

# Fields of HTTP's transport that a WebSocket request must not carry. ``stream: true``
# alone is let through: it says what the socket does anyway, and the Agents SDK's
# WebSocket model sends it with every turn.
_HTTP_ONLY = ("stream", "stream_options", "background")


def socket_error(
    status: int,
    message: str,
    *,
    code: str,
    type: str = "invalid_request_error",
    param: str | None = None,
) -> dict[str, Any]:
    """The spec's WebSocket error envelope (``WebSocketErrorEvent``), with the ``type``
    inside ``error`` that the ``openai`` SDK's ``ResponseWsError`` requires."""
    return {
        "type": "error",
        "status": status,
        "error": {"type": type, "code": code, "message": message, "param": param},
    }


def _exception_error(exc: ResponseLoopError) -> dict[str, Any]:
    if isinstance(exc, PreviousResponseNotFound):
        return socket_error(
            400,
            f"Previous response with id {exc.response_id!r} not found.",
            code="previous_response_not_found",
            param="previous_response_id",
        )
    error = exception_body(exc)["error"]
    return {"type": "error", "status": exc.http_status, "error": error}


def encode_message(event: Mapping[str, Any]) -> str:
    """An event as the text of one WebSocket message (UTF-8 JSON; a string with no UTF-8
    form, such as a lone surrogate from an upstream, is sent escaped, as over HTTP)."""
    text = json.dumps(event, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(event)
    return text


class QueuedMessages:
    """The client messages of one connection waiting their turn, in the order they came.

    At most ``limit`` messages are held while a response runs. One arriving past that is
    not held: it is queued as refused (without its body) and answered in its place, after
    the messages before it, with a ``too_many_queued_messages`` envelope; consecutive
    refusals share one entry. So the socket is always read (a disconnect is seen at once,
    and cancels the running response) and a client flooding it costs no memory, while
    every message still gets its answer in order.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # A message, or how many consecutive messages were refused there.
        self._entries: collections.deque[str | bytes | int] = collections.deque()
        self._held = 0
        self._changed = anyio.Event()

    def put(self, message: str | bytes) -> None:
        """Queue ``message``, or its refusal when ``limit`` messages are held already."""
        if self._held < self._limit:
            self._entries.append(message)
            self._held += 1
        elif self._entries and isinstance(self._entries[-1], int):
            self._entries[-1] += 1
        else:
            self._entries.append(1)
        self._changed.set()

    async def get(self) -> str | bytes | int:
        """The next message, or the number of messages refused in its place."""
        while not self._entries:
            await self._changed.wait()
            self._changed = anyio.Event()
        entry = self._entries.popleft()
        if not isinstance(entry, int):
            self._held -= 1
        return entry


class ResponsesSocket:
    """The turns of one WebSocket connection to the Responses API.

    Args:
        service: runs each response.
        caller: the caller identity of the connection's key (which stored responses it
            sees), as over HTTP.
        api_key: the key of the upgrade request (resolves the caller's tools).
        grant: what the authenticator granted the key (``None``: every model).
        send: sends one JSON message to the client.
        max_message_bytes: the largest message taken (as HTTP's body cap); a longer one
            is refused with a 413 envelope.
    """

    def __init__(
        self,
        service: ResponsesService,
        *,
        caller: str | None,
        api_key: str | None,
        grant: Grant | None,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        max_message_bytes: int,
    ) -> None:
        self._service = service
        self._caller = caller
        self._api_key = api_key
        self._grant = grant
        self._send = send
        self._max_message_bytes = max_message_bytes
        self.latest: ResponseRecord | None = None
        """The connection's last ``store: false`` response, finished, as it was stored
        while it ran (request and conversation) with the Response it ended with; the
        store no longer has it. ``None`` when the last response was stored instead (the
        store answers for it) or failed."""

    async def handle(self, message: str | bytes) -> None:
        """Act on one client message: run a ``response.create`` to its end, sending its
        events, or send the error envelope that refuses the message. Never raises for
        what the client sent: the connection stays usable."""
        data = message.encode() if isinstance(message, str) else message
        if len(data) > self._max_message_bytes:
            await self._send(
                socket_error(
                    413,
                    f"the message is larger than {self._max_message_bytes} bytes",
                    code="message_too_large",
                )
            )
            return
        try:
            body = dict(parse_body(data))
        except ResponseLoopError as exc:
            await self._send(_exception_error(exc))
            return
        kind = body.pop("type", None)
        if kind != "response.create":
            await self._send(
                socket_error(
                    400,
                    f"unknown message type {kind!r}; this server takes 'response.create'",
                    code="unknown_message_type",
                    param="type",
                )
            )
            return
        if body.get("stream") is True:
            del body["stream"]
        for field in _HTTP_ONLY:
            if field in body:
                await self._send(
                    socket_error(
                        400,
                        f"{field} is not sent over a WebSocket: every response is streamed"
                        " on it, and background responses are HTTP's",
                        code="unsupported_parameter",
                        param=field,
                    )
                )
                return
        await self._create(body)

    async def refuse_queued(self, limit: int) -> None:
        """Answer a message that arrived while ``limit`` were queued already
        (:class:`QueuedMessages`): it was not run; send it again once the queue drains."""
        await self._send(
            socket_error(
                429,
                f"more than {limit} messages were queued while a response ran on this"
                " connection; this one was not run: send it again once the responses"
                " before it ended (or open another connection)",
                code="too_many_queued_messages",
            )
        )

    async def connection_limit_reached(self) -> None:
        """Tell the client the connection has lasted its limit (the server closes it)."""
        await self._send(
            socket_error(
                400,
                "the WebSocket connection reached its time limit; open a new connection"
                " to continue",
                code="websocket_connection_limit_reached",
            )
        )

    async def _create(self, body: dict[str, Any]) -> None:
        previous = body.get("previous_response_id")
        latest = self.latest
        earlier = {latest.id: latest} if latest is not None and latest.id == previous else {}
        model = body.get("model")
        if self._grant is not None and isinstance(model, str) and not self._grant.allows(model):
            # HTTP's answer to a model outside the key's grant, before anything is stored.
            await self._send(
                socket_error(
                    404,
                    f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found",
                )
            )
            return
        try:
            prepared = await self._service.prepare(
                body, api_key=self._api_key, caller=self._caller, earlier=earlier
            )
            kept = await self._kept_while_running(prepared)
        except ResponseLoopError as exc:
            self._evict(previous)
            await self._send(_exception_error(exc))
            return
        response = await pushed_run(self._service, prepared, self._send)
        if response is None:
            # The turn ended with an error event (cancelled, the store failing, handed
            # over at shutdown): a failed continuation gives up what it continued.
            self._evict(previous)
            return
        self.latest = (
            None
            if kept is None
            else attrs.evolve(kept, status=ResponseStatus(response["status"]), response=response)
        )

    async def _kept_while_running(self, prepared: PreparedResponse) -> ResponseRecord | None:
        """The stored record of a ``store: false`` response, read before its run deletes
        it: what continuing it needs (its request and the conversation stored with it)."""
        if prepared.request.store:
            return None
        return await self._service.store.get_response(prepared.response_id)

    def _evict(self, previous: object) -> None:
        if self.latest is not None and self.latest.id == previous:
            self.latest = None
