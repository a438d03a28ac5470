"""McpToolExecutor: the tools of MCP servers, run server-side (extra ``mcp``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ..abc._config import RequestContext
from ..abc._json import JSON
from ..abc._tools import ToolSchema
from ..exceptions import ToolArgumentsError, ToolExecutionError, ToolNotFound, ToolTimeout

if TYPE_CHECKING:
    import httpx2
    import mcp

__all__ = [
    "DEFAULT_MAX_MCP_REPLY_BYTES",
    "DeclaredMcpPolicy",
    "DeclaredMcpTools",
    "McpHttpServer",
    "McpStdioServer",
    "McpToolExecutor",
]

MCP_MISSING = "McpToolExecutor needs the MCP SDK: pip install 'responseloop[mcp]'"


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("args takes a sequence of strings, not one string")
    return tuple(value)


def _optional_mapping(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return dict(value) if value is not None else None


def _mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class McpStdioServer:
    """An MCP server the executor starts as a subprocess and talks to over stdin/stdout.

    Attributes:
        command: the executable.
        args: its arguments.
        env: extra environment variables (hidden from ``repr``).
        cwd: its working directory.
        prefix: put before each of its tool names (to keep names of servers apart).
        timeout: seconds one tool call may take.
        label: the ``server_label`` of its calls' ``mcp_call`` items in a Response
            (``None``: the wire's own label, ``WireOptions.server_label``).
    """

    command: str
    args: Sequence[str] = attrs.field(default=(), converter=_strings)
    env: Mapping[str, str] | None = attrs.field(
        default=None, converter=_optional_mapping, repr=False
    )
    cwd: str | None = None
    prefix: str = ""
    timeout: float = attrs.field(default=60.0, validator=_positive)
    label: str | None = None


@attrs.frozen
class McpHttpServer:
    """An MCP server reached over streamable HTTP.

    Attributes:
        url: its endpoint (``https://host/mcp``).
        api_key: an optional bearer key (hidden from ``repr``).
        headers: extra request headers (hidden from ``repr``).
        prefix: put before each of its tool names.
        timeout: seconds one tool call may take.
        label: the ``server_label`` of its calls' ``mcp_call`` items in a Response
            (``None``: the wire's own label, ``WireOptions.server_label``).
    """

    url: str
    api_key: str | None = attrs.field(default=None, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_mapping, repr=False)
    prefix: str = ""
    timeout: float = attrs.field(default=60.0, validator=_positive)
    label: str | None = None


McpServer = McpStdioServer | McpHttpServer


@attrs.frozen
class _Route:
    client: mcp.Client = attrs.field(eq=False)
    remote_name: str
    server: McpServer


class McpToolExecutor:
    """A :class:`~responseloop.abc.ToolExecutor` exposing the tools of MCP servers.

    The connections live as long as the ``async with`` block::

        servers = [McpStdioServer("python", ["weather_server.py"])]
        async with McpToolExecutor(servers) as tools:
            await run_response_loop(..., tools=tools)

    Entering connects to every server and lists its tools (names must be unique across
    servers; use ``prefix`` to keep them apart). A call's result is the tool's structured
    content when it has some, else its text (several content blocks become a list of
    them as JSON). A result flagged as an error fails the call with its text, which the
    model sees. Needs the ``mcp`` extra.

    Entering raises :class:`~responseloop.exceptions.ToolExecutionError` naming the server when one
    cannot be started, reached or listed, and :class:`ValueError` when two tools share a
    name; either way every connection made so far is closed again.

    Args:
        servers: the servers to connect to.
    """

    def __init__(self, servers: Iterable[McpServer]) -> None:
        self.servers: tuple[McpServer, ...] = tuple(servers)
        self._stack: AsyncExitStack | None = None
        self._routes: dict[str, _Route] = {}
        self._schemas: list[ToolSchema] = []

    async def __aenter__(self) -> McpToolExecutor:
        if self._stack is not None:
            raise RuntimeError("this McpToolExecutor is already connected")
        try:
            import mcp
        except ImportError as exc:
            raise ImportError(MCP_MISSING) from exc
        clash: str | None = None
        async with AsyncExitStack() as stack:
            routes: dict[str, _Route] = {}
            schemas: list[ToolSchema] = []
            for server in self.servers:
                client, listed = await _connect(mcp, server, stack)
                for tool in listed:
                    name = server.prefix + tool.name
                    if name in routes:
                        clash = name
                        break
                    routes[name] = _Route(client, tool.name, server)
                    schemas.append(_schema(name, tool, server.label))
                if clash is not None:
                    break
            else:
                self._routes, self._schemas = routes, schemas
                self._stack = stack.pop_all()
        # Raised once the connections are closed, so it is not wrapped in their task
        # groups' exception groups.
        if clash is not None:
            raise ValueError(f"two MCP tools are named {clash!r}; set a prefix")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._routes, self._schemas = {}, []
        if stack is not None:
            await stack.__aexit__(exc_type, exc, traceback)

    @property
    def tool_names(self) -> frozenset[str] | None:
        """The tool names, or ``None`` before the executor is connected."""
        return frozenset(self._routes) if self._stack is not None else None

    def _connected(self) -> None:
        if self._stack is None:
            raise ToolExecutionError(
                "McpToolExecutor is not connected: use it inside 'async with McpToolExecutor(...)'"
            )

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """The tools the servers listed when the executor connected.

        Raises:
            ToolExecutionError: the executor is not connected.
        """
        self._connected()
        return list(self._schemas)

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """Call tool ``name`` on its server.

        Raises:
            ToolNotFound: no server offers it.
            ToolArgumentsError: the arguments are not a JSON object.
            ToolTimeout: the server did not answer within its ``timeout``.
            ToolExecutionError: the tool reported an error, or the connection failed.
        """
        self._connected()
        route = self._routes.get(name)
        if route is None:
            raise ToolNotFound(name)
        return await _call_tool(
            route.client, route.remote_name, name, arguments, route.server.timeout
        )


async def _call_tool(
    client: mcp.Client, remote_name: str, name: str, arguments: JSON, seconds: float
) -> JSON:
    """Call ``remote_name`` on ``client`` as tool ``name``: its structured content, else
    its text; the failures mapped to the :class:`ToolExecutor` contract; ``seconds`` bound
    the call."""
    if not isinstance(arguments, dict):
        raise ToolArgumentsError(
            f"invalid arguments for tool {name!r}: expected a JSON object, "
            f"got {type(arguments).__name__}"
        )
    import mcp

    result: mcp.types.CallToolResult | None = None
    with anyio.move_on_after(seconds):
        try:
            result = await client.call_tool(remote_name, arguments)
        except mcp.MCPError as exc:
            raise ToolExecutionError(f"tool {name!r} failed: {exc.error.message}") from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ToolExecutionError(
                f"the MCP server of tool {name!r} is gone: {type(exc).__name__}"
            ) from exc
    if result is None:
        raise ToolTimeout(f"tool {name!r} timed out after {seconds}s")
    if result.is_error:
        raise ToolExecutionError(f"tool {name!r} failed: {_text(result) or 'no details'}")
    if result.structured_content is not None:
        return result.structured_content
    return _content(result)


async def _connect(
    mcp_module: Any,
    server: McpServer,
    stack: AsyncExitStack,
    *,
    http: httpx2.AsyncClient | None = None,
    max_sse_event_size: int | None = None,
    listing: bool = True,
) -> tuple[mcp.Client, list[mcp.types.Tool]]:
    """Connect to ``server`` (its connection joins ``stack``) and list its tools (none when
    not ``listing``). ``http`` and ``max_sse_event_size``: see :func:`_client`."""
    try:
        client = await stack.enter_async_context(
            _client(mcp_module, server, stack, http=http, max_sse_event_size=max_sse_event_size)
        )
        return client, await _list_tools(client) if listing else []
    except Exception as exc:
        cause = _leaf(exc)
        raise ToolExecutionError(
            f"could not connect to MCP server {_describe(server)}: {type(cause).__name__}: {cause}"
        ) from exc


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(server: McpServer) -> str:
    if isinstance(server, McpStdioServer):
        return repr(" ".join([server.command, *server.args]))
    return repr(server.url)


def _client(
    mcp_module: Any,
    server: McpServer,
    stack: AsyncExitStack,
    *,
    http: httpx2.AsyncClient | None = None,
    max_sse_event_size: int | None = None,
) -> mcp.Client:
    """A client of ``server``; an HTTP server is reached through ``http`` when given (a
    client whose transport guards what it reaches), else through a client made here."""
    if isinstance(server, McpStdioServer):
        from mcp.client.stdio import stdio_client

        parameters = mcp_module.StdioServerParameters(
            command=server.command,
            args=list(server.args),
            env=dict(server.env) if server.env is not None else None,
            cwd=server.cwd,
        )
        transport = stdio_client(parameters, errlog=sys.stderr)
    else:
        from mcp.client.streamable_http import (
            DEFAULT_MAX_SSE_EVENT_SIZE,
            streamable_http_client,
        )

        if http is None:
            http = _http_client(server)
        stack.push_async_callback(http.aclose)
        transport = streamable_http_client(
            server.url,
            http_client=http,
            max_sse_event_size=max_sse_event_size or DEFAULT_MAX_SSE_EVENT_SIZE,
        )
    client: mcp.Client = mcp_module.Client(transport, cache=None)
    return client


def _http_client(server: McpHttpServer, **options: Any) -> httpx2.AsyncClient:
    """The HTTP client of an operator's ``server``: its key and headers; ``options`` go to
    ``httpx2.AsyncClient``."""
    import httpx2

    headers = dict(server.headers)
    if server.api_key:
        headers["Authorization"] = f"Bearer {server.api_key}"
    # The SDK's own defaults: a server may hold a response stream open for long.
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0), **options)


async def _list_tools(client: mcp.Client) -> list[mcp.types.Tool]:
    tools: list[mcp.types.Tool] = []
    cursor: str | None = None
    for _page in range(1000):
        listing = await client.list_tools(cursor=cursor)
        tools += listing.tools
        cursor = listing.next_cursor
        if cursor is None:
            return tools
    raise ToolExecutionError("an MCP server's tool listing does not end")


def _schema(name: str, tool: mcp.types.Tool, label: str | None) -> ToolSchema:
    annotations = tool.annotations
    return ToolSchema(
        name=name,
        description=tool.description or "",
        parameters=tool.input_schema or {"type": "object", "properties": {}},
        idempotent=bool(annotations is not None and annotations.idempotent_hint),
        server_label=label,
    )


def _text(result: mcp.types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def _content(result: mcp.types.CallToolResult) -> JSON:
    blocks = result.content
    if all(block.type == "text" for block in blocks):
        return _text(result)
    return [json.loads(block.model_dump_json(by_alias=True, exclude_none=True)) for block in blocks]


# At the end: the declared servers' module builds on the helpers above.
from ._declared_mcp import (  # noqa: E402
    DEFAULT_MAX_MCP_REPLY_BYTES,
    DeclaredMcpPolicy,
    DeclaredMcpTools,
)
