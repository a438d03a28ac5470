"""Observers: how a host watches the loop (traces, metrics) without the loop knowing how.

The loop calls a :class:`LoopObserver` at a handful of points (a response starts and ends,
a step starts and ends, the upstream client retries). Tracing
(:class:`responseloop.observe.otel.OpenTelemetryObserver`) and metrics (:class:`MetricsObserver`)
are observers; a host binds them to its own backend. With no observer the loop calls a
null one, so nothing is imported and no work is done.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import anyio
import attrs

from ..abc._values import ChainStep, Complete, Fail, RequestContext, Scope, StepKind, StepState
from ..exceptions import UpstreamError, UpstreamStatusError

__all__ = [
    "CompositeObserver",
    "LoopMetrics",
    "LoopObserver",
    "MetricsObserver",
    "Outcome",
    "RetryObserver",
    "UpstreamRetry",
    "outcome_of",
]

logger = logging.getLogger("responseloop.observe")


class Outcome(enum.StrEnum):
    """How a response or a step ended, as a metric label or span attribute value."""

    COMPLETED = "completed"
    """It reached its result."""
    FAILED = "failed"
    """It ended with an error the loop recorded (a failed step, a cap, a deadline)."""
    CANCELLED = "cancelled"
    """The caller (or a deadline, for a step) cancelled it."""
    ERROR = "error"
    """An exception broke it off: a store failure, a lost lease."""


@attrs.frozen
class UpstreamRetry:
    """An upstream call failed and is about to be tried again.

    Attributes:
        step_id: the model-call step the call belongs to (the request's
            ``correlation_id``), or ``None`` for a call made outside the loop.
        attempt: the number of the attempt that failed (1 for the first).
        delay: seconds the client waits before the next attempt.
        error: why the attempt failed (its message never holds the request or its headers).
    """

    step_id: str | None
    attempt: int
    delay: float
    error: UpstreamError

    @property
    def status(self) -> int | None:
        """The upstream's HTTP status, or ``None`` for a connection failure."""
        return self.error.status if isinstance(self.error, UpstreamStatusError) else None


class RetryObserver(Protocol):
    """Protocol: told of each retry an upstream client makes (see
    :class:`responseloop.HttpxClient`'s ``observer``).

    It is called on the caller's task and must return promptly without blocking.
    """

    def upstream_retrying(self, retry: UpstreamRetry) -> None:
        """An upstream call failed and will be tried again after ``retry.delay`` seconds."""
        ...


class LoopObserver(RetryObserver, Protocol):
    """Protocol: watches the loop run, for tracing and metrics.

    Pass one as ``run_response_loop(observer=...)`` or ``ResponsesService(observer=...)``,
    and to :class:`responseloop.HttpxClient` to see its retries too. The loop calls the
    hooks in order on the task that does the work: ``response_started``, then for every
    step ``step_started`` and ``step_ended`` (steps of a fan-out on their own tasks,
    concurrently), then ``response_ended``. Every started response and step is ended, on
    every path, cancellation included.

    Hooks are synchronous and must return promptly without blocking; an exception from one
    is logged and otherwise ignored, so a broken observer never breaks a response.
    Payloads (tool arguments, messages) are handed over as the loop has them: an observer
    that exports them is responsible for what it exports.
    """

    def response_started(self, response_id: str, ctx: RequestContext) -> None:
        """This worker holds the response's lease and starts (or resumes) running it."""
        ...

    def response_ended(
        self, response_id: str, outcome: Complete | Fail | None, error: BaseException | None
    ) -> None:
        """The run ended with ``outcome``, or was broken off by ``error`` (a cancellation,
        a store failure, a lost lease); exactly one of the two is set."""
        ...

    def step_started(self, step: ChainStep, scope: Scope) -> None:
        """A recorded step starts running (``step.state`` is ``pending``, or
        ``processing``/``cancelled`` when a worker re-fires it after a takeover)."""
        ...

    def step_ended(self, step: ChainStep, scope: Scope, error: BaseException | None) -> None:
        """The step ended: ``step.state`` is ``completed`` (with ``response_payload``) or
        ``failed`` (with ``error``); or ``error`` is the exception that broke it off (then
        ``step`` is as it started)."""
        ...


