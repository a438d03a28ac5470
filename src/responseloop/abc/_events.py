"""The loop's events: what it streams and what it tells its observer.

Every class here is a frozen attrs value: build new ones with :func:`attrs.evolve`.
This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import enum

import attrs

from ..exceptions import UpstreamStatusError
from ._config import RequestContext
from ._json import JSON
from ._steps import ChainStep, Complete, Fail, Scope, StepKind

__all__ = ["LoopEvent", "LoopEventKind"]


class LoopEventKind(enum.StrEnum):
    """What happened in the loop.

    Two consumers share this one vocabulary. The *streamed* kinds go to the
    :class:`EventSink` (the Open Responses event mapper turns them into wire events); the
    *lifecycle* kinds (``RUN_STARTED`` to ``UPSTREAM_RETRY``) go to the
    :class:`~responseloop.observe.LoopObserver`, for tracing and metrics.
    """

    RESPONSE_STARTED = "response_started"
    """Streamed: the response starts producing output."""
    STEP_STARTED = "step_started"
    """Streamed: a step is marked processing (``data`` is its request payload)."""
    MODEL_CHUNK = "model_chunk"
    """Streamed: one parsed upstream stream chunk (``data``)."""
    STEP_COMPLETED = "step_completed"
    """Streamed: a step completed and was recorded (``data`` is its result)."""
    STEP_FAILED = "step_failed"
    """Streamed: a step failed and was recorded (``data`` is its error JSON)."""
    RESPONSE_COMPLETED = "response_completed"
    """Streamed: the response completed (``data`` is the terminal payload)."""
    RESPONSE_FAILED = "response_failed"
    """Streamed: the response failed (``data`` is the error JSON)."""
    RUN_STARTED = "run_started"
    """Lifecycle: this worker holds the response's lease and starts (or resumes) running
    it; ``context`` is the request's context."""
    RUN_ENDED = "run_ended"
    """Lifecycle: the run ended with ``outcome``, or was broken off by ``error`` (a
    cancellation, a store failure, a lost lease); exactly one of the two is set."""
    STEP_RUN_STARTED = "step_run_started"
    """Lifecycle: a recorded ``step`` starts running in ``step_scope`` (``step.state`` is
    ``pending``, or ``processing``/``cancelled`` when a worker re-fires it)."""
    STEP_RUN_ENDED = "step_run_ended"
    """Lifecycle: the ``step`` ended: its state is ``completed`` (with
    ``response_payload``) or ``failed`` (with its ``error``); or ``error`` is the exception
    that broke it off (then ``step`` is as it started)."""
    UPSTREAM_RETRY = "upstream_retry"
    """Lifecycle: an upstream call failed with ``error`` (an ``UpstreamError``) on attempt
    ``attempt`` and is tried again after ``delay`` seconds; ``step_id`` is the model call
    it belongs to (``None`` outside the loop) and ``response_id`` is empty, the HTTP client
    does not know it."""


# Not slotted: a frozen slotted class sets each field through object.__setattr__, so the
# lifecycle fields would make every streamed event (one per model chunk) about 40% slower
# to build; a dict-backed one builds faster than the eight-field slotted one did, and the
# events alive at once are bounded by the stream's buffer.
@attrs.frozen(slots=False)
class LoopEvent:
    """One thing the loop did, in the order it did it.

    ``data`` depends on ``kind``: the step's request payload for ``STEP_STARTED``, one
    parsed upstream stream chunk for ``MODEL_CHUNK``, the step's result or error for
    ``STEP_COMPLETED``/``STEP_FAILED``, the terminal payload or error for the response
    events. ``scope`` and ``depth`` tell sub-agent events from top-level ones.

    The lifecycle kinds (see :class:`LoopEventKind`) carry what an observer needs as the
    loop has it, instead of JSON: ``context``, ``step`` and ``step_scope``, ``outcome``
    and ``error`` (an exception), ``attempt`` and ``delay``. Payloads (tool arguments,
    messages) are handed over unfiltered: an observer that exports them is responsible
    for what it exports.
    """

    kind: LoopEventKind
    response_id: str
    data: JSON = None
    step_id: str | None = None
    step_kind: StepKind | None = None
    sequence: int = 0
    scope: str | None = None
    depth: int = 0
    context: RequestContext | None = None
    step: ChainStep | None = None
    step_scope: Scope | None = None
    outcome: Complete | Fail | None = None
    error: BaseException | None = None
    attempt: int = 0
    delay: float = 0.0

    @property
    def status(self) -> int | None:
        """The upstream's HTTP status of an ``UPSTREAM_RETRY``, or ``None`` (a connection
        failure, or another kind)."""
        return self.error.status if isinstance(self.error, UpstreamStatusError) else None
