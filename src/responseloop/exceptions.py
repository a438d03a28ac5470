"""The errors responseloop raises, and how each appears on the wire.

```
ResponseLoopError                      root of everything raised here
├── InvalidRequestError (ValueError)   the caller's request is wrong: 400, names the `param`
│   ├── PreviousResponseNotFound       its previous_response_id names no response it may continue
│   ├── ConversationNotFound (LookupError)  no such conversation (for this caller): 404
│   └── ConversationLocked             another response runs on the conversation: 400
├── UpstreamError                      the upstream model server failed or answered badly
│   ├── UpstreamStatusError            it answered a non-2xx status (after retries)
│   ├── UpstreamConnectionError        it could not be reached, or timed out
│   └── UpstreamProtocolError          it answered 2xx with a body or stream we cannot read
├── ToolError                          a server-side tool failed (fed back to the model by default)
│   ├── ToolNotFound (LookupError)
│   ├── ToolArgumentsError (ValueError)
│   ├── ToolExecutionError
│   └── ToolTimeout (TimeoutError)
├── StoreError                         persistence failed: always propagates, never swallowed
│   ├── ResponseNotFound (LookupError)
│   ├── StepNotFound (LookupError)
│   ├── ResponseExists
│   └── StepStateError                 an illegal step transition (e.g. completing twice)
├── LoopLimitExceeded                  a cap of LoopConfig ended the response
│   ├── MaxIterationsExceeded
│   ├── MaxDepthExceeded
│   ├── MaxToolCallsExceeded
│   └── DeadlineExceeded (TimeoutError)
├── StepAbandoned                      a worker died mid-step and re-firing is not allowed
├── ResponseAlreadyRunning             another worker holds the response's lease: 409
└── EventSinkError                     the live event consumer is gone
```

Every error that ends a response is stored as the Response's ``error`` through
:meth:`ResponseLoopError.to_error`: ``code`` is the nearest member of the closed set the
official SDK accepts (``server_error``, ``rate_limit_exceeded``, ``invalid_prompt``) and
``type`` is our own stable, finer code (``upstream_error``, ``max_iterations_exceeded``, …).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

__all__ = [
    "ConversationLocked",
    "ConversationNotFound",
    "DeadlineExceeded",
    "EventSinkError",
    "InvalidRequestError",
    "LeaseLost",
    "LoopLimitExceeded",
    "MaxDepthExceeded",
    "MaxIterationsExceeded",
    "MaxToolCallsExceeded",
    "PreviousResponseNotFound",
    "ResponseAlreadyRunning",
    "ResponseExists",
    "ResponseLoopError",
    "ResponseNotFound",
    "ServerShuttingDown",
    "StepAbandoned",
    "StepNotFound",
    "StepStateError",
    "StoreError",
    "ToolArgumentsError",
    "ToolError",
    "ToolExecutionError",
    "ToolNotFound",
    "ToolTimeout",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
]


class ResponseLoopError(Exception):
    """Root of every error responseloop raises.

    ``error_type`` is our stable code, ``sdk_code`` the SDK's nearest ``ResponseError.code``
    and ``http_status`` the status an HTTP adapter answers with.
    """

    error_type: ClassVar[str] = "server_error"
    sdk_code: ClassVar[str] = "server_error"
    http_status: ClassVar[int] = 500

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0]) if self.args else self.__class__.__name__

    def __str__(self) -> str:
        return self.message

    def to_error(self) -> dict[str, Any]:
        """This error as the JSON stored on a failed step or response."""
        return {"type": self.error_type, "code": self.sdk_code, "message": self.message}


class InvalidRequestError(ResponseLoopError, ValueError):
    """The caller's request is invalid. ``param`` names the offending field."""

    error_type = "invalid_request_error"
    sdk_code = "invalid_prompt"
    http_status = 400

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def to_error(self) -> dict[str, Any]:
        return {**super().to_error(), "param": self.param}


class PreviousResponseNotFound(InvalidRequestError):
    """``previous_response_id`` names no response this caller may continue. Over HTTP it is
    answered as any invalid request (400); the WebSocket mode answers it with the code the
    Open Responses spec gives it, ``previous_response_not_found``."""

    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"previous response {response_id!r} not found", param="previous_response_id"
        )
        self.response_id = response_id


