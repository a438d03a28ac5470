"""Emitter: best-effort delivery of the loop's events to the host's sink."""

from __future__ import annotations

import logging

import attrs

from ..abc._events import LoopEvent
from ..abc._protocols import EventSink

__all__ = ["Emitter"]

logger = logging.getLogger("responseloop.loop")


@attrs.define
class Emitter:
    """Best-effort delivery to the sink: a consumer that is gone never stops the loop."""

    sink: EventSink | None

    async def emit(self, event: LoopEvent) -> None:
        if self.sink is None:
            return
        try:
            await self.sink.emit(event)
        except Exception:
            logger.debug("event sink failed; no further events are sent", exc_info=True)
            self.sink = None
