"""ResponsesService under one lease keeper: every response's lease renewed from one task,
and a response whose lease another worker took stopped at once."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from responseloop import (
    InMemoryStore,
    LeaseKeeper,
    LoopConfig,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import ResponseStatus, StepState
from responseloop.exceptions import ResponseAlreadyRunning
from responseloop.testing import (
    ChatReply,
    ManualClock,
    RecordingStore,
    RecordingToolExecutor,
    ScriptedChatModel,
)
from tests.wire_checks import check_emitted_response

UPSTREAM = UpstreamTarget("http://upstream.invalid/v1", "/chat/completions")
BODY: dict[str, Any] = {"model": "m", "input": "go", "tools": []}


def service_with(
    store: RecordingStore, tools: RecordingToolExecutor, lease_seconds: float = 30.0
) -> ResponsesService:
    return ResponsesService(
        store=store,
        http_client=ScriptedChatModel([ChatReply.tool_call("stall"), ChatReply.text("ok")]),
        upstream=UPSTREAM,
        resolver=StaticToolResolver(tools),
        config=LoopConfig(lease_seconds=lease_seconds),
    )


async def test_keeping_leases_runs_every_response_without_a_renewal_task_of_its_own() -> None:
    go_on = anyio.Event()
    go_on.set()
    seen: list[int] = []
    tools = RecordingToolExecutor()

    async def stall(arguments: Any) -> Any:
        seen.append(len(anyio.get_running_tasks()))
        await go_on.wait()
        return "done"

    tools.add("stall", stall)
    service = service_with(RecordingStore(InMemoryStore()), tools)
    async with service.keeping_leases() as keeper:
        assert service.lease_keeper is keeper
        assert keeper.running
        before = len(anyio.get_running_tasks())
        result = await service.run(await service.prepare(BODY, api_key=None))
    assert service.lease_keeper is None  # the service's own keeper closed with the block
    assert result.response["status"] == "completed"
    check_emitted_response(result.response)
    assert seen == [before]


async def test_a_given_open_keeper_is_the_one_the_service_keeps_leases_with() -> None:
    async with LeaseKeeper() as keeper:
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=ScriptedChatModel([]),
            upstream=UPSTREAM,
            lease_keeper=keeper,
        )
        async with service.keeping_leases() as kept:
            assert kept is keeper
        assert service.lease_keeper is keeper


async def test_a_response_whose_lease_was_taken_over_is_stopped_at_once() -> None:
    clock = ManualClock()
    store = RecordingStore(InMemoryStore(clock=clock))
    stalled = anyio.Event()
    tools = RecordingToolExecutor()

    async def stall(arguments: Any) -> Any:
        stalled.set()
        await anyio.sleep_forever()  # only a cancellation ends it

    tools.add("stall", stall)
    service = service_with(store, tools, lease_seconds=0.06)
    prepared = await service.prepare(BODY, api_key=None)
    refused: list[ResponseAlreadyRunning] = []

    async def run() -> None:
        with pytest.raises(ResponseAlreadyRunning) as caught:
            await service.run(prepared)
        refused.append(caught.value)

    with anyio.fail_after(10):
        async with service.keeping_leases(), anyio.create_task_group() as group:
            group.start_soon(run)
            await stalled.wait()
            clock.advance(10)  # this worker stalled past its lease...
            assert await store.claim_response(prepared.response_id, "other_worker", 60)

    (taken_over,) = refused
    assert taken_over.taken_over
    # The other worker owns the response now: nothing of this run's end was stored.
    record = await store.get_response(prepared.response_id)
    assert record.status is ResponseStatus.IN_PROGRESS
    _model_step, tool_step = await store.list_chain(prepared.response_id, None)
    assert tool_step.state is StepState.PROCESSING
    assert store.counts["release_response"] == 0
