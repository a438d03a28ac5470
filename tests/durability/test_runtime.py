"""Durability across workers, in process: a dead worker's response is recovered by another
service on the same store, a cancel reaches the worker running the response, a draining
service hands its responses over instead of cancelling them, and a worker whose lease was
taken over lands no write. Each runs on the memory store, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from responseloop import (
    InMemoryStore,
    LoopConfig,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import ResponseStatus, ResponseStore, StepState, ToolSchema
from responseloop.exceptions import LeaseLost, ResponseAlreadyRunning, ServerShuttingDown
from responseloop.stores.postgres import PostgresStore
from responseloop.stores.sqlite import SQLiteStore
from responseloop.testing import ChatReply, ManualClock, RecordingToolExecutor, ScriptedChatModel
from responseloop.tools import MappingToolResolver
from tests.reliability.harness import HookedAdvancingStore, HookedStore
from tests.stores.postgres import drop_schema, new_schema, require_postgres

UPSTREAM = UpstreamTarget("http://upstream.invalid/v1", "/chat/completions", "sk-upstream")
BODY = {"model": "m", "input": "book it", "tools": []}
LEASE = 30.0


class Died(BaseException):
    """The worker's process ending: nothing in the library catches it."""


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def shared_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ResponseStore, ManualClock]]:
    """One store that every service of a test shares, with a clock the test moves."""
    clock = ManualClock()
    if request.param == "memory":
        yield InMemoryStore(clock=clock), clock
    elif request.param == "sqlite":
        async with SQLiteStore(tmp_path / "responses.db", clock=clock) as sqlite:
            yield sqlite, clock
    else:
        url, schema = require_postgres(), new_schema()
        try:
            async with PostgresStore.from_url(url, schema=schema, clock=clock) as postgres:
                yield postgres, clock
        finally:
            drop_schema(url, schema)


def booking_tools(calls: list[str], *, idempotent: bool = False) -> RecordingToolExecutor:
    """``book``: a tool with a side effect that must never happen twice."""
    tools = RecordingToolExecutor()

    def book(arguments: Any) -> dict[str, Any]:
        calls.append(str(arguments))
        return {"booked": True}

    tools.add(ToolSchema("book", "Book it.", idempotent=idempotent), book)
    return tools


def service_on(
    store: ResponseStore,
    model: ScriptedChatModel,
    tools: RecordingToolExecutor | None,
    **config: Any,
) -> ResponsesService:
    return ResponsesService(
        store=store,
        http_client=model,
        upstream=UPSTREAM,
        resolver=StaticToolResolver(tools) if tools is not None else None,
        config=LoopConfig(lease_seconds=LEASE, **config),
    )


def script() -> ScriptedChatModel:
    return ScriptedChatModel(
        [ChatReply.tool_call("book", {"room": 1}, call_id="c1"), ChatReply.text("booked")]
    )


async def run_until_death(service: ResponsesService) -> str:
    prepared = await service.prepare(BODY, api_key=None, caller="tenant")
    with pytest.raises(Died):
        await service.run(prepared)
    return prepared.response_id


