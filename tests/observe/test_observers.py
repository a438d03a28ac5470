"""LoopObserver events: metrics, retries through HttpxClient, failing observers, and no
OpenTelemetry import unless tracing is asked for."""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from responseloop import (
    ChatTransition,
    HttpxClient,
    InMemoryStore,
    ResponseRecord,
    RetryPolicy,
    run_response_loop,
)
from responseloop.abc import (
    ChainStep,
    Complete,
    Fail,
    LoopEvent,
    LoopEventKind,
    StepKind,
    StepState,
)
from responseloop.exceptions import UpstreamConnectionError, UpstreamStatusError
from responseloop.observe import CompositeObserver, MetricsObserver, Outcome
from responseloop.observe.otel import OpenTelemetryMetrics, OpenTelemetryObserver
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import run
from tests.loopback_upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]


class RecordingMetrics(MetricsObserver):
    """A MetricsObserver that keeps every measurement."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.responses: list[tuple[Outcome, float]] = []
        self.model_calls: list[tuple[Outcome, float]] = []
        self.tool_calls: list[tuple[str, Outcome, float]] = []
        self.retries: list[int | None] = []

    def measure(self, event: LoopEvent, outcome: Outcome | None, seconds: float) -> None:
        if event.kind is LoopEventKind.UPSTREAM_RETRY:
            self.retries.append(event.status)
            return
        assert outcome is not None
        if event.kind is LoopEventKind.RUN_ENDED:
            self.responses.append((outcome, seconds))
        elif event.step_kind is StepKind.MODEL_CALL:
            self.model_calls.append((outcome, seconds))
        else:
            assert event.step is not None
            self.tool_calls.append((event.step.tool_name or "", outcome, seconds))


def counting_clock() -> Any:
    """A clock that advances one second each time it is read."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def broken(arguments: Any) -> Any:
    raise RuntimeError("no")


async def test_metrics_count_responses_by_outcome_and_time_each_step() -> None:
    metrics = RecordingMetrics(clock=counting_clock())
    observer = metrics
    tools = RecordingToolExecutor()
    tools.add("lookup")
    tools.add("broken", broken)
    model = ScriptedChatModel(
        [
            ChatReply.tool_call("lookup", {}),
            ChatReply.tool_call("broken", {}),
            ChatReply.text("done"),
            ChatReply.error(400),
        ]
    )

    completed = await run(model, tools=tools, observer=observer)
    failed = await run(model, observer=observer, response_id="resp_2")

    assert isinstance(completed, Complete)
    assert isinstance(failed, Fail)
    # Serial steps read the clock once at each start and end: one second apiece.
    assert metrics.model_calls == [
        ("completed", 1.0),
        ("completed", 1.0),
        ("completed", 1.0),
        ("failed", 1.0),
    ]
    assert metrics.tool_calls == [("lookup", "completed", 1.0), ("broken", "failed", 1.0)]
    # The first run read the clock 2 * 5 steps times between its start and its end.
    assert metrics.responses == [("completed", 11.0), ("failed", 3.0)]
    assert metrics.retries == []
    assert "in_flight=0" in repr(observer)


async def no_wait(seconds: float) -> None:
    return None