class ConversationNotFound(InvalidRequestError, LookupError):
    """No conversation has that id, or it is another caller's (which looks the same).

    An :class:`InvalidRequestError` naming ``conversation``, so a response created for a
    conversation deleted meanwhile fails as a bad request rather than a store fault."""

    http_status = 404

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"Conversation with id {conversation_id!r} not found.", param="conversation"
        )
        self.conversation_id = conversation_id


class ConversationLocked(InvalidRequestError):
    """Another response is running on the conversation (or items were added while this
    one was being prepared): OpenAI's 400 ``conversation_locked``. Retry once it ended.

    Only one response at a time continues a conversation, so no response's items are ever
    interleaved with another's turn."""

    wire_code: ClassVar[str] = "conversation_locked"

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            "Another process is currently operating on this conversation. Please retry in a"
            " few seconds.",
            param="conversation",
        )
        self.conversation_id = conversation_id


class UpstreamError(ResponseLoopError):
    """The upstream model server is at fault."""

    error_type = "upstream_error"
    http_status = 502


class UpstreamStatusError(UpstreamError):
    """The upstream answered ``status`` (after retries, when the status was retryable).

    Without an explicit ``message`` the message carries the upstream's own one, read from
    ``body`` (bounded, with anything that looks like a credential removed):
    ``upstream answered HTTP 400: 'max_tokens' is too large``.
    ``body`` itself holds the upstream's whole body for debugging; it is deliberately left
    out of :meth:`to_error`, so a provider's raw text is never persisted.
    ``retry_after`` is the wait in seconds the upstream's ``Retry-After`` asked for, if any.
    """

    def __init__(
        self,
        status: int,
        body: str = "",
        *,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        if message is None:
            told = _upstream_error_message(body)
            message = f"upstream answered HTTP {status}" + (f": {told}" if told else "")
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after

    @property
    def sdk_code(self) -> str:  # type: ignore[override]
        if self.status == 429:
            return "rate_limit_exceeded"
        if 400 <= self.status < 500:
            return "invalid_prompt"
        return "server_error"

    @property
    def http_status(self) -> int:  # type: ignore[override]
        return self.status if 400 <= self.status <= 599 else 502

    def to_error(self) -> dict[str, Any]:
        return {**super().to_error(), "status": self.status}


# The most characters of an upstream's own error message an error carries.
_UPSTREAM_MESSAGE_LIMIT = 500

# What may be a credential in an upstream's text: a bearer token, a key-looking word
# (OpenAI-style ``sk-…``, or long opaque runs), a ``key=value`` secret, a URL's userinfo.
_SECRETS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;\"']+"), r"\1 [redacted]"),
    (
        re.compile(
            r"(?i)\b([\w-]*(?:api[_-]?key|secret|password|passwd|authorization|token))\b"
            r"([\"']?\s*[:=]\s*[\"']?)[^\s,;\"'&]+"
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), r"\1[redacted]@"),
    (re.compile(r"\b(?:sk|pk|rk|hf|gsk|xai)[-_][A-Za-z0-9_\-]{4,}"), "[redacted]"),
    (re.compile(r"\b[A-Za-z0-9_\-+/]{40,}={0,2}"), "[redacted]"),
)


def _upstream_error_message(body: str) -> str:
    """The upstream's own message in an error ``body``, or ``""`` when it gives none.

    Read from the usual shapes: ``{"error": {"message": ...}}`` (OpenAI, vLLM),
    ``{"error": "..."}``, ``{"detail": ...}`` (FastAPI, a string or a list of problems),
    ``{"message": ...}``, else the body as plain text. Whitespace is collapsed, anything
    that looks like a credential is replaced by ``[redacted]``, and the result is cut to
    500 characters.
    """
    text = _told(body)
    text = " ".join(text.split())
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    if len(text) > _UPSTREAM_MESSAGE_LIMIT:
        text = text[: _UPSTREAM_MESSAGE_LIMIT - 1] + "…"
    return text


