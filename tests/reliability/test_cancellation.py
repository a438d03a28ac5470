"""Cancellation anywhere: hypothesis picks a point of a scripted multi-step run (a store
call, before or after it, a model call or a tool call) and ``ResponsesService.cancel``
lands there. Afterwards no step is in flight and the response is stored ``cancelled``."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responseloop import InMemoryStore, LoopConfig
from responseloop.abc import (
    JSON,
    HttpRequest,
    HttpResponse,
    OnServerSentEvent,
    ResponseStatus,
    StepState,
)
from responseloop.testing import ScriptedChatModel
from tests.reliability.harness import (
    CONVERSATION,
    Hook,
    HookedStore,
    assert_settled,
    conversation_model,
    conversation_tools,
    every_step,
    leftover_tasks,
    local_service,
    task_ids,
)

RESPONSE_ID = "resp_cancel_anywhere"
CONFIG = LoopConfig()
# Points that lie inside a step's work: a cancel there finds that step processing.
IN_A_STEP = {"model", "tool", "update_step:processing:after", "update_step:completed:before"}


class HookedModel:
    """An :class:`HttpClient` awaiting ``hook("model")`` before each call of ``inner``."""

    def __init__(self, inner: ScriptedChatModel, hook: Hook) -> None:
        self.inner = inner
        self.hook = hook

    async def execute(self, request: HttpRequest) -> HttpResponse:
        await self.hook("model")
        return await self.inner.execute(request)

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        await self.hook("model")
        return await self.inner.stream(request, on_event)


def body(stream: bool) -> JSON:
    return {**CONVERSATION, "stream": stream}


async def points_of_a_healthy_run(stream: bool) -> list[str]:
    """The hook points a healthy run passes while the loop runs (inside the service's
    cancel scope: from claiming the response's lease until releasing it)."""
    labels: list[str] = []

    async def record(label: str) -> None:
        labels.append(label)

    service = local_service(
        HookedStore(InMemoryStore(), record),
        HookedModel(conversation_model(), record),  # type: ignore[arg-type]
        conversation_tools(record),
        CONFIG,
    )
    prepared = await service.prepare(body(stream), api_key=None, response_id=RESPONSE_ID)
    assert (await service.run(prepared)).status is ResponseStatus.COMPLETED
    start = labels.index("claim_response:before")
    run = labels[start : labels.index("release_response:before")]
    # The service's reads, which cancel_at lets pass (see there).
    return [label for label in run if not label.startswith(("get_response", "create_response"))]


async def cancel_at(stream: bool, point: int, label: str) -> list[str]:
    store = InMemoryStore()
    passed = 0
    reached = anyio.Event()
    hit: list[str] = []

    async def stop_at_point(label: str) -> None:
        nonlocal passed
        if label.startswith(("get_response", "create_response")) or reached.is_set():
            return  # the service's own calls before the run, and whatever follows the cancel
        passed += 1
        if passed == point + 1:
            hit.append(label)
            reached.set()
            await anyio.sleep_forever()  # until the cancel lands here

    service = local_service(
        HookedStore(store, stop_at_point),
        HookedModel(conversation_model(), stop_at_point),  # type: ignore[arg-type]
        conversation_tools(stop_at_point),
        CONFIG,
    )
    before = task_ids()
    prepared = await service.prepare(body(stream), api_key=None, response_id=RESPONSE_ID)
    results: list[Any] = []
    cancelled: list[Any] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                results.append(await service.run(prepared))
            finally:
                reached.set()  # a run that never reached the point must not hang the test

        group.start_soon(run)
        await reached.wait()
        cancelled.append(await service.cancel(RESPONSE_ID))

    assert hit == [label]  # the cancel landed at the chosen point
    assert [r.status for r in results] == [ResponseStatus.CANCELLED]
    assert cancelled[0]["status"] == "cancelled"
    assert (await store.get_response(RESPONSE_ID)).status is ResponseStatus.CANCELLED
    assert await assert_settled(store, RESPONSE_ID) is ResponseStatus.CANCELLED
    steps = await every_step(store, RESPONSE_ID)
    if label in IN_A_STEP:  # the step that was running is recorded as cancelled
        assert StepState.CANCELLED in {s.state for s in steps}
    assert service.running == frozenset()
    assert leftover_tasks(before) == []
    return [s.state.value for s in steps]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), stream=st.booleans())
def test_a_cancel_anywhere_leaves_nothing_in_flight_and_the_response_cancelled(
    backend: str, data: st.DataObject, stream: bool
) -> None:
    points = anyio.run(partial(points_of_a_healthy_run, stream), backend=backend)
    point = data.draw(st.integers(0, len(points) - 1), label=f"point of {len(points)}")
    anyio.run(partial(cancel_at, stream, point, points[point]), backend=backend)
