"""DeclaredMcpTools: the MCP servers a request declares (``{"type": "mcp", …}``), run
where the operator's :class:`DeclaredMcpPolicy` says.

A request names a server; it does not get to choose what this server connects to. A
``server_label`` the operator configured runs on the operator's server, with the
operator's credentials. A request's own ``server_url`` is reached only when the operator
allow-listed it, and then through an HTTP client that follows no redirect, reads a
bounded reply, reaches no private, loopback or link-local address (checked on the
addresses the host resolves to, as each connection is made) and is never routed through
an environment proxy. The request's ``headers`` and ``authorization`` go to that server
only: they are never logged, and never appear in a ``repr`` or an error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import httpcore2
import httpx2

from ..abc._config import RequestContext
from ..abc._json import JSON
from ..abc._tools import ToolSchema
from ..exceptions import InvalidRequestError, ToolExecutionError, ToolNotFound
from ..openresponses._mcp import McpDeclaration, needs_approval, tool_allowed
from .mcp import (
    MCP_MISSING,
    McpHttpServer,
    McpServer,
    McpStdioServer,
    _call_tool,
    _client,
    _http_client,
    _leaf,
    _list_tools,
)

if TYPE_CHECKING:
    import mcp
    from anyio.abc import TaskGroup, TaskStatus

__all__: list[str] = []  # exported by responseloop.tools.mcp

logger = logging.getLogger("responseloop.tools.mcp")

DEFAULT_MAX_MCP_REPLY_BYTES = 4 * 1024 * 1024
"""The most bytes one HTTP reply of a request's own MCP server may have (4 MiB)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers a request may not set on its own server: they would steer the connection
# (which virtual host, how the body is framed) or the MCP session, not authenticate.
_REFUSED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "accept",
        "content-type",
    }
)


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class _Url:
    """The parts of an http(s) URL that decide where it goes."""

    scheme: str
    host: str
    port: int
    path: str

    def within(self, prefix: _Url) -> bool:
        """Whether this URL is under ``prefix``: the same scheme, host and port, and a path
        that is the prefix's or below it on a segment boundary (``/a`` admits ``/a`` and
        ``/a/b``, not ``/ab``; ``/a/`` admits only what is below it)."""
        if (self.scheme, self.host, self.port) != (prefix.scheme, prefix.host, prefix.port):
            return False
        if prefix.path.endswith("/"):
            return self.path.startswith(prefix.path)
        return self.path == prefix.path or self.path.startswith(prefix.path + "/")


