"""BackgroundResponses: ``background: true`` responses, run in a task group the host owns,
with their event streams kept so a client can resume them from a sequence number.

While a background response runs, every wire event it produced is kept in memory (up to
``max_events`` per response; the oldest go first), so ``GET …?stream=true&starting_after=N``
replays what the client missed and then follows the run live. The events of the last
``keep_finished`` finished responses are kept too, so a resumed stream has exactly the
sequence numbers the live one had.

A finished response whose events are no longer kept (or that another process ran) has its
stream *rebuilt* from the stored chain: each stored step is fed again to a fresh
:class:`ResponsesEventMapper` as an unstreamed step, and the stream ends with the stored
Response. The store keeps steps, not deltas, so a rebuilt stream sends each text in one
delta; its items, ids and final Response are those of the live stream, and its sequence
numbers are those of the rebuilt stream (the same ones for a run whose model calls were
not streamed, which is what ``background: true`` without ``stream`` does).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncGenerator, Iterable, Mapping
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs

from .._sse import DONE_FRAME, encode_sse
from ..abc._events import LoopEvent, LoopEventKind
from ..abc._records import ResponseStatus
from ..abc._steps import ChainStep, StepState
from ..exceptions import InvalidRequestError, ResponseLoopError
from ..openresponses._events import ResponsesEventMapper
from ..openresponses._request import parse_request
from ..openresponses._wire import WireOptions
from ..service import PreparedResponse, ResponsesService
from ._event_log import EventLogWriter, error_event, follow_log, logged_events, stream_end_event
from ._routes import TERMINAL_EVENTS, StreamReply, ended_here, event_mapper

__all__ = ["BackgroundResponses", "replayed_events"]

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class _EventLog:
    """The wire events of one background response, as they are produced."""

    mapper: ResponsesEventMapper
    max_events: int
    writer: EventLogWriter
    events: collections.deque[dict[str, Any]] = attrs.field(init=False)
    ended: bool = False
    changed: anyio.Event = attrs.field(factory=anyio.Event)
    # The terminal event waits until the Response is stored (see BackgroundResponses._run).
    terminal: dict[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        self.events = collections.deque(maxlen=self.max_events)

    @property
    def first_sequence(self) -> int:
        return self.events[0]["sequence_number"] if self.events else 0

    def add(self, events: Iterable[dict[str, Any]]) -> None:
        self.events.extend(events)
        self.changed.set()
        self.changed = anyio.Event()

    def end(self) -> None:
        self.ended = True
        self.changed.set()

    async def emit(self, event: LoopEvent) -> None:
        """The loop's event sink: never waits for a reader, so none can slow a background
        run (only the store's event log, in batches)."""
        events = []
        for wire_event in self.mapper.feed(event):
            if wire_event["type"] in TERMINAL_EVENTS:
                self.terminal = wire_event
            else:
                events.append(wire_event)
        self.add(events)
        self.writer.add(events)
        if event.kind is LoopEventKind.STEP_STARTED:
            # A wait follows (a model call, a tool): what was sent is logged before it, so
            # a reader resuming after a crash in it gets what the live readers got.
            await self.writer.flush()
        else:
            await self.writer.flush_due()


class BackgroundResponses:
    """Runs ``background: true`` responses in a task group and serves their event streams.

    Use it as an async context manager around the life of the server (the ASGI app's
    lifespan does): leaving it cancels every response still running, which the service
    stores as ``cancelled``.

    Args:
        service: runs the responses.
        max_events: the most wire events kept per response (the oldest are dropped first).
        keep_finished: how many finished responses keep their events in memory.
    """

    def __init__(
        self, service: ResponsesService, *, max_events: int = 10_000, keep_finished: int = 256
    ) -> None:
        if max_events < 1 or keep_finished < 0:
            raise ValueError("max_events must be >= 1 and keep_finished >= 0")
        self.service = service
        self.max_events = max_events
        self.keep_finished = keep_finished
        self._group: anyio.abc.TaskGroup | None = None
        self._running: dict[str, _EventLog] = {}
        self._finished: collections.OrderedDict[str, _EventLog] = collections.OrderedDict()

    def __repr__(self) -> str:
        return f"<BackgroundResponses running={len(self._running)}>"

    @property
    def running(self) -> frozenset[str]:
        """Ids of the background responses running now."""
        return frozenset(self._running)

    async def __aenter__(self) -> BackgroundResponses:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._group = self._group, None
        assert group is not None
        group.cancel_scope.cancel()
        return await group.__aexit__(exc_type, exc, tb)

    @property
    def accepting(self) -> bool:
        """Whether background responses can start now (the runner is open)."""
        return self._group is not None

    async def start(self, prepared: PreparedResponse, *, continuing: bool = False) -> None:
        """Start running ``prepared`` and return at once.

        ``continuing`` is for a response another worker ran before (a recovered one): its
        stream carries on the event log that worker wrote, from the event after the last
        one logged, with the items of its finished steps counted as sent.

        Raises:
            InvalidRequestError: the runner is not open (the server is not serving), or
                the response is already running here.
        """
        if self._group is None:
            raise InvalidRequestError(
                "background responses run only while the app's lifespan is running",
                param="background",
            )
        response_id = prepared.response_id
        if response_id in self._running:
            raise InvalidRequestError(
                f"response {response_id!r} is already running", param="response_id"
            )
        store = self.service.store
        if continuing:
            mapper = ResponsesEventMapper(
                prepared.request,
                response_id=response_id,
                created_at=prepared.created_at,
                clock=self.service.now,
                prior=await self.service.all_steps(response_id),
                wire=self.service.wire,
            )
            logged = await logged_events(store, response_id)
            if logged:  # else nothing was logged: the stream starts from the beginning
                mapper.continue_after(logged)
        else:
            mapper = event_mapper(self.service, prepared)
        log = _EventLog(mapper, self.max_events, EventLogWriter(store, response_id))
        self._running[response_id] = log
        self._group.start_soon(self._run, prepared, log)

    async def _run(self, prepared: PreparedResponse, log: _EventLog) -> None:
        reason, code = "the response was cancelled", "response_cancelled"
        stored: Mapping[str, Any] | None = None
        failure: list[dict[str, Any]] = []
        try:
            stored = (
                await self.service.run(prepared, events=log, on_claimed=log.writer.hold)
            ).response
        except ResponseLoopError as exc:
            error = exc.to_error()
            failure.append(error)
            reason, code = error["message"], error["type"]
        except Exception:
            reason, code = "the response failed", "server_error"
            failure.append({"type": code})
            logger.exception(
                "background response crashed", extra={"response_id": prepared.response_id}
            )
        finally:
            sequence = log.mapper.next_sequence_number
            if log.terminal is not None:
                # Sent only now that the Response is stored, carrying it exactly as stored,
                # so a client reacting to it (a GET, a follow-up turn) finds it finished.
                terminal = log.terminal
                last = terminal if stored is None else {**terminal, "response": dict(stored)}
            else:
                # Cancelled (by a cancel request or by shutdown) or stopped by an error: the
                # stream has no terminal event of its own, so it ends with an error event.
                last = error_event(reason, code, sequence)
            log.add([last])
            if ended_here([stored] if stored is not None else [], failure):
                # What another worker finishes, it logs; this run's end is logged only
                # when it ended the response.
                log.writer.add([last])
                with anyio.CancelScope(shield=True):
                    await log.writer.flush(fenced=False)
            log.end()
            del self._running[prepared.response_id]
            if self.keep_finished:
                self._finished[prepared.response_id] = log
                while len(self._finished) > self.keep_finished:
                    self._finished.popitem(last=False)

    async def wait(self, response_id: str) -> None:
        """Return once the background response ``response_id`` is not running here."""
        log = self._running.get(response_id)
        while log is not None and not log.ended:
            await log.changed.wait()

    async def resume(self, response_id: str, starting_after: int | None) -> StreamReply:
        """The event stream of a response, from after ``starting_after`` (from its start
        when ``None``). Check the caller may see the response first.

        Raises:
            InvalidRequestError: the events after ``starting_after`` are no longer kept, or
                the response is running but not as a background response of this runner.
        """
        log = self._running.get(response_id) or self._finished.get(response_id)
        after = -1 if starting_after is None else starting_after
        if log is not None and not (log.events and after + 1 < log.first_sequence):
            return StreamReply(self._follow(log, after))
        store = self.service.store
        record = await store.get_response(response_id)
        if not record.status.is_terminal or await store.list_events(response_id, -1, 1):
            # Logged by whichever replica runs (or ran) it: followed until it ends.
            return StreamReply(follow_log(store, response_id, after))
        if log is not None:
            raise InvalidRequestError(
                f"events before sequence number {log.first_sequence} are no longer kept",
                param="starting_after",
            )
        chain = await store.list_chain(response_id, None)
        events = replayed_events(
            record.id,
            record.request,
            record.created_at,
            record.status,
            record.response,
            chain,
            wire=self.service.wire,
        )
        return StreamReply(_frames([e for e in events if e["sequence_number"] > after]))

    async def _follow(self, log: _EventLog, after: int) -> AsyncGenerator[bytes, None]:
        while True:
            changed = log.changed
            pending = [e for e in log.events if e["sequence_number"] > after]
            if pending and pending[0]["sequence_number"] > after + 1:
                # The reader fell behind what memory keeps: the store's log has the rest.
                async for frame in follow_log(self.service.store, log.writer.response_id, after):
                    yield frame
                return
            for event in pending:
                yield encode_sse(event)
                after = event["sequence_number"]
            if log.ended and not any(e["sequence_number"] > after for e in log.events):
                yield DONE_FRAME
                return
            await changed.wait()


async def _frames(events: list[dict[str, Any]]) -> AsyncGenerator[bytes, None]:
    for event in events:
        yield encode_sse(event)
    yield DONE_FRAME


def replayed_events(
    response_id: str,
    request: Any,
    created_at: int,
    status: ResponseStatus,
    response: Any,
    chain: Iterable[ChainStep],
    *,
    wire: WireOptions | None = None,
) -> list[dict[str, Any]]:
    """The wire events of a finished response, rebuilt from its stored top-level chain:
    each step fed as an unstreamed step to a fresh mapper, then the stored Response."""
    mapper = ResponsesEventMapper(
        parse_request(request), response_id=response_id, created_at=created_at, wire=wire
    )
    events = mapper.feed(LoopEvent(LoopEventKind.RESPONSE_STARTED, response_id))
    for step in sorted(chain, key=lambda s: s.sequence):
        common: dict[str, Any] = {
            "step_id": step.id,
            "step_kind": step.kind,
            "sequence": step.sequence,
            "scope": step.scope,
        }
        events += mapper.feed(
            LoopEvent(LoopEventKind.STEP_STARTED, response_id, step.request_payload, **common)
        )
        if step.state is StepState.COMPLETED:
            kind, data = LoopEventKind.STEP_COMPLETED, step.response_payload
        elif step.state is StepState.FAILED:
            kind, data = LoopEventKind.STEP_FAILED, step.error
        else:
            continue
        events += mapper.feed(LoopEvent(kind, response_id, data, **common))
    events.append(stream_end_event(status, response, mapper.next_sequence_number))
    return events
