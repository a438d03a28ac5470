"""A WebSocket client that drives an ASGI app in the test's own event loop (asyncio or
trio): it speaks the ASGI WebSocket messages to the app directly, as a server would, so the
Responses WebSocket mode is tested in process on both backends, beside the loopback
upstream. ``tests/clients`` drives the real server with the real ``openai`` client."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tests.wire_checks import check_emitted_stream, validate_ws_error

__all__ = ["Closed", "Denied", "InProcessSocket", "open_socket", "turn_events"]


class Denied(Exception):
    """The app refused the upgrade with an HTTP answer (the denial response extension)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class Closed(Exception):
    """The app closed the connection (``code``)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class InProcessSocket:
    """The client's end of one connection."""

    def __init__(
        self,
        to_app: MemoryObjectSendStream[dict[str, Any]],
        from_app: MemoryObjectReceiveStream[dict[str, Any]],
    ) -> None:
        self._to_app = to_app
        self._from_app = from_app
        self.taken = 0  # client messages the app has received so far
        self.taken_changed = anyio.Event()

    async def send_json(self, message: Mapping[str, Any]) -> None:
        await self.send_text(json.dumps(message))

    async def send_text(self, text: str) -> None:
        await self._to_app.send({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._to_app.send({"type": "websocket.receive", "bytes": data})

    async def receive_json(self) -> dict[str, Any]:
        """The next message the app sent; :class:`Closed` once it closed."""
        with anyio.fail_after(20):
            message = await self._from_app.receive()
        if message["type"] == "websocket.close":
            raise Closed(message.get("code", 1000))
        assert message["type"] == "websocket.send", message
        assert message.get("text") is not None, "every message of the mode is text"
        value: dict[str, Any] = json.loads(message["text"])
        return value

    async def wait_taken(self, count: int) -> None:
        """Until the app has received ``count`` client messages."""
        with anyio.fail_after(20):
            while self.taken < count:
                await self.taken_changed.wait()

    def close(self) -> None:
        """Disconnect (the app receives ``websocket.disconnect``)."""
        self._to_app.close()


@contextlib.asynccontextmanager
async def open_socket(
    app: Any,
    key: str | None = "sk-caller",
    *,
    path: str = "/v1/responses",
    denial_responses: bool = True,
) -> AsyncIterator[InProcessSocket]:
    """Connect to ``app`` at ``path`` with ``key`` as the bearer key; disconnect on exit and
    wait for the app to have returned.

    Raises:
        Denied: the app answered the upgrade with an HTTP response.
        Closed: the app closed the connection instead of accepting it.
    """
    headers = [] if key is None else [(b"authorization", f"Bearer {key}".encode())]
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}} if denial_responses else {},
        "state": {},
    }
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](100)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](10_000)
    socket = InProcessSocket(to_app, from_app)
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        try:
            message = await app_inbox.receive()
        except anyio.EndOfStream:
            return {"type": "websocket.disconnect", "code": 1000}
        socket.taken += 1
        socket.taken_changed.set()
        socket.taken_changed = anyio.Event()
        return message

    async def run_app() -> None:
        async with app_outbox:
            await app(scope, receive, app_outbox.send)

    refusal: Exception | None = None
    async with anyio.create_task_group() as group, to_app, app_inbox, from_app:
        group.start_soon(run_app)
        with anyio.fail_after(20):
            first = await from_app.receive()
        if first["type"] == "websocket.http.response.start":
            body = b""
            async for part in from_app:
                body += part.get("body", b"")
                if not part.get("more_body", False):
                    break
            refusal = Denied(first["status"], json.loads(body))
        elif first["type"] == "websocket.close":
            refusal = Closed(first.get("code", 1000))
        else:
            assert first["type"] == "websocket.accept", first
            try:
                yield socket
            finally:
                socket.close()
                with anyio.fail_after(20):
                    async for _ in from_app:
                        pass  # until the app returns (its end of the stream closes)
    if refusal is not None:  # raised out here, not as a task group's
        raise refusal


async def turn_events(socket: InProcessSocket) -> list[dict[str, Any]]:
    """The events of one turn: through its terminal event, or the ``error`` that ends it.

    A turn refused before it began is one error envelope, checked against the spec's
    ``WebSocketErrorEvent`` and the SDK's ``ResponseWsError``; a turn that ran is checked
    as a whole stream (:func:`check_emitted_stream`, every event, its grammar, its terminal
    Response).
    """
    events: list[dict[str, Any]] = []
    while True:
        event = await socket.receive_json()
        events.append(event)
        if event["type"] == "error" and "status" in event:
            assert len(events) == 1, f"an error envelope in the middle of a turn: {events}"
            validate_ws_error(event)
            return events
        if event["type"] in ("response.completed", "response.incomplete", "response.failed") or (
            event["type"] == "error"
        ):
            # A WebSocket turn has no [DONE]: its last event ends it.
            check_emitted_stream(events, ended_with_done=True)
            return events
