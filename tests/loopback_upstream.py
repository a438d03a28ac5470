"""A loopback Chat Completions upstream for the process-level tests.

It answers from the conversation, not from a counter, so a re-fired call gets the same
answer as the first: no tool output yet → call ``slow_lookup``; otherwise → the final
text. It counts every request it receives, and can hold the first one open so a test can
kill the worker while a model call is in flight.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FINAL_TEXT = "The answer is 42."


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The reply to one chat-completions request body."""
    answered = any(message.get("role") == "tool" for message in body.get("messages", []))
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if answered:
        message["content"] = FINAL_TEXT
    else:
        message["tool_calls"] = [
            {
                "id": "call_lookup_1",
                "type": "function",
                "function": {"name": "slow_lookup", "arguments": '{"q": "answer"}'},
            }
        ]
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body.get("model", "loopback"),
        "choices": [
            {"index": 0, "message": message, "finish_reason": "stop" if answered else "tool_calls"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class LoopbackUpstream:
    """The running server: its ``url``, the ``requests`` it received, and hold controls."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.hold_first = False
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.url = ""

    def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(body)
            number = len(self.requests)
        if number == 1 and self.hold_first:
            self.first_arrived.set()
            self.release.wait(60)
        return completion(body)


@contextmanager
def loopback_upstream() -> Iterator[LoopbackUpstream]:
    """Serve a :class:`LoopbackUpstream` on 127.0.0.1 at a free port."""
    upstream = LoopbackUpstream()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            reply = json.dumps(upstream.handle(json.loads(self.rfile.read(length)))).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a worker killed mid-request leaves a broken pipe behind; expected here

    server = Server(("127.0.0.1", 0), Handler)
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        upstream.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
