"""Observing the loop: one observer method taking one lifecycle event, for logs, metrics
and traces.

OpenTelemetry lives in its own module, :mod:`responseloop.observe.otel` (extra ``otel``).
"""

from __future__ import annotations

from ._observer import CompositeObserver, LoopObserver, MetricsObserver, Outcome

__all__ = [
    "CompositeObserver",
    "LoopObserver",
    "MetricsObserver",
    "Outcome",
]
