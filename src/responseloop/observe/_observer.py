"""Observers: how a host watches the loop (traces, metrics) without the loop knowing how.

The loop hands a :class:`LoopObserver` one :class:`~responseloop.abc.LoopEvent` at each
point of its lifecycle (a run starts and ends, a step starts and ends, the upstream client
retries). Tracing (:class:`responseloop.observe.otel.OpenTelemetryObserver`) and metrics
(:class:`MetricsObserver`) are observers that subscribe to the event kinds they need; a
host binds them to its own backend. With no observer the loop builds no event at all.
"""

from __future__ import annotations

import abc
import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import anyio

from ..abc._events import LoopEvent, LoopEventKind
from ..abc._steps import Fail, StepState

__all__ = [
    "CompositeObserver",
    "LifecycleDispatch",
    "LoopObserver",
    "MetricsObserver",
    "Outcome",
    "observing",
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


class LoopObserver(Protocol):
    """Protocol: watches the loop run, for tracing and metrics.

    Pass one as ``run_response_loop(observer=...)`` or ``ResponsesService(observer=...)``,
    and to :class:`responseloop.HttpxClient` to see its retries too. The loop hands it the
    lifecycle events in order, on the task that does the work: ``RUN_STARTED``, then for
    every step ``STEP_RUN_STARTED`` and ``STEP_RUN_ENDED`` (steps of a fan-out on their
    own tasks, concurrently), then ``RUN_ENDED``; the HTTP client adds ``UPSTREAM_RETRY``
    between a model call's start and end. Every started run and step is ended, on every
    path, cancellation included. An observer ignores the kinds it does not know, so new
    kinds can be added.

    ``observe`` is synchronous and must return promptly without blocking (unlike
    :meth:`~responseloop.abc.EventSink.emit`, it cannot slow the loop down); an exception
    from it is logged and otherwise ignored, so a broken observer never breaks a response.
    """

    def observe(self, event: LoopEvent) -> None:
        """Take one lifecycle event (see :class:`~responseloop.abc.LoopEventKind`)."""
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


def ended_as(event: LoopEvent) -> Outcome:
    """How the run (``RUN_ENDED``) or step (``STEP_RUN_ENDED``) of ``event`` ended."""
    if event.kind is LoopEventKind.RUN_ENDED and isinstance(event.outcome, Fail):
        return Outcome.FAILED
    state = event.step.state if event.step is not None else None
    return outcome_of(state, event.error)


class CompositeObserver:
    """Hands each event to several observers in turn, for example traces and metrics::

        observer = CompositeObserver(OpenTelemetryObserver(), OpenTelemetryMetrics())

    Each event goes to every observer, even when an earlier one raised; the first error is
    raised afterwards (the loop logs and ignores it).
    """

    def __init__(self, *observers: LoopObserver) -> None:
        self.observers: Sequence[LoopObserver] = observers

    def __repr__(self) -> str:
        return f"CompositeObserver{tuple(self.observers)!r}"

    def observe(self, event: LoopEvent) -> None:
        """Tell every observer."""
        first: Exception | None = None
        for observer in self.observers:
            try:
                observer.observe(event)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first


class LifecycleDispatch:
    """An observer that hands each lifecycle event to the method for its kind
    (``_run_started``, ``_run_ended``, ``_step_started``, ``_step_ended``,
    ``_upstream_retry``) and ignores every other kind."""

    def __init__(self) -> None:
        # Bound once: the loop calls observe for every step, so no look-up by name there.
        self._subscribed: Mapping[LoopEventKind, Callable[[LoopEvent], None]] = {
            LoopEventKind.RUN_STARTED: self._run_started,
            LoopEventKind.RUN_ENDED: self._run_ended,
            LoopEventKind.STEP_RUN_STARTED: self._step_started,
            LoopEventKind.STEP_RUN_ENDED: self._step_ended,
            LoopEventKind.UPSTREAM_RETRY: self._upstream_retry,
        }

    def observe(self, event: LoopEvent) -> None:
        """Hand ``event`` to the method for its kind, if this observer subscribes to it."""
        handler = self._subscribed.get(event.kind)
        if handler is not None:
            handler(event)

    def _run_started(self, event: LoopEvent) -> None:
        return None

    def _run_ended(self, event: LoopEvent) -> None:
        return None

    def _step_started(self, event: LoopEvent) -> None:
        return None

    def _step_ended(self, event: LoopEvent) -> None:
        return None

    def _upstream_retry(self, event: LoopEvent) -> None:
        return None


class MetricsObserver(LifecycleDispatch, abc.ABC):
    """An observer that times runs and steps and classifies how they end; a subclass binds
    the measurements to a metrics backend by implementing :meth:`measure`
    (:class:`responseloop.observe.otel.OpenTelemetryMetrics` binds OpenTelemetry
    instruments; a Prometheus binding is the same method over ``prometheus_client``'s
    ``Counter`` and ``Histogram``).

    It subscribes to the five lifecycle kinds: the two starts open a timer, the two ends
    and each upstream retry are measured.

    Args:
        clock: monotonic seconds (inject a fake one for exact durations in tests).
    """

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: dict[str, float] = {}
        super().__init__()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} in_flight={len(self._started)}>"

    @abc.abstractmethod
    def measure(self, event: LoopEvent, outcome: Outcome | None, seconds: float) -> None:
        """Record one measurement; called on the loop's tasks, so it must return promptly.

        - ``RUN_ENDED``: a response's run ended with ``outcome`` after ``seconds``;
        - ``STEP_RUN_ENDED``: a step (``event.step_kind`` a model call, retries included,
          or a tool call named ``event.step.tool_name``, an agent tool's whole sub-loop
          included) ended with ``outcome`` after ``seconds``;
        - ``UPSTREAM_RETRY``: an upstream call is retried after a failure with
          ``event.status`` (``None`` for a connection failure); ``outcome`` is ``None``
          and ``seconds`` is the wait before the next attempt.

        Labels should stay bounded sets (outcomes, HTTP statuses); the tool name is one of
        the server-side tools unless the model invents names.
        """

    def _run_started(self, event: LoopEvent) -> None:
        self._started[event.response_id] = self._clock()

    def _run_ended(self, event: LoopEvent) -> None:
        seconds = self._elapsed(event.response_id)
        self.measure(event, ended_as(event), seconds)

    def _step_started(self, event: LoopEvent) -> None:
        if event.step_id is not None:
            self._started[event.step_id] = self._clock()

    def _step_ended(self, event: LoopEvent) -> None:
        seconds = self._elapsed(event.step_id or "")
        self.measure(event, ended_as(event), seconds)

    def _upstream_retry(self, event: LoopEvent) -> None:
        self.measure(event, None, event.delay)

    def _elapsed(self, key: str) -> float:
        started = self._started.pop(key, None)
        return 0.0 if started is None else max(0.0, self._clock() - started)


class _Guarded:
    """An observer whose failures are logged, never raised into the loop."""

    __slots__ = ("inner",)

    def __init__(self, inner: LoopObserver) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"_Guarded({self.inner!r})"

    def observe(self, event: LoopEvent) -> None:
        try:
            self.inner.observe(event)
        except Exception:
            logger.warning(
                "observer %r failed on %s; the loop goes on",
                self.inner,
                event.kind.value,
                exc_info=True,
            )


def observing(observer: LoopObserver | None) -> LoopObserver | None:
    """The observer the loop and the HTTP client call: ``observer`` guarded, or ``None``
    when nobody observes (the caller then builds no event at all)."""
    if observer is None:
        return None
    return observer if isinstance(observer, _Guarded) else _Guarded(observer)
