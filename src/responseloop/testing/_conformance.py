"""The store conformance suite: what every :class:`~responseloop.abc.ResponseStore` must do.

A store that passes it can carry the loop; one that fails it is wrong somewhere the loop
relies on. Subclass :class:`StoreConformance` in a test module and say how to open your
store; pytest collects every check as a test. The checks use plain exceptions, not pytest,
so importing this module does not need pytest.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import attrs

from ..abc._json import JSON
from ..abc._protocols import (
    ApprovalStore,
    ConversationStore,
    ResponseStore,
    StepAdvancingStore,
    StepStartingStore,
)
from ..abc._records import (
    ConversationContents,
    ConversationEntry,
    ConversationRecord,
    ResponseRecord,
    ResponseStatus,
    ResponseUpdate,
)
from ..abc._steps import ChainStep, StepDescriptor, StepKind, StepState, StepUpdate
from ..core._steps import STEP_MOVES
from ..exceptions import (
    ConversationLocked,
    ConversationNotFound,
    LeaseLost,
    ResponseExists,
    ResponseNotFound,
    StepNotFound,
    StepStateError,
    StoreError,
)

__all__ = [
    "ApprovalStoreConformance",
    "ConversationStoreConformance",
    "ManualClock",
    "StepAdvancingStoreConformance",
    "StepStartingStoreConformance",
    "StoreConformance",
]


class ManualClock:
    """A clock that moves only when told to: inject it into a store to expire leases in
    tests without waiting.

    Calling it returns the current time in seconds.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now}>"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _equal(actual: object, expected: object, what: str) -> None:
    _check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def _same_json(actual: JSON, expected: JSON, what: str) -> None:
    """Equal as JSON text, so key order, int-vs-float and every character count."""
    got = json.dumps(actual, ensure_ascii=False)
    want = json.dumps(expected, ensure_ascii=False)
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        at = min(len(got), len(want)) if at is None else at
        raise AssertionError(
            f"{what} did not round-trip: first difference at character {at}: "
            f"expected {want[at : at + 60]!r}, got {got[at : at + 60]!r}"
        )


@contextlib.contextmanager
def _raises(kind: type[BaseException], what: str) -> Iterator[None]:
    try:
        yield
    except kind:
        return
    except BaseException as exc:
        raise AssertionError(
            f"{what}: expected {kind.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what}: expected {kind.__name__}, nothing was raised")


def _new_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def _record(response_id: str | None = None, **fields: Any) -> ResponseRecord:
    request = fields.pop("request", {"model": "m", "input": "hello"})
    return ResponseRecord(response_id or _new_id(), request, **fields)


_MODEL = StepDescriptor.model_call({"model": "m", "messages": [{"role": "user", "content": "x"}]})


def _tool(call_id: str = "call_1") -> StepDescriptor:
    return StepDescriptor.tool_call("lookup", call_id, {"q": call_id})


# One update to each state a step can be moved to, for the checks the move table generates.
_UPDATE_TO: dict[StepState, StepUpdate] = {
    StepState.PROCESSING: StepUpdate.processing(),
    StepState.COMPLETED: StepUpdate.completed({"answer": "done"}),
    StepState.FAILED: StepUpdate.failed({"message": "boom"}),
    StepState.CANCELLED: StepUpdate.cancelled(),
}


def _route_to(state: StepState) -> list[StepUpdate]:
    """The shortest series of legal moves (by :data:`STEP_MOVES`) taking a new, pending
    step to ``state``."""
    routes: dict[StepState, list[StepUpdate]] = {StepState.PENDING: []}
    frontier = [StepState.PENDING]
    while frontier and state not in routes:
        current = frontier.pop(0)
        for target, sources in STEP_MOVES.items():
            if current in sources and target not in routes:
                routes[target] = [*routes[current], _UPDATE_TO[target]]
                frontier.append(target)
    return routes[state]


def _payloads() -> dict[str, JSON]:
    """Payloads a careless store gets wrong: encodings, sizes, nesting and number types."""
    nested: JSON = {"leaf": True}
    for depth in range(100):
        nested = {"level": depth, "child": [nested]}
    return {
        "unicode": {
            "emoji": "🦀🧪👩‍👩‍👧",
            "cjk": "中文字符 日本語 한국어",
            "rtl": "مرحبا שלום",
            "combining": "e\u0301 a\u0308",
            "controls": "nul\u0000 bell\u0007 tab\t newline\n",
            "separators": "line\u2028paragraph\u2029",
            "lone_surrogates": "high\ud800 low\udfff",
            "quotes": "\"'\\/",
            "ключ": "значение",
        },
        "large": {"text": "x" * 2_000_000, "items": list(range(20_000))},
        "nested": nested,
        "numbers": {
            "int": 1,
            "float": 1.0,
            "small": 0.1,
            "huge": 1e308,
            "tiny": 5e-324,
            "negative_zero": -0.0,
            "bigint": 2**70 + 1,
            "negative": -(2**63),
        },
        "order": {"zeta": 1, "alpha": 2, "mid": {"b": 1, "a": 2}, "": "empty key"},
        "empties": {"s": "", "l": [], "d": {}, "null": None, "t": True, "f": False},
        "top_level_list": [1, "two", None, [3.5], {"four": 4}],
    }


