"""HttpxClient: the default :class:`~responseloop.abc.HttpClient`, on httpx2.

It sends the loop's model calls with a pooled ``httpx2.AsyncClient``, retries what is worth
retrying (:class:`~responseloop.RetryPolicy`, driven by tenacity), and reads streamed calls
with :class:`~responseloop.http._sse.SSEDecoder`, handing each event on as it arrives. It
knows no upstream format: validating replies and reassembling streams is the
:class:`~responseloop.abc.UpstreamDialect`'s part.

Ownership is explicit: ``HttpxClient()`` and :meth:`HttpxClient.create` build an
``httpx2.AsyncClient`` that the ``HttpxClient`` owns and closes (``async with`` or
:meth:`~HttpxClient.aclose`); ``HttpxClient(client)`` borrows one the host owns and never
closes it.

Request headers (the bearer key among them) are never logged.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import AsyncGenerator

import anyio
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
from ._calls import DEFAULT_MAX_REPLY_BYTES, RetryingCalls, Sleep, _ends
from ._calls import shown_url as _shown_url
from ._retry import RetryPolicy

__all__ = [
    "DEFAULT_LIMITS",
    "HttpxClient",
    "retry_after_seconds",
]

logger = logging.getLogger("responseloop.http")

DEFAULT_LIMITS = httpx2.Limits(
    max_connections=1000, max_keepalive_connections=500, keepalive_expiry=30.0
)
"""Pool limits of :meth:`HttpxClient.create`: every in-flight model call holds one
connection, so hundreds of concurrent responses need hundreds of connections, and keeping
them alive between the calls of a response saves a handshake per step."""

_FINISH_GRACE = 1.0

# httpx2's own encoding of a ``json=`` body, with one encoder for every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# The defaults a request's own headers override, by whether it streams; httpx2 adds
# Content-Length.
_BODILESS_HEADERS = {False: {"Accept": "application/json"}, True: {"Accept": "text/event-stream"}}
_HEADERS = {
    stream: {**accept, "Content-Type": "application/json"}
    for stream, accept in _BODILESS_HEADERS.items()
}


class HttpxClient(RetryingCalls):
    """The default :class:`~responseloop.abc.HttpClient`: upstream model calls over httpx2.

    Args:
        client: the ``httpx2.AsyncClient`` to send with; its own timeout and limits apply
            unless a request sets its ``timeout``. Without one, a client with the default
            pool (:data:`DEFAULT_LIMITS`) is created and owned, as :meth:`create` does.
        owns_client: close an injected ``client`` when this ``HttpxClient`` is closed.
            ``False`` (the default) leaves it to its owner.
        retry: when and how long to wait before trying again (default :class:`RetryPolicy`).
        sleep: how to wait between tries (default ``anyio.sleep``).
        correlation_header: the header carrying :attr:`HttpRequest.correlation_id`, so the
            upstream's logs line up with the loop's steps.
        default_timeout: seconds a call may take in all (retries and waits included) when
            the request sets no ``timeout``; ``None`` for no overall deadline.
        observer: handed an ``UPSTREAM_RETRY`` :class:`~responseloop.abc.LoopEvent` for
            every retry, for example the :class:`~responseloop.observe.LoopObserver` the
            loop reports to; its failures are logged and ignored.
        max_reply_bytes: the most bytes one reply's body may have (decoded; all the
            events of a stream together): a longer one is cut off there and the call
            fails with :class:`~responseloop.exceptions.UpstreamProtocolError`, not retried
            (``None``: no cap). Default :data:`DEFAULT_MAX_REPLY_BYTES`.
        reply_timeout: seconds one try may take, from sending the request to the last
            byte of its reply, streamed or not: past it the call fails with
            :class:`~responseloop.exceptions.UpstreamConnectionError`, not retried
            (``None``, the default: only the call's overall ``timeout`` bounds it).

    Use :meth:`create` for a client with its own connection pool::

        async with HttpxClient.create(retry=RetryPolicy(attempts=5)) as http:
            outcome = await run_response_loop(..., http_client=http)
    """

    _retryable_causes = (httpx2.NetworkError, httpx2.TimeoutException, httpx2.RemoteProtocolError)

    def __init__(
        self,
        client: httpx2.AsyncClient | None = None,
        *,
        owns_client: bool = False,
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
        if client is None:
            client = _pooled_client(DEFAULT_LIMITS, 10.0, default_timeout, None)
            owns_client = True
        self.client = client
        self.owns_client = owns_client

    @classmethod
    def create(
        cls,
        *,
        limits: httpx2.Limits = DEFAULT_LIMITS,
        connect_timeout: float = 10.0,
        default_timeout: float | None = 600.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        correlation_header: str = "X-Request-ID",
        transport: httpx2.AsyncBaseTransport | None = None,
        observer: LoopObserver | None = None,
        max_reply_bytes: int | None = DEFAULT_MAX_REPLY_BYTES,
        reply_timeout: float | None = None,
    ) -> HttpxClient:
        """A client with its own ``httpx2.AsyncClient``, closed with this object.

        Args:
            limits: the connection pool's size (default :data:`DEFAULT_LIMITS`).
            connect_timeout: seconds to establish a connection.
            default_timeout: as for the constructor; also the read/write/pool timeout of
                each try when the request sets none.
            transport: send through this transport instead of the network (for example
                ``httpx2.MockTransport`` in tests).
            max_reply_bytes, reply_timeout: as for the constructor.

        Use it as ``async with HttpxClient.create() as http: ...``.
        """
        client = _pooled_client(limits, connect_timeout, default_timeout, transport)
        return cls(
            client,
            owns_client=True,
            retry=retry,
            sleep=sleep,
            correlation_header=correlation_header,
            default_timeout=default_timeout,
            observer=observer,
            max_reply_bytes=max_reply_bytes,
            reply_timeout=reply_timeout,
        )

    def __repr__(self) -> str:
        owner = "owned" if self.owns_client else "borrowed"
        return f"<HttpxClient {owner} client, {self.retry.attempts} attempts>"

    async def aclose(self) -> None:
        """Close the ``httpx2.AsyncClient`` if this object owns it."""
        if self.owns_client:
            await self.client.aclose()

    async def execute(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` and return the upstream's 2xx response, retrying per policy.

        The request's ``timeout`` (else ``default_timeout``) bounds the whole call, waits
        included; a retry whose wait would outlast it is not made, and the upstream's last
        error is raised at once instead of a timeout.

        Raises:
            UpstreamStatusError: a non-2xx status that is not retried, or the last one when
                the retries ran out (``status``, ``body`` and ``retry_after`` set).
            UpstreamConnectionError: the upstream could not be reached, or the call ran
                past its timeout.
        """
        return await self._call(request, self._execute_once)

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        """Send ``request`` and hand each server-sent event of the answer to ``on_event``.

        Each event (an end marker such as ``[DONE]`` included) goes to ``on_event`` as soon
        as it is read; when ``on_event`` returns ``True`` the rest of the body is not
        handed on (it is read for a moment, so the connection returns to the pool). The
        return value is the 2xx response's status and headers, with no body. Opening the
        stream is retried like :meth:`execute`; once an event has been handed on, a
        failure is not retried (the caller has already acted on it).

        Raises:
            UpstreamStatusError: as for :meth:`execute`.
            UpstreamConnectionError: unreachable, timed out, or the connection was cut
                mid-stream.
            UpstreamProtocolError: the answer is not an event stream, or not decodable.
        """
        limit = self._timeout_of(request)
        with self._call_scope(limit) as deadline:
            response, reply_ends = await self._with_retries(
                request, self._open_stream, _ends(deadline)
            )
            try:
                with self._reply_bound(reply_ends, str(request.url)):
                    await self._read_stream(response, on_event)
            finally:
                await response.aclose()
            return HttpResponse(response.status_code, b"", dict(response.headers))
        raise self._timed_out(request, limit)

    async def _read_stream(self, response: httpx2.Response, on_event: OnServerSentEvent) -> None:
        content_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if content_type.lower() != "text/event-stream":
            raise UpstreamProtocolError(
                f"the upstream answered a streamed call with {content_type or 'no content type'!r}"
                ", not text/event-stream"
            )
        decoder = SSEDecoder()
        body = response.aiter_bytes()  # decoded: a proxy may gzip the event stream
        size = 0
        try:
            async for data in body:
                size += len(data)
                self._count_reply(size)
                for event in decoder.feed(data):
                    if await on_event(event):
                        await _finish(body)
                        return
        except httpx2.TransportError as exc:
            raise UpstreamConnectionError(
                f"the upstream at {shown_url(response.request.url)} cut the stream "
                f"({type(exc).__name__})"
            ) from exc
        except httpx2.DecodingError as exc:
            raise UpstreamProtocolError(f"the upstream's stream is not decodable: {exc}") from exc
        finally:
            await _release(response, body)

    def _build(self, request: HttpRequest, *, stream: bool) -> httpx2.Request:
        try:
            return self._build_request(request, stream=stream)
        except httpx2.InvalidURL as exc:
            # A misconfigured target fails the step like an unreachable upstream (and is
            # not retried), rather than escaping the loop as an httpx2 error.
            raise UpstreamConnectionError(f"the upstream URL is invalid: {exc}") from exc

    def _build_request(self, request: HttpRequest, *, stream: bool) -> httpx2.Request:
        if request.json is None:
            defaults, content = _BODILESS_HEADERS[stream], None
        else:
            # Encoded here, as httpx2 would encode ``json=``, but with one shared encoder.
            defaults, content = _HEADERS[stream], _ENCODER.encode(request.json).encode()
        headers = {**defaults, **request.headers}
        if request.correlation_id is not None:
            headers[self.correlation_header] = request.correlation_id
        if request.timeout is None:
            return self.client.build_request(
                request.method, request.url, content=content, headers=headers
            )
        return self.client.build_request(
            request.method,
            request.url,
            content=content,
            headers=headers,
            timeout=httpx2.Timeout(request.timeout),
        )

    async def _execute_once(self, request: HttpRequest) -> HttpResponse:
        with self._reply_bound(self._reply_ends(), str(request.url)):
            # Streamed from the socket, so the byte cap holds before the body is in memory.
            response = await self._send(self._build(request, stream=False), stream=True)
            content = await self._read_capped(response)
        if not response.is_success:
            raise _status_error(response, content)
        return HttpResponse(response.status_code, content, dict(response.headers))

    async def _read_capped(self, response: httpx2.Response) -> bytes:
        """The whole body of ``response``, refused once it passes ``max_reply_bytes``."""
        declared = response.headers.get("content-length", "")
        body = response.aiter_bytes()
        parts: list[bytes] = []
        size = 0
        try:
            if declared.isdigit() and response.headers.get("content-encoding") is None:
                # Its length is known and within the cap: read in one go (a body cut short
                # of it fails as a transport error, retried like any cut reply).
                self._count_reply(int(declared))
                return await response.aread()
            async for data in body:
                size += len(data)
                self._count_reply(size)
                parts.append(data)
        except httpx2.TransportError as exc:
            raise UpstreamConnectionError(
                f"the upstream at {shown_url(response.request.url)} cut its reply "
                f"({type(exc).__name__})"
            ) from exc
        except httpx2.DecodingError as exc:
            raise UpstreamProtocolError(f"the upstream's body is not decodable: {exc}") from exc
        finally:
            await _release(response, body)
        return b"".join(parts)

    async def _open_stream(self, request: HttpRequest) -> tuple[httpx2.Response, float]:
        reply_ends = self._reply_ends()
        with self._reply_bound(reply_ends, str(request.url)):
            response = await self._send(self._build(request, stream=True), stream=True)
            if response.is_success:
                return response, reply_ends
            try:
                body = await response.aread()
            except httpx2.TransportError:
                body = b""
            finally:
                await response.aclose()
        raise _status_error(response, body)

    async def _send(self, request: httpx2.Request, *, stream: bool) -> httpx2.Response:
        try:
            return await self.client.send(request, stream=stream)
        except httpx2.TransportError as exc:
            raise UpstreamConnectionError(
                f"could not reach the upstream at {shown_url(request.url)} ({type(exc).__name__})"
            ) from exc
        except httpx2.DecodingError as exc:
            raise UpstreamProtocolError(f"the upstream's body is not decodable: {exc}") from exc


def shown_url(url: str | httpx2.URL) -> str:
    """``url`` as an error message names it: without its userinfo and query, either of
    which may carry a secret."""
    return _shown_url(str(url))


def _pooled_client(
    limits: httpx2.Limits,
    connect_timeout: float,
    default_timeout: float | None,
    transport: httpx2.AsyncBaseTransport | None,
) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        limits=limits,
        timeout=httpx2.Timeout(default_timeout, connect=connect_timeout),
        transport=transport,
    )


