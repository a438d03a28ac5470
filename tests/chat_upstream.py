"""A chat-completions model on a real loopback socket, answering from ChatReply values.

It wraps the h11 server of ``tests/upstream.py``: each request takes the next reply (or a
function of the request body returning one) and gets it as JSON, or as SSE chunks when the
request streams, exactly as a real OpenAI-compatible server would send them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any

from responseloop.abc import HttpRequest
from responseloop.testing import ChatReply
from tests.upstream import Received, Reply, Upstream

Entry = ChatReply | Callable[[dict[str, Any]], ChatReply]


class ChatModel:
    """The upstream's behaviour: a script of replies, and the bodies it was sent."""

    def __init__(self, upstream: Upstream, replies: Iterable[Entry] = ()) -> None:
        self.upstream = upstream
        self.script: collections.deque[Entry] = collections.deque(replies)
        self.bodies: list[dict[str, Any]] = []
        upstream.responder = self

    def add(self, *replies: Entry) -> None:
        self.script.extend(replies)

    def __call__(self, received: Received) -> Reply:
        body = received.json()
        self.bodies.append(body)
        if not self.script:
            return Reply.text(500, "script exhausted")
        entry = self.script.popleft()
        reply = entry if isinstance(entry, ChatReply) else entry(body)
        if reply.connection_error:
            return Reply(cut=True)
        if not 200 <= reply.status < 300:
            return Reply.text(reply.status, reply.error_body)
        request = HttpRequest(self.upstream.chat_url, body)
        number = len(self.bodies)
        if body.get("stream"):
            return Reply.sse(reply.chunks(request, number))
        return Reply.json(reply.completion(request, number))
