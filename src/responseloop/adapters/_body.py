"""A request body as the HTTP adapters take it: read under a cap, parsed as JSON, and
refused when it holds what no store or encoder can carry.

The cap is enforced while the body is read, never after: a declared ``Content-Length``
over it is refused before the first byte is read, and a chunked body is cut off as soon
as it passes it, so a huge body never reaches memory.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterable, Mapping
from typing import Any

from ..exceptions import InvalidRequestError

__all__ = ["BodyTooLarge", "parse_body", "read_capped", "unstorable"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BodyTooLarge(InvalidRequestError):
    """The request body is larger than the server accepts: answered 413."""

    http_status = 413


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"the body is larger than {limit} bytes")


async def read_capped(chunks: AsyncIterable[bytes], declared: str | None, limit: int) -> bytes:
    """The body of ``chunks``, refused once it passes ``limit`` bytes.

    ``declared`` is the request's ``Content-Length`` (``None`` without one): a length over
    the cap is refused before anything is read, so a client that has sent only its
    headers gets its answer at once.

    Raises:
        BodyTooLarge: the body is (or says it is) longer than ``limit``.
    """
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            length = -1  # the server validates the header; let the body decide
        if length > limit:
            raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    iterator = aiter(chunks)
    try:
        async for chunk in iterator:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
    finally:
        # A body left unread ends here, not at garbage collection (trio reports those).
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    return b"".join(parts)


def _refuse_constant(name: str) -> Any:
    # Python's parser takes NaN and Infinity, which JSON does not have: no client could
    # read them back.
    raise ValueError(f"{name} is not a JSON value")


def parse_body(content: bytes) -> Mapping[str, Any]:
    """The JSON object of a request body, checked storable (see :func:`unstorable`).

    Raises:
        InvalidRequestError: the body is not a JSON object, or holds what cannot be
            stored, naming the ``param`` where it is.
    """
    try:
        body = json.loads(content, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # A body nested too deep for the parser is the caller's fault too, not a 500.
        raise InvalidRequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object")
    problem = unstorable(body)
    if problem is not None:
        param, reason = problem
        raise InvalidRequestError(f"{param} {reason}", param=param)
    return body


def unstorable(value: Any, path: str = "") -> tuple[str, str] | None:
    """Where ``value`` (parsed JSON) holds what has no UTF-8 form, as ``(param, reason)``:
    a lone surrogate (``"\\ud800"``, valid JSON escape, no character) in a string or a key,
    or a number that is not finite; ``None`` when everything in it can be stored and sent.

    ``param`` is the path in the request's own terms: ``input[0].content[1].text``,
    ``metadata["odd key"]``.
    """
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:  # iterative: a deep body must not exhaust the recursion limit here
        where, item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return where or "body", "contains a lone surrogate, which is not a character"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where or "body", "is not a finite number"
        elif isinstance(item, dict):
            if any(_LONE_SURROGATE.search(key) for key in item):
                return where or "body", "has a key with a lone surrogate, which is not a character"
            stack.extend((_member(where, key), item[key]) for key in reversed(item))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", item[i]) for i in reversed(range(len(item))))
    return None


def _member(path: str, key: str) -> str:
    if _NAME.match(key):
        return f"{path}.{key}" if path else key
    # Escaped (ASCII): the name must itself be sendable whatever the key holds.
    return f"{path}[{json.dumps(key)}]"