def _split_url(text: str) -> _Url:
    """``text`` as a :class:`_Url`, refusing what could make it go elsewhere than it reads.

    Raises:
        ValueError: the reason, as the rest of a sentence (``must be …``).
    """
    if any(c.isspace() or ord(c) < 0x20 or c == "\\" for c in text):
        raise ValueError("must not contain spaces, control characters or backslashes")
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise ValueError("must name a host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    path = parts.path or "/"
    for segment in path.split("/"):
        decoded = urllib.parse.unquote(segment)
        # Dot segments are resolved by the HTTP client, and an encoded slash by some
        # servers: either would reach a path the prefix does not read as.
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            raise ValueError("must not have '.', '..' or encoded-slash path segments")
    return _Url(scheme, host.lower(), port or _DEFAULT_PORTS[scheme], path)


def _url_prefixes(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("allowed_urls takes a sequence of URL prefixes, not one string")
    prefixes = tuple(value)
    for prefix in prefixes:
        try:
            _split_url(prefix)
        except ValueError as exc:
            raise ValueError(f"allowed_urls: {prefix!r} {exc}") from None
        parts = urllib.parse.urlsplit(prefix)
        if parts.query or parts.fragment:
            raise ValueError(f"allowed_urls: {prefix!r} must have no query or fragment")
    return prefixes


def _servers(value: Mapping[str, McpServer]) -> Mapping[str, McpServer]:
    servers = dict(value)
    for label, server in servers.items():
        if not isinstance(server, McpStdioServer | McpHttpServer):
            raise TypeError(
                f"servers[{label!r}] must be an McpStdioServer or an McpHttpServer, "
                f"got {type(server).__name__}"
            )
    return servers


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, NAT64, 6to4), whose
    own rules then apply."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    value = int(address)
    if value >> 32 == 0 or address in _NAT64:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _private_address(address: str) -> bool:
    """Whether the IP address ``address`` is one a request's MCP server may not be reached
    at: anything not globally routable (private, loopback, link-local, shared, reserved,
    unspecified) and multicast, looking through IPv6 forms that embed an IPv4 address."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.partition("%")[0]
    )
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return not ip.is_global or ip.is_multicast


def _literal_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@attrs.frozen
class DeclaredMcpPolicy:
    """The operator's rules for the MCP servers requests declare.

    Attributes:
        servers: ``server_label`` → the operator's server for it. A declaration with a
            configured label runs there, whatever ``server_url`` it gives, with the
            operator's credentials (the server's ``api_key``, ``headers`` or ``env``):
            the request's ``headers`` and ``authorization`` are not sent to it. The
            server's ``timeout`` bounds its connection and each call; its ``prefix`` and
            ``label`` are not used (the model sees the MCP tools' own names, labelled
            with the declaration's ``server_label``).
        allowed_urls: the URL prefixes a request's own ``server_url`` may be under: the
            same scheme, host and port, and a path below the prefix's on a segment
            boundary. Empty (the default): a request can only name configured labels.
        allow_private_addresses: let a request's server be reached at a private,
            loopback or link-local address (a literal one in ``server_url``, or one its
            host resolves to). Off by default: a request must not reach this host's or
            its network's own services.
        max_reply_bytes: the most bytes of one HTTP reply of a request's server (and of
            one of its server-sent events); a larger one fails the listing or call.
        timeout: seconds connecting to and listing a request's server may take, and each
            call of its tools.
    """

    servers: Mapping[str, McpServer] = attrs.field(factory=dict, converter=_servers)
    allowed_urls: tuple[str, ...] = attrs.field(default=(), converter=_url_prefixes)
    allow_private_addresses: bool = False
    max_reply_bytes: int = attrs.field(default=DEFAULT_MAX_MCP_REPLY_BYTES, validator=_positive)
    timeout: float = attrs.field(default=60.0, validator=_positive)

    def url_allowed(self, url: str) -> bool:
        """Whether ``url`` is under one of :attr:`allowed_urls` (and is a URL that reads
        as where it goes: see :meth:`check`)."""
        try:
            target = _split_url(url)
        except ValueError:
            return False
        return any(target.within(_split_url(prefix)) for prefix in self.allowed_urls)

    def check(self, declaration: McpDeclaration) -> None:
        """Refuse a declaration this server will not run.

        A configured ``server_label`` always passes (its ``server_url`` is ignored).
        Otherwise the declaration needs a ``server_url`` that is an http(s) URL without
        credentials, under :attr:`allowed_urls`, not at a literal private address (unless
        :attr:`allow_private_addresses`), with headers that only authenticate.

        Raises:
            InvalidRequestError: why, with ``param`` naming the declaration's
                ``server_label``, ``server_url`` or ``headers``.
        """
        label = declaration.server_label
        if label in self.servers:
            return
        url = declaration.server_url
        if url is None:
            raise InvalidRequestError(
                f"no MCP server is configured for server_label {label!r} here, "
                "and the tool gives no server_url",
                param=f"{declaration.param}.server_label",
            )
        param = f"{declaration.param}.server_url"
        try:
            target = _split_url(url)
        except ValueError as exc:
            raise InvalidRequestError(f"'server_url' {exc}", param=param) from None
        if not self.url_allowed(url):
            raise InvalidRequestError(
                "'server_url' is not one this server may reach: its operator allows "
                + ("no MCP server URLs" if not self.allowed_urls else "only some")
                + " (declare a server_label the operator configured)",
                param=param,
            )
        if (
            not self.allow_private_addresses
            and _literal_ip(target.host)
            and _private_address(target.host)
        ):
            raise InvalidRequestError(
                "'server_url' is a private, loopback or link-local address", param=param
            )
        for name, value in declaration.headers.items():
            lowered = name.lower()
            if lowered in _REFUSED_HEADERS or lowered.startswith("mcp-"):
                raise InvalidRequestError(
                    f"header {name!r} may not be set for an MCP server",
                    param=f"{declaration.param}.headers",
                )
            if any(c in value or c in name for c in "\r\n\0"):
                raise InvalidRequestError(
                    "headers may not contain line breaks", param=f"{declaration.param}.headers"
                )

    def _server_for(self, declaration: McpDeclaration) -> tuple[McpServer, bool]:
        """Where the declaration's tools run, and whether that is the request's own URL
        (reached through the guarded client)."""
        configured = self.servers.get(declaration.server_label)
        if configured is not None:
            return configured, False
        assert declaration.server_url is not None  # check() refuses a declaration without
        server = McpHttpServer(
            declaration.server_url,
            headers=declaration.headers,
            timeout=self.timeout,
            label=declaration.server_label,
        )
        return server, True


# The guarded HTTP client of a request's own server.


class _ReplyTooLarge(httpx2.SSEError, httpx2.StreamError):
    """A reply of a request's MCP server passed ``max_reply_bytes``. Both an SSE and a
    stream error: the MCP SDK turns either into an error naming this reason, for a reply
    of server-sent events and a JSON reply respectively."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the MCP server's reply is larger than {limit} bytes")


