"""Upstream calls over HTTP: :class:`~responseloop.HttpxClient` (httpx2) and its retries.

The aiohttp client lives in its own module, :mod:`responseloop.http.aiohttp`
(extra ``aiohttp``). Names are loaded on first use, so the pure parts of this layer (the
retry arithmetic, the SSE codec) import without httpx2.
"""

from __future__ import annotations

import typing

from .. import _lazy

if typing.TYPE_CHECKING:
    from ._calls import DEFAULT_MAX_REPLY_BYTES, Sleep
    from ._httpx import DEFAULT_LIMITS, retry_after_seconds

__all__ = ["DEFAULT_LIMITS", "DEFAULT_MAX_REPLY_BYTES", "Sleep", "retry_after_seconds"]

_HOMES = {
    "DEFAULT_LIMITS": "._httpx",
    "DEFAULT_MAX_REPLY_BYTES": "._calls",
    "Sleep": "._calls",
    "retry_after_seconds": "._httpx",
}

if not typing.TYPE_CHECKING:  # mypy sees the imports above, and flags unknown names
    __getattr__, __dir__ = _lazy.lazy_exports(__name__, globals(), _HOMES)
