"""The event log: a response's stream events kept in the store, so that any replica can
resume the stream (``GET /v1/responses/{id}?stream=true&starting_after=N``) with the events
and sequence numbers the original stream had, while the response runs and after.

A run writes its events in batches (:class:`EventLogWriter`), fenced by its lease: once
another worker took the response over, nothing more of the old run lands, and the new run
continues the log after its last event. A reader (:func:`follow_log`) replays what is
logged and then follows the log until the response has ended.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

import anyio

from .._sse import DONE_FRAME, encode_sse
from ..abc._protocols import ResponseStore
from ..abc._records import ResponseStatus
from ..exceptions import LeaseLost, ResponseLoopError

__all__ = [
    "EventLogWriter",
    "error_event",
    "follow_log",
    "last_logged",
    "logged_events",
    "stream_end_event",
]

logger = logging.getLogger("responseloop.adapters")

# Events that end a stream: a terminal Response event, or an error event.
_ENDINGS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
_TERMINAL_EVENT_OF = {
    ResponseStatus.COMPLETED: "response.completed",
    ResponseStatus.INCOMPLETE: "response.incomplete",
    ResponseStatus.FAILED: "response.failed",
}
_READ_BATCH = 500
# How long a reader that sees the response ended waits for its last event to be logged
# (the run logs it just after storing the Response) before making it from the record.
_ENDING_WAIT = 2.0


class EventLogWriter:
    """Appends one run's stream events to the store's event log, in batches.

    :meth:`add` only buffers; :meth:`flush_due` writes once ``max_pending`` events wait or
    ``max_delay`` seconds passed since the last write, and :meth:`flush` writes at once.
    Writes are fenced by :attr:`fence` (the run's lease) once it is set; a lost lease stops
    the log for good. A failing store is logged and the events are kept for the next try,
    so the log never has a gap.
    """

    def __init__(
        self,
        store: ResponseStore,
        response_id: str,
        *,
        max_pending: int = 64,
        max_delay: float = 0.05,
    ) -> None:
        self.store = store
        self.response_id = response_id
        self.fence: str | None = None
        self.lost = False
        self._max_pending = max_pending
        self._max_delay = max_delay
        self._first = 0
        self._pending: list[str] = []
        # Never written: the first events are due at once, whatever the clock's origin (a
        # monotonic clock may start near zero on a machine that just booted).
        self._last_write = -math.inf

    def hold(self, fence: str) -> None:
        """Fence every later write by ``fence`` (called once the run holds its lease)."""
        self.fence = fence

    def add(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            if not self._pending:
                self._first = int(event["sequence_number"])
            self._pending.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")))

    async def flush_due(self) -> None:
        """Write the buffered events if enough wait, or they waited long enough."""
        if len(self._pending) >= self._max_pending or (
            self._pending and anyio.current_time() - self._last_write >= self._max_delay
        ):
            await self.flush()

    async def flush(self, *, fenced: bool = True) -> None:
        """Write every buffered event now. ``fenced=False`` is for the stream's last
        event, written after the run released its lease (the response has ended then)."""
        if not self._pending or self.lost:
            return
        try:
            await self.store.append_events(
                self.response_id,
                self._first,
                list(self._pending),
                fence=self.fence if fenced else None,
            )
        except LeaseLost:
            self.lost = True  # another worker runs the response and writes its log now
        except ResponseLoopError as exc:
            logger.warning(
                "could not log the events of response %s: %s",
                self.response_id,
                exc,
                extra={"response_id": self.response_id},
            )
            return
        self._pending.clear()
        self._last_write = anyio.current_time()


async def logged_events(store: ResponseStore, response_id: str) -> list[dict[str, Any]]:
    """Every logged event of the response, in order."""
    events: list[dict[str, Any]] = []
    after = -1
    while batch := await store.list_events(response_id, after, _READ_BATCH):
        events += [json.loads(text) for _, text in batch]
        after = batch[-1][0]
    return events


async def last_logged(store: ResponseStore, response_id: str) -> int:
    """The sequence number of the last logged event of the response (-1 for none)."""
    last, after = -1, -1
    while events := await store.list_events(response_id, after, _READ_BATCH):
        last = after = events[-1][0]
    return last


def error_event(message: str, code: str, sequence_number: int) -> dict[str, Any]:
    """The ``error`` event a stream ends with when the response has no terminal event.

    It says the error twice: flat (``code``, ``message``, ``param``), as the ``openai``
    SDKs read it, and as the ``error`` object the Open Responses spec requires."""
    return {
        "type": "error",
        "code": code,
        "message": message,
        "param": None,
        "error": {"type": "server_error", "code": code, "message": message, "param": None},
        "sequence_number": sequence_number,
    }


def stream_end_event(status: ResponseStatus, response: Any, sequence_number: int) -> dict[str, Any]:
    """The event a stream ends with when its run logged none (or its stream is rebuilt):
    the terminal event carrying the stored Response, or an ``error`` event for a
    cancelled one."""
    terminal = _TERMINAL_EVENT_OF.get(status)
    if terminal is None:
        return error_event(
            f"the response was {status.value}", "response_cancelled", sequence_number
        )
    return {"type": terminal, "sequence_number": sequence_number, "response": response}


async def follow_log(
    store: ResponseStore, response_id: str, after: int, *, poll_interval: float = 0.1
) -> AsyncGenerator[bytes, None]:
    """The SSE frames of the logged events after ``after``, then of those logged while the
    response runs (on whichever replica), until the stream's last event and ``[DONE]``."""
    ended_at: float | None = None
    while True:
        events = await store.list_events(response_id, after, _READ_BATCH)
        for number, text in events:
            event = json.loads(text)
            after = number
            yield encode_sse(event)
            if event.get("type") in _ENDINGS:
                yield DONE_FRAME
                return
        if events:
            continue
        record = await store.get_response(response_id)
        if record.status.is_terminal:
            now = anyio.current_time()
            if ended_at is None:
                ended_at = now
            elif now - ended_at >= _ENDING_WAIT:
                # Ended by a worker that logged no end (closed by a sweep or a cancel).
                stored = dict(record.response) if record.response is not None else None
                yield encode_sse(stream_end_event(record.status, stored, after + 1))
                yield DONE_FRAME
                return
        await anyio.sleep(poll_interval)
