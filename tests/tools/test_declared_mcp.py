"""DeclaredMcpTools and DeclaredMcpPolicy against real MCP servers (stdio and streamable
HTTP, tests/tools/mcp_server.py) and tiny loopback HTTP servers that misbehave on purpose
(a redirect, an oversized reply)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import given
from hypothesis import strategies as st

from responseloop import RequestContext
from responseloop.exceptions import InvalidRequestError, ToolExecutionError, ToolNotFound
from responseloop.openresponses._mcp import McpDeclaration, parse_mcp_declaration
from responseloop.tools.mcp import (
    DeclaredMcpPolicy,
    DeclaredMcpTools,
    McpHttpServer,
    McpStdioServer,
)
from tests.tools.test_mcp_tools import _free_port

pytest.importorskip("mcp", reason="the MCP SDK is not installed: pip install 'responseloop[mcp]'")

SERVER = str(Path(__file__).with_name("mcp_server.py"))
CTX = RequestContext(response_id="resp_declared")
KEY = "sk-mcp"  # the key the test server's HTTP mode demands


def declare(label: str, index: int = 0, **fields: Any) -> McpDeclaration:
    return parse_mcp_declaration(
        {"type": "mcp", "server_label": label, **fields}, f"tools[{index}]"
    )


def stdio(timeout: float = 30.0) -> McpStdioServer:
    return McpStdioServer(sys.executable, [SERVER], timeout=timeout)


def names(schemas: Any) -> set[str]:
    return {schema.name for schema in schemas}


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The test MCP server over streamable HTTP, guarded by ``Authorization: Bearer sk-mcp``."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        import socket

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


def origin(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/"


# Listing, filtering, approval


async def test_stdio_listing_offers_the_allowed_tools_with_hints_and_approvals() -> None:
    policy = DeclaredMcpPolicy(servers={"calc": stdio()})
    declaration = declare(
        "calc",
        allowed_tools=["add", "shout"],
        require_approval={"never": {"tool_names": ["add"]}},
    )
    async with DeclaredMcpTools([declaration], policy) as tools:
        schemas = {schema.name: schema for schema in await tools.tools(CTX)}
        listing = await tools.list_server_tools("calc", CTX)
    assert set(schemas) == {"add", "shout"}
    add, shout = schemas["add"], schemas["shout"]
    assert add.description == "Add two integers."
    assert add.parameters["required"] == ["a", "b"]
    assert (add.idempotent, shout.idempotent) == (True, False)
    assert {add.server_label, shout.server_label} == {"calc"}
    assert (add.requires_approval, shout.requires_approval) == (False, True)
    assert isinstance(listing, dict)
    entries = {entry["name"]: entry for entry in listing["tools"]}
    assert set(entries) == {"add", "shout"}
    assert entries["add"]["annotations"] == {"idempotentHint": True}
    assert entries["add"]["input_schema"]["properties"]["a"]["type"] == "integer"
    assert entries["shout"]["description"] == "Upper-case a text."


async def test_allowed_tools_by_read_only_filter() -> None:
    policy = DeclaredMcpPolicy(servers={"calc": stdio()})
    # The test server's tools carry no readOnlyHint: none is read-only, all are not.
    only_read = declare("calc", allowed_tools={"read_only": True})
    async with DeclaredMcpTools([only_read], policy) as tools:
        assert await tools.tools(CTX) == []
        assert await tools.list_server_tools("calc", CTX) == {"tools": []}
    writers = declare("calc", allowed_tools={"read_only": False}, require_approval="never")
    async with DeclaredMcpTools([writers], policy) as tools:
        assert names(await tools.tools(CTX)) == {"add", "shout", "explode", "sleepy"}
    # A listing with hints (here one an earlier turn kept) is filtered by them.
    listed: dict[str, list[dict[str, Any]]] = {
        "docs": [
            {"name": "read", "input_schema": {}, "annotations": {"readOnlyHint": True}},
            {"name": "write", "input_schema": {}, "annotations": {"readOnlyHint": False}},
            {"name": "other", "input_schema": {}, "annotations": None},
        ]
    }
    readers = declare(
        "docs", allowed_tools={"read_only": True}, require_approval={"never": {"read_only": True}}
    )
    policy = DeclaredMcpPolicy(servers={"docs": stdio()})
    async with DeclaredMcpTools([readers], policy, listed=listed) as tools:
        (read,) = await tools.tools(CTX)
    assert (read.name, read.requires_approval) == ("read", False)


async def test_a_listing_from_an_earlier_turn_connects_only_when_a_tool_is_called(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    # Touches the marker as it starts, then runs the test server.
    launcher = (
        "import pathlib, runpy, sys; pathlib.Path(sys.argv[1]).touch(); "
        "sys.argv = [sys.argv[2]]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    server = McpStdioServer(sys.executable, ["-c", launcher, str(marker), SERVER], timeout=30)
    listed: dict[str, list[dict[str, Any]]] = {
        "calc": [
            {
                "name": "add",
                "description": "Add two integers.",
                "input_schema": {"type": "object", "properties": {}},
                "annotations": {"idempotentHint": True},
            },
            {"name": "shout", "description": "", "input_schema": {}, "annotations": None},
        ]
    }
    declaration = declare("calc", allowed_tools=["add"], require_approval="never")
    async with DeclaredMcpTools(
        [declaration], DeclaredMcpPolicy(servers={"calc": server}), listed=listed
    ) as tools:
        (add,) = await tools.tools(CTX)
        assert (add.name, add.idempotent, add.server_label) == ("add", True, "calc")
        assert await tools.list_server_tools("calc", CTX) == {"tools": [listed["calc"][0]]}
        assert not marker.exists()
        with pytest.raises(ToolNotFound):
            await tools.execute("shout", "c0", {"text": "no"}, CTX)  # not allowed
        assert not marker.exists()
        assert await tools.execute("add", "c1", {"a": 2, "b": 3}, CTX) == {"result": 5}
        assert marker.exists()


async def test_calls_failures_and_unknown_names() -> None:
    policy = DeclaredMcpPolicy(servers={"calc": stdio()})
    declaration = declare("calc", allowed_tools=["add", "explode", "shout"])
    async with DeclaredMcpTools([declaration], policy) as tools:
        # Called without tools() first: the listing is made on the way.
        assert await tools.execute("add", "c1", {"a": 40, "b": 2}, CTX) == {"result": 42}
        assert await tools.execute("shout", "c2", {"text": "hi"}, CTX) == "HI"
        with pytest.raises(ToolExecutionError, match="tool 'explode' failed: Error executing"):
            await tools.execute("explode", "c3", {"reason": "nope"}, CTX)
        with pytest.raises(ToolNotFound):
            await tools.execute("sleepy", "c4", {"seconds": 0}, CTX)  # not in allowed_tools
        with pytest.raises(ToolNotFound):
            await tools.list_server_tools("nobody", CTX)


async def test_an_unreachable_server_fails_its_listing_not_the_others() -> None:
    dead_port = _free_port()
    policy = DeclaredMcpPolicy(
        servers={
            "calc": stdio(),
            "broken": McpStdioServer(sys.executable, ["-c", "raise SystemExit(3)"], timeout=10),
        },
        allowed_urls=[f"http://127.0.0.1:{dead_port}/"],
        allow_private_addresses=True,
        timeout=10,
    )
    declarations = [
        declare("calc", 0, allowed_tools=["add"]),
        declare("broken", 1),
        declare("gone", 2, server_url=f"http://127.0.0.1:{dead_port}/mcp"),
    ]
    async with DeclaredMcpTools(declarations, policy) as tools:
        assert names(await tools.tools(CTX)) == {"add"}
        with pytest.raises(
            ToolExecutionError, match="could not list the tools of MCP server 'gone'"
        ):
            await tools.list_server_tools("gone", CTX)
        with pytest.raises(
            ToolExecutionError, match="could not list the tools of MCP server 'broken'"
        ):
            await tools.list_server_tools("broken", CTX)
        assert await tools.execute("add", "c", {"a": 1, "b": 1}, CTX) == {"result": 2}


async def test_two_servers_offering_one_name_is_an_error_naming_both() -> None:
    policy = DeclaredMcpPolicy(servers={"one": stdio(), "two": stdio()})
    declarations = [declare("one", 0, allowed_tools=["add"]), declare("two", 1)]
    async with DeclaredMcpTools(declarations, policy) as tools:
        with pytest.raises(ToolExecutionError, match=r"MCP servers 'one' and 'two' .* 'add'"):
            await tools.tools(CTX)


async def test_it_must_be_open_and_one_label_is_declared_once() -> None:
    policy = DeclaredMcpPolicy(servers={"calc": stdio()})
    tools = DeclaredMcpTools([declare("calc")], policy)
    with pytest.raises(RuntimeError, match="not open"):
        await tools.tools(CTX)
    with pytest.raises(InvalidRequestError, match="two mcp tools") as refused:
        DeclaredMcpTools([declare("calc", 0), declare("calc", 1)], policy)
    assert refused.value.param == "tools[1].server_label"
    # aclose() is leaving the block: the connection is gone, the executor closed.
    await tools.__aenter__()
    assert names(await tools.tools(CTX)) >= {"add"}
    await tools.aclose()
    with pytest.raises(RuntimeError, match="not open"):
        await tools.execute("add", "c", {"a": 1, "b": 1}, CTX)


# Streamable HTTP: the request's own URL and the operator's server


async def test_a_requests_authorization_reaches_its_server_and_nothing_else(
    http_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    policy = DeclaredMcpPolicy(allowed_urls=[origin(http_server)], allow_private_addresses=True)
    declaration = declare(
        "remote", server_url=http_server, authorization=KEY, headers={"X-Trace": "t-1"}
    )
    async with DeclaredMcpTools([declaration], policy) as tools:
        assert names(await tools.tools(CTX)) == {"add", "shout", "explode", "sleepy"}
        assert await tools.execute("add", "c", {"a": 40, "b": 2}, CTX) == {"result": 42}
        shown = [repr(tools), repr(declaration), repr(policy), str(tools.__dict__)]
    for text in shown:
        assert KEY not in text
    assert not [record for record in caplog.records if KEY in record.getMessage()]
    # The server answers 401 to any other key: the request's key was the one sent.
    wrong = declare("remote", server_url=http_server, authorization="wrong")
    async with DeclaredMcpTools([wrong], policy) as tools:
        assert await tools.tools(CTX) == []
        with pytest.raises(ToolExecutionError, match=r"'remote': .*\(HTTP 401\)") as failed:
            await tools.list_server_tools("remote", CTX)
    assert "wrong" not in str(failed.value)


async def test_an_operator_server_gets_the_operators_key_not_the_requests(
    http_server: str,
) -> None:
    policy = DeclaredMcpPolicy(servers={"calc": McpHttpServer(http_server, api_key=KEY)})
    # A configured label wins: the request's URL is ignored, and its key is not sent
    # (the server would answer 401 to it).
    declaration = declare("calc", server_url="https://elsewhere.example/mcp", authorization="wrong")
    async with DeclaredMcpTools([declaration], policy) as tools:
        assert await tools.execute("add", "c", {"a": 1, "b": 2}, CTX) == {"result": 3}
    unkeyed = DeclaredMcpPolicy(servers={"calc": McpHttpServer(http_server)})
    async with DeclaredMcpTools([declare("calc", authorization=KEY)], unkeyed) as tools:
        with pytest.raises(ToolExecutionError, match=r"HTTP 401"):
            await tools.list_server_tools("calc", CTX)


async def test_loopback_is_refused_when_the_host_resolves_to_it(http_server: str) -> None:
    # Named by host name, not a literal address: refused as the connection is made.
    url = http_server.replace("127.0.0.1", "localhost")
    declaration = declare("remote", server_url=url, authorization=KEY)
    guarded = DeclaredMcpPolicy(allowed_urls=[origin(url)])
    guarded.check(declaration)  # a host name passes the request's check
    async with DeclaredMcpTools([declaration], guarded) as tools:
        assert await tools.tools(CTX) == []
        with pytest.raises(ToolExecutionError, match="refused to connect to 'localhost'"):
            await tools.list_server_tools("remote", CTX)
    allowed = attrs.evolve(guarded, allow_private_addresses=True)
    async with DeclaredMcpTools([declaration], allowed) as tools:
        assert await tools.execute("add", "c", {"a": 2, "b": 2}, CTX) == {"result": 4}


# Misbehaving servers: a tiny loopback HTTP server


@attrs.define
class TinyServer:
    """Answers every request with ``reply``; records the request lines it got."""

    reply: bytes
    url: str = ""
    requests: list[str] = attrs.field(factory=list)

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            buffered = BufferedByteReceiveStream(stream)
            try:
                head = await buffered.receive_until(b"\r\n\r\n", 65536)
            except (anyio.IncompleteRead, anyio.EndOfStream):
                return
            lines = head.decode("latin-1").split("\r\n")
            self.requests.append(lines[0])
            length = next(
                (
                    int(v)
                    for k, _, v in (line.partition(": ") for line in lines[1:])
                    if k.lower() == "content-length"
                ),
                0,
            )
            if length:
                await buffered.receive_exactly(length)
            await stream.send(self.reply)


@pytest.fixture
async def tiny() -> AsyncIterator[TinyServer]:
    server = TinyServer(b"")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.url = f"http://127.0.0.1:{port}/mcp"
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server.handle)
        yield server
        group.cancel_scope.cancel()


def tiny_policy(server: TinyServer, **more: Any) -> DeclaredMcpPolicy:
    return DeclaredMcpPolicy(
        allowed_urls=[origin(server.url)], allow_private_addresses=True, timeout=10, **more
    )


async def test_a_redirect_is_not_followed_even_within_the_origin(tiny: TinyServer) -> None:
    tiny.reply = (
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    async with DeclaredMcpTools(
        [declare("remote", server_url=tiny.url)], tiny_policy(tiny)
    ) as tools:
        with pytest.raises(ToolExecutionError, match=r"not followed.*\(HTTP 307\)"):
            await tools.list_server_tools("remote", CTX)
    # The client may try again (another protocol version), never at the new location.
    assert tiny.requests
    assert set(tiny.requests) == {"POST /mcp HTTP/1.1"}


def json_reply(size: int, *, announced: bool) -> bytes:
    body = b'{"jsonrpc": "2.0", "id": 0, "result": {"pad": "' + b"x" * size + b'"}}'
    if announced:
        framing = b"Content-Length: %d\r\n" % len(body)
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing + b"\r\n" + body
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (body[i : i + 512] for i in range(0, len(body), 512))
    )
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
async def test_a_reply_past_the_cap_fails_the_listing(tiny: TinyServer, announced: bool) -> None:
    tiny.reply = json_reply(5000, announced=announced)
    policy = tiny_policy(tiny, max_reply_bytes=1000)
    async with DeclaredMcpTools([declare("remote", server_url=tiny.url)], policy) as tools:
        with pytest.raises(ToolExecutionError, match="reply is larger than 1000 bytes"):
            await tools.list_server_tools("remote", CTX)


async def test_an_event_stream_reply_past_the_cap_fails_the_listing(tiny: TinyServer) -> None:
    event = b"event: message\ndata: " + b"x" * 5000 + b"\n\n"
    tiny.reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + event
    )
    policy = tiny_policy(tiny, max_reply_bytes=1000)
    async with DeclaredMcpTools([declare("remote", server_url=tiny.url)], policy) as tools:
        with pytest.raises(ToolExecutionError, match="larger than 1000 bytes"):
            await tools.list_server_tools("remote", CTX)


# The policy's checks (no I/O)


def test_check_names_the_field_it_refuses() -> None:
    policy = DeclaredMcpPolicy(
        servers={"calc": stdio()}, allowed_urls=["https://mcp.example.com/a", "http://10.0.0.5/"]
    )
    policy.check(declare("calc", server_url="ftp://anything"))  # a configured label wins
    policy.check(declare("r", server_url="https://mcp.example.com/a/b", authorization="k"))
    cases = {
        "tools[0].server_label": declare("nobody"),
        "tools[0].server_url": declare("r", server_url="https://other.example.com/a"),
    }
    for url in (
        "ftp://mcp.example.com/a",
        "https://user:pw@mcp.example.com/a",
        "https://mcp.example.com/a/../admin",
        "https://mcp.example.com/a/%2e%2e/admin",
        "https://mcp.example.com/a%2Fb",
        "http://10.0.0.5/mcp",  # allow-listed, but a private address
        "https://mcp.example.com:99999/a",
    ):
        with pytest.raises(InvalidRequestError) as refused:
            policy.check(declare("r", server_url=url))
        assert refused.value.param == "tools[0].server_url", url
    for param, declaration in cases.items():
        with pytest.raises(InvalidRequestError) as refused:
            policy.check(declaration)
        assert refused.value.param == param
    with pytest.raises(InvalidRequestError, match="'Host'") as refused:
        policy.check(declare("r", server_url="https://mcp.example.com/a", headers={"Host": "x"}))
    assert refused.value.param == "tools[0].headers"
    attrs.evolve(policy, allow_private_addresses=True).check(
        declare("r", server_url="http://10.0.0.5/mcp")
    )


def test_the_default_policy_reaches_no_request_url() -> None:
    with pytest.raises(InvalidRequestError, match="allows no MCP server URLs") as refused:
        DeclaredMcpPolicy().check(declare("r", 3, server_url="https://mcp.example.com/"))
    assert refused.value.param == "tools[3].server_url"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://mcp.example.com/a", True),
        ("https://mcp.example.com/a/", True),
        ("https://mcp.example.com/a/b?x=1", True),
        ("https://MCP.example.com:443/a/b", True),
        ("https://mcp.example.com/ab", False),
        ("https://mcp.example.com/", False),
        ("https://mcp.example.com.evil/a", False),
        ("https://evil.com/https://mcp.example.com/a", False),
        ("https://mcp.example.com@evil.com/a", False),
        ("http://mcp.example.com/a", False),
        ("https://mcp.example.com:8443/a", False),
        ("https://mcp.example.com\\@evil.com/a", False),
    ],
)
def test_allow_list_matching(url: str, allowed: bool) -> None:
    assert DeclaredMcpPolicy(allowed_urls=["https://mcp.example.com/a"]).url_allowed(url) is allowed


def test_a_prefix_ending_in_a_slash_admits_only_what_is_below_it() -> None:
    policy = DeclaredMcpPolicy(allowed_urls=["https://h.example/a/"])
    assert policy.url_allowed("https://h.example/a/mcp")
    assert not policy.url_allowed("https://h.example/a")
    assert DeclaredMcpPolicy(allowed_urls=["https://h.example"]).url_allowed("https://h.example/x")


def test_bad_allow_list_entries_are_refused() -> None:
    for prefix in ("ftp://h.example/", "https:///path", "https://u@h.example/", "https://h/?q=1"):
        with pytest.raises(ValueError, match="allowed_urls"):
            DeclaredMcpPolicy(allowed_urls=[prefix])
    with pytest.raises(TypeError):
        DeclaredMcpPolicy(allowed_urls="https://h.example/")


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)


@given(
    host=st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
    path=st.lists(_SEGMENT, max_size=3).map(lambda parts: "".join("/" + p for p in parts)),
    below=st.lists(_SEGMENT, max_size=3).map(lambda parts: "".join("/" + p for p in parts)),
    extra=_SEGMENT,
)
def test_the_prefix_rule(host: str, path: str, below: str, extra: str) -> None:
    prefix = f"https://{host}{path}"
    policy = DeclaredMcpPolicy(allowed_urls=[prefix])
    # Below the prefix on a segment boundary: admitted.
    assert policy.url_allowed(prefix + below)
    # The same text continued without a boundary, another host, port or scheme: not.
    assert not policy.url_allowed(prefix + extra)
    assert not policy.url_allowed(f"https://{host}.{extra}{path}{below}")
    assert not policy.url_allowed(f"https://{extra}{host}{path}{below}")
    assert not policy.url_allowed(f"https://{host}:8443{path}{below}")
    assert not policy.url_allowed(f"http://{host}{path}{below}")