@pytest.mark.parametrize(
    ("dies_at", "idempotent", "expected", "bookings"),
    [
        # Died before the tool started: it runs once, on recovery.
        ("update_step:processing:before", False, "completed", 1),
        # Died while the tool was in flight: a non-idempotent tool is never run again...
        ("update_step:completed:before", False, "failed", 1),
        # ...an idempotent one is, when the config allows it.
        ("update_step:completed:before", True, "completed", 2),
        # Died after the tool's result was stored: the next model call runs on recovery.
        ("update_step:completed:after", False, "completed", 1),
    ],
)
async def test_a_dead_workers_response_is_finished_by_another(
    shared_store: tuple[ResponseStore, ManualClock],
    dies_at: str,
    idempotent: bool,
    expected: str,
    bookings: int,
) -> None:
    store, clock = shared_store
    calls: list[str] = []
    model = script()
    tools = booking_tools(calls, idempotent=idempotent)
    # The first update of that kind is the model step's, the second the tool step's.
    worker = service_on(
        HookedStore(store, dies_on_second(dies_at)), model, tools, refire_idempotent_tools=True
    )
    response_id = await run_until_death(worker)
    assert (await store.get_response(response_id)).status is ResponseStatus.IN_PROGRESS

    survivor = service_on(store, model, tools, refire_idempotent_tools=True)
    assert await survivor.recover_expired() == []  # the dead worker's lease is still live
    clock.advance(LEASE + 1)
    assert await survivor.recover_expired() == [response_id]

    record = await store.get_response(response_id)
    assert record.status.value == expected
    assert len(calls) == bookings
    if expected == "failed":
        chain = await store.list_chain(response_id, None)
        assert chain[-1].error is not None
        assert chain[-1].error["type"] == "step_abandoned"
    for step in await store.list_chain(response_id, None):
        assert step.state not in (StepState.PENDING, StepState.PROCESSING)
    assert await survivor.recover_expired() == []  # nothing left to recover


@pytest.mark.parametrize(
    ("dies_at", "idempotent", "refire_model_calls", "expected", "bookings", "steps"),
    [
        # Died after the model call answered, before its completion was written with the
        # tool's start: the model call is in flight, abandoned or re-sent where allowed
        # (the scripted model then answers with its next reply, the final text)...
        ("complete_and_start_steps:before", False, False, "failed", 0, 1),
        ("complete_and_start_steps:before", False, True, "completed", 0, 1),
        # ...and after that write the tool is in flight though it never ran: abandoned,
        # or run where it is idempotent, once either way.
        ("complete_and_start_steps:after", False, False, "failed", 0, 2),
        ("complete_and_start_steps:after", True, False, "completed", 1, 3),
    ],
)
async def test_a_dead_workers_response_is_finished_by_another_over_fewer_writes(
    shared_store: tuple[ResponseStore, ManualClock],
    dies_at: str,
    idempotent: bool,
    refire_model_calls: bool,
    expected: str,
    bookings: int,
    steps: int,
) -> None:
    store, clock = shared_store
    calls: list[str] = []
    model = script()
    tools = booking_tools(calls, idempotent=idempotent)
    config = {"refire_idempotent_tools": True, "refire_model_calls": refire_model_calls}
    # The model step's completion is that write; the tool step's result is stored alone.
    hooked = HookedAdvancingStore(store, dies_on_first(dies_at))
    worker = service_on(hooked, model, tools, **config)
    response_id = await run_until_death(worker)
    assert (await store.get_response(response_id)).status is ResponseStatus.IN_PROGRESS
    assert calls == []

    survivor = service_on(store, model, tools, **config)
    clock.advance(LEASE + 1)
    assert await survivor.recover_expired() == [response_id]

    record = await store.get_response(response_id)
    assert record.status.value == expected
    assert len(calls) == bookings
    chain = await store.list_chain(response_id, None)
    if expected == "failed":
        assert chain[-1].error is not None
        assert chain[-1].error["type"] == "step_abandoned"
    assert [step.kind.value for step in chain] == ["model_call", "tool_call", "model_call"][:steps]
    for step in chain:
        assert step.state not in (StepState.PENDING, StepState.PROCESSING)


def dies_on_first(at: str) -> Callable[[str], Any]:
    """A hook dying the first time ``at`` is reached, and refusing every call after."""
    dead = False

    async def hook(point: str) -> None:
        nonlocal dead
        if dead or point == at:
            dead = True
            raise Died(point)

    return hook


def dies_on_second(at: str) -> Callable[[str], Any]:
    """A hook dying at the second time ``at`` is reached (the first is the model step's,
    the second the tool step's), and refusing every call after that."""
    seen = 0
    dead = False

    async def hook(point: str) -> None:
        nonlocal seen, dead
        if point == at:
            seen += 1
        if dead or seen == 2:
            dead = True
            raise Died(point)

    return hook


