"""McpToolExecutor against real MCP servers started by the tests (stdio and HTTP)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from responseloop import FunctionTools, InMemoryStore, RequestContext
from responseloop.abc import Complete
from responseloop.exceptions import (
    ToolArgumentsError,
    ToolExecutionError,
    ToolNotFound,
    ToolTimeout,
)
from responseloop.openresponses import assemble_response, parse_request
from responseloop.testing import ChatReply, ScriptedChatModel
from responseloop.tools import CompositeToolExecutor
from responseloop.tools.mcp import McpHttpServer, McpStdioServer, McpToolExecutor
from tests.tools._loop import run_loop, tool_outputs

pytest.importorskip("mcp", reason="the MCP SDK is not installed: pip install 'responseloop[mcp]'")

SERVER = str(Path(__file__).with_name("mcp_server.py"))
CTX = RequestContext(response_id="resp_mcp")


def stdio(prefix: str = "", timeout: float = 30.0) -> McpStdioServer:
    return McpStdioServer(sys.executable, [SERVER], prefix=prefix, timeout=timeout)


async def test_tools_are_listed_with_schemas_and_hints() -> None:
    async with McpToolExecutor([stdio()]) as tools:
        schemas = {schema.name: schema for schema in await tools.tools(CTX)}
        assert tools.tool_names == frozenset({"add", "shout", "explode", "sleepy"})
    add = schemas["add"]
    assert add.description == "Add two integers."
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a", "b"]
    assert add.idempotent is True
    assert schemas["shout"].idempotent is False
    # The connection ends with the block.
    assert tools.tool_names is None
    with pytest.raises(ToolExecutionError, match="not connected"):
        await tools.tools(CTX)


async def test_calls_structured_text_errors_and_timeouts() -> None:
    # A timeout a loaded machine's ordinary calls stay well inside; only sleepy passes it.
    async with McpToolExecutor([stdio(timeout=4.0)]) as tools:
        assert await tools.execute("add", "c1", {"a": 2, "b": 3}, CTX) == {"result": 5}
        assert await tools.execute("shout", "c2", {"text": "hi"}, CTX) == "HI"
        with pytest.raises(ToolExecutionError, match="tool 'explode' failed: Error executing"):
            await tools.execute("explode", "c3", {"reason": "nope"}, CTX)
        with pytest.raises(ToolExecutionError, match="validation error"):
            await tools.execute("add", "c4", {"a": "two"}, CTX)
        with pytest.raises(ToolArgumentsError, match="expected a JSON object"):
            await tools.execute("add", "c5", [1, 2], CTX)
        with pytest.raises(ToolNotFound):
            await tools.execute("missing", "c6", {}, CTX)
        with pytest.raises(ToolTimeout, match=r"'sleepy' timed out after 4\.0s"):
            await tools.execute("sleepy", "c7", {"seconds": 30}, CTX)


async def test_prefixes_keep_two_servers_apart_and_clashes_are_refused() -> None:
    async with McpToolExecutor([stdio("one_"), stdio("two_")]) as tools:
        assert {"one_add", "two_add"} <= (tools.tool_names or frozenset())
        assert await tools.execute("two_add", "c", {"a": 1, "b": 1}, CTX) == {"result": 2}
    with pytest.raises(ValueError, match="two MCP tools are named 'add'"):
        async with McpToolExecutor([stdio(), stdio()]):
            pass


async def test_mcp_tools_through_the_loop_beside_function_tools() -> None:
    local = FunctionTools()

    @local.tool
    def double(n: int) -> int:
        return 2 * n

    model = ScriptedChatModel(
        [
            ChatReply.calls(
                ("add", {"a": 20, "b": 1}, "c1"),
                ("double", {"n": 4}, "c2"),
                ("explode", {"reason": "x"}, "c3"),
            ),
            ChatReply.text("done"),
        ]
    )
    async with McpToolExecutor([stdio()]) as mcp_tools:
        outcome = await run_loop(model, CompositeToolExecutor(mcp_tools, local))
    assert isinstance(outcome, Complete)
    assert tool_outputs(model, 1) == [
        {"result": 21},
        8,
        {"error": "tool 'explode' failed: Error executing tool explode"},
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, SERVER, "http", str(port)])
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
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_streamable_http_server_with_a_bearer_key(http_server: str) -> None:
    async with McpToolExecutor([McpHttpServer(http_server, api_key="sk-mcp")]) as tools:
        assert await tools.execute("add", "c", {"a": 40, "b": 2}, CTX) == {"result": 42}
        assert await tools.execute("shout", "c", {"text": "ok"}, CTX) == "OK"
    assert "sk-mcp" not in repr(McpHttpServer(http_server, api_key="sk-mcp"))
    # The test server answers 401 to any other key: the right one was sent.
    with pytest.raises(ToolExecutionError, match="could not connect to MCP server 'http"):
        async with McpToolExecutor([McpHttpServer(http_server, api_key="wrong")]):
            pass


async def test_a_server_that_cannot_start_is_a_clear_error() -> None:
    broken = McpStdioServer(sys.executable, ["-c", "raise SystemExit(3)"], timeout=5)
    with pytest.raises(ToolExecutionError, match="could not connect to MCP server"):
        async with McpToolExecutor([broken]):
            pass


async def test_a_labelled_server_names_its_calls_mcp_call_items() -> None:
    labelled = McpStdioServer(sys.executable, [SERVER], label="calculator", timeout=30.0)
    local = FunctionTools()

    @local.tool
    def double(n: int) -> int:
        return 2 * n

    model = ScriptedChatModel(
        [
            ChatReply.calls(("add", {"a": 1, "b": 2}, "c1"), ("double", {"n": 4}, "c2")),
            ChatReply.text("done"),
        ]
    )
    store = InMemoryStore()
    async with McpToolExecutor([labelled]) as mcp_tools:
        assert {s.server_label for s in await mcp_tools.tools(CTX)} == {"calculator"}
        outcome = await run_loop(model, CompositeToolExecutor(mcp_tools, local), store=store)
    chain = await store.list_chain("resp_1", None)
    response = assemble_response(
        chain,
        parse_request({"model": "m", "input": "go"}),
        response_id="resp_1",
        created_at=0,
        outcome=outcome,
    )
    labels = [(i["name"], i["server_label"]) for i in response["output"] if "server_label" in i]
    assert labels == [("add", "calculator"), ("double", "responseloop")]