def outcome_of(state: StepState | None, error: BaseException | None) -> Outcome:
    """Classify how a step or a response ended, for a metric label or a span attribute.

    ``state`` is the step's state (``None`` for a response, with ``error`` unset when it
    reached a decision). Must be called from inside the run, where the cancellation
    exception of the running event loop is known.
    """
    if error is not None:
        cancelled = isinstance(error, anyio.get_cancelled_exc_class())
        return Outcome.CANCELLED if cancelled else Outcome.ERROR
    if state is StepState.FAILED:
        return Outcome.FAILED
    if state is StepState.CANCELLED:
        return Outcome.CANCELLED
    return Outcome.COMPLETED


class CompositeObserver:
    """Calls several observers in turn, for example traces and metrics::

        observer = CompositeObserver(OpenTelemetryObserver(), MetricsObserver(metrics))

    Each hook goes to every observer, even when an earlier one raised; the first error is
    raised afterwards (the loop logs and ignores it).
    """

    def __init__(self, *observers: LoopObserver) -> None:
        self.observers: Sequence[LoopObserver] = observers

    def __repr__(self) -> str:
        return f"CompositeObserver{tuple(self.observers)!r}"

    def response_started(self, response_id: str, ctx: RequestContext) -> None:
        """Tell every observer."""
        self._each(lambda o: o.response_started(response_id, ctx))

    def response_ended(
        self, response_id: str, outcome: Complete | Fail | None, error: BaseException | None
    ) -> None:
        """Tell every observer."""
        self._each(lambda o: o.response_ended(response_id, outcome, error))

    def step_started(self, step: ChainStep, scope: Scope) -> None:
        """Tell every observer."""
        self._each(lambda o: o.step_started(step, scope))

    def step_ended(self, step: ChainStep, scope: Scope, error: BaseException | None) -> None:
        """Tell every observer."""
        self._each(lambda o: o.step_ended(step, scope, error))

    def upstream_retrying(self, retry: UpstreamRetry) -> None:
        """Tell every observer."""
        self._each(lambda o: o.upstream_retrying(retry))

    def _each(self, call: Callable[[LoopObserver], None]) -> None:
        first: Exception | None = None
        for observer in self.observers:
            try:
                call(observer)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first


class LoopMetrics(Protocol):
    """Protocol: the measurements :class:`MetricsObserver` reports, to bind to a metrics
    backend (Prometheus counters and histograms, OpenTelemetry instruments...).

    Each method is one instrument: a counter of responses by how they ended, a latency
    histogram of model calls, one of tool calls, a counter of upstream retries. Labels are
    bounded sets (outcomes, HTTP statuses) except ``tool``, the name the model called,
    which is one of the server-side tools unless the model invents names.
    Methods must return promptly; they are called on the loop's tasks.
    """

    def response_ended(self, outcome: Outcome, seconds: float) -> None:
        """A response's run ended, after ``seconds``."""
        ...

    def model_call_ended(self, outcome: Outcome, seconds: float) -> None:
        """A model-call step ended, after ``seconds`` (its retries included)."""
        ...

    def tool_call_ended(self, tool: str, outcome: Outcome, seconds: float) -> None:
        """A tool-call step (an agent tool's whole sub-loop included) ended."""
        ...

    def upstream_retried(self, status: int | None) -> None:
        """An upstream call is retried after a failure with ``status`` (``None`` for a
        connection failure)."""
        ...


