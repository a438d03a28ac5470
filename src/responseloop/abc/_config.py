"""What a run is for (the caller, the upstream) and how it is bounded (LoopConfig).

Every class here is a frozen attrs value: build new ones with :func:`attrs.evolve`.
This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import attrs

__all__ = ["LoopConfig", "RequestContext", "UpstreamTarget"]


_T = TypeVar("_T")


def _str_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


def _read_only_str_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    # A read-only view is kept as it is (an UpstreamTarget's headers, shared by its calls).
    return value if type(value) is MappingProxyType else dict(value)


def _type_mapping(value: Mapping[type, object]) -> Mapping[type, object]:
    return dict(value)


@attrs.frozen
class RequestContext:
    """Who is asking, for which model, plus typed extensions the host adds.

    Extensions are keyed by their type, so a host can carry its own values to its own
    tools without stringly-typed lookups::

        ctx = RequestContext(model="m").with_extension(Tenant("acme"))
        ctx.extension(Tenant)  # Tenant("acme")
    """

    response_id: str = ""
    model: str | None = None
    caller: str | None = None
    extensions: Mapping[type, object] = attrs.field(factory=dict, converter=_type_mapping)

    def with_extension(self, value: object) -> RequestContext:
        """A copy carrying ``value`` under its own type (replacing an older one)."""
        return attrs.evolve(self, extensions={**self.extensions, type(value): value})

    def extension(self, kind: type[_T]) -> _T | None:
        """The extension of type ``kind``, or ``None``."""
        value = self.extensions.get(kind)
        return value if isinstance(value, kind) else None


@attrs.frozen
class UpstreamTarget:
    """Where model calls go: ``base_url + path``, with an optional bearer key.

    The key never appears in ``repr``. An empty key means no ``Authorization`` header.
    """

    base_url: str
    path: str = "/v1/chat/completions"
    api_key: str | None = attrs.field(default=None, repr=False)

    # Computed once per target, not per model call: every call in flight holds them, and
    # one shared value is one fewer string and two fewer dicts per response in flight.
    @functools.cached_property
    def url(self) -> str:
        """The full URL of the chat-completions endpoint."""
        return self.base_url.rstrip("/") + "/" + self.path.lstrip("/")

    def headers(self) -> dict[str, str]:
        """The request headers this target needs (authorisation only when a key is set)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @functools.cached_property
    def _request_headers(self) -> Mapping[str, str]:
        """:meth:`headers`, read-only and shared by every request to this target."""
        return MappingProxyType(self.headers())


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class LoopConfig:
    """Caps and policies of the loop. Every field has a safe default.

    Attributes:
        max_iterations: the most model calls one scope (the top level, or one sub-agent)
            may make. The default of 10 ends runaway tool ping-pong with a clear error.
        max_depth: the deepest sub-agent nesting; the top level is depth 0.
        max_tool_calls: the most server-side tool calls in a whole response, across all
            scopes (``None``: no cap). The operator's hard cap; the request's own
            ``max_tool_calls`` is a softer budget applied by the transition.
        step_timeout: seconds one step (a model call or a tool call) may take.
        response_timeout: seconds the whole loop may run before it fails the response.
        tool_errors: ``"feed_back"`` answers a failed tool to the model as an error output
            so it can recover; ``"fail"`` fails the response.
        unknown_tools: the same choice for a tool call naming a tool that is neither
            server-side for this caller nor a client function of the request.
        refire_model_calls: on resume, re-send a model call that a dead worker left in
            flight (model calls have no side effects, but they cost tokens).
        refire_idempotent_tools: on resume, re-run a tool that a dead worker left in flight
            when its schema says it is idempotent.
        event_buffer: how many stream events may wait for a slow reader before the loop
            waits for it (the bound that keeps memory flat).
        max_tool_output_bytes: the largest result a tool may return, measured as UTF-8
            (a string as is, anything else as JSON); a larger one fails the tool step with
            a ``tool_error`` instead of being stored and sent to the model (``None``: no
            cap). The default is 1 MiB.
        tool_exception_detail: what the tool's error says when a tool raises an exception
            that is not a :class:`~responseloop.exceptions.ToolError`: ``"type"`` (the
            default) names only the exception's class, since its text may carry internals the
            model and the stored response should not see; ``"message"`` adds the exception's text. A
            :class:`~responseloop.exceptions.ToolError`'s own message is always used as is.
        lease_seconds: how long the lease a run holds on its response lasts without being
            renewed. A running loop renews it every third of that, so only one worker runs
            a response at a time; when a worker dies, another may take the response over
            once its lease has expired. Keep it well above the longest pause a worker can
            suffer (a stalled worker that outlives its lease is stopped, not fenced).
    """

    max_iterations: int = attrs.field(default=10, validator=_positive)
    max_depth: int = attrs.field(default=8, validator=_non_negative)
    max_tool_calls: int | None = attrs.field(default=None, validator=_non_negative)
    step_timeout: float | None = attrs.field(default=None, validator=_positive)
    response_timeout: float | None = attrs.field(default=None, validator=_positive)
    tool_errors: Literal["feed_back", "fail"] = "feed_back"
    unknown_tools: Literal["feed_back", "fail"] = "feed_back"
    refire_model_calls: bool = False
    refire_idempotent_tools: bool = False
    event_buffer: int = attrs.field(default=256, validator=_positive)
    max_tool_output_bytes: int | None = attrs.field(default=1_048_576, validator=_positive)
    tool_exception_detail: Literal["type", "message"] = "type"
    lease_seconds: float = attrs.field(default=30.0, validator=_positive)
