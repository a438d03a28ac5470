"""Store faults: a store failing the Nth call of each method, before or after the write.

The failure propagates as a :class:`StoreError` (the loop never swallows one; only the
best-effort lease release is logged instead), and a later resume on the healthy store
(the same underlying store) finishes the response without repeating a completed step.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from responseloop import InMemoryStore, LoopConfig
from responseloop.abc import ChainStep, ResponseStatus, ResponseStore, StepKind, StepState
from responseloop.exceptions import StoreError
from responseloop.stores.sqlite import SQLiteStore
from responseloop.testing import ManualClock
from tests.reliability.harness import (
    CONVERSATION,
    MODEL_STEPS,
    TOOL_STEPS,
    HookedStore,
    assert_settled,
    conversation_model,
    conversation_tools,
    every_step,
    leftover_tasks,
    local_service,
    task_ids,
)

RESPONSE_ID = "resp_store_faults"
# A dead worker's in-flight model call and idempotent tool may be re-fired on resume, so
# a failure at any point can be finished; the lease outlives every run of these tests.
CONFIG = LoopConfig(refire_model_calls=True, refire_idempotent_tools=True, lease_seconds=60)


class Injected(StoreError):
    """The failure the faulty store injects."""


async def healthy_calls() -> list[str]:
    """The store hooks (``method:before``, and ``method:after`` when the call succeeded)
    a healthy run of the conversation passes, in order."""
    labels: list[str] = []

    async def record(label: str) -> None:
        labels.append(label)

    service = local_service(
        HookedStore(InMemoryStore(), record), conversation_model(), conversation_tools(), CONFIG
    )
    prepared = await service.prepare(CONVERSATION, api_key=None, response_id=RESPONSE_ID)
    result = await service.run(prepared)
    assert result.status is ResponseStatus.COMPLETED
    return labels


@asynccontextmanager
async def underlying_store(kind: str, clock: ManualClock, directory: Path) -> AsyncIterator[Any]:
    """The healthy store under the faulty wrapper: in memory, or SQLite on disk."""
    if kind == "memory":
        yield InMemoryStore(clock=clock)
        return
    path = directory / f"{uuid.uuid4().hex}.db"
    async with SQLiteStore(path, synchronous="NORMAL", clock=clock) as store:
        yield store


async def fail_and_resume(label: str, nth: int, kind: str, directory: Path) -> None:
    clock = ManualClock()
    async with underlying_store(kind, clock, directory) as inner:
        await _fail_and_resume(label, nth, inner, clock)


async def _fail_and_resume(label: str, nth: int, inner: Any, clock: ManualClock) -> None:
    method = label.partition(":")[0]
    seen = 0
    injected: list[Injected] = []

    async def fail_nth(hooked: str) -> None:
        nonlocal seen
        if hooked == label:
            seen += 1
            if seen == nth:
                injected.append(Injected(f"injected failure at {label} #{nth}"))
                raise injected[-1]

    model, tools = conversation_model(), conversation_tools()
    before = task_ids()
    faulty = local_service(HookedStore(inner, fail_nth), model, tools, CONFIG)
    raised: Injected | None = None
    try:
        prepared = await faulty.prepare(CONVERSATION, api_key=None, response_id=RESPONSE_ID)
        result = await faulty.run(prepared)
    except Injected as exc:
        raised = exc
    if raised is not None:
        assert injected == [raised]  # the store's own error, unchanged
    else:
        # Only the lease release is best effort; every other failure must propagate.
        assert method == "release_response", f"{method} failed silently"
        assert injected
        assert result.status is ResponseStatus.COMPLETED
    assert faulty.running == frozenset()
    assert leftover_tasks(before) == []

    done_before = {s.id: s for s in await _steps(inner) if s.state is StepState.COMPLETED}
    model_calls, tool_calls = len(model.requests), len(tools.calls)
    clock.advance(CONFIG.lease_seconds + 1)  # the failed worker's lease, if any, lapses

    healthy = local_service(inner, model, tools, CONFIG)
    prepared = await healthy.prepare(CONVERSATION, api_key=None, response_id=RESPONSE_ID)
    result = await healthy.run(prepared)

    assert result.status is ResponseStatus.COMPLETED
    assert await assert_settled(inner, RESPONSE_ID) is ResponseStatus.COMPLETED
    steps = await _steps(inner)
    assert all(s.state is StepState.COMPLETED for s in steps)
    assert sorted(s.kind.value for s in steps) == sorted(
        ["model_call"] * MODEL_STEPS + ["tool_call"] * TOOL_STEPS
    )
    for step_id, step in done_before.items():  # completed steps are kept as they were
        assert next(s for s in steps if s.id == step_id) == step
    # ...and never run again: the resume ran exactly the steps that had not completed.
    redone = [s for s in steps if s.id not in done_before]
    redone_tools = [s for s in redone if s.kind is StepKind.TOOL_CALL]
    assert len(model.requests) - model_calls == len(redone) - len(redone_tools)
    resumed_calls = collections.Counter(c.call_id for c in tools.calls[tool_calls:])
    assert resumed_calls == collections.Counter(s.request_payload["call_id"] for s in redone_tools)
    completed_calls = {
        s.request_payload["call_id"] for s in done_before.values() if s.kind is StepKind.TOOL_CALL
    }
    assert not completed_calls & set(resumed_calls)


async def _steps(store: ResponseStore) -> list[ChainStep]:
    try:
        return await every_step(store, RESPONSE_ID)
    except StoreError:
        return []  # the response was never created


async def every_fault(kind: str, directory: Path) -> int:
    calls = collections.Counter(await healthy_calls())
    cases = 0
    for label, count in sorted(calls.items()):
        for nth in range(1, count + 1):
            await fail_and_resume(label, nth, kind, directory)
            cases += 1
    return cases


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_store_failure_at_any_call_propagates_and_a_resume_finishes_the_response(
    backend: str, kind: str, tmp_path: Path
) -> None:
    cases = anyio.run(every_fault, kind, tmp_path, backend=backend)
    assert cases >= 2 * (MODEL_STEPS + TOOL_STEPS) * 3  # record, mark and complete each step


async def cancel_after_a_failed_run(label: str) -> None:
    inner = InMemoryStore()
    failed = False

    async def fail_once(hooked: str) -> None:
        nonlocal failed
        if hooked == label and not failed:
            failed = True
            raise Injected(f"injected failure at {label}")

    model, tools = conversation_model(), conversation_tools()
    faulty = local_service(HookedStore(inner, fail_once), model, tools, CONFIG)
    prepared = await faulty.prepare(CONVERSATION, api_key=None, response_id=RESPONSE_ID)
    with pytest.raises(Injected):
        await faulty.run(prepared)
    left = [s.state for s in await every_step(inner, RESPONSE_ID) if not s.state.is_terminal]
    assert left  # the failed run left a step in flight

    cancelled = await local_service(inner, model, tools, CONFIG).cancel(RESPONSE_ID)

    assert cancelled["status"] == "cancelled"
    assert await assert_settled(inner, RESPONSE_ID) is ResponseStatus.CANCELLED
    assert StepState.CANCELLED in {s.state for s in await every_step(inner, RESPONSE_ID)}


@pytest.mark.parametrize("label", ["update_step:processing:before", "update_step:completed:before"])
async def test_cancelling_a_response_a_failed_run_left_cancels_its_steps_in_flight(
    label: str,
) -> None:
    await cancel_after_a_failed_run(label)
