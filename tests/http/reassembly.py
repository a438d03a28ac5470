"""What the loop does with a stream's events, for tests of an HttpClient on its own: feed
each to the Chat Completions dialect's reassembler, keep the ones it accepted, and say
when the stream has ended."""

from __future__ import annotations

from responseloop.abc import JSON, ServerSentEvent
from responseloop.chat import CHAT_COMPLETIONS


class Reassembling:
    """An ``on_event`` callback reassembling a chat-completions stream, as the loop's is.

    Attributes:
        events: every event the reassembler accepted, in order.
    """

    def __init__(self) -> None:
        self.events: list[ServerSentEvent] = []
        self._reassembler = CHAT_COMPLETIONS.stream_reassembler()

    async def __call__(self, event: ServerSentEvent) -> bool:
        self._reassembler.feed(event)  # a malformed event raises before it is kept
        self.events.append(event)
        return self._reassembler.done

    def result(self) -> JSON:
        """The reassembled chat.completion (raises as the loop's reassembly does)."""
        return self._reassembler.result()