def gated_tools(calls: list[str], started: anyio.Event, gate: anyio.Event) -> RecordingToolExecutor:
    """``book`` (idempotent), which waits for ``gate`` once it has started."""
    tools = RecordingToolExecutor()

    async def book(arguments: Any) -> dict[str, Any]:
        calls.append(str(arguments))
        started.set()
        await gate.wait()
        return {"booked": True}

    tools.add(ToolSchema("book", "Book it.", idempotent=True), book)
    return tools


async def test_a_cancel_on_another_replica_stops_the_running_response(
    shared_store: tuple[ResponseStore, ManualClock],
) -> None:
    store, _ = shared_store
    started, never = anyio.Event(), anyio.Event()
    tools = gated_tools([], started, never)
    running_here = service_on(store, script(), tools)
    elsewhere = service_on(store, script(), tools)
    prepared = await running_here.prepare(BODY, api_key=None, caller="tenant")
    outcome: list[ResponseStatus] = []
    cancelled: list[Any] = []

    async def run() -> None:
        outcome.append((await running_here.run(prepared)).status)

    async def cancel() -> None:
        cancelled.append(await elsewhere.cancel(prepared.response_id, caller="tenant"))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await started.wait()
        group.start_soon(cancel)
        # What the ASGI app does every cancel_poll_interval.
        with anyio.fail_after(10):
            while True:
                if await running_here.poll_cancels():
                    break
                await anyio.sleep(0.01)

    assert outcome == [ResponseStatus.CANCELLED]
    assert cancelled[0]["status"] == "cancelled"
    assert (await store.get_response(prepared.response_id)).status is ResponseStatus.CANCELLED


async def test_a_cancel_of_a_dead_workers_response_closes_it_once_its_lease_lapses(
    shared_store: tuple[ResponseStore, ManualClock],
) -> None:
    store, clock = shared_store
    worker = service_on(
        HookedStore(store, dies_on_second("update_step:processing:before")),
        script(),
        booking_tools([]),
    )
    response_id = await run_until_death(worker)
    canceller = service_on(store, script(), booking_tools([]))
    answers: list[Any] = []

    async def cancel() -> None:
        answers.append(await canceller.cancel(response_id, caller="tenant"))

    async with anyio.create_task_group() as group:
        group.start_soon(cancel)
        await anyio.sleep(0.2)
        assert not answers  # the dead worker's lease still holds
        clock.advance(LEASE + 1)
    assert answers[0]["status"] == "cancelled"


async def test_a_cancel_asked_of_a_response_nobody_runs_is_honoured_by_recovery(
    shared_store: tuple[ResponseStore, ManualClock],
) -> None:
    store, clock = shared_store
    calls: list[str] = []
    worker = service_on(
        HookedStore(store, dies_on_second("update_step:processing:before")),
        script(),
        booking_tools(calls),
    )
    response_id = await run_until_death(worker)
    await store.request_cancel(response_id)
    clock.advance(LEASE + 1)
    survivor = service_on(store, script(), booking_tools(calls))
    assert await survivor.recover_expired() == []
    assert (await store.get_response(response_id)).status is ResponseStatus.CANCELLED
    assert calls == []