_MAPPED_ERRORS: tuple[tuple[type[Exception], type[httpx2.HTTPError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
)


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """httpcore2's errors as the httpx2 errors the MCP SDK expects of a client (most
    specific first)."""
    try:
        yield
    except Exception as exc:
        for source, target in _MAPPED_ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _AddressGuard(httpcore2.AsyncNetworkBackend):
    """Resolves each new connection's host itself (``anyio.getaddrinfo``), refuses it when
    any of its addresses is private, and connects to an address it checked, so that a
    second resolution (DNS rebinding) cannot send the connection elsewhere. TLS still
    verifies the URL's host name: the connection layer passes it, not the address."""

    def __init__(self, allow_private: bool) -> None:
        self._backend = httpcore2.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if self._allow_private:
            return await self._backend.connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        try:
            with anyio.fail_after(timeout):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host!r} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        refused = [address for address in addresses if _private_address(address)]
        if refused:
            raise httpcore2.ConnectError(
                f"refused to connect to {host!r}: it resolves to {refused[0]}, a private, "
                "loopback or link-local address"
            )
        failure: Exception = httpcore2.ConnectError(f"{host!r} resolves to no address")
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("a request's MCP server is never a local socket")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _CappedStream(httpx2.AsyncByteStream):
    """A reply's body, failing once it passes ``limit`` bytes."""

    def __init__(self, stream: AsyncIterable[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        with _mapped():
            async for chunk in self._stream:
                size += len(chunk)
                if size > self._limit:
                    raise _ReplyTooLarge(self._limit)
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _mapped():
                await close()


class _GuardedTransport(httpx2.AsyncBaseTransport):
    """httpx2's default transport, but on a connection pool whose connections the address
    guard makes, with every reply's body counted against ``max_reply_bytes``."""

    def __init__(self, *, allow_private: bool, max_reply_bytes: int) -> None:
        self._limit = max_reply_bytes
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            network_backend=_AddressGuard(allow_private),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        sent = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped():
            answer = await self._pool.handle_async_request(sent)
        assert isinstance(answer.stream, AsyncIterable)
        announced = dict(answer.headers).get(b"content-length", b"")
        if announced.isdigit() and int(announced) > self._limit:
            with contextlib.suppress(Exception):
                await answer.aclose()
            raise _ReplyTooLarge(self._limit)
        return httpx2.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_CappedStream(answer.stream, self._limit),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _guarded_client(
    server: McpHttpServer, policy: DeclaredMcpPolicy, **options: Any
) -> httpx2.AsyncClient:
    """The HTTP client of a request's own server: its headers, the policy's bounds;
    ``options`` go to ``httpx2.AsyncClient``."""
    return httpx2.AsyncClient(
        headers=dict(server.headers),
        timeout=httpx2.Timeout(policy.timeout),
        transport=_GuardedTransport(
            allow_private=policy.allow_private_addresses, max_reply_bytes=policy.max_reply_bytes
        ),
        # The MCP SDK follows same-origin redirects itself, up to max_redirects: none.
        follow_redirects=False,
        max_redirects=0,
        # No proxy from the environment: it would stand between the guard and the server.
        trust_env=False,
        **options,
    )


@attrs.define
class _StatusNote:
    """The last error status an HTTP server answered: the MCP SDK reports a refusal (a
    401 of a wrong key) only as "an error response", and which one is what a client needs
    to know."""

    status: int | None = None

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code >= 300:
            self.status = response.status_code

    def told(self, reason: str) -> str:
        if self.status is None or str(self.status) in reason:
            return reason
        return f"{reason} (HTTP {self.status})"


# The executor.


def _entry(tool: mcp.types.Tool) -> dict[str, Any]:
    """A listed MCP tool in OpenAI's ``McpListToolsTool`` shape."""
    annotations = tool.annotations
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema or {"type": "object", "properties": {}},
        "annotations": (
            annotations.model_dump(by_alias=True, exclude_none=True, mode="json")
            if annotations is not None
            else None
        ),
    }


def _hint(entry: Mapping[str, Any], name: str) -> bool:
    annotations = entry.get("annotations")
    return isinstance(annotations, Mapping) and annotations.get(name) is True


def _reason(exc: BaseException) -> str:
    cause = _leaf(exc)
    error = getattr(cause, "error", None)
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message  # an MCPError: the server's (or the SDK's) own words
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


@attrs.define(eq=False)
class _Declared:
    """One declared server and what this executor knows of it."""

    declaration: McpDeclaration
    server: McpServer
    guarded: bool
    listing: list[dict[str, Any]] | None = None
    failure: str | None = None
    client: mcp.Client | None = None
    lock: anyio.Lock = attrs.field(factory=anyio.Lock)
    note: _StatusNote = attrs.field(factory=_StatusNote)

    @property
    def label(self) -> str:
        return self.declaration.server_label

    @property
    def allowed(self) -> list[dict[str, Any]]:
        return [
            tool
            for tool in self.listing or ()
            if isinstance(tool.get("name"), str) and tool_allowed(self.declaration, tool)
        ]


class DeclaredMcpTools:
    """A :class:`~responseloop.abc.ToolListingExecutor` of the MCP servers one request
    declares, placed by the operator's :class:`DeclaredMcpPolicy`.

    The connections live as long as the ``async with`` block (enter and leave it in the
    same task, as any anyio task group); connecting is lazy::

        async with DeclaredMcpTools(declarations, policy, listed=earlier) as tools:
            schemas = await tools.tools(ctx)

    :meth:`tools` connects to every declared server whose tools the conversation has not
    listed before (``listed``), concurrently, and lists them; a server that fails is left
    out, its failure kept for :meth:`list_server_tools`. A server whose listing came from
    ``listed`` is connected to only when one of its tools is called. Needs the ``mcp``
    extra.

    Args:
        declarations: the request's ``mcp`` tools, as parsed.
        policy: where they run; each is checked against it (:meth:`DeclaredMcpPolicy.check`).
        listed: the tools each server listed earlier in the conversation, by label
            (:func:`~responseloop.openresponses.conversation_listings`).

    Raises:
        InvalidRequestError: a declaration the policy refuses, or two with one label.
    """

    def __init__(
        self,
        declarations: Sequence[McpDeclaration],
        policy: DeclaredMcpPolicy,
        listed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.policy = policy
        self._servers: dict[str, _Declared] = {}
        listed = listed or {}
        for declaration in declarations:
            policy.check(declaration)
            label = declaration.server_label
            if label in self._servers:
                raise InvalidRequestError(
                    f"two mcp tools declare server_label {label!r}",
                    param=f"{declaration.param}.server_label",
                )
            server, guarded = policy._server_for(declaration)
            entry = _Declared(declaration, server, guarded)
            if label in listed:
                entry.listing = [dict(tool) for tool in listed[label]]
            self._servers[label] = entry
        self._stack: AsyncExitStack | None = None
        self._group: TaskGroup | None = None
        self._closing: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<DeclaredMcpTools servers={list(self._servers)!r}>"

    @property
    def server_labels(self) -> tuple[str, ...]:
        """The declared servers' labels, in declaration order."""
        return tuple(self._servers)

    async def __aenter__(self) -> DeclaredMcpTools:
        if self._stack is not None:
            raise RuntimeError("this DeclaredMcpTools is already open")
        try:
            import mcp  # noqa: F401
        except ImportError as exc:
            raise ImportError(MCP_MISSING) from exc
        async with AsyncExitStack() as stack:
            self._closing = anyio.Event()
            self._group = await stack.enter_async_context(anyio.create_task_group())
            # Runs first on the way out: the holding tasks then close their connections.
            stack.callback(self._closing.set)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack, self._group = self._stack, None, None
        for entry in self._servers.values():
            entry.client = None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, traceback)

    async def aclose(self) -> None:
        """Close every connection (as leaving the ``async with`` block does)."""
        await self.__aexit__(None, None, None)

    def _open(self) -> TaskGroup:
        if self._group is None:
            raise RuntimeError(
                "DeclaredMcpTools is not open: use it inside 'async with DeclaredMcpTools(...)'"
            )
        return self._group

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """The allowed tools of every server that listed (now or in ``listed``).

        Raises:
            ToolExecutionError: two servers offer a tool of the same name.
        """
        offered = await self._offered()
        return [
            ToolSchema(
                name=tool["name"],
                description=tool.get("description") or "",
                parameters=tool.get("input_schema") or {"type": "object", "properties": {}},
                idempotent=_hint(tool, "idempotentHint"),
                server_label=entry.label,
                requires_approval=needs_approval(entry.declaration, tool),
            )
            for tool, entry in offered.values()
        ]

    async def list_server_tools(self, server_label: str, ctx: RequestContext) -> JSON:
        """The tools server ``server_label`` offers the model (after ``allowed_tools``),
        as ``{"tools": [{"name", "description", "input_schema", "annotations"}, …]}``.

        Raises:
            ToolNotFound: no server of that label was declared.
            ToolExecutionError: the server could not be reached or listed.
        """
        self._open()
        entry = self._servers.get(server_label)
        if entry is None:
            raise ToolNotFound(server_label)
        await self._list(entry)
        if entry.failure is not None:
            raise ToolExecutionError(entry.failure)
        tools: list[JSON] = [dict(tool) for tool in entry.allowed]
        return {"tools": tools}

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """Call tool ``name`` on the server offering it.

        Raises:
            ToolNotFound: no declared server offers it, or ``allowed_tools`` hides it.
            ToolArgumentsError: the arguments are not a JSON object.
            ToolTimeout: the server did not answer in time.
            ToolExecutionError: the tool reported an error, the server could not be
                reached, or the connection failed.
        """
        offered = await self._offered()
        if name not in offered:
            raise ToolNotFound(name)
        entry = offered[name][1]
        client = await self._client(entry)
        return await _call_tool(client, name, name, arguments, entry.server.timeout)

    async def _offered(self) -> dict[str, tuple[dict[str, Any], _Declared]]:
        """Every allowed tool by name, with its server; lists the servers not listed yet."""
        self._open()
        pending = [e for e in self._servers.values() if e.listing is None and e.failure is None]
        if pending:
            async with anyio.create_task_group() as group:
                for entry in pending:
                    group.start_soon(self._list, entry)
        offered: dict[str, tuple[dict[str, Any], _Declared]] = {}
        for entry in self._servers.values():
            for tool in entry.allowed:
                name = tool["name"]
                if name in offered:
                    raise ToolExecutionError(
                        f"MCP servers {offered[name][1].label!r} and {entry.label!r} both "
                        f"offer a tool named {name!r}; leave it out of one's allowed_tools"
                    )
                offered[name] = (tool, entry)
        return offered

    async def _list(self, entry: _Declared) -> None:
        """Give ``entry`` a listing, or its failure (never raises)."""
        async with entry.lock:
            if entry.listing is not None or entry.failure is not None:
                return
            try:
                entry.client, tools = await self._connect(entry, listing=True)
                entry.listing = [_entry(tool) for tool in tools]
            except ToolExecutionError as exc:
                entry.failure = f"could not list the tools of MCP server {entry.label!r}: {exc}"

    async def _client(self, entry: _Declared) -> mcp.Client:
        """``entry``'s connection, made now if its listing came from ``listed``."""
        async with entry.lock:
            if entry.client is None:
                if entry.failure is not None:
                    raise ToolExecutionError(entry.failure)
                try:
                    entry.client, _ = await self._connect(entry, listing=False)
                except ToolExecutionError as exc:
                    entry.failure = f"could not connect to MCP server {entry.label!r}: {exc}"
                    raise ToolExecutionError(entry.failure) from None
            return entry.client

    async def _connect(
        self, entry: _Declared, *, listing: bool
    ) -> tuple[mcp.Client, list[mcp.types.Tool]]:
        """Connect (and list) within the server's timeout, the connection held open by a
        task of the executor's own group until it closes.

        Raises:
            ToolExecutionError: the reason, without the server's address or credentials.
        """
        group = self._open()
        timeout = entry.server.timeout
        connected: tuple[mcp.Client, list[mcp.types.Tool]] | None = None
        try:
            with anyio.move_on_after(timeout):
                connected = await group.start(self._hold, entry, listing)
        except Exception as exc:
            raise ToolExecutionError(entry.note.told(_reason(exc))) from exc
        if connected is None:
            raise ToolExecutionError(f"timed out after {timeout}s")
        return connected

    async def _hold(
        self,
        entry: _Declared,
        listing: bool,
        *,
        task_status: TaskStatus[
            tuple[mcp.Client, list[mcp.types.Tool]]
        ] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        import mcp

        assert self._closing is not None
        closing = self._closing
        started = False
        try:
            async with AsyncExitStack() as stack:
                http = None
                max_event = None
                hooks = {"response": [entry.note]}
                if entry.guarded:
                    assert isinstance(entry.server, McpHttpServer)
                    http = _guarded_client(entry.server, self.policy, event_hooks=hooks)
                    max_event = self.policy.max_reply_bytes
                elif isinstance(entry.server, McpHttpServer):
                    http = _http_client(entry.server, event_hooks=hooks)
                client = await stack.enter_async_context(
                    _client(mcp, entry.server, stack, http=http, max_sse_event_size=max_event)
                )
                tools = await _list_tools(client) if listing else []
                task_status.started((client, tools))
                started = True
                await closing.wait()
        except Exception as exc:
            if not started:
                raise
            # The connection ended while held (the server went away): its calls fail on
            # their own; this task must not take the executor's group down with it.
            logger.debug("MCP server %r disconnected: %s", entry.label, type(_leaf(exc)).__name__)
