"""InMemoryStore: the default store, for tests and single-process hosts."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from .._ids import random_id
from ..abc._json import JSON
from ..abc._records import (
    ConversationContents,
    ConversationEntry,
    ConversationRecord,
    ResponseRecord,
    ResponseStatus,
    ResponseUpdate,
)
from ..abc._steps import ChainStep, RecordedStep, StepDescriptor, StepKind, StepState, StepUpdate
from ..core._steps import check_step_move
from ..exceptions import (
    ConversationLocked,
    ConversationNotFound,
    LeaseLost,
    ResponseExists,
    ResponseNotFound,
    StepNotFound,
    StoreError,
)
from ._codec import encode as _encode
from ._codec import encode_step_update

__all__ = ["InMemoryStore"]

_LIVE = (ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS)


@attrs.define
class _Step:
    id: str
    response_id: str
    kind: StepKind
    state: StepState
    sequence: int
    request: str
    prev_step_id: str | None
    scope: str | None
    response: str | None = None
    error: str | None = None

    def to_chain_step(self) -> ChainStep:
        return ChainStep(
            id=self.id,
            kind=self.kind,
            state=self.state,
            sequence=self.sequence,
            request_payload=json.loads(self.request),
            prev_step_id=self.prev_step_id,
            scope=self.scope,
            response_payload=json.loads(self.response) if self.response is not None else None,
            error=json.loads(self.error) if self.error is not None else None,
        )


@attrs.define
class _Response:
    record: ResponseRecord
    idle_since: float
    steps: list[_Step] = attrs.field(factory=list)
    lease_holder: str | None = None
    lease_expires: float = 0.0
    cancel_requested: bool = False
    events: dict[int, str] = attrs.field(factory=dict)

    def lapse(self, unclaimed_grace: float) -> float:
        """When nobody runs this response any more, by the store's clock."""
        if self.lease_holder is not None:
            return self.lease_expires
        return self.idle_since + unclaimed_grace

    def check_fence(self, fence: str | None) -> None:
        if fence is not None and self.lease_holder != fence:
            raise LeaseLost(self.record.id)


@attrs.define
class _Conversation:
    record: ConversationRecord
    # Encoded items, so what is read back is a copy (as from a database).
    entries: list[tuple[int, str | None, str | None]] = attrs.field(factory=list)
    hidden: set[str] = attrs.field(factory=set)


