"""OpenTelemetryObserver: the span tree of a run, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from responseloop import InMemoryStore, LoopConfig, ResponsesService
from responseloop.abc import (
    AgentSpec,
    Complete,
    Fail,
    StepDescriptor,
    StepKind,
    StepState,
    StepUpdate,
    ToolKind,
    ToolSchema,
)
from responseloop.exceptions import StoreError
from responseloop.observe import CompositeObserver
from responseloop.observe.otel import OpenTelemetryMetrics, OpenTelemetryObserver
from responseloop.openresponses import WireOptions
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from tests.loop_helpers import RESPONSE_ID, UPSTREAM, Barrier, chat_body, new_response, run

SECRET = "hunter2-argument"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
TRIGGER = {"type": "compaction_trigger"}


class Traces:
    """A tracer provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("host")
        self.observer = OpenTelemetryObserver(self.provider)

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The spans whose parent is ``parent``, in start order."""
        assert parent.context is not None
        found = [
            s
            for s in self.spans
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]
        return sorted(found, key=lambda s: s.start_time or 0)


@pytest.fixture
def traces() -> Iterator[Traces]:
    traces = Traces()
    yield traces
    traces.provider.shutdown()


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def texts_of(spans: list[ReadableSpan]) -> str:
    """Everything the spans export, as text: names, attributes and events."""
    parts = []
    for span in spans:
        parts.append(f"{span.name} {attrs_of(span)} {span.status.description}")
        parts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
    return "\n".join(parts)


async def test_model_then_two_parallel_tools_then_model_is_one_span_tree(traces: Traces) -> None:
    barrier = Barrier(2)

    async def lookup(arguments: Any) -> Any:
        await barrier.wait()
        # The host's own instrumentation inside a tool nests under the tool's span.
        with traces.tracer.start_as_current_span("db query"):
            return {"found": True}

    async def broken(arguments: Any) -> Any:
        await barrier.wait()
        raise RuntimeError(f"failed with {arguments}")

    tools = RecordingToolExecutor()
    tools.add("lookup", lookup)
    tools.add("broken", broken)
    model = ScriptedChatModel(
        [
            ChatReply.calls(
                ("lookup", {"q": SECRET}, "c1"), ("broken", {"q": SECRET}, "c2"), usage=USAGE
            ),
            ChatReply.text("done", usage=USAGE),
        ]
    )

    with traces.tracer.start_as_current_span("host request") as host:
        outcome = await run(
            model, tools=tools, body=chat_body(temperature=0.5), observer=traces.observer
        )

    assert isinstance(outcome, Complete)
    assert barrier.max_concurrent == 2
    host_span = traces.one("host request")
    response = traces.one("invoke_agent")
    # The response nests under the caller's current span, in the caller's trace.
    assert response.parent is not None
    assert response.parent.span_id == host.get_span_context().span_id
    assert {s.context.trace_id for s in traces.spans if s.context} == {
        host_span.context.trace_id if host_span.context else 0
    }
    assert attrs_of(response) == {
        "gen_ai.operation.name": "invoke_agent",
        "responseloop.response_id": RESPONSE_ID,
        "gen_ai.usage.input_tokens": 22,
        "gen_ai.usage.output_tokens": 14,
        "responseloop.outcome": "completed",
    }
    assert response.status.status_code is StatusCode.UNSET

    first, lookup_span, broken_span, last = traces.children(response)
    assert [first.name, last.name] == ["chat test-model", "chat test-model"]
    assert sorted([lookup_span.name, broken_span.name]) == [
        "execute_tool broken",
        "execute_tool lookup",
    ]
    if lookup_span.name != "execute_tool lookup":
        lookup_span, broken_span = broken_span, lookup_span
    for chat, number in ((first, 1), (last, 2)):
        attributes = attrs_of(chat)
        assert chat.kind is SpanKind.CLIENT
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "test-model"
        assert attributes["gen_ai.request.temperature"] == 0.5
        assert attributes["gen_ai.usage.input_tokens"] == 11
        assert attributes["gen_ai.usage.output_tokens"] == 7
        assert attributes["gen_ai.response.id"] == f"chatcmpl-{number}"
        assert attributes["responseloop.response_id"] == RESPONSE_ID
        assert attributes["responseloop.step.kind"] == StepKind.MODEL_CALL.value
        assert str(attributes["responseloop.step.id"]).startswith("step_")
        assert chat.status.status_code is StatusCode.UNSET
    assert attrs_of(first)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attrs_of(last)["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs_of(first)["responseloop.step.sequence"] == 1
    assert attrs_of(last)["responseloop.step.sequence"] == 4

    assert attrs_of(lookup_span)["gen_ai.operation.name"] == "execute_tool"
    assert attrs_of(lookup_span)["gen_ai.tool.name"] == "lookup"
    assert attrs_of(lookup_span)["gen_ai.tool.call.id"] == "c1"
    assert attrs_of(lookup_span)["gen_ai.tool.type"] == "function"
    assert attrs_of(lookup_span)["responseloop.outcome"] == "completed"
    assert lookup_span.status.status_code is StatusCode.UNSET
    assert [s.name for s in traces.children(lookup_span)] == ["db query"]

    assert attrs_of(broken_span)["gen_ai.tool.call.id"] == "c2"
    assert attrs_of(broken_span)["error.type"] == "tool_error"
    assert attrs_of(broken_span)["responseloop.outcome"] == "failed"
    assert broken_span.status.status_code is StatusCode.ERROR
    (event,) = broken_span.events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {
        "exception.type": "tool_error",
        "exception.message": "tool 'broken' failed: RuntimeError",
    }
    # The two tools ran at once: each started before the other ended.
    assert lookup_span.start_time is not None
    assert broken_span.start_time is not None
    assert lookup_span.start_time < (broken_span.end_time or 0)
    assert broken_span.start_time < (lookup_span.end_time or 0)
    # Spans never carry a tool's arguments or a message.
    assert SECRET not in texts_of(traces.spans)
    assert "hi" not in [str(v) for s in traces.spans for v in attrs_of(s).values()]


async def test_a_sub_agent_scope_nests_under_its_agent_tool_span(traces: Traces) -> None:
    leaf = RecordingToolExecutor()
    leaf.add("lookup")
    tools = RecordingToolExecutor()
    tools.add(
        ToolSchema(
            "research",
            kind=ToolKind.AGENT,
            agent=AgentSpec(instructions="You research.", model="small-model"),
        ),
        sub_agent_tools=leaf,
    )
    model = ScriptedChatModel(
        [
            ChatReply.tool_call("research", {"input": "find x"}, call_id="top"),
            ChatReply.tool_call("lookup", {"q": "x"}, call_id="sub"),
            ChatReply.text("x is 42"),
            ChatReply.text("The answer is 42."),
        ]
    )

    outcome = await run(model, tools=tools, observer=traces.observer)

    assert isinstance(outcome, Complete)
    response = traces.one("invoke_agent")
    assert response.parent is None  # no current span at the caller: a new trace
    top = traces.children(response)
    assert [s.name for s in top] == ["chat test-model", "execute_tool research", "chat test-model"]
    agent = top[1]
    assert attrs_of(agent)["gen_ai.tool.type"] == "agent"
    assert attrs_of(agent)["gen_ai.agent.name"] == "research"
    assert attrs_of(agent)["gen_ai.tool.call.id"] == "top"
    sub = traces.children(agent)
    assert [s.name for s in sub] == ["chat small-model", "execute_tool lookup", "chat small-model"]
    assert {attrs_of(s)["responseloop.step.depth"] for s in sub} == {1}
    assert {attrs_of(s)["responseloop.step.scope"] for s in sub} == {
        attrs_of(agent)["responseloop.step.id"]
    }
    # The response's usage counts the sub-agent's model calls too.
    assert attrs_of(response)["gen_ai.usage.input_tokens"] == sum(
        attrs_of(s)["gen_ai.usage.input_tokens"] for s in traces.spans if s.name.startswith("chat")
    )


async def test_an_upstream_failure_marks_the_model_span_and_the_response_span(
    traces: Traces,
) -> None:
    model = ScriptedChatModel([ChatReply.error(400, "bad prompt")])

    outcome = await run(model, observer=traces.observer)

    assert isinstance(outcome, Fail)
    response = traces.one("invoke_agent")
    (chat,) = traces.children(response)
    for span in (chat, response):
        assert span.status.status_code is StatusCode.ERROR
        assert attrs_of(span)["error.type"] == "upstream_error"
        assert [e.name for e in span.events] == ["exception"]
    assert attrs_of(response)["responseloop.outcome"] == "failed"


async def test_cancellation_ends_every_span_as_cancelled(traces: Traces) -> None:
    barrier = Barrier(3)

    async def hangs(arguments: Any) -> Any:
        await barrier.wait()
        await anyio.sleep_forever()

    tools = RecordingToolExecutor()
    tools.add("hangs", hangs)
    model = ScriptedChatModel([ChatReply.calls(*[("hangs", {}, f"c{i}") for i in range(3)])])

    async with anyio.create_task_group() as group:

        async def runner() -> None:
            await run(model, tools=tools, observer=traces.observer)

        group.start_soon(runner)
        await barrier.all_arrived.wait()
        group.cancel_scope.cancel()

    response = traces.one("invoke_agent")
    tools_spans = traces.named("execute_tool hangs")
    assert len(tools_spans) == 3
    for span in [response, *tools_spans]:
        assert attrs_of(span)["responseloop.outcome"] == "cancelled"
        assert span.status.status_code is StatusCode.UNSET
    assert repr(traces.observer) == "<OpenTelemetryObserver open_spans=0>"


async def test_a_store_failure_is_recorded_as_an_exception(traces: Traces) -> None:
    class FailingStore(InMemoryStore):
        async def update_step(
            self, response_id: str, step_id: str, update: StepUpdate, **fence: str | None
        ) -> None:
            if update.state is StepState.COMPLETED:
                raise StoreError("disk full")
            await super().update_step(response_id, step_id, update, **fence)

    with pytest.raises(StoreError):
        await run(
            ScriptedChatModel([ChatReply.text("hi")]),
            store=FailingStore(),
            observer=traces.observer,
        )

    response = traces.one("invoke_agent")
    (chat,) = traces.children(response)
    for span in (chat, response):
        assert span.status.status_code is StatusCode.ERROR
        assert attrs_of(span)["error.type"] == "StoreError"
        assert attrs_of(span)["responseloop.outcome"] == "error"
        (event,) = span.events
        assert str(dict(event.attributes or {})["exception.type"]).endswith("StoreError")


async def test_the_service_passes_its_observer_to_every_run(traces: Traces) -> None:
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=ScriptedChatModel([ChatReply.text("hello")]),
        upstream=UPSTREAM,
        observer=traces.observer,
    )
    prepared = await service.prepare({"model": "gpt-test", "input": "hi"}, api_key="sk-caller")

    result = await service.run(prepared)

    assert result.status.value == "completed"
    response = traces.one("invoke_agent gpt-test")
    assert attrs_of(response)["gen_ai.request.model"] == "gpt-test"
    assert attrs_of(response)["responseloop.response_id"] == prepared.response_id
    assert [s.name for s in traces.children(response)] == ["chat gpt-test"]
    assert "sk-caller" not in texts_of(traces.spans)


def test_without_opentelemetry_the_observer_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'responseloop\[otel\]'"):
        OpenTelemetryObserver()


async def test_a_step_refired_after_a_takeover_says_so_in_its_span_and_logs(
    traces: Traces, caplog: pytest.LogCaptureFixture
) -> None:
    store = InMemoryStore()
    await new_response(store)
    body = chat_body()
    # A dead worker left this model call in flight.
    recorded = await store.record_step(RESPONSE_ID, None, None, StepDescriptor.model_call(body))
    await store.update_step(RESPONSE_ID, recorded.id, StepUpdate.processing())

    with caplog.at_level(logging.DEBUG, logger="responseloop"):
        outcome = await run(
            ScriptedChatModel([ChatReply.text("hi")]),
            store=store,
            body=body,
            config=LoopConfig(refire_model_calls=True),
            observer=traces.observer,
            create=False,
        )

    assert isinstance(outcome, Complete)
    chat = traces.one("chat test-model")
    assert attrs_of(chat)["responseloop.step.id"] == recorded.id
    assert attrs_of(chat)["responseloop.step.refired"] is True
    started = [r for r in caplog.records if r.getMessage() == "step started"]
    assert [(r.__dict__["step_id"], r.__dict__["refired"]) for r in started] == [
        (recorded.id, True)
    ]


async def test_a_compaction_is_its_own_span_and_a_model_call_in_the_metrics(
    traces: Traces,
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=ScriptedChatModel([ChatReply.text("the summary", usage=USAGE)]),
        upstream=UPSTREAM,
        observer=CompositeObserver(traces.observer, OpenTelemetryMetrics(meters)),
        wire=WireOptions(reasoning_key=b"otel-test-secret"),
    )
    body = {"model": "gpt-test", "input": [{"role": "user", "content": "hi"}, TRIGGER]}
    prepared = await service.prepare(body, api_key="sk-caller")

    result = await service.run(prepared)

    assert result.status.value == "completed"
    response = traces.one("invoke_agent gpt-test")
    (compact,) = traces.children(response)
    assert compact.name == "compact gpt-test"
    assert compact.kind is SpanKind.CLIENT
    assert attrs_of(compact) == {
        "responseloop.response_id": prepared.response_id,
        "responseloop.step.id": attrs_of(compact)["responseloop.step.id"],
        "responseloop.step.kind": "compaction",
        "responseloop.step.sequence": 1,
        "responseloop.step.depth": 0,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.model": "gpt-test",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.finish_reasons": ("stop",),
        "responseloop.outcome": "completed",
    }
    assert not [s for s in traces.spans if s.name.startswith("execute_tool")]
    # Its tokens count toward the response's, as the Response's usage does.
    assert attrs_of(response)["gen_ai.usage.input_tokens"] == 11

    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: [dict(p.attributes or {}) for p in metric.data.data_points]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert points["responseloop.model_call.duration"] == [
        {"responseloop.outcome": "completed", "responseloop.step.kind": "compaction"}
    ]
    assert "responseloop.tool_call.duration" not in points
    meters.shutdown()
