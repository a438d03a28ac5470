"""Fakes for testing code that uses responseloop, without a model server or patching.

* :class:`ScriptedChatModel` — an :class:`~responseloop.abc.HttpClient` that answers model
  calls from a script of :class:`ChatReply` values, streamed or not (with
  :func:`scripted_logprobs` when a call asks for logprobs).
* :class:`RecordingToolExecutor` — a :class:`~responseloop.abc.ToolExecutor` of plain Python
  callables that records every call.
* :class:`RecordingEventSink` — an :class:`~responseloop.abc.EventSink` that keeps every event.
* :class:`RecordingStore` — wraps any :class:`~responseloop.abc.ResponseStore` and counts calls.
* :class:`StoreConformance` — the suite every :class:`~responseloop.abc.ResponseStore` must
  pass; subclass it in your tests to check your own store. :class:`ManualClock` expires
  leases in tests without waiting.
* :class:`ConversationStoreConformance` — the suite of a store that also keeps
  conversations (:class:`~responseloop.abc.ConversationStore`).
* :class:`ApprovalStoreConformance` — the suite of a store that also claims approved MCP
  calls (:class:`~responseloop.abc.ApprovalStore`).
* :class:`StepStartingStoreConformance` — the suite of a store that records steps already
  started in one write (:class:`~responseloop.abc.StepStartingStore`).
* :class:`StepAdvancingStoreConformance` — the suite of a store that completes a step and
  starts the steps after it in one write (:class:`~responseloop.abc.StepAdvancingStore`).
"""

from __future__ import annotations

from ._conformance import (
    ApprovalStoreConformance,
    ConversationStoreConformance,
    ManualClock,
    StepAdvancingStoreConformance,
    StepStartingStoreConformance,
    StoreConformance,
)
from ._fakes import (
    ChatReply,
    RecordingEventSink,
    RecordingStore,
    RecordingToolExecutor,
    ScriptedChatModel,
    ScriptExhausted,
    ToolInvocation,
    scripted_logprobs,
)

__all__ = [
    "ApprovalStoreConformance",
    "ChatReply",
    "ConversationStoreConformance",
    "ManualClock",
    "RecordingEventSink",
    "RecordingStore",
    "RecordingToolExecutor",
    "ScriptExhausted",
    "ScriptedChatModel",
    "StepAdvancingStoreConformance",
    "StepStartingStoreConformance",
    "StoreConformance",
    "ToolInvocation",
    "scripted_logprobs",
]
