"""A reverse proxy in the test process, in front of ``responseloop serve``: it passes every
request through unchanged and checks every JSON Response and every SSE event the server
emits with :mod:`tests.wire_checks`, recording what it saw and every check that failed.

It runs in a thread of its own (the clients are other processes, or blocking code) and
answers each request on its own connection (HTTP/1.0: the stream ends when it closes), so
it needs no chunked encoding of its own.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import httpx

from tests.wire_checks import (
    check_emitted_compacted,
    check_emitted_response,
    check_emitted_stream,
)

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@attrs.define
class Exchange:
    """One request the proxy passed on, and what the server answered."""

    method: str
    path: str
    body: Any
    headers: dict[str, str] = attrs.Factory(dict)
    status: int = 0
    response: Any = None
    events: list[Any] = attrs.Factory(list)


@attrs.define
class CheckingProxy:
    url: str = ""
    exchanges: list[Exchange] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)

    def check(self, what: str, check: Any, *args: Any, **kwargs: Any) -> None:
        try:
            check(*args, **kwargs)
        except Exception:  # every failed check is reported, none stops the client
            self.problems.append(f"{what}: {traceback.format_exc(limit=3)}")


def _handler(proxy: CheckingProxy, target: str, client: httpx.Client) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            exchange = Exchange(
                self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()}
            )
            proxy.exchanges.append(exchange)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            request = client.build_request(
                self.command, target + self.path, headers=headers, content=raw
            )
            answer = client.send(request, stream=True)
            try:
                exchange.status = answer.status_code
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("connection", "close")
                self.end_headers()
                if answer.headers.get("content-type", "").startswith("text/event-stream"):
                    self._relay_stream(answer, exchange)
                else:
                    data = answer.read()
                    self.wfile.write(data)
                    self._check_json(data, exchange)
            finally:
                answer.close()

        def _check_json(self, data: bytes, exchange: Exchange) -> None:
            try:
                exchange.response = json.loads(data)
            except ValueError:
                return
            if (
                exchange.status == 200
                and isinstance(exchange.response, dict)
                and exchange.response.get("object") == "response"
            ):
                proxy.check(
                    f"{exchange.method} {exchange.path}", check_emitted_response, exchange.response
                )
            if (
                exchange.status == 200
                and isinstance(exchange.response, dict)
                and exchange.response.get("object") == "response.compaction"
            ):
                proxy.check(
                    f"{exchange.method} {exchange.path}", check_emitted_compacted, exchange.response
                )

        def _relay_stream(self, answer: httpx.Response, exchange: Exchange) -> None:
            done = False
            for line in answer.iter_lines():
                self.wfile.write(line.encode() + b"\n")
                self.wfile.flush()
                if not line.startswith("data:"):
                    continue
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    done = True
                    continue
                event = json.loads(data)
                exchange.events.append(event)
            proxy.check(
                f"stream of {exchange.path}",
                check_emitted_stream,
                exchange.events,
                ended_with_done=done,
            )

        do_GET = do_POST = do_DELETE = _forward

    return Handler


@contextmanager
def checking_proxy(target: str) -> Iterator[CheckingProxy]:
    """A :class:`CheckingProxy` on a free loopback port, passing requests to ``target``."""
    proxy = CheckingProxy()
    with httpx.Client(timeout=60) as client:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy, target, client))
        server.daemon_threads = True
        proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield proxy
        finally:
            server.shutdown()
            server.server_close()
