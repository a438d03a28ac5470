"""Run: one run of the loop, and how it runs each scope: decide, record, execute.

Every step is recorded before it runs, marked processing, then completed, failed or
cancelled, so a worker that dies can be replaced and the response resumed from the stored
chain.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar, cast

import anyio
import attrs

from ..abc._config import LoopConfig, RequestContext, UpstreamTarget
from ..abc._dialect import UpstreamDialect
from ..abc._events import LoopEvent, LoopEventKind
from ..abc._http import HttpRequest, ServerSentEvent
from ..abc._json import JSON
from ..abc._known_texts import remember_text
from ..abc._protocols import (
    AgentToolExecutor,
    HttpClient,
    ResponseStore,
    StepAdvancingStore,
    StepStartingStore,
    ToolExecutor,
    ToolListingExecutor,
    Transition,
)
from ..abc._steps import (
    AppendSteps,
    ChainStep,
    Complete,
    Fail,
    RecordedStep,
    Scope,
    StepDescriptor,
    StepKind,
    StepState,
    StepUpdate,
    _chain_step_sharing,
    _scope_sharing,
)
from ..abc._tools import ToolKind, ToolSchema
from ..core._caps import exceeds_max_iterations, exceeds_max_tool_calls
from ..core._resume import may_run_on_resume, unfinished_steps
from ..exceptions import (
    LeaseLost,
    MaxDepthExceeded,
    MaxIterationsExceeded,
    MaxToolCallsExceeded,
    ResponseLoopError,
    StepAbandoned,
    StoreError,
    ToolError,
    ToolExecutionError,
    ToolNotFound,
    ToolTimeout,
    UpstreamConnectionError,
    UpstreamError,
)
from ..observe._observer import LoopObserver
from ._concurrency import deadline_scope, first_error
from ._emitter import Emitter

__all__ = ["Run", "ScopeFrame"]

logger = logging.getLogger("responseloop.loop")

_T = TypeVar("_T")


class _StepFailed(Exception):
    """A step's own failure, carrying the error JSON to record on it."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error


def _root_cause(error: BaseException) -> BaseException | None:
    """The exception a step's failure comes from: the last of its ``__cause__`` chain
    (a tool's own exception behind the ToolExecutionError), or ``None``."""
    cause = error.__cause__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return cause


@functools.cache
def _starts_steps(store_type: type[ResponseStore]) -> bool:
    """Whether stores of ``store_type`` implement :class:`StepStartingStore`, asked once
    per type (a runtime protocol check walks the protocol's members every time)."""
    return callable(getattr(store_type, "record_started_steps", None))


@functools.cache
def _advances_steps(store_type: type[ResponseStore]) -> bool:
    """Whether stores of ``store_type`` implement :class:`StepAdvancingStore`, asked once
    per type."""
    return _starts_steps(store_type) and callable(
        getattr(store_type, "complete_and_start_steps", None)
    )


def _ended(
    step: ChainStep,
    state: StepState,
    *,
    payload: JSON = None,
    error: dict[str, Any] | None = None,
) -> ChainStep:
    """``step`` after it ended in ``state``, sharing its request payload (built directly:
    attrs.evolve introspects the class on every call, and this runs for every step)."""
    return _chain_step_sharing(
        step.id,
        step.kind,
        state,
        step.sequence,
        step.request_payload,
        step.prev_step_id,
        step.scope,
        payload,
        error,
    )


def _timed_out(step: ChainStep, limit: float | None) -> ResponseLoopError:
    """The error of ``step`` cut off by its ``step_timeout``."""
    if step.kind in (StepKind.MODEL_CALL, StepKind.COMPACTION):
        return UpstreamConnectionError(f"the model call timed out after {limit}s")
    return ToolTimeout(f"tool {step.tool_name!r} timed out after {limit}s")


@attrs.frozen
class _Held:
    """A step that ran alone and completed, its completion not written yet: ``step`` as it
    was before it ran, ``ended`` as it is now. Its run ends for the observer when the
    completion is written (or fails to be), as a step's run does that is not held."""

    step: ChainStep
    ended: ChainStep

    @property
    def payload(self) -> JSON:
        return self.ended.response_payload


