"""Observing the loop: hooks for logs, metrics and traces.

OpenTelemetry lives in its own module, :mod:`responseloop.observe.otel` (extra ``otel``).
"""

from __future__ import annotations

from ._observer import (
    CompositeObserver,
    LoopMetrics,
    LoopObserver,
    MetricsObserver,
    Outcome,
    RetryObserver,
    UpstreamRetry,
)

__all__ = [
    "CompositeObserver",
    "LoopMetrics",
    "LoopObserver",
    "MetricsObserver",
    "Outcome",
    "RetryObserver",
    "UpstreamRetry",
]