class MetricsObserver:
    """A :class:`LoopObserver` that times responses and steps and counts how they end,
    reporting to a :class:`LoopMetrics` the host binds to its metrics backend.

    Args:
        metrics: where measurements go.
        clock: monotonic seconds (inject a fake one for exact durations in tests).
    """

    def __init__(self, metrics: LoopMetrics, *, clock: Callable[[], float] = time.perf_counter):
        self.metrics = metrics
        self._clock = clock
        self._started: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<MetricsObserver metrics={self.metrics!r} in_flight={len(self._started)}>"

    def response_started(self, response_id: str, ctx: RequestContext) -> None:
        """Start timing the response."""
        self._started[response_id] = self._clock()

    def response_ended(
        self, response_id: str, outcome: Complete | Fail | None, error: BaseException | None
    ) -> None:
        """Report the response's outcome and duration."""
        seconds = self._elapsed(response_id)
        ended = Outcome.FAILED if isinstance(outcome, Fail) else outcome_of(None, error)
        self.metrics.response_ended(ended, seconds)

    def step_started(self, step: ChainStep, scope: Scope) -> None:
        """Start timing the step."""
        self._started[step.id] = self._clock()

    def step_ended(self, step: ChainStep, scope: Scope, error: BaseException | None) -> None:
        """Report the step's outcome and latency."""
        seconds = self._elapsed(step.id)
        outcome = outcome_of(step.state, error)
        if step.kind is StepKind.MODEL_CALL:
            self.metrics.model_call_ended(outcome, seconds)
        else:
            self.metrics.tool_call_ended(step.tool_name or "", outcome, seconds)

    def upstream_retrying(self, retry: UpstreamRetry) -> None:
        """Count the retry."""
        self.metrics.upstream_retried(retry.status)

    def _elapsed(self, key: str) -> float:
        started = self._started.pop(key, None)
        return 0.0 if started is None else max(0.0, self._clock() - started)


class _NoObserver:
    """What the loop calls when nobody observes: nothing at all."""

    def response_started(self, response_id: str, ctx: RequestContext) -> None:
        pass

    def response_ended(
        self, response_id: str, outcome: Complete | Fail | None, error: BaseException | None
    ) -> None:
        pass

    def step_started(self, step: ChainStep, scope: Scope) -> None:
        pass

    def step_ended(self, step: ChainStep, scope: Scope, error: BaseException | None) -> None:
        pass

    def upstream_retrying(self, retry: UpstreamRetry) -> None:
        pass


NO_OBSERVER: LoopObserver = _NoObserver()


@attrs.frozen
class _Guarded:
    """An observer whose failures are logged, never raised into the loop."""

    inner: LoopObserver

    def response_started(self, response_id: str, ctx: RequestContext) -> None:
        self._call(lambda: self.inner.response_started(response_id, ctx))

    def response_ended(
        self, response_id: str, outcome: Complete | Fail | None, error: BaseException | None
    ) -> None:
        self._call(lambda: self.inner.response_ended(response_id, outcome, error))

    def step_started(self, step: ChainStep, scope: Scope) -> None:
        self._call(lambda: self.inner.step_started(step, scope))

    def step_ended(self, step: ChainStep, scope: Scope, error: BaseException | None) -> None:
        self._call(lambda: self.inner.step_ended(step, scope, error))

    def upstream_retrying(self, retry: UpstreamRetry) -> None:
        self._call(lambda: self.inner.upstream_retrying(retry))

    def _call(self, hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:
            logger.warning("observer %r failed; the loop goes on", self.inner, exc_info=True)


def observing(observer: LoopObserver | None) -> LoopObserver:
    """The observer the loop calls: a null one for ``None``, else ``observer`` guarded."""
    if observer is None:
        return NO_OBSERVER
    return observer if isinstance(observer, _Guarded) else _Guarded(observer)


def guarded_retries(observer: RetryObserver | None) -> Callable[[UpstreamRetry], None] | None:
    """``observer.upstream_retrying`` with its failures logged, never raised."""
    if observer is None:
        return None

    def notify(retry: UpstreamRetry) -> None:
        try:
            observer.upstream_retrying(retry)
        except Exception:
            logger.warning("retry observer %r failed", observer, exc_info=True)

    return notify
