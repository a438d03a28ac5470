"""The suite's one chat-completions upstream on a real loopback socket.

It speaks HTTP/1.1 through h11 on an anyio listener bound to 127.0.0.1 with a port the OS
picks. Each request takes the next entry of the script (or, once the script is empty, what
:attr:`Upstream.responder` answers): a :class:`~responseloop.testing.ChatReply`, the same
value :class:`~responseloop.testing.ScriptedChatModel` answers from, sent as JSON or as SSE
chunks as the request asks; or a raw :class:`Reply` for what no well-behaved server sends
(bodies cut short, invalid JSON, the wrong content type, a reply that never comes). The
server records what it received and notices when a client goes away mid-reply.

:func:`running_upstream` runs it inside the test's own event loop, on asyncio and trio
alike; :func:`loopback_upstream` runs it in a thread of its own for the tests whose
clients are other processes.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.from_thread
import attrs
import h11
from anyio.abc import SocketStream

from responseloop import UpstreamTarget
from responseloop.abc import HttpRequest
from responseloop.testing import ChatReply


@attrs.frozen
class Reply:
    """One raw HTTP answer.

    ``parts`` are sent one after another as the body (chunked). ``before`` is an event the
    server waits for before the status line; ``pause`` an ``(i, event)`` pair: wait for the
    event before part ``i``. ``hang`` waits (until the client leaves) instead of answering;
    ``cut`` drops the connection after the parts instead of ending the message.
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    parts: Sequence[bytes] = ()
    hang: bool = False
    cut: bool = False
    before: anyio.Event | None = attrs.field(default=None, eq=False)
    pause: tuple[int, anyio.Event] | None = attrs.field(default=None, eq=False)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Reply:
        body = json.dumps(value).encode()
        return cls(status, (("content-type", "application/json"), *headers), (body,))

    @classmethod
    def text(cls, status: int, body: str, headers: Iterable[tuple[str, str]] = ()) -> Reply:
        return cls(status, (("content-type", "text/plain"), *headers), (body.encode(),))

    @classmethod
    def sse(
        cls,
        events: Iterable[Any],
        *,
        done: bool = True,
        cut: bool = False,
        pause: tuple[int, anyio.Event] | None = None,
    ) -> Reply:
        """Each event (a chunk dict, or a raw ``data`` string) as its own body part."""
        parts = [
            b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n"
            for e in events
        ]
        if done:
            parts.append(b"data: [DONE]\n\n")
        return cls(200, (("content-type", "text/event-stream"),), parts, cut=cut, pause=pause)

    @classmethod
    def chat(cls, reply: ChatReply, received: Received, number: int) -> Reply:
        """``reply`` as the ``number``-th answer to ``received``: its error status, a cut
        connection, or the completion (SSE chunks when the request streams) exactly as
        :class:`~responseloop.testing.ScriptedChatModel` builds it."""
        if reply.connection_error:
            return cls(cut=True)
        if not 200 <= reply.status < 300:
            return cls.text(reply.status, reply.error_body)
        body = received.json()
        request = HttpRequest(received.path, body)
        if body.get("stream"):
            return cls.sse(reply.chunks(request, number))
        return cls.json(reply.completion(request, number))


@attrs.frozen
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


MODELS = {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "loopback"}]}
"""What the server answers ``GET …/models`` with."""

Answer = ChatReply | Reply
Entry = Answer | Callable[["Received"], Answer]