def _told(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        stripped = body.strip()
        # An HTML error page says nothing a caller can use, and may be long.
        return "" if stripped[:1] == "<" else stripped
    return _message_in(parsed)


def _message_in(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(filter(None, (_message_in(v) for v in value[:5])))
    if not isinstance(value, dict):
        return "" if value is None else json.dumps(value)
    for key in ("error", "detail", "message", "msg"):
        if key in value:
            found = _message_in(value[key])
            if found:
                location = value.get("loc")
                if key == "msg" and isinstance(location, list):
                    found = f"{'.'.join(map(str, location))}: {found}"
                return found
    return ""


class UpstreamConnectionError(UpstreamError):
    """The upstream could not be reached, or did not answer in time."""

    http_status = 504


class UpstreamProtocolError(UpstreamError):
    """The upstream answered 2xx with a body or stream that is not valid chat-completions."""


class ToolError(ResponseLoopError):
    """A server-side tool failed. The loop records it on the tool's step."""

    error_type = "tool_error"


class ToolNotFound(ToolError, LookupError):
    """No server-side tool of that name exists for this caller."""

    def __init__(self, name: str) -> None:
        super().__init__(f"tool not found: {name}")
        self.name = name


class ToolArgumentsError(ToolError, ValueError):
    """The model called a tool with arguments that do not match its schema."""


class ToolExecutionError(ToolError):
    """The tool ran and failed."""


class ToolTimeout(ToolError, TimeoutError):
    """The tool did not finish in time."""


class StoreError(ResponseLoopError):
    """Persistence failed. The loop never swallows it: nothing is lost silently."""

    error_type = "store_error"


class ResponseNotFound(StoreError, LookupError):
    """No stored response has that id."""

    http_status = 404

    def __init__(self, response_id: str) -> None:
        super().__init__(f"response not found: {response_id}")
        self.response_id = response_id


class ResponseExists(StoreError):
    """A response with that id is already stored (for a retry: with another request)."""

    error_type = "response_exists"
    http_status = 409

    def __init__(self, response_id: str) -> None:
        super().__init__(f"response already exists: {response_id}")
        self.response_id = response_id


class StepNotFound(StoreError, LookupError):
    """No stored step has that id."""

    def __init__(self, step_id: str) -> None:
        super().__init__(f"step not found: {step_id}")
        self.step_id = step_id


class StepStateError(StoreError):
    """An illegal step transition, such as completing a step twice."""


class LoopLimitExceeded(ResponseLoopError):
    """A cap of :class:`~responseloop.LoopConfig` ended the response."""


class MaxIterationsExceeded(LoopLimitExceeded):
    """A scope made more model calls than ``LoopConfig.max_iterations`` allows."""

    error_type = "max_iterations_exceeded"


class MaxDepthExceeded(LoopLimitExceeded):
    """Sub-agents nested deeper than ``LoopConfig.max_depth`` allows."""

    error_type = "max_depth_exceeded"


class MaxToolCallsExceeded(LoopLimitExceeded):
    """The response made more tool calls than ``LoopConfig.max_tool_calls`` allows."""

    error_type = "max_tool_calls_exceeded"


class DeadlineExceeded(LoopLimitExceeded, TimeoutError):
    """The response ran longer than ``LoopConfig.response_timeout``."""

    error_type = "deadline_exceeded"


class StepAbandoned(ResponseLoopError):
    """A worker died mid-step, and the step may not be re-fired (it may have had effects)."""

    error_type = "step_abandoned"


class ResponseAlreadyRunning(ResponseLoopError):
    """Another worker holds the lease of this response, so this one must not run it.

    Raised before any step is touched when the lease cannot be claimed, or when a running
    worker finds that its lease expired and another worker took the response over (it then
    stops without writing anything more). Retry later, or leave the response to its holder.
    """

    error_type = "response_already_running"
    http_status = 409

    def __init__(self, response_id: str, *, taken_over: bool = False) -> None:
        if taken_over:
            message = f"response {response_id} was taken over by another worker"
        else:
            message = f"response {response_id} is already being run by another worker"
        super().__init__(message)
        self.response_id = response_id
        self.taken_over = taken_over


class LeaseLost(ResponseAlreadyRunning):
    """A fenced write came from a worker whose lease another worker has taken over (or that
    holds no lease any more): the store refused it and wrote nothing.

    The worker must stop: another one runs the response now.
    """

    def __init__(self, response_id: str) -> None:
        super().__init__(response_id, taken_over=True)


class ServerShuttingDown(ResponseLoopError):
    """This server is shutting down: it takes no new work, and a response it was running
    was handed over (its lease released) for another replica, or for this one after its
    restart, to finish. Retry elsewhere, or poll the response."""

    error_type = "server_shutting_down"
    http_status = 503


class EventSinkError(ResponseLoopError):
    """The live event consumer is gone or refused an event."""
