"""Tool faults: each fails its own step with a ``tool_error`` that is fed back to the model
(the default), so the response still completes, with nothing left in flight."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from responseloop import LoopConfig
from responseloop.abc import ResponseStatus, StepState, ToolSchema
from responseloop.testing import ChatReply, RecordingToolExecutor
from tests.loopback_upstream import Upstream
from tests.reliability.harness import assert_settled, leftover_tasks, service_for, task_ids


class Unserialisable:
    """A value no JSON encoder knows."""


def raising(arguments: Any) -> Any:
    raise ValueError("the secret database password is hunter2")


async def hanging(arguments: Any) -> Any:
    await anyio.sleep_forever()


FAULTS: dict[str, tuple[Any, str]] = {
    "raising": (raising, "ValueError"),
    "hanging_past_the_deadline": (hanging, "timed out"),
    "an_object": (lambda arguments: {"value": Unserialisable()}, "not JSON"),
    "a_set": (lambda arguments: [{1, 2}], "not JSON"),
    "nan": (lambda arguments: {"value": float("nan")}, "not JSON"),
    "infinity": (lambda arguments: [float("-inf")], "not JSON"),
    "oversized_output": (lambda arguments: "x" * 5000, "more than the 4096-byte limit"),
    "oversized_nested_output": (lambda arguments: {"rows": ["é" * 100] * 30}, "4096-byte"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("name", list(FAULTS))
async def test_a_tool_fault_is_fed_back_and_the_response_completes(
    upstream: Upstream, name: str, stream: bool
) -> None:
    handler, message = FAULTS[name]
    upstream.add(ChatReply.tool_call("probe", {}, call_id="call_1"), ChatReply.text("Done."))
    tools = RecordingToolExecutor()
    tools.add("probe", handler)
    config = LoopConfig(step_timeout=0.5, max_tool_output_bytes=4096)
    before = task_ids()

    async with service_for(upstream.url + "/v1", tools=tools, config=config) as service:
        prepared = await service.prepare(
            {"model": "m", "input": "Hi", "stream": stream}, api_key=None
        )
        result = await service.run(prepared)
        chain = await service.store.list_chain(prepared.response_id, None)
        assert await assert_settled(service.store, prepared.response_id) == "completed"

    assert [s.state for s in chain] == [StepState.COMPLETED, StepState.FAILED, StepState.COMPLETED]
    error = chain[1].error
    assert error is not None
    assert (error["type"], error["code"]) == ("tool_error", "server_error")
    assert message in error["message"]
    assert "hunter2" not in error["message"]  # an exception's text may hold secrets
    tool_message = upstream.bodies[1]["messages"][-1]
    assert (tool_message["role"], tool_message["tool_call_id"]) == ("tool", "call_1")
    assert message in tool_message["content"]
    assert result.response["status"] == "completed"
    assert leftover_tasks(before) == []


@pytest.mark.parametrize("name", ["raising", "nan", "oversized_output"])
async def test_a_tool_fault_fails_the_response_when_configured(
    upstream: Upstream, name: str
) -> None:
    handler, message = FAULTS[name]
    upstream.add(ChatReply.tool_call("probe", {}, call_id="call_1"))
    tools = RecordingToolExecutor()
    tools.add("probe", handler)
    config = LoopConfig(tool_errors="fail", max_tool_output_bytes=4096)

    async with service_for(upstream.url + "/v1", tools=tools, config=config) as service:
        prepared = await service.prepare({"model": "m", "input": "Hi"}, api_key=None)
        result = await service.run(prepared)
        assert await assert_settled(service.store, prepared.response_id) == "failed"

    error = result.response["error"]
    assert (error["type"], error["code"]) == ("tool_error", "server_error")
    assert message in error["message"]
    assert len(upstream.received) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_response_cancel_cancels_the_running_tool(upstream: Upstream, stream: bool) -> None:
    upstream.add(
        ChatReply.calls(("slow", {}, "call_1"), ("slow", {}, "call_2"), ("quick", {}, "call_3"))
    )
    started = anyio.Event()
    running = 0
    cancelled: list[str] = []

    async def slow(arguments: Any) -> Any:
        nonlocal running
        running += 1
        if running == 2:
            started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append("slow")

    tools = RecordingToolExecutor()
    tools.add("slow", slow)
    tools.add(ToolSchema("quick"), lambda arguments: {"ok": True})
    before = task_ids()

    async with service_for(upstream.url + "/v1", tools=tools) as service:
        prepared = await service.prepare(
            {"model": "m", "input": "Hi", "stream": stream}, api_key=None
        )
        outcome: list[Any] = []
        async with anyio.create_task_group() as group:

            async def run() -> None:
                try:
                    outcome.append(await service.run(prepared))
                finally:
                    started.set()  # a run whose tools never started must not hang the test

            group.start_soon(run)
            await started.wait()
            assert running == 2  # both slow tools are in flight
            cancelled_response = await service.cancel(prepared.response_id)

        # run() returns the cancelled response: a service cancel is not the caller's.
        assert [r.status for r in outcome] == [ResponseStatus.CANCELLED]
        assert outcome[0].response == cancelled_response
        assert cancelled_response["status"] == "cancelled"
        assert cancelled == ["slow", "slow"]
        record = await service.store.get_response(prepared.response_id)
        assert record.status is ResponseStatus.CANCELLED
        chain = await service.store.list_chain(prepared.response_id, None)
        assert await assert_settled(service.store, prepared.response_id) == "cancelled"
        states = [s.state for s in chain]
        assert states[:3] == [StepState.COMPLETED, StepState.CANCELLED, StepState.CANCELLED]
        assert states[3] in (StepState.COMPLETED, StepState.CANCELLED)  # the quick one
        assert service.running == frozenset()
    assert len(upstream.received) == 1
    assert leftover_tasks(before) == []
