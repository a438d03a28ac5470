"""LoopObserver hooks: metrics, retries through HttpxClient, failing observers, and no
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
    RequestContext,
    ResponseRecord,
    RetryPolicy,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import ChainStep, Complete, Fail, Scope
from responseloop.observe import CompositeObserver, MetricsObserver, Outcome, UpstreamRetry
from responseloop.observe.otel import OpenTelemetryMetrics, OpenTelemetryObserver
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import run
from tests.loopback_upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]


class RecordingMetrics:
    """A LoopMetrics that keeps every measurement."""

    def __init__(self) -> None:
        self.responses: list[tuple[Outcome, float]] = []
        self.model_calls: list[tuple[Outcome, float]] = []
        self.tool_calls: list[tuple[str, Outcome, float]] = []
        self.retries: list[int | None] = []

    def response_ended(self, outcome: Outcome, seconds: float) -> None:
        self.responses.append((outcome, seconds))

    def model_call_ended(self, outcome: Outcome, seconds: float) -> None:
        self.model_calls.append((outcome, seconds))

    def tool_call_ended(self, tool: str, outcome: Outcome, seconds: float) -> None:
        self.tool_calls.append((tool, outcome, seconds))

    def upstream_retried(self, status: int | None) -> None:
        self.retries.append(status)


def counting_clock() -> Any:
    """A clock that advances one second each time it is read."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def broken(arguments: Any) -> Any:
    raise RuntimeError("no")


async def test_metrics_count_responses_by_outcome_and_time_each_step() -> None:
    metrics = RecordingMetrics()
    observer = MetricsObserver(metrics, clock=counting_clock())
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
    observer = CompositeObserver(OpenTelemetryObserver(provider), MetricsObserver(metrics))
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
            upstream=UpstreamTarget(upstream.url + "/v1", "/chat/completions"),
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

    class Broken:
        def response_started(self, response_id: str, ctx: RequestContext) -> None:
            calls.append("response_started")
            raise RuntimeError("observer bug")

        def response_ended(
            self, response_id: str, outcome: Complete | Fail | None, error: BaseException | None
        ) -> None:
            calls.append("response_ended")
            raise RuntimeError("observer bug")

        def step_started(self, step: ChainStep, scope: Scope) -> None:
            calls.append("step_started")
            raise RuntimeError("observer bug")

        def step_ended(self, step: ChainStep, scope: Scope, error: BaseException | None) -> None:
            calls.append("step_ended")
            raise RuntimeError("observer bug")

        def upstream_retrying(self, retry: UpstreamRetry) -> None:
            raise RuntimeError("observer bug")

    metrics = RecordingMetrics()
    observer = CompositeObserver(Broken(), MetricsObserver(metrics))

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

    metrics.response_ended(Outcome.COMPLETED, 2.0)
    metrics.response_ended(Outcome.FAILED, 1.0)
    metrics.response_ended(Outcome.COMPLETED, 3.0)
    metrics.model_call_ended(Outcome.COMPLETED, 0.5)
    metrics.tool_call_ended("lookup", Outcome.FAILED, 0.25)
    metrics.upstream_retried(429)
    metrics.upstream_retried(None)

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

    class Metrics:
        def __init__(self):
            self.seen = []

        def response_ended(self, outcome, seconds):
            self.seen.append(outcome)

        def model_call_ended(self, outcome, seconds):
            self.seen.append(outcome)

        def tool_call_ended(self, tool, outcome, seconds):
            self.seen.append(tool)

        def upstream_retried(self, status):
            self.seen.append(status)

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
            observer=MetricsObserver(metrics) if sys.argv[1] == "metrics" else None,
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
