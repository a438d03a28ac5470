"""The Open Responses core: pure functions and values, no I/O.

* :func:`parse_request` validates a ``/v1/responses`` body into a :class:`ResponsesRequest`.
* :func:`assemble_response` builds the Response JSON from a chain of steps (DESIGN §7).
* :func:`continue_request` continues a conversation with ``previous_response_id``.
* :class:`ResponsesEventMapper` maps the loop's events to Responses stream events (§8).

Nothing here imports anything that does I/O; a test keeps it so.
"""

from __future__ import annotations

from ..http._sse import encode_sse
from ._assembly import SDK_ERROR_CODES, assemble_response, sdk_error, sum_usage
from ._continuation import continue_request, output_as_input
from ._events import ResponsesEventMapper
from ._request import InputItem, ResponsesRequest, ToolChoice, parse_input_item, parse_request

__all__ = [
    "SDK_ERROR_CODES",
    "InputItem",
    "ResponsesEventMapper",
    "ResponsesRequest",
    "ToolChoice",
    "assemble_response",
    "continue_request",
    "encode_sse",
    "output_as_input",
    "parse_input_item",
    "parse_request",
    "sdk_error",
    "sum_usage",
]
