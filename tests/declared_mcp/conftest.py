"""The stack of the request-declared MCP tests: the loopback upstream answering from
:mod:`tests.declared_mcp.model`, a :class:`ResponsesService` whose :class:`DeclaredMcpPolicy` runs
the operator's label ``ops`` as a stdio :mod:`MCP server <tests.declared_mcp.mcp_server>` and
allows one request URL (the same server over streamable HTTP, guarded by ``sk-mcp``), and
the official ``openai`` client in process (:class:`ResponseLoopTransport`). Every Response
and stream event the service emits is checked by the suite's wire checks
(``tests/wire_capture.py``, applied to every test by ``tests/conftest.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx2
import openai
import pytest
from openai.types.responses import Response

from responseloop import HttpxClient, InMemoryStore, ResponsesService, RetryPolicy
from responseloop.abc import ResponseStore, StepKind
from tests.declared_mcp import model
from tests.in_process import openai_client
from tests.loopback_upstream import Upstream, running_upstream

pytest.importorskip("mcp", reason="the MCP SDK is not installed: pip install 'responseloop[mcp]'")

from responseloop.tools.mcp import DeclaredMcpPolicy, McpStdioServer

SERVER = str(Path(__file__).with_name("mcp_server.py"))
KEY = "sk-caller"
MCP_KEY = "sk-mcp"


@attrs.frozen
class McpLog:
    """The lines an MCP server appended (``list``, ``record <note>``) since ``start``."""

    path: Path
    start: int = 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return self.path.read_text().splitlines()[self.start :]

    def count(self, line: str) -> int:
        return self.lines().count(line)

    def since_now(self) -> McpLog:
        return attrs.evolve(self, start=self.start + len(self.lines()))


@attrs.frozen
class HttpMcp:
    """The streamable HTTP MCP server: its URL and its log."""

    url: str
    log: McpLog


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def http_mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpMcp]:
    log = tmp_path_factory.mktemp("mcp_http") / "calls.log"
    port = _free_port()
    env = {**os.environ, "MCP_TEST_LOG": str(log)}
    process = subprocess.Popen([sys.executable, SERVER, "http", str(port)], env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the MCP HTTP test server did not start") from None
                time.sleep(0.05)
        yield HttpMcp(f"http://127.0.0.1:{port}/mcp", McpLog(log))
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def http_mcp(http_mcp_server: HttpMcp) -> HttpMcp:
    """The HTTP MCP server, its log counted from the test's start."""
    return attrs.evolve(http_mcp_server, log=http_mcp_server.log.since_now())


@pytest.fixture
def stdio_log(tmp_path: Path) -> McpLog:
    """The log of the operator's stdio server ``ops`` (a process per connection)."""
    return McpLog(tmp_path / "stdio.log")


def policy(stdio_log: McpLog, http: HttpMcp) -> DeclaredMcpPolicy:
    """The operator's policy: label ``ops`` is the stdio server; the HTTP server's URL is
    the one request URL allowed (on loopback, so private addresses are allowed too)."""
    ops = McpStdioServer(
        sys.executable, [SERVER], env={"MCP_TEST_LOG": str(stdio_log.path)}, timeout=30.0
    )
    return DeclaredMcpPolicy(
        servers={"ops": ops}, allowed_urls=(http.url,), allow_private_addresses=True
    )


@attrs.define
class Stack:
    """One test's stack: the upstream, the service, and the openai client in front of it."""

    upstream: Upstream
    service: ResponsesService
    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient
    stdio_log: McpLog
    http_mcp: HttpMcp

    def log(self, label: str) -> McpLog:
        """The log of the server a declaration of ``label`` reaches."""
        return self.stdio_log if label == "ops" else self.http_mcp.log

    async def listings(self, response_id: str) -> int:
        """How many ``tool_listing`` steps the response ran (server listings of its own;
        the MCP SDK may list a server again on its own when a connection's first call
        validates its result, which the server's log counts too)."""
        steps = await self.service.all_steps(response_id)
        return sum(step.kind is StepKind.TOOL_LISTING for step in steps)

    def declare(self, label: str, **fields: Any) -> dict[str, Any]:
        """An ``mcp`` tool: ``ops`` (the operator's label) or ``remote`` (the allowed URL,
        with its bearer key)."""
        return declaration(label, self.http_mcp.url, **fields)


def declaration(label: str, url: str, **fields: Any) -> dict[str, Any]:
    if label == "ops":
        return {"type": "mcp", "server_label": "ops", **fields}
    return {
        "type": "mcp",
        "server_label": label,
        "server_url": url,
        "authorization": MCP_KEY,
        **fields,
    }


@asynccontextmanager
async def service_stack(
    upstream: Upstream,
    stdio_log: McpLog,
    http: HttpMcp,
    *,
    store: ResponseStore | None = None,
    declared: DeclaredMcpPolicy | bool | None = True,
) -> AsyncIterator[Stack]:
    """A service over ``upstream`` and ``store`` (a fresh memory store by default) with
    :func:`policy` (``declared=None``: none), and the openai client in front of it."""
    async with AsyncExitStack() as stack:
        http_client = await stack.enter_async_context(
            HttpxClient.create(retry=RetryPolicy(initial_backoff=0.0, jitter=0.0))
        )
        service = ResponsesService(
            store=store if store is not None else InMemoryStore(),
            http_client=http_client,
            upstream=upstream.target("sk-up"),
            declared_mcp=policy(stdio_log, http) if declared is True else declared or None,
        )
        raw, client = await stack.enter_async_context(openai_client(service, KEY))
        yield Stack(upstream, service, client, raw, stdio_log, http)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with running_upstream() as server:
        server.responder = model.answer
        yield server


@pytest.fixture
async def stack(upstream: Upstream, stdio_log: McpLog, http_mcp: HttpMcp) -> AsyncIterator[Stack]:
    async with service_stack(upstream, stdio_log, http_mcp) as made:
        yield made


@attrs.frozen
class Answer:
    """A Response as the client got it (its JSON), and the types of the events of its
    stream (empty when it was not streamed)."""

    response: dict[str, Any]
    events: Sequence[str] = ()

    @property
    def id(self) -> str:
        return str(self.response["id"])

    @property
    def output(self) -> list[dict[str, Any]]:
        return list(self.response["output"])

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.output if item["type"] == kind]

    @property
    def kinds(self) -> list[str]:
        return [item["type"] for item in self.output]

    @property
    def text(self) -> str:
        messages = self.items("message")
        assert messages, f"no message in {self.kinds}"
        return "".join(part["text"] for part in messages[-1]["content"])


def _json(response: Response) -> dict[str, Any]:
    data: dict[str, Any] = response.model_dump(mode="json", exclude_unset=True)
    return data


async def create(client: openai.AsyncOpenAI, streamed: bool, **params: Any) -> Answer:
    """``client.responses.create(**params)``, streamed or not."""
    if not streamed:
        return Answer(_json(await client.responses.create(**params)))
    events = []
    stream = await client.responses.create(stream=True, **params)
    async for event in stream:
        events.append(event)
    final = events[-1]
    assert final.type == "response.completed", [e.type for e in events]
    return Answer(_json(final.response), [e.type for e in events])


STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
SERVERS = pytest.mark.parametrize("label", ["ops", "remote"], ids=["operator_stdio", "url_http"])


def as_input(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items sent back as input (a client replaying the history): without nulls."""
    return [{k: v for k, v in item.items() if v is not None} for item in items]