async def test_upstream_retries_reach_the_observer_through_the_http_client(
    upstream: Upstream,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = RecordingMetrics()
    observer = CompositeObserver(OpenTelemetryObserver(provider), metrics)
    upstream.add(ChatReply.error(503), ChatReply.unreachable(), ChatReply.text("ok"))
    store = InMemoryStore()
    await store.create_response(ResponseRecord(id="resp_r", request={}))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    async with HttpxClient(
        retry=RetryPolicy(attempts=3, jitter=0), sleep=no_wait, observer=observer
    ) as http:
        outcome = await run_response_loop(
            "resp_r",
            store=store,
            http_client=http,
            upstream=upstream.target(),
            transition=ChatTransition(body),
            observer=observer,
        )

    assert isinstance(outcome, Complete)
    assert metrics.retries == [503, None]
    (chat,) = [s for s in exporter.get_finished_spans() if s.name == "chat m"]
    events = [(e.name, dict(e.attributes or {})) for e in chat.events]
    step_id = dict(chat.attributes or {})["responseloop.step.id"]
    assert events == [
        (
            "upstream_retry",
            {
                "responseloop.retry.attempt": 1,
                "responseloop.retry.delay": 0.5,
                "error.type": "UpstreamStatusError",
                "http.response.status_code": 503,
            },
        ),
        (
            "upstream_retry",
            {
                "responseloop.retry.attempt": 2,
                "responseloop.retry.delay": 1.0,
                "error.type": "UpstreamConnectionError",
            },
        ),
    ]
    assert str(step_id).startswith("step_")


async def test_a_failing_observer_never_breaks_the_run(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    hooks = {
        LoopEventKind.RUN_STARTED: "response_started",
        LoopEventKind.STEP_RUN_STARTED: "step_started",
        LoopEventKind.STEP_RUN_ENDED: "step_ended",
        LoopEventKind.RUN_ENDED: "response_ended",
    }

    class Broken:
        def observe(self, event: LoopEvent) -> None:
            if event.kind in hooks:
                calls.append(hooks[event.kind])
            raise RuntimeError("observer bug")

    metrics = RecordingMetrics()
    observer = CompositeObserver(Broken(), metrics)

    with caplog.at_level(logging.WARNING, logger="responseloop"):
        outcome = await run(ScriptedChatModel([ChatReply.text("hi")]), observer=observer)

    assert isinstance(outcome, Complete)
    assert calls == ["response_started", "step_started", "step_ended", "response_ended"]
    # The observer after the broken one still saw everything.
    assert [m[0] for m in metrics.model_calls] == ["completed"]
    assert [m[0] for m in metrics.responses] == ["completed"]
    failures = [r for r in caplog.records if r.getMessage().startswith("observer")]
    assert len(failures) == 4


def test_opentelemetry_metrics_record_on_the_instruments() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = OpenTelemetryMetrics(provider)
    run_ended = LoopEvent(LoopEventKind.RUN_ENDED, "resp_1")
    model_call = ChainStep("step_1", StepKind.MODEL_CALL, StepState.COMPLETED, 0, {})
    tool_call = ChainStep("step_2", StepKind.TOOL_CALL, StepState.FAILED, 1, {"name": "lookup"})

    def step_ended(step: ChainStep) -> LoopEvent:
        return LoopEvent(
            LoopEventKind.STEP_RUN_ENDED, "resp_1", step_id=step.id, step_kind=step.kind, step=step
        )

    def retry(error: Exception) -> LoopEvent:
        return LoopEvent(LoopEventKind.UPSTREAM_RETRY, "", error=error, attempt=1, delay=0.5)

    metrics.measure(run_ended, Outcome.COMPLETED, 2.0)
    metrics.measure(run_ended, Outcome.FAILED, 1.0)
    metrics.measure(run_ended, Outcome.COMPLETED, 3.0)
    metrics.measure(step_ended(model_call), Outcome.COMPLETED, 0.5)
    metrics.measure(step_ended(tool_call), Outcome.FAILED, 0.25)
    metrics.measure(retry(UpstreamStatusError(429)), None, 0.5)
    metrics.measure(retry(UpstreamConnectionError("refused")), None, 0.5)

    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "responseloop"
            for metric in scope.metrics:
                points[metric.name] = [
                    (dict(p.attributes or {}), getattr(p, "value", None) or getattr(p, "sum", None))
                    for p in metric.data.data_points
                ]
    assert sorted(points["responseloop.responses"], key=str) == sorted(
        [({"responseloop.outcome": "completed"}, 2), ({"responseloop.outcome": "failed"}, 1)],
        key=str,
    )
    assert sorted(points["responseloop.response.duration"], key=str) == sorted(
        [({"responseloop.outcome": "completed"}, 5.0), ({"responseloop.outcome": "failed"}, 1.0)],
        key=str,
    )
    assert points["responseloop.model_call.duration"] == [
        ({"responseloop.outcome": "completed"}, 0.5)
    ]
    assert points["responseloop.tool_call.duration"] == [
        ({"responseloop.outcome": "failed", "gen_ai.tool.name": "lookup"}, 0.25)
    ]
    assert sorted(points["responseloop.upstream.retries"], key=str) == sorted(
        [({"http.response.status_code": 429}, 1), ({}, 1)], key=str
    )
    provider.shutdown()


FULL_RUN = textwrap.dedent(
    """
    import sys

    import anyio

    from responseloop import InMemoryStore, UpstreamTarget
    from responseloop.observe import MetricsObserver
    from responseloop import ResponseLoopTransport, ResponsesService
    from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
    from responseloop import StaticToolResolver

    class Metrics(MetricsObserver):
        def __init__(self):
            super().__init__()
            self.seen = []

        def measure(self, event, outcome, seconds):
            if event.step is not None and event.step.tool_name:
                self.seen.append(event.step.tool_name)
            elif event.kind.value == "upstream_retry":
                self.seen.append(event.status)
            else:
                self.seen.append(outcome)

    async def main():
        tools = RecordingToolExecutor()
        tools.add("lookup")
        model = ScriptedChatModel([ChatReply.tool_call("lookup", {}), ChatReply.text("done")])
        metrics = Metrics()
        service = ResponsesService(
            store=InMemoryStore(),
            http_client=model,
            upstream=UpstreamTarget("http://upstream.invalid"),
            resolver=StaticToolResolver(tools),
            observer=metrics if sys.argv[1] == "metrics" else None,
        )
        prepared = await service.prepare({"model": "m", "input": "hi"}, api_key=None)
        result = await service.run(prepared)
        assert result.status.value == "completed", result.response
        if sys.argv[1] == "metrics":
            assert metrics.seen == ["completed", "lookup", "completed", "completed"], metrics.seen
        if sys.argv[1] == "tracing":
            from responseloop.observe.otel import OpenTelemetryObserver

            OpenTelemetryObserver()
        ResponseLoopTransport(service)
        print(sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry"))

    anyio.run(main, backend=sys.argv[2])
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_opentelemetry_is_never_imported_unless_tracing_is_enabled(backend: str) -> None:
    def imported(mode: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", FULL_RUN, mode, backend],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert imported("none") == "[]"
    assert imported("metrics") == "[]"
    # The check can fail: enabling tracing does import it.
    assert "opentelemetry.trace" in imported("tracing")


def test_the_observability_example_prints_the_span_tree_and_metrics() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "observability.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "status: completed",
        "invoke_agent scripted-model [UNSET] input_tokens=20",
    ]
    assert sorted(lines[2:6]) == [
        "  chat scripted-model [UNSET] input_tokens=10",
        "  chat scripted-model [UNSET] input_tokens=10",
        "  execute_tool get_time [UNSET] input_tokens=None",
        "  execute_tool get_weather [UNSET] input_tokens=None",
    ]
    metrics = "\n".join(lines[6:])
    assert "metric responseloop.responses {'responseloop.outcome': 'completed'} count=1" in metrics
    assert "metric responseloop.model_call.duration" in metrics
    assert "'gen_ai.tool.name': 'get_weather'} count=1" in metrics
