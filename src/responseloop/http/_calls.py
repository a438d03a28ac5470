"""What every :class:`~responseloop.abc.HttpClient` of this package shares, whatever it
sends with: the call's deadline, the retries (:class:`~responseloop.RetryPolicy`, driven by
tenacity) and their logging and events, the per-try reply timeout and the byte cap.

:class:`~responseloop.HttpxClient` (httpx2) and
:class:`~responseloop.http.aiohttp.AiohttpClient` (aiohttp) build on it, so both retry,
time out and fail alike; each maps its own library's failures to the upstream errors and
names the causes worth another try.
"""

from __future__ import annotations

import logging
import math
import random
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import ClassVar, TypeVar

import anyio
import tenacity

from .._closing import AsyncClosing
from ..abc._events import LoopEvent, LoopEventKind
from ..abc._http import HttpRequest
from ..exceptions import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from ..observe._observer import LoopObserver, observing
from ._retry import RetryPolicy

__all__ = ["DEFAULT_MAX_REPLY_BYTES", "RetryingCalls", "Sleep"]

logger = logging.getLogger("responseloop.http")

Sleep = Callable[[float], Awaitable[None]]
"""Waits the given seconds between retries (``anyio.sleep``; tests pass a recorder)."""

DEFAULT_MAX_REPLY_BYTES = 32 * 1024 * 1024
"""The default cap on one upstream reply's body (32 MiB, decoded), streamed or not: far
above any real completion, low enough that an upstream that never ends its stream cannot
fill the memory."""

_T = TypeVar("_T")

_UNBOUNDED: AbstractContextManager[None] = nullcontext()
_NO_DEADLINE: AbstractContextManager[None] = nullcontext()


def _ends(deadline: anyio.CancelScope | None) -> float:
    return deadline.deadline if deadline is not None else math.inf


