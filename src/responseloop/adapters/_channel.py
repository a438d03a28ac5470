"""EventChannel: a bounded hand-off of events from the loop to whoever streams them out.

The loop :meth:`~EventChannel.emit`\\ s at one end; an SSE response iterates at the other.
The buffer is an anyio memory object stream of fixed size, so a slow reader slows the loop
down (backpressure) instead of making it buffer without bound, and a reader that stopped
reading altogether is given up on after ``stall_timeout`` so the loop is never held forever.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._closing import AsyncClosing
from ..exceptions import EventSinkError

__all__ = ["EventChannel"]

_E = TypeVar("_E")


class EventChannel(AsyncClosing, Generic[_E]):
    """A bounded channel of events: an :class:`~responseloop.abc.EventSink` at the sending end
    (``EventChannel[LoopEvent]``), an async iterator at the receiving end.

    Args:
        max_buffer: how many events may wait for the reader; when full, :meth:`emit` waits
            for it. ``LoopConfig.event_buffer`` is the loop's setting for this.
        stall_timeout: seconds :meth:`emit` waits on a full buffer before deciding the
            reader is gone (``None``: wait as long as it takes). The channel is then closed
            and :class:`EventSinkError` raised, so the loop stops emitting and carries on;
            nothing is silently dropped from a stream that goes on.

    Typical use: ``async with EventChannel(config.event_buffer) as channel``, run the loop
    with ``events=channel`` in a task group and :meth:`close` the channel when it returns;
    the request handler reads ``async for event in channel`` until then. Leaving the
    ``async with`` closes both ends.
    """

    def __init__(self, max_buffer: int = 256, *, stall_timeout: float | None = 30.0) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        if stall_timeout is not None and not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be positive, got {stall_timeout!r}")
        self._send: MemoryObjectSendStream[_E]
        self._receive: MemoryObjectReceiveStream[_E]
        self._send, self._receive = anyio.create_memory_object_stream[_E](max_buffer)
        self._stall_timeout = stall_timeout

    @property
    def buffered(self) -> int:
        """How many events are waiting for the reader."""
        return self._send.statistics().current_buffer_used

    @property
    def max_buffer(self) -> int:
        """The most events that can wait for the reader."""
        return int(self._send.statistics().max_buffer_size)

    async def emit(self, event: _E) -> None:
        """Hand ``event`` to the reader, waiting while the buffer is full.

        Raises:
            EventSinkError: the reader is gone (closed its end, or stalled past
                ``stall_timeout``), or the channel was closed.
        """
        try:
            # Room in the buffer (the usual case): no deadline to arm, no wait.
            self._send.send_nowait(event)
            return
        except anyio.WouldBlock:
            pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise EventSinkError("the event reader is gone") from None
        limit = self._stall_timeout if self._stall_timeout is not None else math.inf
        try:
            with anyio.fail_after(limit):
                await self._send.send(event)
        except TimeoutError:
            self._send.close()
            raise EventSinkError(
                f"the event reader took nothing for {self._stall_timeout}s with the buffer full"
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise EventSinkError("the event reader is gone") from None

    def close(self) -> None:
        """No more events: the reader's iteration ends once it has read what is buffered."""
        self._send.close()

    async def aclose(self) -> None:
        """Close both ends; a pending :meth:`emit` raises :class:`EventSinkError`."""
        self._send.close()
        self._receive.close()

    def take_buffered(self) -> list[_E]:
        """The events already waiting for the reader, taken without waiting (none when the
        buffer is empty), so a reader can handle what arrived together as one batch."""
        taken: list[_E] = []
        while True:
            try:
                taken.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return taken

    def __aiter__(self) -> AsyncIterator[_E]:
        return self

    async def __anext__(self) -> _E:
        """The next event; the iteration ends once the channel is closed and drained."""
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
            raise StopAsyncIteration from None