class StoreConformance:
    """The conformance suite for a :class:`~responseloop.abc.ResponseStore`.

    Subclass it in a test module and implement :meth:`open_store`; every ``test_*`` method
    is then a test of your store. The methods are ``async``: run them with anyio's pytest
    plugin (``anyio_mode = "auto"``, or mark the subclass with ``pytest.mark.anyio``)::

        class TestMyStore(StoreConformance):
            @contextlib.asynccontextmanager
            async def open_store(self, clock):
                store = MyStore(dsn, clock=clock)
                try:
                    yield store
                finally:
                    await store.close()

    Several tests may share the backing database: every test uses fresh response ids.
    """

    def open_store(
        self, clock: Callable[[], float]
    ) -> contextlib.AbstractAsyncContextManager[ResponseStore]:
        """An async context manager giving a ready store, closed on exit.

        ``clock`` returns the time in seconds: the store must judge lease expiry by it, so
        the lease tests can expire leases by advancing it. Implement it as an
        ``@contextlib.asynccontextmanager`` method.
        """
        raise NotImplementedError("StoreConformance subclasses implement open_store(clock)")

    def _store(
        self, clock: Callable[[], float] | None = None
    ) -> contextlib.AbstractAsyncContextManager[ResponseStore]:
        return self.open_store(clock or ManualClock())

    # -- responses -------------------------------------------------------------------------

    async def test_create_and_get_round_trip(self) -> None:
        async with self._store() as store:
            record = ResponseRecord(
                _new_id(),
                {"model": "m", "input": [{"role": "user", "content": "hi"}], "store": True},
                model="m",
                caller="tenant-1",
                status=ResponseStatus.QUEUED,
                created_at=1_700_000_123,
            )
            await store.create_response(record)
            _equal(await store.get_response(record.id), record, "get_response")

    async def test_record_defaults_round_trip(self) -> None:
        async with self._store() as store:
            record = ResponseRecord(_new_id(), {})
            await store.create_response(record)
            _equal(await store.get_response(record.id), record, "get_response")

    async def test_create_twice_is_response_exists(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            with _raises(ResponseExists, "create_response with a taken id"):
                await store.create_response(_record(record.id, request={"other": True}))
            _equal(await store.get_response(record.id), record, "the first record")

    async def test_finalize_sets_status_and_response(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            body = {"id": record.id, "object": "response", "status": "completed", "output": []}
            await store.update_response(
                record.id, ResponseUpdate.finished(ResponseStatus.COMPLETED, body)
            )
            got = await store.get_response(record.id)
            _equal(got.status, ResponseStatus.COMPLETED, "status")
            _same_json(got.response, body, "the finalised response")
            _same_json(dict(got.request), dict(record.request), "the request")

    async def test_delete_removes_response_and_steps(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            step = await store.record_step(record.id, None, None, _MODEL)
            await store.delete_response(record.id)
            with _raises(ResponseNotFound, "get_response after delete"):
                await store.get_response(record.id)
            with _raises(ResponseNotFound, "list_chain after delete"):
                await store.list_chain(record.id, None)
            with _raises(StepNotFound, "update_step after delete"):
                await store.update_step(record.id, step.id, StepUpdate.processing())
            with _raises(ResponseNotFound, "delete_response twice"):
                await store.delete_response(record.id)
            # The id is free again, and its sequences start over.
            await store.create_response(record)
            again = await store.record_step(record.id, None, None, _MODEL)
            _equal(again.sequence, 1, "the first sequence of a re-created response")

    async def test_unknown_response_is_response_not_found(self) -> None:
        async with self._store() as store:
            missing = _new_id()
            with _raises(ResponseNotFound, "get_response"):
                await store.get_response(missing)
            with _raises(ResponseNotFound, "update_response"):
                await store.update_response(
                    missing, ResponseUpdate.finished(ResponseStatus.FAILED, {})
                )
            with _raises(ResponseNotFound, "delete_response"):
                await store.delete_response(missing)
            with _raises(ResponseNotFound, "record_step"):
                await store.record_step(missing, None, None, _MODEL)
            with _raises(ResponseNotFound, "list_chain"):
                await store.list_chain(missing, None)
            with _raises(ResponseNotFound, "claim_response"):
                await store.claim_response(missing, "worker", 10)
            with _raises(LookupError, "get_response (ResponseNotFound is a LookupError)"):
                await store.get_response(missing)

    async def test_reopen_makes_a_finished_response_run_again(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            body = {"id": record.id, "object": "response", "status": "failed", "output": []}
            await store.update_response(
                record.id, ResponseUpdate.finished(ResponseStatus.FAILED, body)
            )
            await store.update_response(record.id, ResponseUpdate.reopened())
            got = await store.get_response(record.id)
            _equal(got.status, ResponseStatus.IN_PROGRESS, "the status of a reopened response")
            _equal(got.response, None, "the assembled JSON of a reopened response")
            with _raises(ResponseNotFound, "update_response(reopened) of an unknown response"):
                await store.update_response(_new_id(), ResponseUpdate.reopened())

    # -- store: false ----------------------------------------------------------------------

    async def test_store_false_is_kept_while_running(self) -> None:
        async with self._store() as store:
            record = _record(store=False)
            await store.create_response(record)
            _equal(await store.get_response(record.id), record, "a running store=False record")
            step = await store.record_step(record.id, None, None, _MODEL)
            chain = await store.list_chain(record.id, None)
            _equal([s.id for s in chain], [step.id], "its chain while it runs")
            await store.update_response(record.id, ResponseUpdate.reopened())
            _equal(
                (await store.get_response(record.id)).status,
                ResponseStatus.IN_PROGRESS,
                "a reopened store=False record (reopening never deletes)",
            )

    async def test_store_false_is_deleted_when_finalised(self) -> None:
        async with self._store() as store:
            record = _record(store=False)
            await store.create_response(record)
            step = await store.record_step(record.id, None, None, _MODEL)
            await store.update_step(record.id, step.id, StepUpdate.completed({"ok": True}))
            await store.update_response(
                record.id, ResponseUpdate.finished(ResponseStatus.COMPLETED, {"id": record.id})
            )
            with _raises(ResponseNotFound, "get_response of a finalised store=False response"):
                await store.get_response(record.id)
            with _raises(ResponseNotFound, "list_chain of a finalised store=False response"):
                await store.list_chain(record.id, None)
            with _raises(StepNotFound, "a step of a finalised store=False response"):
                await store.update_step(record.id, step.id, StepUpdate.completed({}))

    # -- steps -----------------------------------------------------------------------------

    async def test_record_step_allocates_sequences_from_one(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            first = await store.record_step(record.id, None, None, _MODEL)
            second = await store.record_step(record.id, None, first.id, _tool("a"))
            third = await store.record_step(record.id, None, second.id, _tool("b"))
            _equal([first.sequence, second.sequence, third.sequence], [1, 2, 3], "sequences")
            _check(len({first.id, second.id, third.id}) == 3, "step ids are distinct")

    async def test_list_chain_returns_steps_in_order_with_their_fields(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            model = await store.record_step(record.id, None, None, _MODEL)
            tool = await store.record_step(record.id, None, model.id, _tool())
            chain = await store.list_chain(record.id, None)
            expected = [
                ChainStep(
                    id=model.id,
                    kind=StepKind.MODEL_CALL,
                    state=StepState.PENDING,
                    sequence=1,
                    request_payload=_MODEL.request_payload,
                    prev_step_id=None,
                    scope=None,
                ),
                ChainStep(
                    id=tool.id,
                    kind=StepKind.TOOL_CALL,
                    state=StepState.PENDING,
                    sequence=2,
                    request_payload=_tool().request_payload,
                    prev_step_id=model.id,
                    scope=None,
                ),
            ]
            _equal(list(chain), expected, "list_chain")

    async def test_empty_chain_of_existing_response(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            _equal(list(await store.list_chain(record.id, None)), [], "an empty chain")

    async def test_concurrent_record_step_is_gap_free(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            allocated: list[int] = []
            scopes: list[str | None] = [None, "step_parent_a", "step_parent_b"]

            async def record_one(index: int) -> None:
                step = await store.record_step(
                    record.id, scopes[index % 3], None, _tool(f"call_{index}")
                )
                allocated.append(step.sequence)

            async with anyio.create_task_group() as group:
                for index in range(60):
                    group.start_soon(record_one, index)
            _equal(sorted(allocated), list(range(1, 61)), "sequences of 60 concurrent steps")
            for scope in scopes:
                chain = await store.list_chain(record.id, scope)
                sequences = [step.sequence for step in chain]
                _equal(sequences, sorted(sequences), f"order of scope {scope!r}")
                _equal(len(chain), 20, f"steps of scope {scope!r}")

    async def test_sequences_are_per_response(self) -> None:
        async with self._store() as store:
            first, second = _record(), _record()
            await store.create_response(first)
            await store.create_response(second)
            await store.record_step(first.id, None, None, _MODEL)
            await store.record_step(first.id, None, None, _MODEL)
            other = await store.record_step(second.id, None, None, _MODEL)
            _equal(other.sequence, 1, "the first sequence of another response")

    async def test_scopes_share_sequences_but_not_chains(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            model = await store.record_step(record.id, None, None, _MODEL)
            agent = await store.record_step(record.id, None, model.id, _tool("agent"))
            inner = await store.record_step(record.id, agent.id, None, _MODEL)
            inner_tool = await store.record_step(record.id, agent.id, inner.id, _tool("inner"))
            after = await store.record_step(record.id, None, agent.id, _MODEL)
            _equal(
                [model.sequence, agent.sequence, inner.sequence, inner_tool.sequence],
                [1, 2, 3, 4],
                "sequences across scopes",
            )
            _equal(after.sequence, 5, "the next top-level sequence")
            top = await store.list_chain(record.id, None)
            _equal([s.id for s in top], [model.id, agent.id, after.id], "the top-level chain")
            sub = await store.list_chain(record.id, agent.id)
            _equal([s.id for s in sub], [inner.id, inner_tool.id], "the sub-agent chain")
            _equal({s.scope for s in sub}, {agent.id}, "the scope of sub-agent steps")
            _equal(list(await store.list_chain(record.id, "step_unused")), [], "an unused scope")

    async def test_step_lifecycle_completed(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            step = await store.record_step(record.id, None, None, _MODEL)
            await store.update_step(record.id, step.id, StepUpdate.processing())
            _equal((await _only(store, record.id)).state, StepState.PROCESSING, "state")
            payload = {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}
            await store.update_step(record.id, step.id, StepUpdate.completed(payload))
            stored = await _only(store, record.id)
            _equal(stored.state, StepState.COMPLETED, "state")
            _same_json(stored.response_payload, payload, "the step's response payload")
            _equal(stored.error, None, "the error of a completed step")

    async def test_step_lifecycle_failed(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            step = await store.record_step(record.id, None, None, _tool())
            await store.update_step(record.id, step.id, StepUpdate.processing())
            error = {"type": "tool_error", "code": "server_error", "message": "boom"}
            await store.update_step(record.id, step.id, StepUpdate.failed(error))
            stored = await _only(store, record.id)
            _equal(stored.state, StepState.FAILED, "state")
            _same_json(stored.error, error, "the step's error")
            _equal(stored.response_payload, None, "the payload of a failed step")

    async def test_complete_straight_from_pending(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            step = await store.record_step(record.id, None, None, _tool())
            await store.update_step(record.id, step.id, StepUpdate.completed("done"))
            _equal((await _only(store, record.id)).state, StepState.COMPLETED, "state")

    async def test_cancelled_step_can_be_refired(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            step = await store.record_step(record.id, None, None, _MODEL)
            await store.update_step(record.id, step.id, StepUpdate.processing())
            await store.update_step(record.id, step.id, StepUpdate.cancelled())
            cancelled = await _only(store, record.id)
            _equal(cancelled.state, StepState.CANCELLED, "state")
            _equal(cancelled.response_payload, None, "the payload of a cancelled step")
            await store.update_step(record.id, step.id, StepUpdate.processing())
            await store.update_step(
                record.id, step.id, StepUpdate.processing()
            )  # a re-fire of a re-fire
            await store.update_step(record.id, step.id, StepUpdate.completed({"again": True}))
            _equal((await _only(store, record.id)).state, StepState.COMPLETED, "state")

    async def test_illegal_transitions_are_step_state_errors(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            done = await store.record_step(record.id, None, None, _tool("a"))
            await store.update_step(record.id, done.id, StepUpdate.completed({"first": True}))
            with _raises(StepStateError, "completing a step twice"):
                await store.update_step(record.id, done.id, StepUpdate.completed({"second": True}))
            with _raises(StepStateError, "failing a completed step"):
                await store.update_step(record.id, done.id, StepUpdate.failed({"message": "late"}))
            with _raises(StepStateError, "cancelling a completed step"):
                await store.update_step(record.id, done.id, StepUpdate.cancelled())
            with _raises(StepStateError, "re-starting a completed step"):
                await store.update_step(record.id, done.id, StepUpdate.processing())
            failed = await store.record_step(record.id, None, done.id, _tool("b"))
            await store.update_step(record.id, failed.id, StepUpdate.failed({"message": "boom"}))
            with _raises(StepStateError, "re-starting a failed step"):
                await store.update_step(record.id, failed.id, StepUpdate.processing())
            with _raises(StepStateError, "completing a failed step"):
                await store.update_step(record.id, failed.id, StepUpdate.completed({}))
            cancelled = await store.record_step(record.id, None, failed.id, _tool("c"))
            await store.update_step(record.id, cancelled.id, StepUpdate.cancelled())
            with _raises(StepStateError, "completing a cancelled step"):
                await store.update_step(record.id, cancelled.id, StepUpdate.completed({}))
            chain = await store.list_chain(record.id, None)
            _same_json(chain[0].response_payload, {"first": True}, "the first payload")
            _equal(
                [s.state for s in chain],
                [StepState.COMPLETED, StepState.FAILED, StepState.CANCELLED],
                "states after refused transitions",
            )

    async def test_every_step_move_follows_the_move_table(self) -> None:
        """Generated from :data:`responseloop.core.STEP_MOVES`: from every state, each move
        the table holds is made (with its payload or error), and every other one is a
        :class:`StepStateError` that leaves the step as it was. (No update moves a step to
        ``pending``: :class:`StepUpdate` cannot express it.)"""
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            prev: str | None = None
            for current in StepState:
                for target, update in _UPDATE_TO.items():
                    step = await store.record_step(
                        record.id, None, prev, _tool(f"{current.value}_{target.value}")
                    )
                    prev = step.id
                    route = _route_to(current)
                    for move in route:
                        await store.update_step(record.id, step.id, move)
                    what = f"moving a {current.value} step to {target.value}"
                    if current in STEP_MOVES[target]:
                        try:
                            await store.update_step(record.id, step.id, update)
                        except StepStateError as exc:
                            raise AssertionError(f"{what} (the table allows it): {exc}") from exc
                        last: StepUpdate | None = update
                    else:
                        with _raises(StepStateError, f"{what} (the table forbids it)"):
                            await store.update_step(record.id, step.id, update)
                        last = route[-1] if route else None
                    expected = (
                        (last.state, last.payload, last.error) if last else (current, None, None)
                    )
                    chain = await store.list_chain(record.id, None)
                    stored = next(s for s in chain if s.id == step.id)
                    _equal(
                        (stored.state, stored.response_payload, stored.error),
                        expected,
                        f"the step after {what}",
                    )

    async def test_unknown_step_is_step_not_found(self) -> None:
        async with self._store() as store:
            record, other = _record(), _record()
            await store.create_response(record)
            await store.create_response(other)
            foreign = await store.record_step(other.id, None, None, _MODEL)
            for step_id, what in (
                ("step_missing", "an unknown step"),
                (foreign.id, "a step of another response"),
            ):
                with _raises(StepNotFound, f"update_step(processing) of {what}"):
                    await store.update_step(record.id, step_id, StepUpdate.processing())
                with _raises(StepNotFound, f"update_step(completed) of {what}"):
                    await store.update_step(record.id, step_id, StepUpdate.completed({}))
                with _raises(StepNotFound, f"update_step(failed) of {what}"):
                    await store.update_step(record.id, step_id, StepUpdate.failed({}))
                with _raises(StepNotFound, f"update_step(cancelled) of {what}"):
                    await store.update_step(record.id, step_id, StepUpdate.cancelled())
            _equal((await _only(store, other.id)).state, StepState.PENDING, "the foreign step")

    # -- payloads --------------------------------------------------------------------------

    async def test_payloads_round_trip_exactly(self) -> None:
        async with self._store() as store:
            for name, payload in _payloads().items():
                request = {"model": "m", "payload": payload}
                record = _record(request=request)
                await store.create_response(record)
                step = await store.record_step(
                    record.id, None, None, StepDescriptor.model_call(request)
                )
                await store.update_step(record.id, step.id, StepUpdate.completed(payload))
                failed = await store.record_step(record.id, None, step.id, _tool())
                await store.update_step(
                    record.id, failed.id, StepUpdate.failed({"message": "x", "detail": payload})
                )
                await store.update_response(
                    record.id, ResponseUpdate.finished(ResponseStatus.COMPLETED, payload)
                )
                got = await store.get_response(record.id)
                _same_json(dict(got.request), request, f"the {name} request")
                _same_json(got.response, payload, f"the {name} response")
                done, broken = await store.list_chain(record.id, None)
                _same_json(dict(done.request_payload), request, f"the {name} step request")
                _same_json(done.response_payload, payload, f"the {name} step payload")
                _same_json(broken.error, {"message": "x", "detail": payload}, f"the {name} error")

    async def test_stored_payloads_are_copies(self) -> None:
        async with self._store() as store:
            request: dict[str, Any] = {"model": "m", "messages": [{"role": "user"}]}
            record = _record(request=request)
            await store.create_response(record)
            step = await store.record_step(
                record.id, None, None, StepDescriptor.model_call(request)
            )
            payload: dict[str, Any] = {"answer": ["a"]}
            await store.update_step(record.id, step.id, StepUpdate.completed(payload))
            payload["answer"].append("mutated")
            request["messages"].append({"role": "mutated"})
            stored = await _only(store, record.id)
            _same_json(stored.response_payload, {"answer": ["a"]}, "the stored payload")
            _same_json(
                dict(stored.request_payload),
                {"model": "m", "messages": [{"role": "user"}]},
                "the stored request",
            )

    async def test_unserialisable_payload_is_store_error(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            step = await store.record_step(record.id, None, None, _MODEL)
            with _raises(StoreError, "a NaN payload"):
                await store.update_step(
                    record.id, step.id, StepUpdate.completed({"x": float("nan")})
                )
            with _raises(StoreError, "a payload that is not JSON"):
                await store.update_step(record.id, step.id, StepUpdate.completed({"x": object()}))
            _equal((await _only(store, record.id)).state, StepState.PENDING, "the step")

    # -- leases ----------------------------------------------------------------------------

    async def test_lease_is_exclusive_and_renewable(self) -> None:
        clock = ManualClock()
        async with self._store(clock) as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 30), "a first claim succeeds")
            _check(not await store.claim_response(record.id, "b", 30), "a live lease excludes b")
            clock.advance(20)
            _check(await store.claim_response(record.id, "a", 30), "the holder renews")
            clock.advance(20)  # 40s after the first claim, 20s into the renewed lease
            _check(not await store.claim_response(record.id, "b", 30), "a renewed lease holds")

    async def test_expired_lease_can_be_taken_over(self) -> None:
        clock = ManualClock()
        async with self._store(clock) as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 10), "a claims")
            clock.advance(10.5)
            _check(await store.claim_response(record.id, "b", 10), "b takes over after expiry")
            _check(not await store.claim_response(record.id, "a", 10), "a lost the lease")
            await store.release_response(record.id, "a")  # not the holder: no effect
            _check(not await store.claim_response(record.id, "c", 10), "b still holds it")

    async def test_release_frees_the_lease(self) -> None:
        clock = ManualClock()
        async with self._store(clock) as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 60), "a claims")
            await store.release_response(record.id, "a")
            _check(await store.claim_response(record.id, "b", 60), "b claims after a released")
            await store.release_response(record.id, "b")
            await store.release_response(record.id, "b")  # releasing twice is harmless
            await store.release_response(_new_id(), "b")  # so is a response that is gone

    async def test_leases_are_per_response(self) -> None:
        async with self._store() as store:
            first, second = _record(), _record()
            await store.create_response(first)
            await store.create_response(second)
            _check(await store.claim_response(first.id, "a", 60), "a claims the first")
            _check(await store.claim_response(second.id, "b", 60), "b claims the second")

    async def test_concurrent_claims_have_one_winner(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            winners: list[str] = []

            async def claim(name: str) -> None:
                if await store.claim_response(record.id, name, 60):
                    winners.append(name)

            async with anyio.create_task_group() as group:
                for index in range(8):
                    group.start_soon(claim, f"worker_{index}")
            _equal(len(winners), 1, f"winners of one lease ({winners})")

    # -- fencing ---------------------------------------------------------------------------

    async def test_fenced_writes_of_the_holder_land(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 60), "a claims")
            step = await store.record_step(record.id, None, None, _MODEL, fence="a")
            await store.update_step(record.id, step.id, StepUpdate.processing(), fence="a")
            await store.update_step(record.id, step.id, _UPDATE_TO[StepState.COMPLETED], fence="a")
            await store.append_events(record.id, 1, ['{"n": 1}'], fence="a")
            body = {"id": record.id, "status": "completed"}
            await store.update_response(
                record.id, ResponseUpdate.finished(ResponseStatus.COMPLETED, body), fence="a"
            )
            _equal((await _only(store, record.id)).state, StepState.COMPLETED, "the step")
            _equal((await store.get_response(record.id)).status, ResponseStatus.COMPLETED, "status")

    async def test_fenced_writes_after_a_takeover_are_refused(self) -> None:
        clock = ManualClock()
        async with self._store(clock) as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 10), "a claims")
            step = await store.record_step(record.id, None, None, _MODEL, fence="a")
            clock.advance(11)
            # Expired but not taken over: nobody else ran it, so a's writes still land.
            await store.update_step(record.id, step.id, StepUpdate.processing(), fence="a")
            _check(await store.claim_response(record.id, "b", 10), "b takes over")
            with _raises(LeaseLost, "record_step fenced by a lost lease"):
                await store.record_step(record.id, None, step.id, _MODEL, fence="a")
            with _raises(LeaseLost, "update_step fenced by a lost lease"):
                await store.update_step(
                    record.id, step.id, _UPDATE_TO[StepState.COMPLETED], fence="a"
                )
            with _raises(LeaseLost, "append_events fenced by a lost lease"):
                await store.append_events(record.id, 1, ['{"n": 1}'], fence="a")
            with _raises(LeaseLost, "update_response fenced by a lost lease"):
                await store.update_response(
                    record.id,
                    ResponseUpdate.finished(ResponseStatus.FAILED, {"status": "failed"}),
                    fence="a",
                )
            # Nothing of a's landed; b's writes do.
            chain = await store.list_chain(record.id, None)
            _equal([(s.id, s.state) for s in chain], [(step.id, StepState.PROCESSING)], "chain")
            _equal(list(await store.list_events(record.id, 0, 10)), [], "the event log")
            _equal(
                (await store.get_response(record.id)).status, ResponseStatus.IN_PROGRESS, "status"
            )
            await store.update_step(record.id, step.id, _UPDATE_TO[StepState.COMPLETED], fence="b")
            _equal((await _only(store, record.id)).state, StepState.COMPLETED, "b's move")

    async def test_fenced_writes_after_release_are_refused(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 60), "a claims")
            await store.release_response(record.id, "a")
            with _raises(LeaseLost, "record_step fenced by a released lease"):
                await store.record_step(record.id, None, None, _MODEL, fence="a")
            _equal(list(await store.list_chain(record.id, None)), [], "the chain")
            # Unfenced writes are the caller's own business.
            await store.record_step(record.id, None, None, _MODEL)

    async def test_fenced_write_to_a_missing_response_is_not_found(self) -> None:
        async with self._store() as store:
            with _raises(ResponseNotFound, "record_step fenced, unknown response"):
                await store.record_step(_new_id(), None, None, _MODEL, fence="a")

    # -- recovery --------------------------------------------------------------------------

    async def test_expired_responses_are_the_live_ones_nobody_runs(self) -> None:
        clock = ManualClock(start=5_000_000.0 + uuid.uuid4().int % 1000)
        async with self._store(clock) as store:
            held, lapsed, released, fresh, done = (_record() for _ in range(5))
            queued = _record(status=ResponseStatus.QUEUED)
            for record in (held, lapsed, released, done, queued):
                await store.create_response(record)
            clock.advance(100)
            await store.create_response(fresh)  # created just now: still within the grace
            await store.claim_response(held.id, "h", 1000)
            await store.claim_response(lapsed.id, "l", 10)
            await store.claim_response(released.id, "r", 1000)
            await store.release_response(released.id, "r")
            await store.update_response(
                done.id, ResponseUpdate.finished(ResponseStatus.COMPLETED, {"status": "completed"})
            )
            clock.advance(30)
            found = set(await store.expired_responses(100_000, unclaimed_grace=60))
            ours = {held.id, lapsed.id, released.id, fresh.id, done.id, queued.id}
            _equal(
                found & ours,
                {lapsed.id, released.id, queued.id},
                "expired: lease lapsed, released, never claimed past the grace",
            )
            _check(
                len(await store.expired_responses(1, unclaimed_grace=60)) == 1,
                "expired_responses honours its limit",
            )
            clock.advance(100)
            found = set(await store.expired_responses(100_000, unclaimed_grace=60))
            _check(fresh.id in found, "a never-claimed response past the grace is expired")
            _check(held.id not in found, "a live lease is not expired")

    async def test_cancel_requests(self) -> None:
        async with self._store() as store:
            asked, other = _record(), _record()
            await store.create_response(asked)
            await store.create_response(other)
            _equal(list(await store.cancels_requested([asked.id, other.id])), [], "none asked")
            await store.request_cancel(asked.id)
            await store.request_cancel(asked.id)  # asking twice is harmless
            _equal(
                list(await store.cancels_requested([asked.id, other.id, _new_id()])),
                [asked.id],
                "the asked response",
            )
            _equal(list(await store.cancels_requested([])), [], "an empty question")
            with _raises(ResponseNotFound, "request_cancel of an unknown response"):
                await store.request_cancel(_new_id())

    # -- event log -------------------------------------------------------------------------

    async def test_event_log_round_trip(self) -> None:
        async with self._store() as store:
            record = _record()
            await store.create_response(record)
            events = [json.dumps({"n": n, "text": "é🦀\u2028"}) for n in range(1, 6)]
            await store.append_events(record.id, 1, events[:3])
            await store.append_events(record.id, 4, events[3:])
            await store.append_events(record.id, 3, ['{"retried": true}'])  # already held
            _equal(
                list(await store.list_events(record.id, 0, 100)),
                list(enumerate(events, 1)),
                "every event, in order",
            )
            _equal(
                list(await store.list_events(record.id, 2, 2)),
                [(3, events[2]), (4, events[3])],
                "after 2, at most 2",
            )
            _equal(list(await store.list_events(record.id, 5, 100)), [], "after the last")
            with _raises(ResponseNotFound, "list_events of an unknown response"):
                await store.list_events(_new_id(), 0, 10)
            with _raises(ResponseNotFound, "append_events to an unknown response"):
                await store.append_events(_new_id(), 1, events[:1])
            await store.delete_response(record.id)
            await store.create_response(record)
            _equal(list(await store.list_events(record.id, 0, 100)), [], "deleted with it")


async def _only(store: ResponseStore, response_id: str) -> ChainStep:
    chain = await store.list_chain(response_id, None)
    _equal(len(chain), 1, "steps in the chain")
    return chain[0]


class _ConversationsAndResponses(ResponseStore, ConversationStore):
    """What the conversation checks use: one store keeping both."""


def _conversation(**fields: Any) -> ConversationRecord:
    return ConversationRecord(f"conv_{uuid.uuid4().hex}", **fields)


def _message(text: str) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
        "status": "completed",
    }


def _items_of(contents: ConversationContents) -> list[JSON]:
    return [dict(entry.item) for entry in contents.entries if entry.item is not None]


class ConversationStoreConformance:
    """The conformance suite for a :class:`~responseloop.abc.ConversationStore` (a
    :class:`~responseloop.abc.ResponseStore` that also keeps conversations).

    Subclass it beside :class:`StoreConformance`, with the same :meth:`open_store`::

        class TestMyStore(StoreConformance, ConversationStoreConformance):
            ...
    """

    def open_store(
        self, clock: Callable[[], float]
    ) -> contextlib.AbstractAsyncContextManager[ResponseStore]:
        """As :meth:`StoreConformance.open_store`; the store must keep conversations too."""
        raise NotImplementedError(
            "ConversationStoreConformance subclasses implement open_store(clock)"
        )

    @contextlib.asynccontextmanager
    async def _conversations(self) -> AsyncIterator[_ConversationsAndResponses]:
        async with self.open_store(ManualClock()) as store:
            _check(
                isinstance(store, ConversationStore),
                f"{type(store).__name__} does not implement ConversationStore",
            )
            yield store  # type: ignore[misc]

    async def test_conversation_create_and_get_round_trip(self) -> None:
        async with self._conversations() as store:
            record = _conversation(
                caller="tenant-1", created_at=1_700_000_321, metadata={"topic": "tea ☕"}
            )
            items = [_message("one"), _message("two")]
            await store.create_conversation(record, items)
            got = await store.get_conversation(record.id)
            _equal(got, attrs.evolve(record, next_position=2), "get_conversation")
            contents = await store.list_conversation(record.id)
            _equal(contents.record, got, "the listed record")
            _equal([e.position for e in contents.entries], [0, 1], "the positions")
            _equal([e.response_id for e in contents.entries], [None, None], "no turns")
            _same_json(_items_of(contents), items, "the items")
            _equal(contents.hidden, frozenset(), "nothing hidden")

    async def test_conversation_without_items(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [])
            contents = await store.list_conversation(record.id)
            _equal(contents.entries, (), "entries")
            _equal(contents.record, record, "the record")

    async def test_conversation_id_taken_is_store_error(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [])
            with _raises(StoreError, "create_conversation with a taken id"):
                await store.create_conversation(record, [_message("again")])
            _equal((await store.list_conversation(record.id)).entries, (), "the first one")

    async def test_unknown_conversation_is_conversation_not_found(self) -> None:
        async with self._conversations() as store:
            missing = f"conv_{uuid.uuid4().hex}"
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "get_conversation": lambda: store.get_conversation(missing),
                "update_conversation": lambda: store.update_conversation(missing, {}),
                "delete_conversation": lambda: store.delete_conversation(missing),
                "list_conversation": lambda: store.list_conversation(missing),
                "add_conversation_items": lambda: store.add_conversation_items(
                    missing, [_message("x")]
                ),
                "begin_conversation_turn": lambda: store.begin_conversation_turn(
                    missing, _new_id(), expected_position=0
                ),
                "delete_conversation_item": lambda: store.delete_conversation_item(
                    missing, "msg_1"
                ),
            }
            for name, call in calls.items():
                with _raises(ConversationNotFound, name):
                    await call()

    async def test_update_replaces_the_metadata(self) -> None:
        async with self._conversations() as store:
            record = _conversation(metadata={"a": "1", "b": "2"})
            await store.create_conversation(record, [_message("x")])
            updated = await store.update_conversation(record.id, {"c": "3"})
            _equal(updated, attrs.evolve(record, metadata={"c": "3"}, next_position=1), "updated")
            _equal(await store.get_conversation(record.id), updated, "as stored")

    async def test_delete_removes_the_conversation_and_leaves_its_responses(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [_message("x")])
            response = _record(status=ResponseStatus.COMPLETED)  # an ended turn
            await store.create_response(response)
            await store.begin_conversation_turn(record.id, response.id, expected_position=1)
            await store.delete_conversation_item(record.id, "msg_of_the_turn")
            await store.delete_conversation(record.id)
            with _raises(ConversationNotFound, "list_conversation after delete"):
                await store.list_conversation(record.id)
            with _raises(ConversationNotFound, "delete_conversation twice"):
                await store.delete_conversation(record.id)
            _equal((await store.get_response(response.id)).id, response.id, "the response")
            await store.create_conversation(record, [])  # its id is free again, and empty
            _equal((await store.list_conversation(record.id)).entries, (), "a new one")

    async def test_added_items_append_in_order(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            first = [_message("one")]
            await store.create_conversation(record, first)
            more = [_message("two"), _message("three")]
            _equal(await store.add_conversation_items(record.id, more), 1, "the first position")
            _equal(await store.add_conversation_items(record.id, [first[0]]), 3, "then")
            contents = await store.list_conversation(record.id)
            _equal([e.position for e in contents.entries], [0, 1, 2, 3], "the positions")
            _same_json(_items_of(contents), first + more + first, "the items")
            _equal(contents.record.next_position, 4, "next_position")

    async def test_items_round_trip_exactly(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            items = [
                {"id": f"item_{name}", "payload": value} for name, value in _payloads().items()
            ]
            await store.create_conversation(record, items[:2])
            await store.add_conversation_items(record.id, items[2:])
            _same_json(_items_of(await store.list_conversation(record.id)), items, "items")

    async def test_a_turn_references_its_response(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [_message("x")])
            response = _record(status=ResponseStatus.IN_PROGRESS)
            await store.create_response(response)
            await store.begin_conversation_turn(record.id, response.id, expected_position=1)
            # Beginning it again (a retry of the same response) changes nothing.
            await store.begin_conversation_turn(record.id, response.id, expected_position=1)
            contents = await store.list_conversation(record.id)
            _equal(
                contents.entries[1],
                ConversationEntry(1, response_id=response.id),
                "the turn's entry",
            )
            _equal(len(contents.entries), 2, "one entry per turn")
            _equal(contents.record.active_response, response.id, "active_response")
            _equal(contents.record.next_position, 2, "next_position")

    async def test_a_live_turn_locks_the_conversation(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [])
            running = _record(status=ResponseStatus.QUEUED)
            await store.create_response(running)
            await store.begin_conversation_turn(record.id, running.id, expected_position=0)
            other = _record()
            await store.create_response(other)
            with _raises(ConversationLocked, "a second turn while the first is queued"):
                await store.begin_conversation_turn(record.id, other.id, expected_position=1)
            with _raises(ConversationLocked, "adding items while a turn is live"):
                await store.add_conversation_items(record.id, [_message("x")])
            with _raises(ConversationLocked, "deleting an item while a turn is live"):
                await store.delete_conversation_item(record.id, "msg_of_a_turn")
            await store.update_response(running.id, ResponseUpdate.reopened())
            with _raises(ConversationLocked, "a second turn while the first is in progress"):
                await store.begin_conversation_turn(record.id, other.id, expected_position=1)
            body = {"id": running.id, "status": "completed", "output": []}
            await store.update_response(
                running.id, ResponseUpdate.finished(ResponseStatus.COMPLETED, body)
            )
            await store.begin_conversation_turn(record.id, other.id, expected_position=1)
            contents = await store.list_conversation(record.id)
            _equal([e.response_id for e in contents.entries], [running.id, other.id], "the turns")
            _equal(contents.hidden, frozenset(), "nothing hidden while a turn was live")

    async def test_a_deleted_turn_frees_the_conversation(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [])
            running = _record()
            await store.create_response(running)
            await store.begin_conversation_turn(record.id, running.id, expected_position=0)
            await store.delete_response(running.id)
            _equal(await store.add_conversation_items(record.id, [_message("x")]), 1, "added")

    async def test_a_changed_conversation_refuses_a_turn(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [_message("x")])
            response = _record()
            await store.create_response(response)
            await store.add_conversation_items(record.id, [_message("meanwhile")])
            with _raises(ConversationLocked, "a turn prepared on what was read before"):
                await store.begin_conversation_turn(record.id, response.id, expected_position=1)
            _equal((await store.get_conversation(record.id)).active_response, None, "no turn")
            await store.begin_conversation_turn(record.id, response.id, expected_position=2)

    async def test_concurrent_turns_have_one_winner(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            await store.create_conversation(record, [])
            responses = [_record() for _ in range(6)]
            for response in responses:
                await store.create_response(response)
            won: list[str] = []

            async def begin(response_id: str) -> None:
                with contextlib.suppress(ConversationLocked):
                    await store.begin_conversation_turn(record.id, response_id, expected_position=0)
                    won.append(response_id)

            async with anyio.create_task_group() as group:
                for response in responses:
                    group.start_soon(begin, response.id)
            _equal(len(won), 1, "winners")
            contents = await store.list_conversation(record.id)
            _equal([e.response_id for e in contents.entries], won, "the one turn")

    async def test_deleting_items(self) -> None:
        async with self._conversations() as store:
            record = _conversation()
            items = [_message("one"), _message("two")]
            await store.create_conversation(record, items)
            await store.delete_conversation_item(record.id, str(items[0]["id"]))
            await store.delete_conversation_item(record.id, "msg_of_a_turn")
            await store.delete_conversation_item(record.id, "msg_of_a_turn")
            contents = await store.list_conversation(record.id)
            _same_json(_items_of(contents), items[1:], "an added item is removed")
            _equal(contents.hidden, frozenset({"msg_of_a_turn"}), "any other is hidden")
            _equal(contents.record.next_position, 2, "positions are never reused")

    async def test_conversations_are_separate(self) -> None:
        async with self._conversations() as store:
            one, two = _conversation(), _conversation()
            await store.create_conversation(one, [_message("one")])
            await store.create_conversation(two, [_message("two")])
            await store.delete_conversation_item(one.id, "msg_hidden")
            await store.delete_conversation(two.id)
            contents = await store.list_conversation(one.id)
            _equal(len(contents.entries), 1, "its own entries")
            _equal(contents.hidden, frozenset({"msg_hidden"}), "its own hidden ids")


class _ApprovalsAndResponses(ResponseStore, ApprovalStore):
    """What the approval checks use: one store keeping both."""


def _approval_id() -> str:
    return f"mcpr_{uuid.uuid4().hex}"


class ApprovalStoreConformance:
    """The conformance suite for an :class:`~responseloop.abc.ApprovalStore` (a
    :class:`~responseloop.abc.ResponseStore` that also claims approved MCP calls, so
    each runs once).

    Subclass it beside :class:`StoreConformance`, with the same :meth:`open_store`::

        class TestMyStore(StoreConformance, ApprovalStoreConformance):
            ...
    """

    def open_store(
        self, clock: Callable[[], float]
    ) -> contextlib.AbstractAsyncContextManager[ResponseStore]:
        """As :meth:`StoreConformance.open_store`; the store must claim approvals too."""
        raise NotImplementedError("ApprovalStoreConformance subclasses implement open_store(clock)")

    @contextlib.asynccontextmanager
    async def _approvals(self) -> AsyncIterator[_ApprovalsAndResponses]:
        async with self.open_store(ManualClock()) as store:
            _check(
                isinstance(store, ApprovalStore),
                f"{type(store).__name__} does not implement ApprovalStore",
            )
            yield store  # type: ignore[misc]

    async def test_an_approval_is_claimed_once(self) -> None:
        async with self._approvals() as store:
            approval, first, second = _approval_id(), _new_id(), _new_id()
            _equal(
                dict(await store.claim_approvals("c", [approval], first)),
                {approval: first},
                "the first claim",
            )
            _equal(
                dict(await store.claim_approvals("c", [approval], first)),
                {approval: first},
                "the same response claiming again (a retry)",
            )
            _equal(
                dict(await store.claim_approvals("c", [approval], second)),
                {approval: first},
                "another response claiming it",
            )
            _equal(dict(await store.claim_approvals("c", [], second)), {}, "no approvals")

    async def test_claims_are_all_or_nothing(self) -> None:
        async with self._approvals() as store:
            taken, free = _approval_id(), _approval_id()
            owner, refused, later = _new_id(), _new_id(), _new_id()
            await store.claim_approvals(None, [taken], owner)
            _equal(
                dict(await store.claim_approvals(None, [free, taken], refused)),
                {taken: owner},
                "a claim meeting one owned by another response",
            )
            _equal(
                dict(await store.claim_approvals(None, [free], later)),
                {free: later},
                "what the refused claim named is still free",
            )
            _equal(
                dict(await store.claim_approvals(None, [free, taken], later)),
                {taken: owner, free: later},
                "the owners as they stand",
            )

    async def test_callers_never_share_a_claim(self) -> None:
        async with self._approvals() as store:
            approval = _approval_id()
            owners = {caller: _new_id() for caller in (None, "", "tenant-a", "tenant-b")}
            for caller, response_id in owners.items():
                _equal(
                    dict(await store.claim_approvals(caller, [approval], response_id)),
                    {approval: response_id},
                    f"the claim of caller {caller!r}",
                )

    async def test_a_claim_outlives_its_response(self) -> None:
        async with self._approvals() as store:
            record = _record()
            await store.create_response(record)
            approval = _approval_id()
            await store.claim_approvals("c", [approval], record.id)
            await store.delete_response(record.id)
            _equal(
                dict(await store.claim_approvals("c", [approval], _new_id())),
                {approval: record.id},
                "the claim of a deleted response (its call ran)",
            )

    async def test_concurrent_claims_have_one_owner(self) -> None:
        async with self._approvals() as store:
            shared, other = _approval_id(), _approval_id()
            responses = [_new_id() for _ in range(8)]
            answers: dict[str, dict[str, str]] = {}

            async def claim(index: int, response_id: str) -> None:
                # Overlapping sets in both orders: a store must neither deadlock nor split.
                ids = [shared, other] if index % 2 else [other, shared]
                answers[response_id] = dict(await store.claim_approvals("c", ids, response_id))

            async with anyio.create_task_group() as group:
                for index, response_id in enumerate(responses):
                    group.start_soon(claim, index, response_id)
            winners = [
                response_id
                for response_id, owners in answers.items()
                if owners == {shared: response_id, other: response_id}
            ]
            _equal(len(winners), 1, "responses that claimed both")
            for response_id, owners in answers.items():
                _equal(owners, {shared: winners[0], other: winners[0]}, f"{response_id}'s answer")


class _StartingAndResponses(ResponseStore, StepStartingStore):
    """What the step-starting checks use: one store doing both."""


class StepStartingStoreConformance:
    """The conformance suite for a :class:`~responseloop.abc.StepStartingStore` (a
    :class:`~responseloop.abc.ResponseStore` that records steps already ``processing`` in
    one write).

    Subclass it beside :class:`StoreConformance`, with the same :meth:`open_store`::

        class TestMyStore(StoreConformance, StepStartingStoreConformance):
            ...
    """

    def open_store(
        self, clock: Callable[[], float]
    ) -> contextlib.AbstractAsyncContextManager[ResponseStore]:
        """As :meth:`StoreConformance.open_store`; the store must start steps too."""
        raise NotImplementedError(
            "StepStartingStoreConformance subclasses implement open_store(clock)"
        )

    @contextlib.asynccontextmanager
    async def _starting(
        self, clock: Callable[[], float] | None = None
    ) -> AsyncIterator[_StartingAndResponses]:
        async with self.open_store(clock or ManualClock()) as store:
            _check(
                isinstance(store, StepStartingStore),
                f"{type(store).__name__} does not implement StepStartingStore",
            )
            yield store  # type: ignore[misc]

    async def test_started_steps_are_stored_processing_in_order_and_linked(self) -> None:
        async with self._starting() as store:
            record = _record()
            await store.create_response(record)
            first = await store.record_step(record.id, None, None, _MODEL)
            steps = [_tool("call_1"), _tool("call_2"), _tool("call_3")]
            recorded = list(await store.record_started_steps(record.id, None, first.id, steps))
            _equal(len(recorded), 3, "steps answered")
            _equal(len({step.id for step in recorded}), 3, "distinct step ids")
            _equal(
                [step.sequence for step in recorded],
                [first.sequence + 1, first.sequence + 2, first.sequence + 3],
                "sequences after the step before them",
            )
            chain = list(await store.list_chain(record.id, None))
            _equal([s.id for s in chain], [first.id, *(s.id for s in recorded)], "chain order")
            _equal(
                [s.prev_step_id for s in chain[1:]],
                [first.id, recorded[0].id, recorded[1].id],
                "each linked after the one before it",
            )
            _equal([s.state for s in chain[1:]], [StepState.PROCESSING] * 3, "states")
            _equal(
                [dict(s.request_payload) for s in chain[1:]],
                [dict(step.request_payload) for step in steps],
                "requests",
            )
            later = await store.record_step(record.id, None, recorded[-1].id, _MODEL)
            _equal(later.sequence, recorded[-1].sequence + 1, "the next step's sequence")

    async def test_a_started_step_is_what_record_and_start_would_store(self) -> None:
        async with self._starting() as store:
            record = _record()
            await store.create_response(record)
            (started,) = await store.record_started_steps(record.id, "scope_1", None, [_tool()])
            other = _record()
            await store.create_response(other)
            two_writes = await store.record_step(other.id, "scope_1", None, _tool())
            await store.update_step(other.id, two_writes.id, StepUpdate.processing())
            (one,) = await store.list_chain(record.id, "scope_1")
            (two,) = await store.list_chain(other.id, "scope_1")
            _equal(attrs.evolve(one, id="x"), attrs.evolve(two, id="x"), "the step, but for its id")
            # It moves on from processing like any step in flight.
            await store.update_step(record.id, started.id, _UPDATE_TO[StepState.COMPLETED])
            (done,) = await store.list_chain(record.id, "scope_1")
            _equal(done.state, StepState.COMPLETED, "the step after completing it")

    async def test_a_lost_lease_or_a_missing_response_stores_nothing(self) -> None:
        clock = ManualClock()
        async with self._starting(clock) as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 10), "a claims")
            clock.advance(11)
            _check(await store.claim_response(record.id, "b", 10), "b takes over")
            with _raises(LeaseLost, "record_started_steps fenced by a lost lease"):
                await store.record_started_steps(record.id, None, None, [_MODEL], fence="a")
            _equal(list(await store.list_chain(record.id, None)), [], "the chain")
            landed = await store.record_started_steps(record.id, None, None, [_MODEL], fence="b")
            _equal(len(landed), 1, "the holder's steps")
            with _raises(ResponseNotFound, "record_started_steps of a missing response"):
                await store.record_started_steps(_new_id(), None, None, [_MODEL])

    async def test_no_steps_store_nothing(self) -> None:
        async with self._starting() as store:
            record = _record()
            await store.create_response(record)
            _equal(list(await store.record_started_steps(record.id, None, None, [])), [], "answer")
            _equal(list(await store.list_chain(record.id, None)), [], "the chain")
            step = await store.record_step(record.id, None, None, _MODEL)
            _equal(step.sequence, 1, "the first step's sequence after none were started")


class _AdvancingAndResponses(ResponseStore, StepAdvancingStore):
    """What the step-advancing checks use: one store doing both."""


class StepAdvancingStoreConformance:
    """The conformance suite for a :class:`~responseloop.abc.StepAdvancingStore` (a store
    that completes a step and starts the steps after it in one write).

    Subclass it beside :class:`StoreConformance` and :class:`StepStartingStoreConformance`,
    with the same :meth:`open_store`::

        class TestMyStore(
            StoreConformance, StepStartingStoreConformance, StepAdvancingStoreConformance
        ):
            ...
    """

    def open_store(
        self, clock: Callable[[], float]
    ) -> contextlib.AbstractAsyncContextManager[ResponseStore]:
        """As :meth:`StoreConformance.open_store`; the store must advance steps too."""
        raise NotImplementedError(
            "StepAdvancingStoreConformance subclasses implement open_store(clock)"
        )

    @contextlib.asynccontextmanager
    async def _advancing(
        self, clock: Callable[[], float] | None = None
    ) -> AsyncIterator[_AdvancingAndResponses]:
        async with self.open_store(clock or ManualClock()) as store:
            _check(
                isinstance(store, StepAdvancingStore),
                f"{type(store).__name__} does not implement StepAdvancingStore",
            )
            yield store  # type: ignore[misc]

    async def test_the_step_is_completed_and_the_next_ones_started_after_it(self) -> None:
        async with self._advancing() as store:
            record = _record()
            await store.create_response(record)
            (model,) = await store.record_started_steps(record.id, "scope_1", None, [_MODEL])
            payload = {"choices": [{"message": {"content": "é \ud800", "n": 1.5}}]}
            steps = [_tool("call_1"), _tool("call_2")]
            recorded = list(
                await store.complete_and_start_steps(record.id, "scope_1", model.id, payload, steps)
            )
            _equal(
                [step.sequence for step in recorded],
                [model.sequence + 1, model.sequence + 2],
                "sequences after the completed step",
            )
            chain = list(await store.list_chain(record.id, "scope_1"))
            _equal([s.id for s in chain], [model.id, *(s.id for s in recorded)], "chain order")
            _equal(chain[0].state, StepState.COMPLETED, "the completed step's state")
            _equal(chain[0].response_payload, payload, "the completed step's payload")
            _equal(chain[0].error, None, "the completed step's error")
            _equal(
                [s.prev_step_id for s in chain[1:]],
                [model.id, recorded[0].id],
                "each linked after the one before it",
            )
            _equal([s.state for s in chain[1:]], [StepState.PROCESSING] * 2, "states")
            _equal(
                [dict(s.request_payload) for s in chain[1:]],
                [dict(step.request_payload) for step in steps],
                "requests",
            )

    async def test_it_stores_what_update_and_record_and_start_would(self) -> None:
        async with self._advancing() as store:
            one, two = _record(), _record()
            for record in (one, two):
                await store.create_response(record)
            (first,) = await store.record_started_steps(one.id, None, None, [_MODEL])
            (second,) = await store.record_started_steps(two.id, None, None, [_MODEL])
            payload = {"answer": [1, "two", None, True]}
            await store.complete_and_start_steps(one.id, None, first.id, payload, [_tool()])
            await store.update_step(two.id, second.id, StepUpdate.completed(payload))
            await store.record_started_steps(two.id, None, second.id, [_tool()])
            chain_one = list(await store.list_chain(one.id, None))
            chain_two = list(await store.list_chain(two.id, None))
            _equal(
                [(s.kind, s.state, s.sequence, s.response_payload) for s in chain_one],
                [(s.kind, s.state, s.sequence, s.response_payload) for s in chain_two],
                "the chain, but for its ids",
            )

    async def test_advancing_with_no_steps_completes_the_step(self) -> None:
        async with self._advancing() as store:
            record = _record()
            await store.create_response(record)
            (model,) = await store.record_started_steps(record.id, None, None, [_MODEL])
            answer = await store.complete_and_start_steps(record.id, None, model.id, {"a": 1}, [])
            _equal(list(answer), [], "answer")
            (only,) = await store.list_chain(record.id, None)
            _equal((only.state, only.response_payload), (StepState.COMPLETED, {"a": 1}), "step")

    async def test_advancing_from_a_step_that_cannot_complete_stores_nothing(self) -> None:
        async with self._advancing() as store:
            record = _record()
            await store.create_response(record)
            (model,) = await store.record_started_steps(record.id, None, None, [_MODEL])
            await store.update_step(record.id, model.id, StepUpdate.failed({"message": "x"}))
            with _raises(StepStateError, "completing a failed step with the next ones"):
                await store.complete_and_start_steps(record.id, None, model.id, {}, [_tool()])
            with _raises(StepNotFound, "completing a missing step with the next ones"):
                await store.complete_and_start_steps(record.id, None, "step_missing", {}, [_tool()])
            (only,) = await store.list_chain(record.id, None)
            _equal(only.state, StepState.FAILED, "the step after the refusals")
            later = await store.record_step(record.id, None, model.id, _MODEL)
            _equal(later.sequence, model.sequence + 1, "no sequence was taken")

    async def test_advancing_under_a_lost_lease_or_a_missing_response_stores_nothing(
        self,
    ) -> None:
        clock = ManualClock()
        async with self._advancing(clock) as store:
            record = _record()
            await store.create_response(record)
            _check(await store.claim_response(record.id, "a", 10), "a claims")
            (model,) = await store.record_started_steps(record.id, None, None, [_MODEL], fence="a")
            clock.advance(11)
            _check(await store.claim_response(record.id, "b", 10), "b takes over")
            with _raises(LeaseLost, "complete_and_start_steps fenced by a lost lease"):
                await store.complete_and_start_steps(
                    record.id, None, model.id, {"a": 1}, [_tool()], fence="a"
                )
            (only,) = await store.list_chain(record.id, None)
            _equal(only.state, StepState.PROCESSING, "the step after the fenced-off write")
            landed = await store.complete_and_start_steps(
                record.id, None, model.id, {"b": 2}, [_tool()], fence="b"
            )
            _equal(
                [step.sequence for step in landed],
                [model.sequence + 1],
                "the holder's steps, after the refused write took no sequence",
            )
            with _raises(ResponseNotFound, "complete_and_start_steps of a missing response"):
                await store.complete_and_start_steps(_new_id(), None, model.id, {}, [_tool()])