class RetryingCalls(AsyncClosing):
    """The deadline, retries and reply bounds of an upstream call (see the module).

    A subclass sets :attr:`_retryable_causes`: the exceptions of its HTTP library that
    another try may not meet, found as the ``__cause__`` of an
    :class:`~responseloop.exceptions.UpstreamConnectionError`.
    """

    _retryable_causes: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(
        self,
        *,
        retry: RetryPolicy | None,
        sleep: Sleep | None,
        correlation_header: str,
        default_timeout: float | None,
        observer: LoopObserver | None,
        max_reply_bytes: int | None,
        reply_timeout: float | None,
    ) -> None:
        if default_timeout is not None and not default_timeout > 0:
            raise ValueError(f"default_timeout must be positive, got {default_timeout!r}")
        if max_reply_bytes is not None and max_reply_bytes < 1:
            raise ValueError(f"max_reply_bytes must be positive, got {max_reply_bytes!r}")
        if reply_timeout is not None and not reply_timeout > 0:
            raise ValueError(f"reply_timeout must be positive, got {reply_timeout!r}")
        self.retry = retry if retry is not None else RetryPolicy()
        self._sleep: Sleep = sleep if sleep is not None else anyio.sleep
        self.correlation_header = correlation_header
        self.default_timeout = default_timeout
        self.observer = observer
        self._observing = observing(observer)
        self.max_reply_bytes = max_reply_bytes
        self.reply_timeout = reply_timeout

    def _reply_ends(self) -> float:
        """When a try starting now must have its whole reply (``inf``: no reply timeout)."""
        limit = self.reply_timeout
        return anyio.current_time() + limit if limit is not None else math.inf

    def _reply_bound(self, ends: float, url: str | None = None) -> AbstractContextManager[None]:
        """Bounds one try's reply by ``ends`` (see :meth:`_reply_ends`); without a reply
        timeout, a shared no-op, so a try enters no cancel scope it does not need."""
        if ends == math.inf:
            return _UNBOUNDED
        return self._bounded_reply(ends, url)

    @contextmanager
    def _bounded_reply(self, ends: float, url: str | None) -> Iterator[None]:
        with anyio.CancelScope(deadline=ends) as scope:
            yield
        if scope.cancelled_caught:
            # No cause to retry on: an upstream that stalled once gets no second wait.
            source = f" from {shown_url(url)}" if url is not None else ""
            raise UpstreamConnectionError(
                f"the upstream's reply took longer than {self.reply_timeout}s (reply_timeout)"
                + source
            )

    def _count_reply(self, size: int) -> None:
        limit = self.max_reply_bytes
        if limit is not None and size > limit:
            raise UpstreamProtocolError(
                f"the upstream's reply is longer than {limit} bytes (max_reply_bytes)"
            )

    async def _call(
        self, request: HttpRequest, attempt: Callable[[HttpRequest], Awaitable[_T]]
    ) -> _T:
        """``attempt`` with its retries, all of it bounded by the request's timeout (else
        ``default_timeout``); with neither, no cancel scope is entered."""
        limit = self._timeout_of(request)
        with self._call_scope(limit) as deadline:
            return await self._with_retries(request, attempt, _ends(deadline))
        raise self._timed_out(request, limit)

    def _call_scope(self, limit: float | None) -> AbstractContextManager[anyio.CancelScope | None]:
        """The scope bounding a whole call (a shared no-op when it has no time limit); a
        call whose scope was cancelled must raise :meth:`_timed_out` after it."""
        return anyio.move_on_after(limit) if limit is not None else _NO_DEADLINE

    @staticmethod
    def _timed_out(request: HttpRequest, limit: float | None) -> UpstreamConnectionError:
        return UpstreamConnectionError(
            f"the upstream call to {shown_url(request.url)} timed out after {limit}s"
        )

    def _timeout_of(self, request: HttpRequest) -> float | None:
        return request.timeout if request.timeout is not None else self.default_timeout

    async def _with_retries(
        self,
        request: HttpRequest,
        attempt: Callable[[HttpRequest], Awaitable[_T]],
        give_up_at: float,
    ) -> _T:
        policy = self.retry
        # The first try runs bare, so the common case pays nothing for the retry machinery;
        # tenacity takes over only after a failure worth retrying, replaying it as its own
        # first attempt so that every attempt is counted, waited for and logged alike.
        try:
            return await attempt(request)
        except UpstreamError as error:
            if policy.attempts == 1 or not self._worth_retrying(error):
                raise
            replay = [error]

        async def attempt_again(request: HttpRequest) -> _T:
            if replay:
                raise replay.pop()
            return await attempt(request)

        def should_retry(state: tenacity.RetryCallState) -> bool:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            return isinstance(error, UpstreamError) and self._worth_retrying(error)

        def wait(state: tenacity.RetryCallState) -> float:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            retry_after = error.retry_after if isinstance(error, UpstreamStatusError) else None
            # should_retry already refused a Retry-After beyond the policy's bound.
            delay = policy.delay(state.attempt_number, retry_after, random.random())
            return delay if delay is not None else 0.0

        def log_retry(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            # A status or a transport failure, never the upstream's words (which may echo
            # the prompt; the caller gets them in the error) nor a header (the key).
            said = (
                f"upstream answered HTTP {error.status}"
                if isinstance(error, UpstreamStatusError)
                else error
            )
            logger.warning(
                "upstream call failed, retrying in %.2fs (attempt %d of %d): %s",
                state.upcoming_sleep,
                state.attempt_number,
                policy.attempts,
                said,
                extra={"step_id": request.correlation_id, "attempt": state.attempt_number},
            )
            observer = self._observing
            if observer is not None and isinstance(error, UpstreamError):
                # The client does not know the response; the step id names the model call.
                observer.observe(
                    LoopEvent(
                        LoopEventKind.UPSTREAM_RETRY,
                        "",
                        step_id=request.correlation_id,
                        error=error,
                        attempt=state.attempt_number,
                        delay=state.upcoming_sleep or 0.0,
                    )
                )

        def stop(state: tenacity.RetryCallState) -> bool:
            # A wait that would outlast the call's deadline cannot end in an answer: give
            # up now with the upstream's own error rather than time out while waiting.
            out_of_time = (state.upcoming_sleep or 0.0) >= give_up_at - anyio.current_time()
            return state.attempt_number >= policy.attempts or out_of_time

        retrying = tenacity.AsyncRetrying(
            sleep=self._sleep,
            stop=stop,
            wait=wait,
            retry=should_retry,
            before_sleep=log_retry,
            reraise=True,
        )
        return await retrying(attempt_again, request)

    def _worth_retrying(self, error: UpstreamError) -> bool:
        policy = self.retry
        if isinstance(error, UpstreamStatusError):
            return error.status in policy.retry_statuses and (
                error.retry_after is None or error.retry_after <= policy.max_retry_after
            )
        if isinstance(error, UpstreamConnectionError):
            return isinstance(error.__cause__, self._retryable_causes)
        return False


def shown_url(url: str) -> str:
    """``url`` as an error message names it: without its userinfo and query, either of
    which may carry a secret."""
    try:
        parts = urllib.parse.urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        if not parts.scheme or not host:
            return "an invalid URL"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "an invalid URL"
