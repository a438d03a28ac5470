"""Observability: OpenTelemetry traces and metrics of the loop, bound by the host.

Runs offline with a scripted model. It needs the ``otel`` extra and, to export, the
OpenTelemetry SDK (``pip install 'responseloop[otel]' opentelemetry-sdk``). A real host
configures its exporters (OTLP, Prometheus...) where this one keeps spans and metrics in
memory to print them.

    python examples/observability.py
"""

from __future__ import annotations

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from responseloop import InMemoryStore, ResponsesService, StaticToolResolver, UpstreamTarget
from responseloop.observe import CompositeObserver
from responseloop.observe.otel import OpenTelemetryMetrics, OpenTelemetryObserver
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel


def print_tree(spans: list[ReadableSpan]) -> None:
    """Print spans indented under their parents, in start order."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent, []).append(span)

    def walk(parent: int | None, depth: int) -> None:
        for span in by_parent.get(parent, []):
            attributes = span.attributes or {}
            tokens = attributes.get("gen_ai.usage.input_tokens")
            status = span.status.status_code.name
            print(f"{'  ' * depth}{span.name} [{status}] input_tokens={tokens}")
            if span.context is not None:
                walk(span.context.span_id, depth + 1)

    walk(None, 0)


async def main() -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    # One observer for traces and metrics; pass it to HttpxClient(observer=...) too to
    # see upstream retries.
    observer = CompositeObserver(
        OpenTelemetryObserver(tracer_provider),
        OpenTelemetryMetrics(meter_provider),
    )

    tools = RecordingToolExecutor()
    tools.add("get_weather", lambda arguments: {"temperature_c": 18})
    tools.add("get_time", lambda arguments: {"time": "12:00"})
    model = ScriptedChatModel(
        [
            ChatReply.calls(("get_weather", {"city": "Paris"}, None), ("get_time", {}, None)),
            ChatReply.text("It is 18 °C and noon in Paris."),
        ]
    )
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=model,
        upstream=UpstreamTarget("http://scripted.invalid"),
        resolver=StaticToolResolver(tools),
        observer=observer,
    )
    prepared = await service.prepare(
        {"model": "scripted-model", "input": "Weather and time in Paris?"}, api_key=None
    )
    result = await service.run(prepared)
    print("status:", result.status.value)

    print_tree(list(spans.get_finished_spans()))

    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = dict(point.attributes or {})
                    count = getattr(point, "count", None) or getattr(point, "value", None)
                    print(f"metric {metric.name} {labels} count={count}")
    tracer_provider.shutdown()
    meter_provider.shutdown()


if __name__ == "__main__":
    anyio.run(main)
