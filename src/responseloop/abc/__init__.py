"""The extension points and the values they exchange: pure, no I/O.

Every :class:`typing.Protocol` a host implements (or takes from us) to run the loop, and
the frozen values that cross them. The values a first-day user builds
(:class:`~responseloop.LoopConfig`, :class:`~responseloop.UpstreamTarget`,
:class:`~responseloop.RequestContext`, :class:`~responseloop.ResponseRecord`) are imported
from :mod:`responseloop` itself.
"""

from __future__ import annotations

from ._dialect import (
    ModelTurn,
    StreamDelta,
    StreamReassembler,
    ToolCall,
    ToolCallDelta,
    UpstreamDialect,
)
from ._events import LoopEvent, LoopEventKind
from ._http import HttpRequest, HttpResponse, ServerSentEvent
from ._json import JSON
from ._protocols import (
    AgentToolExecutor,
    ApprovalStore,
    CallerToolResolver,
    ConversationStore,
    EventSink,
    HttpClient,
    OnServerSentEvent,
    ResponseStore,
    StepAdvancingStore,
    StepStartingStore,
    ToolExecutor,
    ToolListingExecutor,
    ToolResolver,
    Transition,
)
from ._records import (
    ConversationContents,
    ConversationEntry,
    ConversationRecord,
    ResponseStatus,
    ResponseUpdate,
)
from ._steps import (
    AppendSteps,
    ChainStep,
    Complete,
    Fail,
    NextAction,
    RecordedStep,
    Scope,
    StepDescriptor,
    StepKind,
    StepState,
    StepUpdate,
)
from ._tools import AgentSpec, ToolKind, ToolSchema

__all__ = [
    "JSON",
    "AgentSpec",
    "AgentToolExecutor",
    "AppendSteps",
    "ApprovalStore",
    "CallerToolResolver",
    "ChainStep",
    "Complete",
    "ConversationContents",
    "ConversationEntry",
    "ConversationRecord",
    "ConversationStore",
    "EventSink",
    "Fail",
    "HttpClient",
    "HttpRequest",
    "HttpResponse",
    "LoopEvent",
    "LoopEventKind",
    "ModelTurn",
    "NextAction",
    "OnServerSentEvent",
    "RecordedStep",
    "ResponseStatus",
    "ResponseStore",
    "ResponseUpdate",
    "Scope",
    "ServerSentEvent",
    "StepAdvancingStore",
    "StepDescriptor",
    "StepKind",
    "StepStartingStore",
    "StepState",
    "StepUpdate",
    "StreamDelta",
    "StreamReassembler",
    "ToolCall",
    "ToolCallDelta",
    "ToolExecutor",
    "ToolKind",
    "ToolListingExecutor",
    "ToolResolver",
    "ToolSchema",
    "Transition",
    "UpstreamDialect",
]
