"""One response, one worker at a time: the loop's lease on the response it runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import Complete, ResponseStore, StepState
from responseloop.exceptions import ResponseAlreadyRunning
from responseloop.stores.postgres import PostgresStore
from responseloop.stores.sqlite import SQLiteStore
from responseloop.testing import (
    ChatReply,
    ManualClock,
    RecordingStore,
    RecordingToolExecutor,
    ScriptedChatModel,
)
from tests.stores.postgres import drop_schema, new_schema, require_postgres

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "go"}]}
UPSTREAM = UpstreamTarget("http://upstream.invalid")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def postgres_target(store_kind: str) -> Iterator[tuple[str, str] | None]:
    if store_kind != "postgres":
        yield None
        return
    url = require_postgres()
    schema = new_schema()
    yield url, schema
    drop_schema(url, schema)


@contextlib.asynccontextmanager
async def two_workers_stores(
    kind: str, tmp_path: Path, postgres: tuple[str, str] | None
) -> AsyncIterator[tuple[ResponseStore, ResponseStore]]:
    """Two store handles over the same data, as two workers would hold them."""
    if kind == "memory":
        shared = InMemoryStore()
        yield shared, shared
    elif kind == "sqlite":
        path = tmp_path / "responses.db"
        async with SQLiteStore(path) as first, SQLiteStore(path) as second:
            yield first, second
    else:
        assert postgres is not None
        url, schema = postgres
        async with (
            PostgresStore.from_url(url, schema=schema, max_size=2) as first,
            PostgresStore.from_url(url, schema=schema, max_size=2) as second,
        ):
            yield first, second


async def test_two_workers_starting_together_one_runs_the_other_is_refused(
    store_kind: str, tmp_path: Path, postgres_target: tuple[str, str] | None
) -> None:
    async with two_workers_stores(store_kind, tmp_path, postgres_target) as stores:
        await stores[0].create_response(ResponseRecord("resp_contended", BODY))
        loser_done = anyio.Event()
        models: list[ScriptedChatModel] = []
        executors: list[RecordingToolExecutor] = []
        outcomes: list[Any] = []

        async def hold_until_the_other_gave_up(arguments: Any) -> Any:
            await loser_done.wait()  # the winner is mid-tool while the other one tries
            return {"ok": True}

        async def worker(store: ResponseStore) -> None:
            model = ScriptedChatModel([ChatReply.tool_call("hold"), ChatReply.text("done")])
            tools = RecordingToolExecutor()
            tools.add("hold", hold_until_the_other_gave_up)
            models.append(model)
            executors.append(tools)
            try:
                outcomes.append(
                    await run_response_loop(
                        "resp_contended",
                        store=store,
                        http_client=model,
                        upstream=UPSTREAM,
                        transition=ChatTransition(BODY),
                        tools=tools,
                    )
                )
            except ResponseAlreadyRunning as refused:
                outcomes.append(refused)
                loser_done.set()

        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(worker, store)

        refused = [o for o in outcomes if isinstance(o, ResponseAlreadyRunning)]
        completed = [o for o in outcomes if isinstance(o, Complete)]
        assert len(refused) == 1
        assert len(completed) == 1
        assert refused[0].response_id == "resp_contended"
        assert refused[0].http_status == 409
        assert refused[0].to_error()["type"] == "response_already_running"
        # Exactly one worker made progress: two model calls and one tool call in total.
        assert sum(len(model.requests) for model in models) == 2
        assert sum(len(tools.calls) for tools in executors) == 1
        chain = await stores[1].list_chain("resp_contended", None)
        assert [step.state for step in chain] == [StepState.COMPLETED] * 3


async def test_the_lease_is_released_when_the_run_ends() -> None:
    store = RecordingStore(InMemoryStore())
    await store.create_response(ResponseRecord("resp_1", BODY))
    outcome = await run_response_loop(
        "resp_1",
        store=store,
        http_client=ScriptedChatModel([ChatReply.text("hi")]),
        upstream=UPSTREAM,
        transition=ChatTransition(BODY),
    )
    assert isinstance(outcome, Complete)
    assert store.counts["release_response"] == 1
    assert await store.claim_response("resp_1", "next_worker", 60)


async def test_a_refused_run_touches_nothing() -> None:
    store = RecordingStore(InMemoryStore())
    await store.create_response(ResponseRecord("resp_1", BODY))
    assert await store.claim_response("resp_1", "other_worker", 60)
    store.reset()
    model = ScriptedChatModel([ChatReply.text("hi")])

    with pytest.raises(ResponseAlreadyRunning, match="already being run") as refused:
        await run_response_loop(
            "resp_1",
            store=store,
            http_client=model,
            upstream=UPSTREAM,
            transition=ChatTransition(BODY),
        )

    assert not refused.value.taken_over
    assert model.requests == []
    assert dict(store.counts) == {"claim_response": 1}


class CountingClaims(RecordingStore):
    """Sets :attr:`renewed` once the lease was claimed ``renewals + 1`` times."""

    def __init__(self, inner: ResponseStore, renewals: int) -> None:
        super().__init__(inner)
        self.renewed = anyio.Event()
        self._wanted = renewals + 1

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        claimed = await super().claim_response(response_id, claimant, lease_seconds)
        if self.counts["claim_response"] >= self._wanted:
            self.renewed.set()
        return claimed


async def test_a_long_run_renews_its_lease() -> None:
    clock = ManualClock()
    store = CountingClaims(InMemoryStore(clock=clock), renewals=2)
    await store.create_response(ResponseRecord("resp_1", BODY))
    tools = RecordingToolExecutor()

    async def slow(arguments: Any) -> Any:
        clock.advance(0.25)  # most of the first lease has gone by
        await store.renewed.wait()
        return "done"

    tools.add("slow", slow)
    outcome = await run_response_loop(
        "resp_1",
        store=store,
        http_client=ScriptedChatModel([ChatReply.tool_call("slow"), ChatReply.text("ok")]),
        upstream=UPSTREAM,
        transition=ChatTransition(BODY),
        tools=tools,
        config=LoopConfig(lease_seconds=0.3),
    )
    assert isinstance(outcome, Complete)
    assert store.counts["claim_response"] >= 3


class RenewalHangs(RecordingStore):
    """The first renewal of the lease (the second claim) never answers."""

    def __init__(self, inner: ResponseStore) -> None:
        super().__init__(inner)
        self.renewal_started = anyio.Event()

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        claimed = await super().claim_response(response_id, claimant, lease_seconds)
        if self.counts["claim_response"] == 2:
            self.renewal_started.set()
            await anyio.sleep_forever()
        return claimed


async def test_a_renewal_still_in_flight_when_the_work_ends_is_cancelled_not_awaited() -> None:
    store = RenewalHangs(InMemoryStore())
    await store.create_response(ResponseRecord("resp_1", BODY))
    tools = RecordingToolExecutor()

    async def outlasts_a_renewal(arguments: Any) -> Any:
        await store.renewal_started.wait()
        return "done"

    tools.add("slow", outlasts_a_renewal)
    with anyio.fail_after(10):  # a run that waited for the hung renewal would never end
        outcome = await run_response_loop(
            "resp_1",
            store=store,
            http_client=ScriptedChatModel([ChatReply.tool_call("slow"), ChatReply.text("ok")]),
            upstream=UPSTREAM,
            transition=ChatTransition(BODY),
            tools=tools,
            config=LoopConfig(lease_seconds=0.03),
        )
    assert isinstance(outcome, Complete)
    assert store.counts["claim_response"] == 2
    assert store.counts["release_response"] == 1


async def test_a_run_whose_lease_was_taken_over_stops_and_writes_nothing_more() -> None:
    clock = ManualClock()
    store = RecordingStore(InMemoryStore(clock=clock))
    await store.create_response(ResponseRecord("resp_1", BODY))
    tool_running = anyio.Event()
    tools = RecordingToolExecutor()

    async def stalls(arguments: Any) -> Any:
        tool_running.set()
        await anyio.sleep_forever()

    tools.add("stalls", stalls)
    outcome: list[BaseException] = []

    async def stalled_worker() -> None:
        try:
            await run_response_loop(
                "resp_1",
                store=store,
                http_client=ScriptedChatModel([ChatReply.tool_call("stalls")]),
                upstream=UPSTREAM,
                transition=ChatTransition(BODY),
                tools=tools,
                config=LoopConfig(lease_seconds=0.3),
            )
        except ResponseAlreadyRunning as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(stalled_worker)
        await tool_running.wait()
        clock.advance(10)  # the stalled worker's lease has expired...
        assert await store.claim_response("resp_1", "new_worker", 60)  # ...and is taken

    (taken_over,) = outcome
    assert isinstance(taken_over, ResponseAlreadyRunning)
    assert taken_over.taken_over
    # The new holder owns the chain now: the old run did not cancel the step it left.
    assert store.counts["update_step:cancelled"] == 0
    assert store.counts["release_response"] == 0
    model_step, tool_step = await store.list_chain("resp_1", None)
    assert model_step.state is StepState.COMPLETED
    assert tool_step.state is StepState.PROCESSING


async def test_a_cancelled_run_releases_its_lease() -> None:
    store = RecordingStore(InMemoryStore())
    await store.create_response(ResponseRecord("resp_1", BODY))
    tool_running = anyio.Event()
    tools = RecordingToolExecutor()

    async def forever(arguments: Any) -> Any:
        tool_running.set()
        await anyio.sleep_forever()

    tools.add("forever", forever)
    async with anyio.create_task_group() as group:

        async def run() -> None:
            await run_response_loop(
                "resp_1",
                store=store,
                http_client=ScriptedChatModel([ChatReply.tool_call("forever")]),
                upstream=UPSTREAM,
                transition=ChatTransition(BODY),
                tools=tools,
            )

        group.start_soon(run)
        await tool_running.wait()
        group.cancel_scope.cancel()

    # The run recorded its cancellation and let go, so the next worker need not wait.
    assert store.counts["release_response"] == 1
    assert await store.claim_response("resp_1", "next_worker", 60)
    _model, tool_step = await store.list_chain("resp_1", None)
    assert tool_step.state is StepState.CANCELLED
