"""run_response_loop: the anyio shell that carries out what the transition decides.

The loop knows steps, scopes and caps; it knows nothing of the Open Responses wire. It
claims the response's lease, drives the top scope under the response's deadline
(:mod:`._scope` runs each scope and step), and releases the lease at the end.
"""

from __future__ import annotations

import contextlib
import logging

import anyio

from .._ids import random_id
from ..abc._config import LoopConfig, RequestContext, UpstreamTarget
from ..abc._dialect import UpstreamDialect
from ..abc._events import LoopEvent, LoopEventKind
from ..abc._protocols import EventSink, HttpClient, ResponseStore, ToolExecutor, Transition
from ..abc._steps import Complete, Fail
from ..chat._dialect import CHAT_COMPLETIONS
from ..exceptions import (
    DeadlineExceeded,
    LeaseLost,
    MaxToolCallsExceeded,
    ResponseAlreadyRunning,
    StoreError,
)
from ..observe._observer import LoopObserver, observing
from ._concurrency import deadline_scope
from ._emitter import Emitter
from ._lease import LeaseKeeper, renewing_lease
from ._scope import Run

__all__ = ["run_response_loop"]

logger = logging.getLogger("responseloop.loop")

_DEFAULT_CONFIG = LoopConfig()


async def run_response_loop(
    response_id: str,
    *,
    store: ResponseStore,
    http_client: HttpClient,
    upstream: UpstreamTarget,
    transition: Transition,
    tools: ToolExecutor | None = None,
    ctx: RequestContext | None = None,
    config: LoopConfig | None = None,
    events: EventSink | None = None,
    observer: LoopObserver | None = None,
    dialect: UpstreamDialect = CHAT_COMPLETIONS,
    lease: str | None = None,
    lease_keeper: LeaseKeeper | None = None,
) -> Complete | Fail:
    """Drive response ``response_id`` from its stored chain to a terminal decision.

    The response must already be stored (:meth:`ResponseStore.create_response`). The loop
    resumes from whatever chain the store holds: completed steps are never re-run, pending
    ones are run, and a step a dead worker left in flight fails the response with
    ``step_abandoned`` unless ``config`` allows re-firing it.

    Returns:
        :class:`Complete` with the transition's payload, or :class:`Fail` with the error
        (step failures the transition chose not to recover from, caps, deadlines).

    While it runs, the loop holds the response's lease (:meth:`ResponseStore.claim_response`,
    renewed every third of ``config.lease_seconds``) and releases it at the end. Every write
    it makes is fenced by that lease (``fence=``), so once another worker has taken the
    response over, nothing more of this run lands.

    ``lease`` is the claimant of a lease the caller already holds (as
    :class:`~responseloop.ResponsesService` does, to finalise the response under the same
    lease): the loop then renews and fences with it, and neither claims nor releases it.

    ``lease_keeper`` renews the lease instead of a task of the run's own: the choice of a
    worker running many responses at once (:class:`LeaseKeeper`, one per worker). A lease
    it finds lost stops the run at its next step or write rather than at once.

    ``events`` receives the loop's streamed events for live streaming (awaited: a slow
    reader slows the loop); ``observer`` receives the lifecycle events (the run and each
    step start and end), for tracing and metrics (:class:`LoopObserver`).

    ``dialect`` is the format ``upstream`` speaks, the one ``transition`` builds requests
    in: it validates each model call's reply (or reassembles its stream) into the payload
    the model step stores (default: Chat Completions).

    Raises:
        ResponseAlreadyRunning: another worker holds the lease (nothing was touched), or
            took the response over after this run's lease expired (this run stopped
            without writing anything more).
        StoreError: persistence failed; nothing is lost silently.
        Cancellation: the caller's cancellation, after every in-flight step was cancelled
            and recorded as ``cancelled``.
    """
    run = Run(
        response_id=response_id,
        store=store,
        http_client=http_client,
        upstream=upstream,
        ctx=ctx or RequestContext(response_id=response_id),
        config=config or _DEFAULT_CONFIG,
        emitter=Emitter(events),
        observer=observing(observer),
        dialect=dialect,
    )
    # One run holds the response's lease from start to end, so two workers never run the
    # same response at once; a dead worker's lease expires and another may take over.
    claimant = lease or random_id("run")
    if lease is None and not await store.claim_response(
        response_id, claimant, run.config.lease_seconds
    ):
        raise ResponseAlreadyRunning(response_id)
    run.fence = claimant
    observer = run.observer
    if observer is not None:
        observer.observe(LoopEvent(LoopEventKind.RUN_STARTED, response_id, context=run.ctx))
    outcome: Complete | Fail | None = None
    error: BaseException | None = None
    try:
        renewing: contextlib.AbstractAsyncContextManager[None] = (
            renewing_lease(run, claimant)
            if lease_keeper is None
            else lease_keeper._lease_hold(
                store, response_id, claimant, run.config.lease_seconds, run.lose_lease
            )
        )
        # The response is driven here, not in a coroutine of its own: every frame in a
        # step's chain of awaits is crossed at each resumption and kept while in flight.
        async with renewing:
            if run.emitter.sink is not None:  # else build no events for nobody
                await run.emitter.emit(LoopEvent(LoopEventKind.RESPONSE_STARTED, response_id))
            timeout = run.config.response_timeout
            with deadline_scope(timeout) as deadline:
                try:
                    outcome = await run.run_scope(transition, tools, None, 0)
                except MaxToolCallsExceeded as exc:
                    outcome = Fail(exc.to_error())
            if outcome is None or deadline.cancelled_caught:
                timed_out = DeadlineExceeded(f"the response ran longer than {timeout}s")
                outcome = Fail(timed_out.to_error())
            logger.info(
                "response loop ended: %s",
                "completed" if isinstance(outcome, Complete) else outcome.error.get("type"),
                extra={"response_id": response_id},
            )
            if run.emitter.sink is not None:
                await run.emitter.emit(
                    LoopEvent(LoopEventKind.RESPONSE_COMPLETED, response_id, outcome.payload)
                    if isinstance(outcome, Complete)
                    else LoopEvent(LoopEventKind.RESPONSE_FAILED, response_id, dict(outcome.error))
                )
        if run.lease_lost:
            raise LeaseLost(response_id)
        return outcome
    except BaseException as exc:
        error = exc
        if isinstance(exc, LeaseLost):
            run.lease_lost = True
        raise
    finally:
        if not run.lease_lost and lease is None:
            with anyio.CancelScope(shield=True):
                await _release(run, claimant)
        if observer is not None:
            observer.observe(
                LoopEvent(LoopEventKind.RUN_ENDED, response_id, outcome=outcome, error=error)
            )


async def _release(run: Run, claimant: str) -> None:
    try:
        await run.store.release_response(run.response_id, claimant)
    except StoreError:
        # Nothing is lost: the lease expires by itself, only a later takeover waits longer.
        logger.warning(
            "could not release the lease of response %s",
            run.response_id,
            extra={"response_id": run.response_id},
            exc_info=True,
        )
