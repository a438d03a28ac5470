"""Prometheus metrics of the loop (extra ``metrics``: ``pip install 'responseloop[metrics]'``).

:class:`PrometheusMetrics` is a :class:`~responseloop.observe.MetricsObserver` feeding
``prometheus_client`` instruments in a registry of its own; the ASGI app serves them at
``GET /metrics`` (``create_app(metrics=...)``, ``responseloop serve --metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..abc._events import LoopEvent, LoopEventKind
from ..abc._steps import StepKind
from ._observer import MetricsObserver, Outcome

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusMetrics"]

# Seconds: from a fast tool call to a long generation.
_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class PrometheusMetrics(MetricsObserver):
    """The loop's metrics in Prometheus's text format. Pass it as the service's observer
    and the upstream client's (to count retries), and to the app to serve it::

        metrics = PrometheusMetrics()
        http = HttpxClient.create(observer=metrics)
        service = ResponsesService(..., http_client=http, observer=metrics)
        app = create_app(service, metrics=metrics)

    Metrics (durations in seconds):

    - ``responseloop_responses_total{outcome}``: runs ended, by how they ended
      (``completed``, ``failed``, ``cancelled``, ``error``);
    - ``responseloop_responses_in_flight``: runs going on now;
    - ``responseloop_steps_total{kind,outcome}``: steps ended (``kind`` is
      ``model_call``, ``tool_call``, …);
    - ``responseloop_upstream_seconds{outcome}``: model calls, from the request to the
      upstream to its answer, retries included;
    - ``responseloop_upstream_retries_total{status}``: upstream retries, by the HTTP
      status that caused them (``connection`` for a connection failure);
    - ``responseloop_tool_seconds{tool,outcome}``: server-side tool calls (an agent tool's
      whole sub-loop included).

    Args:
        registry: where the instruments live (default: a registry of this object's own,
            so several apps or tests in one process do not collide).
        clock: monotonic seconds.

    Raises:
        ImportError: ``prometheus-client`` is not installed.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(clock=clock)
        try:
            import prometheus_client
        except ImportError as exc:
            raise ImportError(
                "PrometheusMetrics needs prometheus-client: pip install 'responseloop[metrics]'"
            ) from exc
        self._client = prometheus_client
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        reg = self.registry
        self.responses = prometheus_client.Counter(
            "responseloop_responses", "Runs of the loop ended.", ["outcome"], registry=reg
        )
        self.in_flight = prometheus_client.Gauge(
            "responseloop_responses_in_flight", "Runs of the loop going on now.", registry=reg
        )
        self.steps = prometheus_client.Counter(
            "responseloop_steps", "Steps ended.", ["kind", "outcome"], registry=reg
        )
        self.upstream = prometheus_client.Histogram(
            "responseloop_upstream_seconds",
            "Model calls to the upstream, retries included.",
            ["outcome"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.retries = prometheus_client.Counter(
            "responseloop_upstream_retries", "Upstream calls retried.", ["status"], registry=reg
        )
        self.tools = prometheus_client.Histogram(
            "responseloop_tool_seconds",
            "Server-side tool calls.",
            ["tool", "outcome"],
            buckets=_BUCKETS,
            registry=reg,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        return self._client.generate_latest(self.registry), self._client.CONTENT_TYPE_LATEST

    def _run_started(self, event: LoopEvent) -> None:
        self.in_flight.inc()
        super()._run_started(event)

    def _run_ended(self, event: LoopEvent) -> None:
        self.in_flight.dec()
        super()._run_ended(event)

    def measure(self, event: LoopEvent, outcome: Outcome | None, seconds: float) -> None:
        """Record ``event`` on the instruments of its kind."""
        kind = event.kind
        if kind is LoopEventKind.UPSTREAM_RETRY:
            status = event.status
            self.retries.labels("connection" if status is None else str(status)).inc()
            return
        if outcome is None:
            return
        if kind is LoopEventKind.RUN_ENDED:
            self.responses.labels(outcome.value).inc()
            return
        step_kind = event.step_kind.value if event.step_kind is not None else "unknown"
        self.steps.labels(step_kind, outcome.value).inc()
        if event.step_kind is StepKind.MODEL_CALL:
            self.upstream.labels(outcome.value).observe(seconds)
        elif event.step_kind is StepKind.TOOL_CALL:
            tool = event.step.tool_name if event.step is not None else None
            self.tools.labels(tool or "", outcome.value).observe(seconds)