def _status_error(response: httpx2.Response, body: bytes) -> UpstreamError:
    return UpstreamStatusError(
        response.status_code,
        body.decode("utf-8", errors="replace"),
        retry_after=retry_after_seconds(response.headers.get("Retry-After"), time.time()),
    )


async def _finish(body: AsyncGenerator[bytes, None]) -> None:
    """Read the end of a body after its last event (``[DONE]``), so the connection returns
    to the pool.

    The upstream ends the body right after its last event; one that keeps it open is given
    :data:`_FINISH_GRACE` seconds, after which the connection is dropped instead of reused
    (the answer is complete either way, so nothing here is an error).
    """
    with anyio.move_on_after(_FINISH_GRACE):
        try:
            async for _ in body:
                pass  # whatever an upstream sends after its last event is not part of the answer
        except (httpx2.TransportError, httpx2.DecodingError):
            logger.debug(
                "the stream broke after its last event; the answer was complete", exc_info=True
            )


async def _release(response: httpx2.Response, body: AsyncGenerator[bytes, None]) -> None:
    """Close a streamed response we may have stopped reading early.

    httpx2 reads a body through a chain of async generators and does not close the inner
    ones when the outer one is closed; trio then reports each as garbage collected
    unexhausted. Closing the connection first and then running the chain to its end (it
    ends at once, in an error about the closed connection) finishes every one of them.
    """
    await response.aclose()
    try:
        async for _ in body:
            pass
    except Exception:
        logger.debug("the abandoned stream ended in an error, as expected", exc_info=True)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds from ``now`` (a Unix time).

    Pure (``now`` is an argument); it lives here rather than in the pure ``_retry`` module
    because :mod:`email.utils`, which reads HTTP dates, imports :mod:`socket`.

    The header holds either a number of seconds or an HTTP date. ``None`` when it is
    absent or unreadable, so the policy's own backoff applies; a date in the past is 0.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # HTTP dates are GMT; a zoneless date is not one
    return max(0.0, when.timestamp() - now)
