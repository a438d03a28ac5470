"""The observer's one method and its lifecycle events: what the loop and the HTTP client
hand over, the guard, the composite, and the metrics observer's subscriptions."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import HttpxClient, RetryPolicy
from responseloop.abc import (
    ChainStep,
    Complete,
    Fail,
    HttpRequest,
    LoopEvent,
    LoopEventKind,
    StepKind,
    StepState,
)
from responseloop.exceptions import UpstreamConnectionError, UpstreamStatusError
from responseloop.observe import CompositeObserver, MetricsObserver, Outcome
from responseloop.observe._observer import _Guarded, ended_as, observing
from responseloop.testing import (
    ChatReply,
    RecordingEventSink,
    RecordingToolExecutor,
    ScriptedChatModel,
)
from tests.loop_helpers import run
from tests.loopback_upstream import Upstream

LIFECYCLE = {
    LoopEventKind.RUN_STARTED,
    LoopEventKind.RUN_ENDED,
    LoopEventKind.STEP_RUN_STARTED,
    LoopEventKind.STEP_RUN_ENDED,
    LoopEventKind.UPSTREAM_RETRY,
}


class RecordingObserver:
    """A LoopObserver keeping every event."""

    def __init__(self) -> None:
        self.events: list[LoopEvent] = []

    def observe(self, event: LoopEvent) -> None:
        self.events.append(event)


class Measurements(MetricsObserver):
    def __init__(self) -> None:
        super().__init__(clock=lambda: 0.0)
        self.seen: list[tuple[LoopEventKind, Outcome | None, float]] = []

    def measure(self, event: LoopEvent, outcome: Outcome | None, seconds: float) -> None:
        self.seen.append((event.kind, outcome, seconds))


async def test_the_observer_gets_the_lifecycle_kinds_and_the_sink_the_streamed_ones() -> None:
    observer = RecordingObserver()
    sink = RecordingEventSink()
    tools = RecordingToolExecutor()
    tools.add("lookup")
    model = ScriptedChatModel([ChatReply.tool_call("lookup", {}), ChatReply.text("done")])

    outcome = await run(model, tools=tools, events=sink, observer=observer)

    assert isinstance(outcome, Complete)
    assert {e.kind for e in sink.events}.isdisjoint(LIFECYCLE)
    assert [e.kind for e in observer.events] == [
        LoopEventKind.RUN_STARTED,
        *[LoopEventKind.STEP_RUN_STARTED, LoopEventKind.STEP_RUN_ENDED] * 3,
        LoopEventKind.RUN_ENDED,
    ]
    started, *steps, ended = observer.events
    assert started.context is not None
    assert started.context.response_id == started.response_id
    assert ended.outcome == outcome
    assert ended.error is None
    for event in steps:
        assert event.step is not None
        assert event.step_scope is not None
        assert event.step_id == event.step.id
        assert event.step_kind is event.step.kind
        assert event.depth == event.step_scope.depth == 0
    ends = [e for e in steps if e.kind is LoopEventKind.STEP_RUN_ENDED]
    assert [e.step.state for e in ends if e.step is not None] == [StepState.COMPLETED] * 3
    assert [e.step_kind for e in ends] == [
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
    ]


async def test_a_cancelled_run_still_ends_its_step_and_run_for_the_observer() -> None:
    observer = RecordingObserver()
    tools = RecordingToolExecutor()

    async def hang(arguments: Any) -> Any:
        await anyio.sleep_forever()

    tools.add("hang", hang)
    model = ScriptedChatModel([ChatReply.tool_call("hang", {})])

    with anyio.move_on_after(0.2):
        await run(model, tools=tools, observer=observer)

    ended = observer.events[-1]
    assert ended.kind is LoopEventKind.RUN_ENDED
    assert ended.outcome is None
    assert isinstance(ended.error, anyio.get_cancelled_exc_class())
    tool_end = observer.events[-2]
    assert tool_end.kind is LoopEventKind.STEP_RUN_ENDED
    assert isinstance(tool_end.error, anyio.get_cancelled_exc_class())
    assert ended_as(tool_end) is Outcome.CANCELLED
    assert ended_as(ended) is Outcome.CANCELLED
    broken = LoopEvent(LoopEventKind.RUN_ENDED, "resp_1", error=RuntimeError("lost lease"))
    assert ended_as(broken) is Outcome.ERROR


async def no_wait(seconds: float) -> None:
    return None


async def test_the_http_client_hands_each_retry_over_as_one_event(upstream: Upstream) -> None:
    observer = RecordingObserver()
    upstream.add(ChatReply.error(429), ChatReply.unreachable(), ChatReply.text("ok"))
    request = HttpRequest(
        upstream.url + "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        correlation_id="step_x",
    )

    async with HttpxClient(
        retry=RetryPolicy(attempts=3, jitter=0), sleep=no_wait, observer=observer
    ) as http:
        await http.execute(request)

    assert [(e.kind, e.response_id, e.step_id) for e in observer.events] == [
        (LoopEventKind.UPSTREAM_RETRY, "", "step_x")
    ] * 2
    assert [(e.attempt, e.delay, e.status) for e in observer.events] == [
        (1, 0.5, 429),
        (2, 1.0, None),
    ]
    assert isinstance(observer.events[1].error, UpstreamConnectionError)


async def test_without_an_observer_the_loop_and_the_client_take_none() -> None:
    assert observing(None) is None
    outcome = await run(ScriptedChatModel([ChatReply.text("hi")]))
    assert isinstance(outcome, Complete)
    async with HttpxClient() as http:
        assert http._observing is None


def test_the_guard_logs_a_failure_and_is_applied_once(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def observe(self, event: LoopEvent) -> None:
            raise RuntimeError("observer bug")

    guarded = observing(Broken())
    assert isinstance(guarded, _Guarded)
    assert observing(guarded) is guarded
    with caplog.at_level(logging.WARNING, logger="responseloop.observe"):
        guarded.observe(LoopEvent(LoopEventKind.RUN_STARTED, "resp_1"))
    (record,) = caplog.records
    assert record.getMessage().startswith("observer ")
    assert "run_started" in record.getMessage()


def test_the_composite_tells_every_observer_and_raises_the_first_error() -> None:
    seen = RecordingObserver()

    class Broken:
        def __init__(self, message: str) -> None:
            self.message = message

        def observe(self, event: LoopEvent) -> None:
            raise RuntimeError(self.message)

    composite = CompositeObserver(Broken("first"), seen, Broken("second"))
    event = LoopEvent(LoopEventKind.RUN_STARTED, "resp_1")
    with pytest.raises(RuntimeError, match="first"):
        composite.observe(event)
    assert seen.events == [event]


def test_the_metrics_observer_measures_the_ends_and_retries_and_ignores_streamed_kinds() -> None:
    metrics = Measurements()
    step = ChainStep("step_1", StepKind.MODEL_CALL, StepState.PENDING, 0, {})
    done = ChainStep("step_1", StepKind.MODEL_CALL, StepState.FAILED, 0, {}, error={"type": "x"})

    for event in [
        LoopEvent(LoopEventKind.RUN_STARTED, "resp_1"),
        LoopEvent(LoopEventKind.STEP_RUN_STARTED, "resp_1", step_id="step_1", step=step),
        LoopEvent(LoopEventKind.MODEL_CHUNK, "resp_1", {"choices": []}, step_id="step_1"),
        LoopEvent(LoopEventKind.UPSTREAM_RETRY, "", error=UpstreamStatusError(503), delay=2.0),
        LoopEvent(LoopEventKind.STEP_RUN_ENDED, "resp_1", step_id="step_1", step=done),
        LoopEvent(LoopEventKind.RESPONSE_FAILED, "resp_1", {"type": "x"}),
        LoopEvent(LoopEventKind.RUN_ENDED, "resp_1", outcome=Fail({"type": "x"})),
    ]:
        metrics.observe(event)

    assert metrics.seen == [
        (LoopEventKind.UPSTREAM_RETRY, None, 2.0),
        (LoopEventKind.STEP_RUN_ENDED, Outcome.FAILED, 0.0),
        (LoopEventKind.RUN_ENDED, Outcome.FAILED, 0.0),
    ]
    assert repr(metrics) == "<Measurements in_flight=0>"


@given(st.integers(min_value=100, max_value=599))
def test_a_retry_event_names_the_upstream_status(status: int) -> None:
    event = LoopEvent(LoopEventKind.UPSTREAM_RETRY, "", error=UpstreamStatusError(status))
    assert event.status == status


@given(st.sampled_from([None, UpstreamConnectionError("refused"), RuntimeError("x")]))
def test_an_event_without_an_upstream_status_has_none(error: BaseException | None) -> None:
    assert LoopEvent(LoopEventKind.UPSTREAM_RETRY, "", error=error).status is None


@given(
    st.sampled_from(list(StepState)),
    st.sampled_from([None, Complete(), Fail({"type": "x"})]),
)
def test_how_a_run_or_step_ended_follows_the_outcome_and_the_state(
    state: StepState, outcome: Complete | Fail | None
) -> None:
    step = ChainStep("step_1", StepKind.MODEL_CALL, state, 0, {})
    step_ended = LoopEvent(LoopEventKind.STEP_RUN_ENDED, "resp_1", step=step)
    expected = {StepState.FAILED: Outcome.FAILED, StepState.CANCELLED: Outcome.CANCELLED}
    assert ended_as(step_ended) is expected.get(state, Outcome.COMPLETED)
    run_ended = LoopEvent(LoopEventKind.RUN_ENDED, "resp_1", outcome=outcome)
    failed = isinstance(outcome, Fail)
    assert ended_as(run_ended) is (Outcome.FAILED if failed else Outcome.COMPLETED)
