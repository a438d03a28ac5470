"""The HTTP values an HttpClient exchanges: a request, a response, one server-sent event.

Every class here is a frozen attrs value: build new ones with :func:`attrs.evolve`.
This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs

from ._config import _read_only_str_mapping, _str_mapping
from ._json import JSON

__all__ = ["HttpRequest", "HttpResponse", "ServerSentEvent"]


@attrs.frozen
class HttpRequest:
    """One upstream HTTP call. ``correlation_id`` is the step's id, sent as a header.

    Header values are hidden from ``repr`` (they carry the bearer key).
    """

    url: str
    json: JSON = None
    method: str = "POST"
    headers: Mapping[str, str] = attrs.field(
        factory=dict, converter=_read_only_str_mapping, repr=False
    )
    timeout: float | None = None
    correlation_id: str | None = None


@attrs.frozen
class HttpResponse:
    """An HTTP response: status, headers and the raw body."""

    status: int
    content: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_str_mapping)

    @classmethod
    def from_json(
        cls, status: int, value: JSON, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        """A response whose body is ``value`` as compact JSON."""
        try:
            body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: send it escaped
            body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, body, {"content-type": "application/json", **(headers or {})})

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> JSON:
        """The body parsed as JSON (raises :class:`ValueError` when it is not JSON)."""
        return json.loads(self.content)


@attrs.frozen
class ServerSentEvent:
    """One server-sent event: its ``event`` name (``"message"`` by default) and ``data``."""

    data: str
    event: str = "message"
    id: str | None = None

    def json(self) -> JSON:
        """The data parsed as JSON."""
        return json.loads(self.data)
