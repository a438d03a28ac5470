"""The Chat Completions dialect: pure functions and values, no I/O.

How a Responses request becomes a chat body (:func:`to_chat_body`), how the loop decides
over a chain of chat completions (:class:`~responseloop.ChatTransition`, and
:class:`ResponsesTransition` for a Responses request), how a reply is validated and a
streamed completion reassembled (:data:`CHAT_COMPLETIONS`, the
:class:`~responseloop.abc.UpstreamDialect` of Chat Completions, over
:class:`ChatStreamAssembler`).
"""

from __future__ import annotations

from ._dialect import CHAT_COMPLETIONS, ChatCompletionsDialect, ChatStreamReassembler
from ._responses import ResponsesTransition
from ._stream import ChatStreamAssembler, assemble_chat_completion
from ._translate import chat_tool, to_chat_body, to_chat_messages

__all__ = [
    "CHAT_COMPLETIONS",
    "ChatCompletionsDialect",
    "ChatStreamAssembler",
    "ChatStreamReassembler",
    "ResponsesTransition",
    "assemble_chat_completion",
    "chat_tool",
    "to_chat_body",
    "to_chat_messages",
]