@attrs.frozen
class ScopeFrame:
    """The scope a step runs in, as the loop threads it through a scope's run: the scope's
    transition, the executor of its server-side tools, and the :class:`Scope` the
    transition sees (its response, parent step, depth and tools)."""

    transition: Transition
    executor: ToolExecutor | None
    scope: Scope


@attrs.define
class Run:
    """The state of one run of the loop, shared by every scope of the response."""

    response_id: str
    store: ResponseStore
    http_client: HttpClient
    upstream: UpstreamTarget
    ctx: RequestContext
    config: LoopConfig
    emitter: Emitter
    observer: LoopObserver | None
    dialect: UpstreamDialect
    tool_calls: int = 0
    lease_lost: bool = False
    fence: str | None = None
    """The claimant whose lease this run holds: every write is fenced by it."""

    @property
    def starts_steps(self) -> bool:
        """Whether the store records steps already started in one write
        (:class:`StepStartingStore`)."""
        return _starts_steps(type(self.store))

    @property
    def advances_steps(self) -> bool:
        """Whether the store completes a step and starts the next ones in one write
        (:class:`StepAdvancingStore`)."""
        return _advances_steps(type(self.store))

    def lose_lease(self) -> None:
        """Told by a :class:`LeaseKeeper` that another worker holds the lease now: the run
        stops at its next step or write."""
        self.lease_lost = True

    def _check_lease(self) -> None:
        if self.lease_lost:
            raise LeaseLost(self.response_id)

    async def run_scope(
        self,
        transition: Transition,
        executor: ToolExecutor | None,
        parent_step_id: str | None,
        depth: int,
    ) -> Complete | Fail:
        """Run one scope (the top level, or one agent step's sub-loop) to its decision:
        list its tools, finish what a previous worker left, then decide, record and run
        steps until the transition ends the scope.

        One coroutine from the listing to the decision: every frame in a step's chain of
        awaits is crossed again at each of its resumptions and kept for as long as the
        response is in flight.
        """
        try:
            try:
                tools = await self._tools(executor)
            except ToolError as exc:
                # A tool source that cannot list its tools (an MCP server down, two tools of
                # one name) fails this scope with its error instead of escaping the loop.
                return Fail(exc.to_error())
            scope = _scope_sharing(self.response_id, parent_step_id, depth, tools)
            frame = ScopeFrame(transition, executor, scope)
            # The chain is listed once; after that the loop keeps it up to date itself, so
            # store round trips per iteration do not grow with the chain.
            chain = list(await self.store.list_chain(self.response_id, parent_step_id))
            self.tool_calls += sum(1 for step in chain if step.is_tool)
            unfinished = unfinished_steps(chain)
            if unfinished:
                abandoned = await self._resume(chain, unfinished, frame)
                if abandoned is not None:
                    return abandoned
            # A step that ran alone and completed has its completion written together with
            # the steps the transition appends after it (one store call instead of two) when
            # the store can; until then it is held here, and written on any way out. Never a
            # tool call's: a tool may have effects outside, and its result is stored the
            # moment it returns, so a worker dying after it cannot make it run again.
            held: _Held | None = None
            ending: Complete | Fail | MaxToolCallsExceeded
            try:
                while True:
                    self._check_lease()
                    action = frame.transition.decide(chain, scope, self.config)
                    if not isinstance(action, AppendSteps):
                        ending = action
                        break
                    over = self._over_a_cap(chain, action.steps)
                    if over is not None:
                        ending = over
                        break
                    first = len(chain)
                    prev = chain[-1].id if chain else None
                    steps = action.steps
                    # The held step goes with this write, whatever becomes of it: a failed write
                    # leaves the step in flight, as a failed update_step would.
                    completing, held = held, None
                    recorded_steps = await self._record_steps(
                        parent_step_id, prev, steps, completing, scope
                    )
                    if completing is not None:
                        await self._completed(completing.step, completing.payload, scope)
                    for descriptor, recorded in zip(steps, recorded_steps, strict=True):
                        # PENDING even where the store has it processing already: the chain
                        # keeps the state a step had before this run began running it (a
                        # refired step is one that was not pending), which is what the
                        # observer is shown.
                        chain.append(
                            _chain_step_sharing(
                                recorded.id,
                                descriptor.kind,
                                StepState.PENDING,
                                recorded.sequence,
                                descriptor.request_payload,
                                prev,
                                parent_step_id,
                            )
                        )
                        prev = recorded.id
                    if len(steps) == 1:
                        # One step (the usual model call) runs straight from here, not through
                        # _run_steps: a frame fewer in its chain of awaits.
                        step = chain[first]
                        hold = self.advances_steps and step.kind is not StepKind.TOOL_CALL
                        ended = chain[first] = await self._execute(
                            step, frame, self.starts_steps, hold=hold
                        )
                        if hold and ended.state is StepState.COMPLETED:
                            held = _Held(step, ended)
                    else:
                        await self._run_steps(
                            chain, range(first, len(chain)), frame, started=self.starts_steps
                        )
            except BaseException:
                if held is not None:
                    with anyio.CancelScope(shield=True):
                        await self._write_held_quietly(held, scope)
                raise
            if held is not None:
                completion = StepUpdate.completed(held.payload)
                write = self.store.update_step(
                    self.response_id, held.step.id, completion, fence=self.fence
                )
                await self._held_written(held, scope, write)
                await self._completed(held.step, held.payload, scope)
            if isinstance(ending, MaxToolCallsExceeded):
                raise ending
            return ending
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancel_unfinished(parent_step_id)
            raise

    def _over_a_cap(
        self, chain: Sequence[ChainStep], steps: Sequence[StepDescriptor]
    ) -> Fail | MaxToolCallsExceeded | None:
        """How the scope ends if appending ``steps`` would pass a cap (their tool calls
        are counted towards the response's), or ``None``."""
        if exceeds_max_iterations(chain, steps, self.config):
            return Fail(
                MaxIterationsExceeded(
                    f"the scope would make more than {self.config.max_iterations} model calls"
                ).to_error()
            )
        self.tool_calls += sum(1 for step in steps if step.kind is StepKind.TOOL_CALL)
        if exceeds_max_tool_calls(self.tool_calls, self.config):
            cap = self.config.max_tool_calls
            return MaxToolCallsExceeded(f"the response would make more than {cap} tool calls")
        return None

    async def _cancel_unfinished(self, parent_step_id: str | None) -> None:
        """Record as cancelled every step of the scope still pending or processing.

        A cancellation can land between a store write and the loop learning of it (a step
        recorded but not yet started, or marked processing but not yet running); such a
        step would otherwise stay in flight for ever in a response that has ended.
        """
        if self.lease_lost:
            return  # the response belongs to another worker now: write nothing more
        try:
            for step in await self.store.list_chain(self.response_id, parent_step_id):
                if step.state in (StepState.PENDING, StepState.PROCESSING):
                    await self.store.update_step(
                        self.response_id, step.id, StepUpdate.cancelled(), fence=self.fence
                    )
        except LeaseLost:
            self.lease_lost = True
        except StoreError:
            logger.warning(
                "could not record the cancellation of the steps in flight",
                extra={"response_id": self.response_id},
                exc_info=True,
            )

    async def _record_steps(
        self,
        parent_step_id: str | None,
        prev: str | None,
        steps: Sequence[StepDescriptor],
        held: _Held | None,
        scope: Scope,
    ) -> Sequence[RecordedStep]:
        """Record ``steps`` after ``prev`` in as few writes as the store allows: with the
        completion of ``held`` (the step ``prev``) on a :class:`StepAdvancingStore`,
        already started on a :class:`StepStartingStore`, one by one otherwise."""
        if held is not None:
            advancing = cast(StepAdvancingStore, self.store)
            return await self._held_written(
                held,
                scope,
                advancing.complete_and_start_steps(
                    self.response_id,
                    parent_step_id,
                    held.step.id,
                    held.payload,
                    steps,
                    fence=self.fence,
                ),
            )
        if self.starts_steps:
            starting = cast(StepStartingStore, self.store)
            return await starting.record_started_steps(
                self.response_id, parent_step_id, prev, steps, fence=self.fence
            )
        recorded_steps: list[RecordedStep] = []
        for descriptor in steps:
            after = recorded_steps[-1].id if recorded_steps else prev
            recorded_steps.append(
                await self.store.record_step(
                    self.response_id, parent_step_id, after, descriptor, fence=self.fence
                )
            )
        return recorded_steps

    async def _held_written(self, held: _Held, scope: Scope, write: Awaitable[_T]) -> _T:
        """Await ``write``, the write that carries ``held``'s completion; the step's run
        then ends for the observer, with the write's error if it failed."""
        try:
            written = await write
        except BaseException as exc:
            self._end_held_run(held, scope, exc)
            raise
        self._end_held_run(held, scope, None)
        return written

    def _end_held_run(self, held: _Held, scope: Scope, error: BaseException | None) -> None:
        if self.observer is not None:
            ended = self._lifecycle(LoopEventKind.STEP_RUN_ENDED, held.ended, scope, error)
            self.observer.observe(ended)

    async def _write_held_quietly(self, held: _Held, scope: Scope) -> None:
        """On the way out of a scope that fails: the held step's completion is written
        (its work is done and must not run again), unless another worker runs the
        response now. Only the observer is told: the event sink's ``step.completed`` is
        not sent on a way out (the stream ends in the failure; a replay from the store
        shows the completed step)."""
        update = StepUpdate.completed(held.payload)
        try:
            error = await self._update_quietly(held.step.id, update, "completion")
        except BaseException as exc:
            self._end_held_run(held, scope, exc)
            raise
        self._end_held_run(held, scope, error)

    async def _completed(self, step: ChainStep, payload: JSON, scope: Scope) -> None:
        """What follows the completion of ``step`` (as it was before it ran) once it is
        stored: the debug line and the event sink's ``step.completed``."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("step completed", extra=self._log_fields(step, scope))
        await self._emit(LoopEventKind.STEP_COMPLETED, step, payload, scope)

    async def _tools(self, executor: ToolExecutor | None) -> dict[str, ToolSchema]:
        schemas = await executor.tools(self.ctx) if executor is not None else []
        tools: dict[str, ToolSchema] = {}
        for schema in schemas:
            if schema.name in tools:
                raise ToolExecutionError(f"two server-side tools are named {schema.name!r}")
            tools[schema.name] = schema
        return tools

    async def _resume(
        self,
        chain: list[ChainStep],
        unfinished: Sequence[int],
        frame: ScopeFrame,
    ) -> Fail | None:
        """Finish what a previous worker left: run pending steps, re-fire in-flight ones
        where allowed, and fail the scope with ``step_abandoned`` where not."""
        tools = frame.scope.tools
        abandoned = [
            i
            for i in unfinished
            if not may_run_on_resume(chain[i], tools.get(chain[i].tool_name or ""), self.config)
        ]
        if not abandoned:
            await self._run_steps(chain, unfinished, frame)
            return None
        error = StepAbandoned(
            "a step was in flight when this worker took over and may not be re-fired"
        ).to_error()
        for index in unfinished:
            step = chain[index]
            if index in abandoned:
                if step.state is StepState.CANCELLED:
                    continue  # stopped by a hand-over: it stays cancelled, the scope fails
                await self.store.update_step(
                    self.response_id, step.id, StepUpdate.failed(error), fence=self.fence
                )
                chain[index] = attrs.evolve(step, state=StepState.FAILED, error=error)
            elif step.state is not StepState.CANCELLED:
                # Pending or re-fireable siblings are not run now that the scope fails:
                # they end cancelled, never left pending or processing.
                await self.store.update_step(
                    self.response_id, step.id, StepUpdate.cancelled(), fence=self.fence
                )
                chain[index] = attrs.evolve(step, state=StepState.CANCELLED)
        return Fail(error)

    async def _run_steps(
        self,
        chain: list[ChainStep],
        indices: Sequence[int],
        frame: ScopeFrame,
        *,
        started: bool = False,
        hold: bool = False,
    ) -> _Held | None:
        """Run the steps at ``indices`` concurrently; each result lands at its own index,
        so results keep the call order whatever order they finish in. ``started``: the
        store has them processing already (recorded by :class:`StepStartingStore`).

        ``hold`` (one step only): a completion is not written but answered, for the
        caller to write with the steps after it; the step is answered when it completed.
        """

        if len(indices) == 1:
            (index,) = indices
            step = chain[index]
            ended = chain[index] = await self._execute(step, frame, started, hold=hold)
            if hold and ended.state is StepState.COMPLETED:
                return _Held(step, ended)
            return None

        async def run_one(index: int) -> None:
            chain[index] = await self._execute(chain[index], frame, started)

        try:
            async with anyio.create_task_group() as group:
                for index in indices:
                    group.start_soon(run_one, index)
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        return None

    def _execute(
        self, step: ChainStep, frame: ScopeFrame, started: bool, *, hold: bool = False
    ) -> Coroutine[Any, Any, ChainStep]:
        """Run one recorded step: straight in :meth:`_execute_step` when no observer is
        told of it (a coroutine frame fewer in the step's chain of awaits)."""
        if self.observer is None:
            return self._execute_step(step, frame, started, hold=hold)
        return self._execute_observed(step, frame, started, hold=hold)

    async def _execute_observed(
        self, step: ChainStep, frame: ScopeFrame, started: bool, *, hold: bool = False
    ) -> ChainStep:
        """Run one recorded step, telling the observer when it starts and how it ends."""
        observer = self.observer
        assert observer is not None
        scope = frame.scope
        observer.observe(self._lifecycle(LoopEventKind.STEP_RUN_STARTED, step, scope, None))
        ended, error = step, None
        try:
            ended = await self._execute_step(step, frame, started, hold=hold)
            return ended
        except BaseException as exc:
            error = exc
            raise
        finally:
            # A held completion ends the step's run when it is written (_held_written).
            if not (hold and error is None and ended.state is StepState.COMPLETED):
                ended_event = self._lifecycle(LoopEventKind.STEP_RUN_ENDED, ended, scope, error)
                observer.observe(ended_event)

    def _lifecycle(
        self, kind: LoopEventKind, step: ChainStep, scope: Scope, error: BaseException | None
    ) -> LoopEvent:
        """A step's lifecycle event for the observer."""
        return LoopEvent(
            kind,
            self.response_id,
            step_id=step.id,
            step_kind=step.kind,
            sequence=step.sequence,
            scope=step.scope,
            depth=scope.depth,
            step=step,
            step_scope=scope,
            error=error,
        )

    async def _execute_step(
        self, step: ChainStep, frame: ScopeFrame, started: bool, *, hold: bool = False
    ) -> ChainStep:
        """Run one recorded step and record how it ended. Whatever happens — its own
        failure, a cap, cancellation, even a bug in a host's client or executor — the step
        ends terminal unless the store itself is failing. ``hold``: a completion is left
        to the caller to record (and tell), with the steps after it."""
        scope = frame.scope
        try:
            if not started:
                self._check_lease()
                await self.store.update_step(
                    self.response_id, step.id, StepUpdate.processing(), fence=self.fence
                )
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("step started", extra=self._log_fields(step, scope))
            if self.emitter.sink is not None:
                await self._emit(
                    LoopEventKind.STEP_STARTED, step, dict(step.request_payload), scope
                )
            # The step's work, in this coroutine (not one of its own: a frame fewer to cross
            # at every resumption); its own failures are raised as _StepFailed.
            limit = self.config.step_timeout
            with deadline_scope(limit) as deadline:
                try:
                    if step.kind in (StepKind.MODEL_CALL, StepKind.COMPACTION):
                        payload = await self._call_model(step, scope)
                    elif step.kind is StepKind.TOOL_LISTING:
                        payload = await self._list_tools(step, frame)
                    else:
                        payload = await self._call_tool(step, frame)
                except (UpstreamError, ToolError, MaxDepthExceeded) as exc:
                    raise _StepFailed(exc.to_error()) from exc
                except (StoreError, LeaseLost, MaxToolCallsExceeded):
                    raise
                except ResponseLoopError as exc:
                    raise _StepFailed(exc.to_error()) from exc
            if deadline.cancelled_caught:
                raise _StepFailed(_timed_out(step, limit).to_error())
        except _StepFailed as failure:
            self._log_failure(step, scope, failure)
            await self.store.update_step(
                self.response_id, step.id, StepUpdate.failed(failure.error), fence=self.fence
            )
            await self._emit(LoopEventKind.STEP_FAILED, step, failure.error, scope)
            return _ended(step, StepState.FAILED, error=failure.error)
        except MaxToolCallsExceeded as exc:
            # The cap ends the whole response; the agent step it surfaced through still
            # ends terminal, so nothing is left in flight, and says so to the event sink.
            await self.store.update_step(
                self.response_id, step.id, StepUpdate.failed(exc.to_error()), fence=self.fence
            )
            await self._emit(LoopEventKind.STEP_FAILED, step, exc.to_error(), scope)
            raise
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancel(step)
            raise
        except LeaseLost:
            self.lease_lost = True  # another worker runs the response now: write nothing
            raise
        except StoreError:
            raise
        except Exception as exc:
            # Outside every contract (a host's HttpClient raising something other than an
            # UpstreamError): record the step failed, then let the error propagate.
            error = {
                "type": "internal_error",
                "code": "server_error",
                "message": f"the step raised {type(exc).__name__}",
            }
            with anyio.CancelScope(shield=True):
                await self._fail_quietly(step, error)
            raise
        ended = _ended(step, StepState.COMPLETED, payload=payload)
        if hold:
            return ended
        await self.store.update_step(
            self.response_id, step.id, StepUpdate.completed(payload), fence=self.fence
        )
        await self._completed(step, payload, scope)
        return ended

    def _log_failure(self, step: ChainStep, scope: Scope, failure: _StepFailed) -> None:
        """The one WARNING line of a failed step: its ids, kind, tool and the error's type
        (and the class of the exception behind it), never the error's message, which may
        quote arguments or the upstream's words; those and the traceback are at DEBUG."""
        error_type = failure.error.get("type")
        cause = _root_cause(failure)
        fields = {**self._log_fields(step, scope), "error_type": error_type}
        if cause is not None:
            fields["exception_type"] = type(cause).__name__
        logger.warning("step failed: %s", error_type, extra=fields)
        logger.debug(
            "step failed: %s",
            failure.error.get("message"),
            extra=fields,
            exc_info=cause,
        )

    def _log_fields(self, step: ChainStep, scope: Scope) -> dict[str, Any]:
        """The ``extra`` fields of a step's log records: ids and kinds, never payloads
        (they hold tool arguments and message bodies). ``refired`` tells a step a worker
        runs again after a takeover from its first run."""
        fields: dict[str, Any] = {
            "response_id": self.response_id,
            "step_id": step.id,
            "step_kind": step.kind.value,
            "step_sequence": step.sequence,
            "depth": scope.depth,
            "refired": step.state is not StepState.PENDING,
        }
        if step.is_tool:
            fields["tool"] = step.tool_name
        return fields

    async def _fail_quietly(self, step: ChainStep, error: dict[str, Any]) -> None:
        try:
            await self.store.update_step(
                self.response_id, step.id, StepUpdate.failed(error), fence=self.fence
            )
        except LeaseLost:
            self.lease_lost = True
        except StoreError:
            logger.warning(
                "could not record the failure of step %s",
                step.id,
                extra={"response_id": self.response_id, "step_id": step.id},
            )

    async def _cancel(self, step: ChainStep) -> None:
        await self._update_quietly(step.id, StepUpdate.cancelled(), "cancellation")

    async def _update_quietly(
        self, step_id: str, update: StepUpdate, what: str
    ) -> LeaseLost | StoreError | None:
        """Write ``update`` on a way out, unless another worker runs the response now:
        a lost lease is noted and a failing store logged, and either is answered rather
        than raised (``None`` when the write landed)."""
        if self.lease_lost:
            return LeaseLost(self.response_id)  # write nothing more
        try:
            await self.store.update_step(self.response_id, step_id, update, fence=self.fence)
        except LeaseLost as exc:
            self.lease_lost = True
            return exc
        except StoreError as exc:
            logger.warning(
                f"could not record the {what} of step %s",
                step_id,
                extra={"response_id": self.response_id, "step_id": step_id},
                exc_info=True,
            )
            return exc
        return None

    async def _call_model(self, step: ChainStep, scope: Scope) -> JSON:
        # The payload is sent as it is, not copied: a request is read-only to its client
        # (HttpClient), and a copy would be one more dict per call in flight.
        body = cast("dict[str, Any]", step.request_payload)
        request = HttpRequest(
            url=self.upstream.url,
            json=body,
            headers=self.upstream._request_headers,
            timeout=self.config.step_timeout,
            correlation_id=step.id,
        )
        if body.get("stream") is not True:
            return self.dialect.model_reply(await self.http_client.execute(request))
        reassembler = self.dialect.stream_reassembler()

        async def on_event(event: ServerSentEvent) -> bool:
            # A malformed event raises here, out through the client, and fails the step.
            chunk = reassembler.feed(event)
            if chunk is not None:
                await self._emit(LoopEventKind.MODEL_CHUNK, step, chunk, scope)
            return reassembler.done

        await self.http_client.stream(request, on_event)
        return reassembler.result()

    async def _list_tools(self, step: ChainStep, frame: ScopeFrame) -> JSON:
        label = str(step.request_payload.get("server_label"))
        executor = frame.executor
        if not isinstance(executor, ToolListingExecutor):
            raise ToolNotFound(f"no MCP server {label!r} here to list the tools of")
        return await executor.list_server_tools(label, self.ctx)

    async def _call_tool(self, step: ChainStep, frame: ScopeFrame) -> JSON:
        name = step.tool_name or ""
        tool = frame.scope.tools.get(name)
        executor = frame.executor
        # Only tools resolved for this caller ever run, whatever the transition asked for.
        if tool is None or executor is None:
            raise ToolNotFound(name)
        payload = step.request_payload
        if "approval_request_id" in payload and not tool.runs_approved_call(
            payload.get("server_label")
        ):
            raise ToolNotFound(name)
        if tool.kind is ToolKind.AGENT:
            return await self._run_agent(step, tool, frame)
        call_id = str(step.request_payload.get("call_id"))
        arguments = step.request_payload.get("arguments")
        try:
            result = await executor.execute(name, call_id, arguments, self.ctx)
        except (ToolError, StoreError):
            raise
        except Exception as exc:
            # The step's failure is logged once, by _log_failure (the exception's text may
            # quote the arguments: it and the traceback only at DEBUG).
            detail = type(exc).__name__
            if self.config.tool_exception_detail == "message" and str(exc):
                detail = f"{detail}: {exc}"
            raise ToolExecutionError(f"tool {name!r} failed: {detail}") from exc
        self._check_tool_output(name, result)
        return result

    def _check_tool_output(self, name: str, result: JSON) -> None:
        """Refuse a result that cannot be stored as JSON or is over the size cap."""
        try:
            # allow_nan=False: NaN and infinities are not JSON, and no store could keep them.
            text = (
                result
                if isinstance(result, str)
                else json.dumps(result, ensure_ascii=False, allow_nan=False)
            )
        except (TypeError, ValueError) as exc:
            raise ToolExecutionError(f"tool {name!r} returned a value that is not JSON") from exc
        limit = self.config.max_tool_output_bytes
        if limit is not None and len(text) > limit // 4:  # cheap pre-check: <= 4 bytes/char
            size = len(text.encode("utf-8", errors="replace"))
            if size > limit:
                raise ToolExecutionError(
                    f"tool {name!r} returned {size} bytes, more than the {limit}-byte limit"
                )
        if type(result) is dict or type(result) is list:
            # Noted once the result is accepted: a refused one is never stored.
            remember_text(result, text)  # the store keeps this text rather than encode again

    async def _run_agent(self, step: ChainStep, tool: ToolSchema, frame: ScopeFrame) -> JSON:
        scope = frame.scope
        if scope.depth + 1 > self.config.max_depth:
            raise MaxDepthExceeded(
                f"sub-agent {tool.name!r} would nest deeper than {self.config.max_depth}"
            )
        sub_tools = await self._sub_agent_tools(tool.name, frame.executor)
        outcome = await self.run_scope(
            frame.transition.sub_agent(step, tool), sub_tools, step.id, scope.depth + 1
        )
        if isinstance(outcome, Fail):
            raise _StepFailed(dict(outcome.error))
        return outcome.payload

    async def _sub_agent_tools(
        self, name: str, executor: ToolExecutor | None
    ) -> ToolExecutor | None:
        """The sub-agent's own tools, from the executor offering its agent tool."""
        if isinstance(executor, AgentToolExecutor):
            return await executor.sub_agent_tools(name, self.ctx)
        return None

    async def _emit(self, kind: LoopEventKind, step: ChainStep, data: JSON, scope: Scope) -> None:
        if self.emitter.sink is None:
            return  # nobody listens: build no event
        await self.emitter.emit(
            LoopEvent(
                kind,
                self.response_id,
                data,
                step_id=step.id,
                step_kind=step.kind,
                sequence=step.sequence,
                scope=step.scope,
                depth=scope.depth,
            )
        )
