"""OpenAI-style error bodies, and the HTTP status each failure maps to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ResponseLoopError

__all__ = ["error_body", "exception_body", "failure_status"]


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code", …}}``, as OpenAI's API answers."""
    return {"error": {"message": message, "type": type, "param": param, "code": code, **extra}}


def exception_body(exc: ResponseLoopError) -> dict[str, Any]:
    """The error body of one of our exceptions (our own code in ``code`` and ``type``; an
    error OpenAI answers with a finer ``code``, such as ``conversation_locked``, has it)."""
    error = exc.to_error()
    code = getattr(exc, "wire_code", None) or error["type"]
    return error_body(exc.message, type=error["type"], code=code, param=error.get("param"))


def failure_status(error: Mapping[str, Any]) -> int:
    """The HTTP status of a failed response: the upstream's own 4xx/5xx when the failure
    came from upstream (so a host's retry policy sees 429 or 503 as such), 400 for a
    request the caller got wrong, else 500."""
    if error.get("type") == "invalid_request_error":
        return 400
    status = error.get("status")
    if (
        error.get("type") == "upstream_error"
        and isinstance(status, int)
        and not isinstance(status, bool)
    ) and 400 <= status <= 599:
        return status
    return 500
