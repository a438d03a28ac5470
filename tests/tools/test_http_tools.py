"""HttpToolExecutor against a real HTTP tool server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest

from responseloop import RequestContext
from responseloop.abc import Complete
from responseloop.exceptions import (
    ToolArgumentsError,
    ToolExecutionError,
    ToolNotFound,
    ToolTimeout,
)
from responseloop.testing import ChatReply, ScriptedChatModel
from responseloop.tools import HttpTool, HttpToolError, HttpToolExecutor
from tests.tools._loop import run_loop, tool_outputs

CTX = RequestContext(response_id="resp_http", model="m")
LIMIT = 4096


class ToolServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]
    release: threading.Event
    bytes_sent: dict[str, int]
    streamed: threading.Event


class Handler(BaseHTTPRequestHandler):
    server: ToolServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str, length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(size))
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path == "/json":
            answer = {"echo": body, "ok": True}
            self._answer(200, json.dumps(answer).encode(), "application/json")
        elif self.path == "/text":
            self._answer(200, b"plain words", "text/plain")
        elif self.path == "/fail":
            self._answer(500, b"database exploded " + b"x" * 2000, "text/plain")
        elif self.path == "/slow":
            self.server.release.wait(timeout=10)
            self._answer(200, b"{}", "application/json")
        elif self.path == "/big-announced":
            self._answer(200, b"[" + b"1," * LIMIT + b"1]", "application/json")
        elif self.path == "/big-streamed":
            # No Content-Length: the body streams until the server closes, and only the
            # first chunks past the limit may ever be read.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            try:
                for _ in range(10_000):
                    self.wfile.write(b"x" * 1024)
                    sent += 1024
            except OSError:
                pass
            self.server.bytes_sent["big-streamed"] = sent
            self.server.streamed.set()
            self.close_connection = True
        else:
            self._answer(404, b"no route", "text/plain")


@pytest.fixture(scope="module")
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer(("127.0.0.1", 0), Handler)
    server.requests = []
    server.release = threading.Event()
    server.bytes_sent = {}
    server.streamed = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def url(server: ToolServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def executor(server: ToolServer, **options: Any) -> HttpToolExecutor:
    tools = [
        HttpTool("lookup", url(server, "/json"), "Look up.", SCHEMA, api_key="sk-tool", timeout=5),
        HttpTool("text", url(server, "/text"), timeout=5),
        HttpTool("fail", url(server, "/fail"), timeout=5),
        HttpTool("slow", url(server, "/slow"), timeout=0.2),
        HttpTool("big_announced", url(server, "/big-announced")),
        HttpTool("big_streamed", url(server, "/big-streamed")),
        HttpTool("gone", f"http://127.0.0.1:{refused_port()}/x", timeout=5),
    ]
    return HttpToolExecutor(tools, max_response_bytes=LIMIT, **options)


async def test_json_answer_is_the_result_and_the_request_is_as_configured(
    tool_server: ToolServer,
) -> None:
    tools = executor(tool_server)
    result = await tools.execute("lookup", "call_7", {"city": "Oslo"}, CTX)
    assert result == {"echo": {"city": "Oslo"}, "ok": True}
    request = tool_server.requests[-1]
    assert request["body"] == {"city": "Oslo"}
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["authorization"] == "Bearer sk-tool"
    assert headers["x-tool-call-id"] == "call_7"
    assert headers["x-response-id"] == "resp_http"
    assert "sk-tool" not in repr(tools._tools["lookup"])


async def test_text_answer_becomes_result_object(tool_server: ToolServer) -> None:
    async with executor(tool_server) as tools:
        assert await tools.execute("text", "c", {}, CTX) == {"result": "plain words"}
        # A shared client serves several calls.
        assert await tools.execute("text", "c", {}, CTX) == {"result": "plain words"}


async def test_error_status_is_a_typed_error_with_a_truncated_body(
    tool_server: ToolServer,
) -> None:
    with pytest.raises(HttpToolError) as caught:
        await executor(tool_server, error_body_chars=40).execute("fail", "c", {}, CTX)
    assert caught.value.status == 500
    assert caught.value.body == "database exploded " + "x" * 21 + "…"
    assert str(caught.value) == f"tool 'fail' answered HTTP 500: {caught.value.body}"
    assert caught.value.to_error()["status"] == 500
    with pytest.raises(HttpToolError) as quiet:
        await executor(tool_server, error_body_chars=0).execute("fail", "c", {}, CTX)
    assert str(quiet.value) == "tool 'fail' answered HTTP 500"


async def test_timeout_is_tool_timeout(tool_server: ToolServer) -> None:
    with pytest.raises(ToolTimeout, match=r"'slow' timed out after 0\.2s"):
        await executor(tool_server).execute("slow", "c", {}, CTX)


async def test_oversize_bodies_are_rejected(tool_server: ToolServer) -> None:
    tools = executor(tool_server)
    with pytest.raises(ToolExecutionError, match=f"more than {LIMIT} bytes"):
        await tools.execute("big_announced", "c", {}, CTX)
    tool_server.streamed.clear()
    with pytest.raises(ToolExecutionError, match=f"more than {LIMIT} bytes"):
        await tools.execute("big_streamed", "c", {}, CTX)
    # The server could not hand over its whole 10 MiB: the reader hung up early.
    assert await anyio.to_thread.run_sync(tool_server.streamed.wait, 10)
    assert tool_server.bytes_sent["big-streamed"] < 10_000 * 1024


async def test_connection_refused_is_a_tool_error(tool_server: ToolServer) -> None:
    with pytest.raises(ToolExecutionError, match="'gone' could not be reached: ConnectError"):
        await executor(tool_server).execute("gone", "c", {}, CTX)


async def test_arguments_are_checked_before_any_request(tool_server: ToolServer) -> None:
    before = len(tool_server.requests)
    tools = executor(tool_server)
    with pytest.raises(ToolArgumentsError, match=r"arguments.city: required"):
        await tools.execute("lookup", "c", {}, CTX)
    with pytest.raises(ToolArgumentsError, match="expected a JSON object"):
        await tools.execute("lookup", "c", ["Oslo"], CTX)
    with pytest.raises(ToolNotFound):
        await tools.execute("missing", "c", {}, CTX)
    assert len(tool_server.requests) == before


async def test_a_client_passed_in_is_used_and_left_open(tool_server: ToolServer) -> None:
    async with httpx2.AsyncClient() as client:
        tools = HttpToolExecutor([HttpTool("text", url(tool_server, "/text"))], client=client)
        async with tools:
            assert await tools.execute("text", "c", {}, CTX) == {"result": "plain words"}
        assert not client.is_closed


async def test_http_tools_through_the_loop(tool_server: ToolServer) -> None:
    model = ScriptedChatModel(
        [
            ChatReply.calls(("lookup", {"city": "Rome"}, "c1"), ("fail", {}, "c2")),
            ChatReply.text("done"),
        ]
    )
    async with executor(tool_server, error_body_chars=17) as tools:
        outcome = await run_loop(model, tools)
    assert isinstance(outcome, Complete)
    assert tool_outputs(model, 1) == [
        {"echo": {"city": "Rome"}, "ok": True},
        {"error": "tool 'fail' answered HTTP 500: database explode…"},
    ]


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpTool("t", "file:///etc/passwd")
    with pytest.raises(ValueError, match="timeout must be positive"):
        HttpTool("t", "http://x", timeout=0)
    with pytest.raises(ValueError, match="two HTTP tools"):
        HttpToolExecutor([HttpTool("t", "http://x"), HttpTool("t", "http://y")])
