"""OpenTelemetry traces and metrics of the loop: the ``otel`` extra
(``pip install 'responseloop[otel]'``).

:class:`OpenTelemetryObserver` is a :class:`~responseloop.observe.LoopObserver` that opens a span
per response, per model call and per tool call, with the GenAI semantic conventions'
attributes; :class:`OpenTelemetryMetrics` is one that records metric instruments. Only
``opentelemetry-api`` is needed; the host installs and configures the SDK (or any other
implementation) as it does for the rest of its traces.

The trace of a response, nested under the caller's current span::

    invoke_agent {model}            the response (responseloop.response_id)
    ├── chat {model}                a model call (tokens used, finish reasons)
    ├── execute_tool lookup         tool calls of one fan-out, concurrently
    ├── execute_tool researcher     an agent tool: its sub-loop's steps nest under it
    │   └── chat {model}
    ├── compact {model}             a compaction: the model summarising the conversation
    └── chat {model}

Spans carry ids, names, models and token counts, never a tool's arguments or result, nor
a message: the same rule as the logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..abc._events import LoopEvent, LoopEventKind
from ..abc._steps import Fail, StepKind, StepState
from ..abc._tools import ToolKind
from ._observer import LifecycleDispatch, MetricsObserver, Outcome, ended_as

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["INSTRUMENTATION_NAME", "OpenTelemetryMetrics", "OpenTelemetryObserver"]

INSTRUMENTATION_NAME = "responseloop"
"""The instrumentation scope of the spans (the tracer's name)."""


@attrs.define
class _Open:
    """A span this observer started, the context token that made it current, and the
    response's running token totals."""

    span: Span
    token: Token[Context]
    input_tokens: int = 0
    output_tokens: int = 0


class OpenTelemetryObserver(LifecycleDispatch):
    """A :class:`~responseloop.observe.LoopObserver` that traces the loop with OpenTelemetry.

    Args:
        tracer_provider: where spans go; the global provider by default (whatever the host
            configured with ``opentelemetry.trace.set_tracer_provider``).

    Each span is made current while its work runs, so spans the host's own instrumentation
    opens inside a tool (an HTTP call, a database query) nest under that tool's span. Pass
    the same observer to :class:`~responseloop.HttpxClient` to see upstream retries as
    ``upstream_retry`` events on the model call's span.

    It subscribes to the five lifecycle kinds (a dispatch table by kind) and ignores the
    others.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (``pip install
            'responseloop[otel]'``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import context, trace
        except ImportError as exc:
            raise ImportError(
                "OpenTelemetryObserver needs opentelemetry-api: pip install 'responseloop[otel]'"
            ) from exc
        from .._version import __version__

        self._context = context
        self._trace = trace
        self.tracer: Tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        self._open: dict[str, _Open] = {}
        super().__init__()

    def __repr__(self) -> str:
        return f"<OpenTelemetryObserver open_spans={len(self._open)}>"

    def _run_started(self, event: LoopEvent) -> None:
        """Open the response's span under the caller's current span, and make it current."""
        response_id = event.response_id
        model = event.context.model if event.context is not None else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "responseloop.response_id": response_id,
        }
        if model:
            attributes["gen_ai.request.model"] = model
        name = f"invoke_agent {model}" if model else "invoke_agent"
        self._start(response_id, name, attributes, parent=None, client=False)

    def _run_ended(self, event: LoopEvent) -> None:
        """Close the response's span with its token totals and, on failure, the error."""
        opened = self._open.pop(event.response_id, None)
        if opened is None:
            return
        span = opened.span
        span.set_attribute("gen_ai.usage.input_tokens", opened.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", opened.output_tokens)
        if isinstance(event.outcome, Fail):
            self._record_failure(span, event.outcome.error)
            self._end(opened, Outcome.FAILED, None)
        else:
            self._end(opened, ended_as(event), event.error)

    def _step_started(self, event: LoopEvent) -> None:
        """Open the step's span under its agent tool's span (in a sub-loop) or the
        response's, and make it current."""
        step, scope = event.step, event.step_scope
        if step is None or scope is None:
            return
        attributes: dict[str, Any] = {
            "responseloop.response_id": scope.response_id,
            "responseloop.step.id": step.id,
            "responseloop.step.kind": step.kind.value,
            "responseloop.step.sequence": step.sequence,
            "responseloop.step.depth": scope.depth,
        }
        if step.scope is not None:
            attributes["responseloop.step.scope"] = step.scope
        if step.state is not StepState.PENDING:
            attributes["responseloop.step.refired"] = True
        parent = step.scope if step.scope is not None else scope.response_id
        payload = step.request_payload
        if step.kind in (StepKind.MODEL_CALL, StepKind.COMPACTION):
            # A compaction is a chat call of the upstream model too (its tokens count
            # alike), so its operation is "chat"; its span is named "compact …" so that a
            # summary call is not read as the model's turn.
            model = payload.get("model")
            attributes["gen_ai.operation.name"] = "chat"
            if isinstance(model, str):
                attributes["gen_ai.request.model"] = model
            for key, attribute in _REQUEST_SETTINGS.items():
                value = payload.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    attributes[attribute] = value
            verb = "chat" if step.kind is StepKind.MODEL_CALL else "compact"
            name = f"{verb} {model}" if isinstance(model, str) else verb
            self._start(step.id, name, attributes, parent=parent, client=True)
            return
        if step.kind is StepKind.TOOL_LISTING:
            label = str(payload.get("server_label"))
            attributes["gen_ai.operation.name"] = "list_tools"
            attributes["responseloop.mcp.server_label"] = label
            self._start(step.id, f"list_tools {label}", attributes, parent=parent, client=True)
            return
        tool = step.tool_name or ""
        attributes["gen_ai.operation.name"] = "execute_tool"
        attributes["gen_ai.tool.name"] = tool
        call_id = payload.get("call_id")
        if isinstance(call_id, str):
            attributes["gen_ai.tool.call.id"] = call_id
        schema = scope.tools.get(tool)
        if schema is not None:
            attributes["gen_ai.tool.type"] = schema.kind.value
            if schema.kind is ToolKind.AGENT:
                attributes["gen_ai.agent.name"] = tool
        self._start(step.id, f"execute_tool {tool}", attributes, parent=parent, client=False)

    def _step_ended(self, event: LoopEvent) -> None:
        """Close the step's span: token usage for a model call or a compaction, the error
        on failure."""
        step = event.step
        opened = self._open.pop(step.id, None) if step is not None else None
        if step is None or opened is None:
            return
        span = opened.span
        if step.state is StepState.COMPLETED and step.kind in (
            StepKind.MODEL_CALL,
            StepKind.COMPACTION,
        ):
            self._record_completion(span, step.response_payload, event.response_id)
        if step.state is StepState.FAILED and step.error is not None:
            self._record_failure(span, step.error)
        self._end(opened, ended_as(event), event.error)

    def _upstream_retry(self, event: LoopEvent) -> None:
        """Add an ``upstream_retry`` event to the model call's span."""
        opened = self._open.get(event.step_id or "")
        if opened is None:
            return
        attributes: dict[str, Any] = {
            "responseloop.retry.attempt": event.attempt,
            "responseloop.retry.delay": event.delay,
            "error.type": type(event.error).__name__,
        }
        if event.status is not None:
            attributes["http.response.status_code"] = event.status
        opened.span.add_event("upstream_retry", attributes)

    def _start(
        self,
        key: str,
        name: str,
        attributes: dict[str, Any],
        *,
        parent: str | None,
        client: bool,
    ) -> None:
        trace = self._trace
        context: Context | None = None
        opened_parent = self._open.get(parent) if parent is not None else None
        if opened_parent is not None:
            context = trace.set_span_in_context(opened_parent.span)
        span = self.tracer.start_span(
            name,
            context=context,  # None: the caller's current span is the parent
            kind=trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL,
            attributes=attributes,
        )
        token = self._context.attach(trace.set_span_in_context(span))
        self._open[key] = _Open(span, token)

    def _end(self, opened: _Open, outcome: Outcome, error: BaseException | None) -> None:
        span = opened.span
        span.set_attribute("responseloop.outcome", outcome.value)
        if error is not None and outcome is not Outcome.CANCELLED:
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(self._trace.StatusCode.ERROR, type(error).__qualname__)
        try:
            self._context.detach(opened.token)
        finally:
            span.end()

    def _record_failure(self, span: Span, error: Mapping[str, Any]) -> None:
        """Mark ``span`` as failed with the loop's error JSON (its stable ``type`` and the
        message the stored response carries too)."""
        error_type = str(error.get("type") or "error")
        message = str(error.get("message") or error_type)
        span.set_attribute("error.type", error_type)
        span.add_event("exception", {"exception.type": error_type, "exception.message": message})
        span.set_status(self._trace.StatusCode.ERROR, message)

    def _record_completion(self, span: Span, body: object, response_id: str) -> None:
        """Token usage and what the model answered with (ids and reasons, not content)."""
        if not isinstance(body, Mapping):
            return
        usage = body.get("usage")
        if isinstance(usage, Mapping):
            input_tokens = _count(usage.get("prompt_tokens"))
            output_tokens = _count(usage.get("completion_tokens"))
            span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
            response = self._open.get(response_id)
            if response is not None:
                response.input_tokens += input_tokens
                response.output_tokens += output_tokens
        if isinstance(body.get("model"), str):
            span.set_attribute("gen_ai.response.model", body["model"])
        if isinstance(body.get("id"), str):
            span.set_attribute("gen_ai.response.id", body["id"])
        choices = body.get("choices")
        if isinstance(choices, list):
            reasons = [
                c["finish_reason"]
                for c in choices
                if isinstance(c, Mapping) and isinstance(c.get("finish_reason"), str)
            ]
            span.set_attribute("gen_ai.response.finish_reasons", reasons)


class OpenTelemetryMetrics(MetricsObserver):
    """A :class:`~responseloop.observe.MetricsObserver` bound to OpenTelemetry metric
    instruments: pass it as the observer, or next to tracing::

        observer = CompositeObserver(OpenTelemetryObserver(), OpenTelemetryMetrics())

    Instruments (names under ``responseloop.``; durations in seconds):

    - ``responseloop.responses``: counter of ended runs, by ``responseloop.outcome``;
    - ``responseloop.response.duration``: histogram of runs, by ``responseloop.outcome``;
    - ``responseloop.model_call.duration``: histogram of model calls, by outcome (a
      compaction's summary call with ``responseloop.step.kind`` ``compaction``);
    - ``responseloop.tool_call.duration``: histogram of tool calls, by outcome and
      ``gen_ai.tool.name``;
    - ``responseloop.upstream.retries``: counter of upstream retries, by
      ``http.response.status_code`` (absent for a connection failure).

    A Prometheus binding is a :class:`~responseloop.observe.MetricsObserver` whose
    ``measure`` feeds ``prometheus_client``'s ``Counter`` and ``Histogram``, or this class
    with OpenTelemetry's Prometheus exporter.

    Args:
        meter_provider: where measurements go; the global provider by default.
        clock: monotonic seconds (inject a fake one for exact durations in tests).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (``pip install
            'responseloop[otel]'``).
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(clock=clock)
        try:
            from opentelemetry import metrics
        except ImportError as exc:
            raise ImportError(
                "OpenTelemetryMetrics needs opentelemetry-api: pip install 'responseloop[otel]'"
            ) from exc
        from .._version import __version__

        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self.responses = meter.create_counter(
            "responseloop.responses", unit="{response}", description="Runs of the loop ended."
        )
        self.response_duration = meter.create_histogram(
            "responseloop.response.duration", unit="s", description="How long runs took."
        )
        self.model_call_duration = meter.create_histogram(
            "responseloop.model_call.duration", unit="s", description="How long model calls took."
        )
        self.tool_call_duration = meter.create_histogram(
            "responseloop.tool_call.duration", unit="s", description="How long tool calls took."
        )
        self.retries = meter.create_counter(
            "responseloop.upstream.retries", unit="{retry}", description="Upstream retries."
        )

    def measure(self, event: LoopEvent, outcome: Outcome | None, seconds: float) -> None:
        """Record ``event`` on the instrument of its kind."""
        kind = event.kind
        if kind is LoopEventKind.UPSTREAM_RETRY:
            status = event.status
            self.retries.add(1, {} if status is None else {"http.response.status_code": status})
            return
        if outcome is None:
            return
        labels: dict[str, str] = {"responseloop.outcome": outcome.value}
        if kind is LoopEventKind.RUN_ENDED:
            self.responses.add(1, labels)
            self.response_duration.record(seconds, labels)
        elif kind is LoopEventKind.STEP_RUN_ENDED and event.step_kind is StepKind.MODEL_CALL:
            self.model_call_duration.record(seconds, labels)
        elif kind is LoopEventKind.STEP_RUN_ENDED and event.step_kind is StepKind.COMPACTION:
            # A model call too, told apart so that summaries do not skew the turns' times.
            labels["responseloop.step.kind"] = StepKind.COMPACTION.value
            self.model_call_duration.record(seconds, labels)
        elif kind is LoopEventKind.STEP_RUN_ENDED:
            tool = event.step.tool_name if event.step is not None else None
            labels["gen_ai.tool.name"] = tool or ""
            self.tool_call_duration.record(seconds, labels)


_REQUEST_SETTINGS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
}


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