async def test_draining_hands_running_responses_over_instead_of_cancelling_them(
    shared_store: tuple[ResponseStore, ManualClock],
) -> None:
    store, _ = shared_store
    calls: list[str] = []
    started, gate = anyio.Event(), anyio.Event()
    model = script()
    leaving = service_on(store, model, gated_tools(calls, started, gate))
    prepared = await leaving.prepare(BODY, api_key=None, caller="tenant")
    errors: list[BaseException] = []

    async def run() -> None:
        try:
            await leaving.run(prepared)
        except ServerShuttingDown as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await started.wait()
        await leaving.drain(grace=0.05)
    assert len(errors) == 1
    assert leaving.running == frozenset()
    with pytest.raises(ServerShuttingDown):
        await leaving.prepare(BODY, api_key=None, caller="tenant")
    assert await leaving.recoverable() == []  # a draining service takes no work

    # Handed over: still in progress, its lease released, so another replica takes it now.
    assert (await store.get_response(prepared.response_id)).status is ResponseStatus.IN_PROGRESS
    gate.set()
    other = service_on(
        store, model, gated_tools(calls, anyio.Event(), gate), refire_idempotent_tools=True
    )
    assert await other.recover_expired() == [prepared.response_id]
    record = await store.get_response(prepared.response_id)
    assert record.status is ResponseStatus.COMPLETED
    assert len(calls) == 2  # the idempotent tool in flight ran again


async def test_a_worker_whose_lease_was_taken_over_lands_no_write(
    shared_store: tuple[ResponseStore, ManualClock],
) -> None:
    store, clock = shared_store
    started, gate = anyio.Event(), anyio.Event()
    stalled = service_on(store, script(), gated_tools([], started, gate))
    prepared = await stalled.prepare(BODY, api_key=None, caller="tenant")
    errors: list[BaseException] = []

    async def run() -> None:
        try:
            await stalled.run(prepared)
        except ResponseAlreadyRunning as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await started.wait()
        clock.advance(LEASE + 1)  # the worker stalls past its lease...
        assert await store.claim_response(prepared.response_id, "another_worker", LEASE)
        gate.set()  # ...and wakes up, its tool done
    assert len(errors) == 1
    assert isinstance(errors[0], LeaseLost)
    chain = await store.list_chain(prepared.response_id, None)
    assert [s.state for s in chain] == [StepState.COMPLETED, StepState.PROCESSING]
    assert (await store.get_response(prepared.response_id)).status is ResponseStatus.IN_PROGRESS


async def test_a_response_whose_tools_cannot_be_resolved_again_fails_step_abandoned(
    shared_store: tuple[ResponseStore, ManualClock],
) -> None:
    store, clock = shared_store
    tools = booking_tools([])
    by_key = MappingToolResolver({"sk-tenant": tools})
    worker = ResponsesService(
        store=HookedStore(store, dies_on_second("update_step:processing:before")),
        http_client=script(),
        upstream=UPSTREAM,
        resolver=by_key,
        config=LoopConfig(lease_seconds=LEASE),
    )
    prepared = await worker.prepare(BODY, api_key="sk-tenant", caller="tenant")
    with pytest.raises(Died):
        await worker.run(prepared)
    clock.advance(LEASE + 1)
    survivor = ResponsesService(
        store=store,
        http_client=script(),
        upstream=UPSTREAM,
        resolver=by_key,
        config=LoopConfig(lease_seconds=LEASE),
    )
    assert await survivor.recover_expired() == []
    record = await store.get_response(prepared.response_id)
    assert record.status is ResponseStatus.FAILED
    assert record.response is not None
    assert "resolve_caller" in record.response["error"]["message"]


async def test_the_app_recovers_responses_while_it_runs(
    shared_store: tuple[ResponseStore, ManualClock],
) -> None:
    from responseloop import create_app

    store, clock = shared_store
    calls: list[str] = []
    model = script()
    worker = service_on(
        HookedStore(store, dies_on_second("update_step:processing:before")),
        model,
        booking_tools(calls),
    )
    response_id = await run_until_death(worker)
    clock.advance(LEASE + 1)
    app = create_app(service_on(store, model, booking_tools(calls)), sweep_interval=0.05)
    async with app.lifespan():
        with anyio.fail_after(10):
            while True:
                if (await store.get_response(response_id)).status.is_terminal:
                    break
                await anyio.sleep(0.02)
    assert (await store.get_response(response_id)).status is ResponseStatus.COMPLETED
    assert calls == ["{'room': 1}"]
