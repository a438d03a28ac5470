"""AiohttpClient: an :class:`~responseloop.abc.HttpClient` straight over aiohttp, for
asyncio hosts at high concurrency (extra ``aiohttp``).

httpx2's pool does work for every connection it holds on every request, so its cost per
call grows with the number of connections; aiohttp's does not. Wrapping aiohttp in httpx2
objects (:func:`aiohttp_transport`) kept most of httpx2's cost per call; this client sends
with ``aiohttp.ClientSession`` itself and shares the rest with
:class:`~responseloop.HttpxClient` (the call's deadline, the retries, the reply bounds,
:class:`~responseloop.http._sse.SSEDecoder`), so both fail, retry and time out alike.
aiohttp runs on asyncio only: under trio a call raises :class:`RuntimeError` saying so.

Request headers (the bearer key among them) are never logged.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import anyio
import anyio.lowlevel
import httpx2

from .._sse import SSEDecoder
from ..abc._http import HttpRequest, HttpResponse
from ..abc._protocols import OnServerSentEvent
from ..exceptions import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from ..observe._observer import LoopObserver
from ._calls import DEFAULT_MAX_REPLY_BYTES, RetryingCalls, Sleep, _ends, logger
from ._httpx import DEFAULT_LIMITS, retry_after_seconds
from ._retry import RetryPolicy

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - the extra is installed in the test suite
    raise ImportError(
        "responseloop.http.aiohttp needs the aiohttp extra: pip install 'responseloop[aiohttp]'"
    ) from exc

__all__ = ["AiohttpClient", "aiohttp_transport"]

_FINISH_GRACE = 1.0

# As httpx2 encodes a ``json=`` body; one encoder for every call, not one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# The defaults a request's own headers override (the same header names as given there).
_JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
_STREAM_HEADERS = {"Accept": "text/event-stream", "Content-Type": "application/json"}


class AiohttpClient(RetryingCalls):
    """An :class:`~responseloop.abc.HttpClient` over ``aiohttp.ClientSession``: the choice
    for many concurrent responses on asyncio (:class:`~responseloop.HttpxClient` stays the
    default, and the one that runs on trio).

    Args:
        session: the ``aiohttp.ClientSession`` to send with. Without one, a session with
            its own pool (``max_connections`` connections, idle ones kept
            ``keepalive_expiry`` seconds) is made on the first call, owned and closed
            with this client.
        owns_session: close an injected ``session`` when this client is closed.
        max_connections, keepalive_expiry, connect_timeout: the pool of a session made
            here (defaults as :data:`~responseloop.http.DEFAULT_LIMITS`; 10 s to connect).
        retry, sleep, correlation_header, default_timeout, observer, max_reply_bytes,
            reply_timeout: as for :class:`~responseloop.HttpxClient`.

    Use it as ``async with AiohttpClient() as http: ...``.
    """

    _retryable_causes = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        owns_session: bool = False,
        max_connections: int = DEFAULT_LIMITS.max_connections or 1000,
        keepalive_expiry: float = DEFAULT_LIMITS.keepalive_expiry or 30.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        correlation_header: str = "X-Request-ID",
        default_timeout: float | None = 600.0,
        observer: LoopObserver | None = None,
        max_reply_bytes: int | None = DEFAULT_MAX_REPLY_BYTES,
        reply_timeout: float | None = None,
    ) -> None:
        super().__init__(
            retry=retry,
            sleep=sleep,
            correlation_header=correlation_header,
            default_timeout=default_timeout,
            observer=observer,
            max_reply_bytes=max_reply_bytes,
            reply_timeout=reply_timeout,
        )
        self._session = session
        self.owns_session = owns_session if session is not None else True
        self._pool = (max_connections, keepalive_expiry, connect_timeout)
        # Checked on the first call only: a session is bound to the event loop it first
        # ran on, so a client that once ran on asyncio cannot move to trio anyway.
        self._on_asyncio = False

    def __repr__(self) -> str:
        owner = "owned" if self.owns_session else "borrowed"
        return f"<AiohttpClient {owner} session, {self.retry.attempts} attempts>"

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session calls go through (``None`` until the first call makes one)."""
        return self._session

    async def aclose(self) -> None:
        """Close the session if this client owns it."""
        if self.owns_session and self._session is not None:
            await self._session.close()

    async def execute(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` and return the upstream's 2xx response, retrying per policy:
        as :meth:`HttpxClient.execute <responseloop.HttpxClient.execute>`."""
        session = self._session_here()
        return await self._call(request, lambda r: self._execute_once(session, r))

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        """Send ``request`` and hand each server-sent event of the answer to ``on_event``:
        as :meth:`HttpxClient.stream <responseloop.HttpxClient.stream>`."""
        session = self._session_here()
        limit = self._timeout_of(request)
        with self._call_scope(limit) as deadline:
            response, reply_ends = await self._with_retries(
                request, lambda r: self._open_stream(session, r), _ends(deadline)
            )
            try:
                with self._reply_bound(reply_ends):
                    await self._read_stream(response, on_event)
            finally:
                response.close()
            return HttpResponse(response.status, b"", _headers(response))
        raise self._timed_out(request, limit)

    def _session_here(self) -> aiohttp.ClientSession:
        if self._on_asyncio and self._session is not None:
            return self._session
        backend = _backend()
        if backend != "asyncio":
            raise RuntimeError(
                f"AiohttpClient runs on asyncio only, not {backend}: use HttpxClient under trio"
            )
        self._on_asyncio = True
        if self._session is None:
            limit, keepalive, connect = self._pool
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=keepalive),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect),
            )
        return self._session

    async def _send(
        self, session: aiohttp.ClientSession, request: HttpRequest, *, stream: bool
    ) -> aiohttp.ClientResponse:
        headers = {**(_STREAM_HEADERS if stream else _JSON_HEADERS), **request.headers}
        if request.correlation_id is not None:
            headers[self.correlation_header] = request.correlation_id
        body = _ENCODER.encode(request.json).encode()
        try:
            return await session.request(request.method, request.url, data=body, headers=headers)
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise UpstreamConnectionError(f"the upstream URL is invalid: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamConnectionError(
                f"could not reach the upstream at {_host(request.url)} ({type(exc).__name__})"
            ) from exc

    async def _execute_once(
        self, session: aiohttp.ClientSession, request: HttpRequest
    ) -> HttpResponse:
        with self._reply_bound(self._reply_ends()):
            response = await self._send(session, request, stream=False)
            try:
                content = await self._read_capped(response)
            finally:
                response.release()
        if not 200 <= response.status < 300:
            raise _status_error(response, content)
        return HttpResponse(response.status, content, _headers(response))

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        declared = response.headers.get("content-length", "")
        parts: list[bytes] = []
        size = 0
        try:
            if declared.isdigit() and response.headers.get("content-encoding") is None:
                # Its length is known and within the cap: read in one go (a body cut short
                # of it fails as ClientPayloadError, retried like any cut reply).
                self._count_reply(int(declared))
                return await response.read()
            async for data in response.content.iter_any():
                size += len(data)
                self._count_reply(size)
                parts.append(data)
        except UpstreamError:
            response.close()  # cut off: the connection is not reused
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamConnectionError(
                f"the upstream cut its reply ({type(exc).__name__})"
            ) from exc
        return b"".join(parts)

    async def _open_stream(
        self, session: aiohttp.ClientSession, request: HttpRequest
    ) -> tuple[aiohttp.ClientResponse, float]:
        reply_ends = self._reply_ends()
        with self._reply_bound(reply_ends):
            response = await self._send(session, request, stream=True)
            if 200 <= response.status < 300:
                return response, reply_ends
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                response.release()
        raise _status_error(response, body)

    async def _read_stream(
        self, response: aiohttp.ClientResponse, on_event: OnServerSentEvent
    ) -> None:
        content_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if content_type.lower() != "text/event-stream":
            raise UpstreamProtocolError(
                f"the upstream answered a streamed call with {content_type or 'no content type'!r}"
                ", not text/event-stream"
            )
        decoder = SSEDecoder()
        size = 0
        try:
            async for data in response.content.iter_any():
                size += len(data)
                self._count_reply(size)
                for event in decoder.feed(data):
                    if await on_event(event):
                        await _finish(response)
                        return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamConnectionError(
                f"the upstream cut the stream ({type(exc).__name__})"
            ) from exc


async def _finish(response: aiohttp.ClientResponse) -> None:
    """Read the end of a body after its last event, so the connection returns to the pool;
    one kept open past :data:`_FINISH_GRACE` seconds is dropped instead."""
    with anyio.move_on_after(_FINISH_GRACE):
        try:
            async for _ in response.content.iter_any():
                pass
        except (aiohttp.ClientError, TimeoutError):
            logger.debug("the stream broke after its last event; the answer was complete")
        else:
            response.release()


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The response's headers as :class:`~responseloop.HttpxClient` gives them: names in
    lower case, repeated ones joined with ``", "``."""
    found: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        found[key] = f"{found[key]}, {value}" if key in found else value
    return found


def _host(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).hostname or url
    except ValueError:
        return url


def _status_error(response: aiohttp.ClientResponse, body: bytes) -> UpstreamError:
    return UpstreamStatusError(
        response.status,
        body.decode("utf-8", errors="replace"),
        retry_after=retry_after_seconds(response.headers.get("Retry-After"), time.time()),
    )


def aiohttp_transport(limits: httpx2.Limits = DEFAULT_LIMITS) -> httpx2.AsyncBaseTransport:
    """An httpx2 transport that sends over aiohttp (deprecated: use :class:`AiohttpClient`,
    which sends over aiohttp directly and costs about half the CPU per call).

    It needs ``httpx-aiohttp``, which the ``aiohttp`` extra no longer installs (it brings
    a second HTTP stack, httpx and httpcore, beside httpx2)::

        http = HttpxClient.create(transport=aiohttp_transport())

    ``limits.max_connections`` bounds the pool and ``limits.keepalive_expiry`` how long an
    idle connection is kept. A request made under trio raises :class:`RuntimeError`.

    Raises:
        ImportError: ``httpx-aiohttp`` is not installed (``pip install httpx-aiohttp``).
    """
    try:
        from httpx_aiohttp.httpx2 import AiohttpTransport
    except ImportError as exc:
        raise ImportError(
            "aiohttp_transport needs httpx-aiohttp (pip install 'httpx-aiohttp[httpx2]'); "
            "AiohttpClient sends over aiohttp without it"
        ) from exc
    return _AsyncioOnly(AiohttpTransport(limits=limits))


class _AsyncioOnly(httpx2.AsyncBaseTransport):
    """Refuses requests made outside asyncio with a clear error, instead of aiohttp's own
    failure deep inside its connector."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        backend = _backend()
        if backend != "asyncio":
            raise RuntimeError(
                f"the aiohttp transport runs on asyncio only, not {backend}: use HttpxClient's"
                " default httpx2 transport under trio"
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _backend() -> str:
    # anyio names its backends by module: anyio._backends._asyncio / ._trio.
    return anyio.lowlevel.current_token().backend_class.__module__.rpartition("._")[2]
