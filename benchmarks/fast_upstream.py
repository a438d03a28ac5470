"""A fast scripted chat-completions upstream, run in a process of its own.

Every benchmark contender talks to this server over loopback. It answers
``POST …/chat/completions`` with a tool call (``add``) when the conversation has no tool
result yet and with the final text when it has one (as a ``chat.completion.chunk`` event
stream when the body asks for ``"stream": true``), so a response is exactly
model call → tool → model call whoever drives it. It is a bare asyncio protocol with the
answers prebuilt, so its own cost per request is a few microseconds; ``GET /stats`` reports
the requests served and the CPU seconds the process has used, which the benchmark reads
before and after each measurement to show the upstream was not the bottleneck, and the
most calls it held at once (since ``GET /reset``).

``--hold SECONDS`` keeps every chat answer back for that long (the in-flight memory
benchmark), without holding anything but a timer per request.

    python benchmarks/fast_upstream.py [--port 0] [--hold 0]

It prints ``port <n>`` once listening and serves until stdin closes or it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
from typing import Any

TOOL_CALL: dict[str, Any] = {
    "id": "chatcmpl-bench-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "bench-model",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_add_1",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
}
FINAL_TEXT: dict[str, Any] = {
    "id": "chatcmpl-bench-2",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "bench-model",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "1 + 2 = 3"},
        }
    ],
    "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45},
}


def _http(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\n"
        b"content-type: " + content_type + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _sse(completion: dict[str, Any]) -> bytes:
    """The completion as a chat.completion.chunk stream: the message in one delta, then the
    finish reason, then the usage, then ``[DONE]``."""
    choice = completion["choices"][0]
    message = dict(choice["message"])
    if "tool_calls" in message:
        message["tool_calls"] = [
            {"index": index, **call} for index, call in enumerate(message["tool_calls"])
        ]
    head = {key: completion[key] for key in ("id", "created", "model")}
    chunks = [
        {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": message}]},
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
        },
        {**head, "object": "chat.completion.chunk", "choices": [], "usage": completion["usage"]},
    ]
    events = b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks)
    return events + b"data: [DONE]\n\n"


ANSWER_TOOL_CALL = _http("200 OK", json.dumps(TOOL_CALL).encode())
STREAM_TOOL_CALL = _http("200 OK", _sse(TOOL_CALL), b"text/event-stream")
STREAM_TEXT = _http("200 OK", _sse(FINAL_TEXT), b"text/event-stream")
ANSWER_TEXT = _http("200 OK", json.dumps(FINAL_TEXT).encode())
NOT_FOUND = _http("404 Not Found", b'{"error": {"message": "not found"}}')


class Stats:
    requests = 0
    holding = 0  # chat calls being held right now (--hold)
    max_holding = 0  # the most held at once since the last GET /reset


class ChatProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only (what httpx2 and aiohttp send)."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.answer(head, body)

    def answer(self, head: bytes, body: bytes) -> None:
        request_line = head.split(b"\r\n", 1)[0]
        if b"/chat/completions" in request_line:
            Stats.requests += 1
            # Only a conversation that already carries a tool result has a tool_call_id.
            answered = b'"tool_call_id"' in body
            if b'"stream":true' in body or b'"stream": true' in body:
                reply = STREAM_TEXT if answered else STREAM_TOOL_CALL
            else:
                reply = ANSWER_TEXT if answered else ANSWER_TOOL_CALL
            if self.hold > 0:
                Stats.holding += 1
                Stats.max_holding = max(Stats.max_holding, Stats.holding)
                asyncio.get_running_loop().call_later(self.hold, self.release, reply)
            else:
                self.send(reply)
        elif request_line.startswith(b"get /stats"):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {
                "requests": Stats.requests,
                "max_holding": Stats.max_holding,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "max_rss_kb": usage.ru_maxrss,
            }
            self.send(_http("200 OK", json.dumps(stats).encode()))
        elif request_line.startswith(b"get /reset"):
            Stats.max_holding = Stats.holding
            self.send(_http("200 OK", b"{}"))
        else:
            self.send(NOT_FOUND)

    def release(self, reply: bytes) -> None:
        Stats.holding -= 1
        self.send(reply)

    def send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


async def serve(port: int, hold: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ChatProtocol(hold), "127.0.0.1", port, backlog=16384, reuse_address=True
    )
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    # Serve until the parent closes our stdin (or kills us).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hold", type=float, default=0.0)
    arguments = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(serve(arguments.port, arguments.hold))