class Upstream:
    """The running server: its :attr:`url`, the script, and what it received."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.script: collections.deque[Entry] = collections.deque()
        self.received: list[Received] = []
        self.disconnects = 0
        self.connections = 0
        self.client_left = anyio.Event()
        self._arrival = anyio.Event()
        self.responder: Callable[[Received], Answer] | None = None
        # GET …/models is answered apart from the script, and not counted in ``received``.
        self.models: list[str] = ["scripted-model"]
        self.models_reply: Reply | None = None
        self.models_requests: list[Received] = []
        self.model_listings = self.models_requests  # the same requests, by another name

    @property
    def chat_url(self) -> str:
        return self.url + "/v1/chat/completions"

    def target(self, api_key: str | None = None) -> UpstreamTarget:
        """This server's chat completions endpoint as a service's upstream."""
        return UpstreamTarget(self.url + "/v1", "/chat/completions", api_key)

    @property
    def bodies(self) -> list[Any]:
        """The JSON body of every request received, in order."""
        return [received.json() for received in self.received]

    async def wait_for_requests(self, count: int) -> None:
        """Return once ``count`` requests have arrived in all."""
        while len(self.received) < count:
            await self._arrival.wait()

    def add(self, *entries: Entry) -> None:
        """Append answers (or functions of the request returning one) to the script."""
        self.script.extend(entries)

    def _answer(self, received: Received) -> Reply | ChatReply:
        if self.script:
            entry = self.script.popleft()
        elif self.responder is not None:
            entry = self.responder
        else:
            return Reply.text(500, "script exhausted")
        return entry if isinstance(entry, Reply | ChatReply) else entry(received)

    async def serve(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        self.connections += 1
        async with stream:
            try:
                while await self._one_exchange(conn, stream):
                    conn.start_next_cycle()
            except (
                anyio.BrokenResourceError,
                anyio.EndOfStream,
                anyio.ClosedResourceError,
                h11.RemoteProtocolError,
            ):
                self._left()

    def _left(self) -> None:
        self.disconnects += 1
        self.client_left.set()

    async def _next_event(self, conn: h11.Connection, stream: SocketStream) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)

    async def _one_exchange(self, conn: h11.Connection, stream: SocketStream) -> bool:
        event = await self._next_event(conn, stream)
        if isinstance(event, h11.ConnectionClosed):
            return False
        assert isinstance(event, h11.Request), event
        body = b""
        while True:
            part = await self._next_event(conn, stream)
            if isinstance(part, h11.Data):
                body += part.data
            elif isinstance(part, h11.EndOfMessage):
                break
        received = Received(
            event.method.decode(),
            event.target.decode(),
            {k.decode().lower(): v.decode() for k, v in event.headers},
            body,
        )
        if received.method == "GET" and received.path.split("?")[0].endswith("/models"):
            self.models_requests.append(received)
            return await self._send(self._models_answer(), conn, stream)
        self.received.append(received)
        arrival, self._arrival = self._arrival, anyio.Event()
        arrival.set()
        answer = self._answer(received)
        if isinstance(answer, ChatReply):
            if answer.delay and not await self._sleep_unless_client_leaves(answer.delay, stream):
                return False
            answer = Reply.chat(answer, received, len(self.received))
        return await self._send(answer, conn, stream)

    def _models_answer(self) -> Reply:
        if self.models_reply is not None:
            return self.models_reply
        data = [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "loopback"}
            for name in self.models
        ]
        return Reply.json({"object": "list", "data": data})

    async def _send(self, reply: Reply, conn: h11.Connection, stream: SocketStream) -> bool:
        if reply.hang:
            await self._wait_for_disconnect(stream)
            return False
        if reply.before is not None:
            await reply.before.wait()
        await stream.send(
            conn.send(h11.Response(status_code=reply.status, headers=list(reply.headers))) or b""
        )
        for index, part in enumerate(reply.parts):
            gate = reply.pause[1] if reply.pause is not None and reply.pause[0] == index else None
            if gate is not None and not await self._wait_unless_client_leaves(gate.wait, stream):
                return False
            await stream.send(conn.send(h11.Data(data=part)) or b"")
        if reply.cut:
            await stream.aclose()
            return False
        await stream.send(conn.send(h11.EndOfMessage()) or b"")
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _sleep_unless_client_leaves(self, seconds: float, stream: SocketStream) -> bool:
        """A :class:`ChatReply`'s ``delay`` (``math.inf``: until the client leaves)."""
        if seconds == math.inf:
            await self._wait_for_disconnect(stream)
            return False
        return await self._wait_unless_client_leaves(lambda: anyio.sleep(seconds), stream)

    async def _wait_unless_client_leaves(
        self, wait: Callable[[], Any], stream: SocketStream
    ) -> bool:
        """Await ``wait()`` while watching the socket; ``False`` if the client left first."""
        left = False
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                nonlocal left
                await self._wait_for_disconnect(stream)
                left = True
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await wait()
            group.cancel_scope.cancel()
        return not left

    async def _wait_for_disconnect(self, stream: SocketStream) -> None:
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
        self._left()


@asynccontextmanager
async def running_upstream() -> AsyncIterator[Upstream]:
    """Start an :class:`Upstream` on 127.0.0.1 at a free port; stop it on exit."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    upstream = Upstream(port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, upstream.serve)
        try:
            yield upstream
        finally:
            group.cancel_scope.cancel()


FINAL_TEXT = "The answer is 42."


def conversation(received: Received) -> Reply:
    """The process-level tests' model: it answers from the conversation, not from a counter,
    so a re-fired call gets the same answer (and completion id) as the first: no tool
    output yet → call ``slow_lookup``; otherwise → :data:`FINAL_TEXT`."""
    messages = received.json().get("messages", [])
    turn = 1 + sum(message.get("role") == "assistant" for message in messages)
    if any(message.get("role") == "tool" for message in messages):
        return Reply.chat(ChatReply.text(FINAL_TEXT), received, turn)
    lookup = ChatReply.tool_call("slow_lookup", {"q": "answer"}, call_id="call_lookup_1")
    return Reply.chat(lookup, received, turn)


@contextmanager
def loopback_upstream() -> Iterator[Upstream]:
    """An :class:`Upstream` answering :func:`conversation`, served from a thread of its own
    so that clients in other processes (and blocking test code) can use it; its script and
    records may be read and extended from the test's thread."""
    with anyio.from_thread.start_blocking_portal() as portal:
        context = portal.wrap_async_context_manager(running_upstream())
        with context as upstream:
            upstream.responder = conversation
            yield upstream