class InMemoryStore:
    """A :class:`~responseloop.abc.ResponseStore` (and
    :class:`~responseloop.abc.ConversationStore` and
    :class:`~responseloop.abc.ApprovalStore`) in process memory.

    Safe to share between tasks and threads (one lock guards every operation, none of
    which awaits while holding it). Nothing survives the process: use ``SQLiteStore`` or
    ``PostgresStore`` when a response must outlive its worker.

    Args:
        step_ids: makes step ids; the default gives ``step_<32 hex>``. Inject a counter
            for exact ids in tests.
        clock: the time in seconds that response leases expire by (default
            :func:`time.monotonic`); inject :class:`responseloop.testing.ManualClock` to
            expire leases in tests without waiting.
    """

    def __init__(
        self,
        *,
        step_ids: Callable[[], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._responses: dict[str, _Response] = {}
        self._steps: dict[str, _Step] = {}
        self._conversations: dict[str, _Conversation] = {}
        # Never removed: a claim outlives its response (a deleted response's call ran).
        self._approvals: dict[tuple[str | None, str], str] = {}
        self._step_ids = step_ids or (lambda: random_id("step"))
        self._clock = clock or time.monotonic

    def __repr__(self) -> str:
        return f"<InMemoryStore responses={len(self._responses)} steps={len(self._steps)}>"

    async def create_response(self, record: ResponseRecord) -> None:
        _encode(dict(record.request))
        with self._lock:
            if record.id in self._responses:
                raise ResponseExists(record.id)
            self._responses[record.id] = _Response(record, idle_since=self._clock())

    async def get_response(self, response_id: str) -> ResponseRecord:
        with self._lock:
            return self._response(response_id).record

    async def update_response(
        self, response_id: str, update: ResponseUpdate, *, fence: str | None = None
    ) -> None:
        encoded = _encode(update.response)
        with self._lock:
            entry = self._response(response_id)
            entry.check_fence(fence)
            if update.finishes and not entry.record.store:
                self._delete(response_id)
                return
            entry.record = attrs.evolve(
                entry.record, status=update.status, response=json.loads(encoded)
            )

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        with self._lock:
            entry = self._response(response_id)
            now = self._clock()
            if entry.lease_holder not in (None, claimant) and entry.lease_expires > now:
                return False
            entry.lease_holder, entry.lease_expires = claimant, now + lease_seconds
            return True

    async def release_response(self, response_id: str, claimant: str) -> None:
        with self._lock:
            entry = self._responses.get(response_id)
            if entry is not None and entry.lease_holder == claimant:
                entry.lease_holder, entry.lease_expires = None, 0.0
                entry.idle_since = -math.inf  # handed over: any sweep may take it at once

    async def expired_responses(self, limit: int, *, unclaimed_grace: float) -> Sequence[str]:
        with self._lock:
            now = self._clock()
            lapsed = [
                (lapse, response_id)
                for response_id, entry in self._responses.items()
                if entry.record.status in _LIVE and (lapse := entry.lapse(unclaimed_grace)) <= now
            ]
        return [response_id for _, response_id in sorted(lapsed)[:limit]]

    async def request_cancel(self, response_id: str) -> None:
        with self._lock:
            self._response(response_id).cancel_requested = True

    async def cancels_requested(self, response_ids: Sequence[str]) -> Sequence[str]:
        with self._lock:
            return [
                response_id
                for response_id in response_ids
                if (entry := self._responses.get(response_id)) is not None
                and entry.cancel_requested
            ]

    async def append_events(
        self,
        response_id: str,
        first_sequence: int,
        events: Sequence[str],
        *,
        fence: str | None = None,
    ) -> None:
        with self._lock:
            entry = self._response(response_id)
            entry.check_fence(fence)
            for number, event in enumerate(events, first_sequence):
                entry.events.setdefault(number, event)

    async def list_events(
        self, response_id: str, after: int, limit: int
    ) -> Sequence[tuple[int, str]]:
        with self._lock:
            events = self._response(response_id).events
            numbers = sorted(number for number in events if number > after)[:limit]
            return [(number, events[number]) for number in numbers]

    async def delete_response(self, response_id: str) -> None:
        with self._lock:
            self._delete(response_id)

    async def record_step(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        step: StepDescriptor,
        *,
        fence: str | None = None,
    ) -> RecordedStep:
        (recorded,) = self._record(
            response_id, scope, prev_step_id, [step], StepState.PENDING, fence
        )
        return recorded

    async def record_started_steps(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        """Store ``steps`` in order, already ``processing``, each linked after the one
        before it (:class:`~responseloop.abc.StepStartingStore`); all or none."""
        return self._record(response_id, scope, prev_step_id, steps, StepState.PROCESSING, fence)

    async def complete_and_start_steps(
        self,
        response_id: str,
        scope: str | None,
        completed_step_id: str,
        payload: JSON,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        """Complete one step and store ``steps`` after it, already ``processing``
        (:class:`~responseloop.abc.StepAdvancingStore`); all or none."""
        return self._record(
            response_id,
            scope,
            completed_step_id,
            steps,
            StepState.PROCESSING,
            fence,
            completed=_encode(payload),
        )

    def _record(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        state: StepState,
        fence: str | None,
        *,
        completed: str | None = None,
    ) -> list[RecordedStep]:
        """Store ``steps`` after ``prev_step_id``; with ``completed`` (a payload's text),
        complete step ``prev_step_id`` with it first, in the same critical section."""
        requests = [_encode(dict(step.request_payload)) for step in steps]
        with self._lock:
            entry = self._response(response_id)
            entry.check_fence(fence)
            finished = None
            if completed is not None:
                assert prev_step_id is not None
                finished = self._step(response_id, prev_step_id)
                check_step_move(prev_step_id, finished.state, StepState.COMPLETED)
            ids = [self._step_ids() for _ in steps]
            for index, step_id in enumerate(ids):
                if step_id in self._steps or step_id in ids[:index]:
                    raise StoreError(f"step id generator repeated an id: {step_id}")
            if finished is not None:
                finished.state, finished.response, finished.error = (
                    StepState.COMPLETED,
                    completed,
                    None,
                )
            recorded: list[RecordedStep] = []
            for step_id, step, request in zip(ids, steps, requests, strict=True):
                stored = _Step(
                    id=step_id,
                    response_id=response_id,
                    kind=step.kind,
                    state=state,
                    sequence=len(entry.steps) + 1,
                    request=request,
                    prev_step_id=prev_step_id,
                    scope=scope,
                )
                entry.steps.append(stored)
                self._steps[step_id] = stored
                recorded.append(RecordedStep(step_id, stored.sequence))
                prev_step_id = step_id
            return recorded

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, *, fence: str | None = None
    ) -> None:
        response, error = encode_step_update(update)
        with self._lock:
            step = self._step(response_id, step_id)
            self._responses[response_id].check_fence(fence)
            check_step_move(step_id, step.state, update.state)
            step.state, step.response, step.error = update.state, response, error

    async def list_chain(self, response_id: str, scope: str | None) -> Sequence[ChainStep]:
        with self._lock:
            steps = [s for s in self._response(response_id).steps if s.scope == scope]
        return [s.to_chain_step() for s in steps]

    # -- approvals -------------------------------------------------------------------------

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        with self._lock:
            owners = {
                each: owner
                for each in approval_request_ids
                if (owner := self._approvals.get((caller, each))) is not None
            }
            if any(owner != response_id for owner in owners.values()):
                return owners
            for each in approval_request_ids:
                self._approvals[(caller, each)] = response_id
            return dict.fromkeys(approval_request_ids, response_id)

    # -- conversations ---------------------------------------------------------------------

    async def create_conversation(
        self, record: ConversationRecord, items: Sequence[Mapping[str, Any]]
    ) -> None:
        encoded = [_encode(dict(item)) for item in items]
        with self._lock:
            if record.id in self._conversations:
                raise StoreError(f"conversation already exists: {record.id}")
            entry = _Conversation(attrs.evolve(record, next_position=0, active_response=None))
            self._append_items(entry, encoded)
            self._conversations[record.id] = entry

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        with self._lock:
            return self._conversation(conversation_id).record

    async def update_conversation(
        self, conversation_id: str, metadata: Mapping[str, str]
    ) -> ConversationRecord:
        with self._lock:
            entry = self._conversation(conversation_id)
            entry.record = attrs.evolve(entry.record, metadata=dict(metadata))
            return entry.record

    async def delete_conversation(self, conversation_id: str) -> None:
        with self._lock:
            if self._conversations.pop(conversation_id, None) is None:
                raise ConversationNotFound(conversation_id)

    async def list_conversation(self, conversation_id: str) -> ConversationContents:
        with self._lock:
            entry = self._conversation(conversation_id)
            entries = list(entry.entries)
            record, hidden = entry.record, frozenset(entry.hidden)
        return ConversationContents(
            record,
            [
                ConversationEntry(position, response_id, json.loads(item) if item else None)
                for position, response_id, item in entries
            ],
            hidden,
        )

    async def add_conversation_items(
        self, conversation_id: str, items: Sequence[Mapping[str, Any]]
    ) -> int:
        encoded = [_encode(dict(item)) for item in items]
        with self._lock:
            entry = self._conversation(conversation_id)
            if self._in_use(entry, None):
                raise ConversationLocked(conversation_id)
            first = entry.record.next_position
            self._append_items(entry, encoded)
            return first

    async def begin_conversation_turn(
        self, conversation_id: str, response_id: str, *, expected_position: int
    ) -> None:
        with self._lock:
            entry = self._conversation(conversation_id)
            if entry.record.active_response == response_id:
                return
            if self._in_use(entry, response_id) or (
                entry.record.next_position != expected_position
            ):
                raise ConversationLocked(conversation_id)
            position = entry.record.next_position
            entry.entries.append((position, response_id, None))
            entry.record = attrs.evolve(
                entry.record, next_position=position + 1, active_response=response_id
            )

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> None:
        with self._lock:
            entry = self._conversation(conversation_id)
            if self._in_use(entry, None):
                raise ConversationLocked(conversation_id)
            kept = [
                each
                for each in entry.entries
                if each[2] is None or json.loads(each[2]).get("id") != item_id
            ]
            if len(kept) == len(entry.entries):
                entry.hidden.add(item_id)
            entry.entries = kept

    def _in_use(self, entry: _Conversation, response_id: str | None) -> bool:
        active = entry.record.active_response
        if active is None or active == response_id:
            return False
        running = self._responses.get(active)
        return running is not None and running.record.status in _LIVE

    @staticmethod
    def _append_items(entry: _Conversation, encoded: Sequence[str]) -> None:
        position = entry.record.next_position
        entry.entries += [(position + n, None, item) for n, item in enumerate(encoded)]
        entry.record = attrs.evolve(entry.record, next_position=position + len(encoded))

    def _conversation(self, conversation_id: str) -> _Conversation:
        entry = self._conversations.get(conversation_id)
        if entry is None:
            raise ConversationNotFound(conversation_id)
        return entry

    def _delete(self, response_id: str) -> None:
        entry = self._responses.pop(response_id, None)
        if entry is None:
            raise ResponseNotFound(response_id)
        for step in entry.steps:
            del self._steps[step.id]

    def _response(self, response_id: str) -> _Response:
        entry = self._responses.get(response_id)
        if entry is None:
            raise ResponseNotFound(response_id)
        return entry

    def _step(self, response_id: str, step_id: str) -> _Step:
        step = self._steps.get(step_id)
        if step is None or step.response_id != response_id:
            raise StepNotFound(step_id)
        return step
