"""The Open Responses core: pure functions and values, no I/O.

* :func:`parse_request` validates a ``/v1/responses`` body into a :class:`ResponsesRequest`.
* :func:`assemble_response` builds the Response JSON from a chain of steps (DESIGN §7).
* :func:`continue_request` continues a conversation with ``previous_response_id``;
  :func:`continue_turn` does it from stored turns, reading one per request.
* :func:`revival_step` and :func:`stored_outcome` decide what a retry of a stored response
  runs or answers.
* :class:`WireOptions` says how the wire is spoken where clients differ;
  :func:`open_reasoning_items` opens the sealed reasoning a client sends back, and
  :func:`open_compaction_items` the compaction summaries.
* :class:`ResponsesEventMapper` maps the loop's events to Responses stream events (§8).

Nothing here imports anything that does I/O; a test keeps it so.
"""

from __future__ import annotations

from .._sse import encode_sse
from ._assembly import SDK_ERROR_CODES, assemble_response, sdk_error, sum_usage
from ._continuation import continue_conversation, continue_request, output_as_input
from ._events import ResponsesEventMapper
from ._mcp import ApprovalRule, McpDeclaration, ToolFilter, needs_approval, tool_allowed
from ._policy import (
    MAX_CONVERSATION_TURNS,
    RETRYABLE_UPSTREAM_STATUSES,
    Conversation,
    continue_turn,
    earlier_turn_to_read,
    is_retryable_failure,
    previous_turn,
    revival_step,
    stored_outcome,
    stored_request,
    submitted_body,
)
from ._request import (
    HOSTED_TOOL_TYPES,
    InputItem,
    ResponsesRequest,
    ToolChoice,
    parse_input_item,
    parse_request,
)
from ._sealing import open_compaction_items, open_reasoning_items
from ._wire import WireOptions

__all__ = [
    "HOSTED_TOOL_TYPES",
    "MAX_CONVERSATION_TURNS",
    "RETRYABLE_UPSTREAM_STATUSES",
    "SDK_ERROR_CODES",
    "ApprovalRule",
    "Conversation",
    "InputItem",
    "McpDeclaration",
    "ResponsesEventMapper",
    "ResponsesRequest",
    "ToolChoice",
    "ToolFilter",
    "WireOptions",
    "assemble_response",
    "continue_conversation",
    "continue_request",
    "continue_turn",
    "earlier_turn_to_read",
    "encode_sse",
    "is_retryable_failure",
    "needs_approval",
    "open_compaction_items",
    "open_reasoning_items",
    "output_as_input",
    "parse_input_item",
    "parse_request",
    "previous_turn",
    "revival_step",
    "sdk_error",
    "stored_outcome",
    "stored_request",
    "submitted_body",
    "sum_usage",
    "tool_allowed",
]
