"""One lease keeper per worker: every running response's lease renewed from one task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LeaseKeeper,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import (
    Complete,
    RecordedStep,
    ResponseStore,
    StepDescriptor,
    StepState,
    StepUpdate,
)
from responseloop.exceptions import LeaseLost, StoreError
from responseloop.testing import (
    ChatReply,
    ManualClock,
    RecordingStore,
    RecordingToolExecutor,
    ScriptedChatModel,
)

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "go"}]}
UPSTREAM = UpstreamTarget("http://upstream.invalid")


class WatchedClaims(RecordingStore):
    """Tells when the lease was claimed ``renewals + 1`` times, and when a claim failed."""

    def __init__(self, inner: ResponseStore, renewals: int = 1, failures: int = 0) -> None:
        super().__init__(inner)
        self.renewed = anyio.Event()
        self.refused = anyio.Event()
        self._wanted = renewals + 1
        self._failures = failures

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        if self.counts["claim_response"] >= 1 and self._failures:
            self._failures -= 1
            self.counts["claim_response:failed"] += 1
            raise StoreError("the store is briefly unreachable")
        claimed = await super().claim_response(response_id, claimant, lease_seconds)
        if self.counts["claim_response"] >= self._wanted:
            self.renewed.set()
        if not claimed:
            self.refused.set()
        return claimed


def tool_waiting_for(
    event: anyio.Event, seen: list[int] | None = None, started: anyio.Event | None = None
) -> RecordingToolExecutor:
    tools = RecordingToolExecutor()

    async def wait(arguments: Any) -> Any:
        if seen is not None:
            seen.append(len(anyio.get_running_tasks()))
        if started is not None:
            started.set()
        await event.wait()
        return "done"

    tools.add("wait", wait)
    return tools


async def run_with(
    store: ResponseStore,
    tools: RecordingToolExecutor,
    keeper: LeaseKeeper | None,
    lease_seconds: float = 30.0,
) -> Any:
    return await run_response_loop(
        "resp_1",
        store=store,
        http_client=ScriptedChatModel([ChatReply.tool_call("wait"), ChatReply.text("ok")]),
        upstream=UPSTREAM,
        transition=ChatTransition(BODY),
        tools=tools,
        config=LoopConfig(lease_seconds=lease_seconds),
        lease_keeper=keeper,
    )


async def test_the_keeper_renews_the_lease_of_a_long_run() -> None:
    store = WatchedClaims(InMemoryStore(), renewals=2)
    await store.create_response(ResponseRecord("resp_1", BODY))
    async with LeaseKeeper() as keeper:
        with anyio.fail_after(10):
            outcome = await run_with(
                store, tool_waiting_for(store.renewed), keeper, lease_seconds=0.06
            )
    assert isinstance(outcome, Complete)
    assert store.counts["claim_response"] >= 3
    assert store.counts["release_response"] == 1


@pytest.mark.parametrize("kept", [True, False])
async def test_a_run_under_a_keeper_starts_no_task_of_its_own(kept: bool) -> None:
    store = InMemoryStore()
    await store.create_response(ResponseRecord("resp_1", BODY))
    go_on = anyio.Event()
    go_on.set()
    seen: list[int] = []
    async with LeaseKeeper() as keeper:
        before = len(anyio.get_running_tasks())
        outcome = await run_with(store, tool_waiting_for(go_on, seen), keeper if kept else None)
    assert isinstance(outcome, Complete)
    # Without a keeper the run renews its lease from a task of its own.
    assert seen == [before if kept else before + 1]


async def test_a_lost_lease_stops_the_run_at_its_next_step_and_nothing_more_is_stored() -> None:
    clock = ManualClock()
    store = WatchedClaims(InMemoryStore(clock=clock))
    await store.create_response(ResponseRecord("resp_1", BODY))
    release_tool, tool_started = anyio.Event(), anyio.Event()
    tools = tool_waiting_for(release_tool, started=tool_started)
    failures: list[LeaseLost] = []

    async def worker(keeper: LeaseKeeper) -> None:
        try:
            await run_with(store, tools, keeper, lease_seconds=0.06)
        except LeaseLost as exc:
            failures.append(exc)

    with anyio.fail_after(10):
        async with LeaseKeeper() as keeper, anyio.create_task_group() as group:
            group.start_soon(worker, keeper)
            await tool_started.wait()
            clock.advance(10)  # the worker's lease expired (it stalled)...
            assert await store.claim_response("resp_1", "new_worker", 60)  # ...and is taken
            await store.refused.wait()  # the keeper found out at its next renewal
            release_tool.set()

    (lost,) = failures
    assert lost.taken_over
    model_step, tool_step = await store.list_chain("resp_1", None)
    assert model_step.state is StepState.COMPLETED
    # The tool's result came from a run that no longer holds the lease: not stored.
    assert tool_step.state is StepState.PROCESSING
    assert store.counts["release_response"] == 0


async def test_a_renewal_the_store_fails_is_tried_again_without_losing_the_lease() -> None:
    store = WatchedClaims(InMemoryStore(), renewals=1, failures=1)
    await store.create_response(ResponseRecord("resp_1", BODY))
    async with LeaseKeeper() as keeper:
        with anyio.fail_after(10):
            outcome = await run_with(
                store, tool_waiting_for(store.renewed), keeper, lease_seconds=0.06
            )
    assert isinstance(outcome, Complete)
    assert store.counts["claim_response:failed"] == 1
    assert store.counts["claim_response"] >= 2


async def test_a_lease_held_twice_is_renewed_once_and_its_loss_told_to_both() -> None:
    clock = ManualClock()
    store = WatchedClaims(InMemoryStore(clock=clock), renewals=3)
    await store.create_response(ResponseRecord("resp_1", BODY))
    assert await store.claim_response("resp_1", "me", 0.06)
    told: list[str] = []
    async with LeaseKeeper() as keeper:
        with (
            keeper.hold(store, "resp_1", "me", 0.06, lambda: told.append("first")),
            keeper.hold(store, "resp_1", "me", 0.06, lambda: told.append("second")),
        ):
            started = anyio.current_time()
            with anyio.fail_after(10):
                await store.renewed.wait()  # three renewals
            elapsed = anyio.current_time() - started
            # One renewal every 0.02 s: two holders renewing apiece would be twice as fast.
            assert elapsed >= 0.05
            clock.advance(10)
            assert await store.claim_response("resp_1", "other", 60)
            with anyio.fail_after(10):
                await store.refused.wait()
    assert told == ["first", "second"]


async def test_a_keeper_must_be_open_to_hold_a_lease_and_opens_once() -> None:
    keeper = LeaseKeeper()
    with (
        pytest.raises(RuntimeError, match="not open"),
        keeper.hold(InMemoryStore(), "resp_1", "me", 30, lambda: None),
    ):
        pass  # pragma: no cover
    async with keeper:
        assert keeper.running
        with pytest.raises(RuntimeError, match="open already"):
            await keeper.__aenter__()
    assert not keeper.running


async def test_a_hold_is_entered_once_and_let_go_when_left() -> None:
    store = InMemoryStore()
    async with LeaseKeeper() as keeper:
        hold = keeper.hold(store, "resp_1", "me", 30, lambda: None)
        with hold:
            assert "holding=1" in repr(keeper)
            with pytest.raises(RuntimeError, match="entered already"), hold:
                pass  # pragma: no cover
            assert "holding=1" in repr(keeper)
        assert "holding=0" in repr(keeper)
        with hold:  # left, it may be entered again
            assert "holding=1" in repr(keeper)
        assert "holding=0" in repr(keeper)


class StartingStore(RecordingStore):
    """A store that records steps already started in one call, counted."""

    async def record_started_steps(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        self.counts["record_started_steps"] += 1
        recorded = []
        for step in steps:
            one = await self.inner.record_step(response_id, scope, prev_step_id, step, fence=fence)
            await self.inner.update_step(response_id, one.id, StepUpdate.processing(), fence=fence)
            recorded.append(one)
            prev_step_id = one.id
        return recorded


async def test_a_store_that_starts_steps_as_it_records_them_gets_one_write_per_start() -> None:
    store = StartingStore(InMemoryStore())
    await store.create_response(ResponseRecord("resp_1", BODY))
    tools = RecordingToolExecutor()
    tools.add("add", lambda arguments: arguments["a"] + arguments["b"])
    model = ScriptedChatModel(
        [
            ChatReply.calls(("add", {"a": 1, "b": 2}, None), ("add", {"a": 3, "b": 4}, None)),
            ChatReply.text("3 and 7"),
        ]
    )
    outcome = await run_response_loop(
        "resp_1",
        store=store,
        http_client=model,
        upstream=UPSTREAM,
        transition=ChatTransition(BODY),
        tools=tools,
    )
    assert isinstance(outcome, Complete)
    # model call, the two-call fan-out (one write), model call
    assert store.counts["record_started_steps"] == 3
    assert store.counts["record_step"] == 0
    assert store.counts["update_step:processing"] == 0
    assert store.counts["update_step:completed"] == 4
    chain = await store.list_chain("resp_1", None)
    assert [step.state for step in chain] == [StepState.COMPLETED] * 4
    assert [step.prev_step_id for step in chain] == [None, *(step.id for step in chain[:-1])]
    assert [step.sequence for step in chain] == sorted(step.sequence for step in chain)


class SlowClaims(InMemoryStore):
    """Renewals of the leases in ``renewing_ids`` wait for the test to let them through;
    how many wait at once, and how many tasks run then, are kept."""

    def __init__(self, renewing_ids: set[str], at_once: int) -> None:
        super().__init__()
        self.renewing_ids = renewing_ids
        self.renewing = 0
        self.most_at_once = 0
        self.most_tasks = 0
        self.renewed: set[str] = set()
        self.waiting = anyio.Event()  # set once ``at_once`` renewals wait
        self.all_renewed = anyio.Event()
        self.go_on = anyio.Event()
        self._at_once = at_once

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        claimed = await super().claim_response(response_id, claimant, lease_seconds)
        if response_id in self.renewing_ids:
            self.renewing += 1
            self.most_at_once = max(self.most_at_once, self.renewing)
            self.most_tasks = max(self.most_tasks, len(anyio.get_running_tasks()))
            if self.renewing == self._at_once:
                self.waiting.set()
            await self.go_on.wait()
            self.renewing -= 1
            self.renewed.add(response_id)
            if self.renewed == self.renewing_ids:
                self.all_renewed.set()
        return claimed


async def test_many_leases_due_together_are_renewed_by_a_few_tasks() -> None:
    ids = {f"resp_{n}" for n in range(200)}
    store = SlowClaims(set(), at_once=16)
    for response_id in sorted(ids):
        await store.create_response(ResponseRecord(response_id, BODY))
        assert await store.claim_response(response_id, "w", 0.03)
    store.renewing_ids = ids
    async with LeaseKeeper() as keeper:
        baseline = len(anyio.get_running_tasks())
        holds = [keeper.hold(store, each, "w", 0.03, lambda: None) for each in sorted(ids)]
        # Every lease comes due at the same instant: were the keeper to wake between two
        # of them (a pause of this process while entering them), a first batch of fewer
        # than 16 would wait on go_on before the rest were taken.
        now = anyio.current_time()
        with pytest.MonkeyPatch.context() as frozen:
            frozen.setattr(anyio, "current_time", lambda: now)
            for hold in holds:
                hold.__enter__()
        with anyio.fail_after(10):
            await store.waiting.wait()
            for _ in range(100):  # room for more renewers to start, were there any
                await anyio.lowlevel.checkpoint()
            store.go_on.set()
            await store.all_renewed.wait()
        for hold in holds:
            hold.__exit__(None, None, None)
    assert store.most_at_once == 16
    # The keeper's own task and its 16 renewers beside this test's: not a task per lease.
    assert store.most_tasks <= baseline + 17
    assert store.renewed == ids


class StuckClaims(InMemoryStore):
    """Renewals of ``stuck`` hang until the test lets them go; every other renewal is
    counted."""

    def __init__(self, stuck: str) -> None:
        super().__init__()
        self.stuck = stuck
        self.stuck_claiming = anyio.Event()
        self.let_go = anyio.Event()
        self.claims: dict[str, int] = {}
        self.renewed_twice = anyio.Event()

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        claimed = await super().claim_response(response_id, claimant, lease_seconds)
        self.claims[response_id] = self.claims.get(response_id, 0) + 1
        if response_id == self.stuck and self.claims[response_id] > 1:
            self.stuck_claiming.set()
            await self.let_go.wait()
        elif response_id != self.stuck and self.claims[response_id] >= 3:
            self.renewed_twice.set()  # claimed once by the test, renewed twice by the keeper
        return claimed


async def test_a_renewal_that_hangs_holds_up_no_other_lease() -> None:
    store = StuckClaims("resp_stuck")
    for response_id in ("resp_stuck", "resp_other"):
        await store.create_response(ResponseRecord(response_id, BODY))
        assert await store.claim_response(response_id, "w", 0.03)
    async with LeaseKeeper() as keeper:
        with keeper.hold(store, "resp_stuck", "w", 0.03, lambda: None):
            with anyio.fail_after(10):
                await store.stuck_claiming.wait()
            # Due after the hung renewal began: a keeper waiting for it would never get here.
            with keeper.hold(store, "resp_other", "w", 0.03, lambda: None), anyio.fail_after(10):
                await store.renewed_twice.wait()
            store.let_go.set()
    assert store.claims["resp_stuck"] >= 2
