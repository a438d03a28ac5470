"""Steps and chains: what a response is made of, and what a transition decides.

Every class here is a frozen attrs value: build new ones with :func:`attrs.evolve`.
This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from ._json import JSON, _frozen_mapping
from ._tools import ToolSchema

__all__ = [
    "AppendSteps",
    "ChainStep",
    "Complete",
    "Fail",
    "NextAction",
    "RecordedStep",
    "Scope",
    "StepDescriptor",
    "StepKind",
    "StepState",
    "StepUpdate",
]


def _descriptors(value: Iterable[StepDescriptor]) -> Sequence[StepDescriptor]:
    return tuple(value)


class StepKind(enum.StrEnum):
    """What a step does: call the upstream model, call a server-side tool, list the
    tools of a request-declared MCP server (``TOOL_LISTING``: read-only, so it is always
    re-fired on resume, and not a tool call for ``max_tool_calls``), or summarise the
    conversation so far (``COMPACTION``: a call of the upstream model whose request is a
    summarisation, so it has no effects and is always re-fired on resume; it is not a
    model call for ``max_iterations``, which caps the turns of the model's own work)."""

    MODEL_CALL = "model_call"
    TOOL_CALL = "tool_call"
    TOOL_LISTING = "tool_listing"
    COMPACTION = "compaction"


class StepState(enum.StrEnum):
    """Where a step is in its life: ``pending → processing → completed | failed | cancelled``."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the step will never change state again on its own."""
        return self in (StepState.COMPLETED, StepState.FAILED, StepState.CANCELLED)


@attrs.frozen
class StepDescriptor:
    """A step the transition function asks the loop to run.

    Build them with :meth:`model_call` and :meth:`tool_call`, which check the payload's
    shape up front (a tool step without a name is a bug in the transition, caught here
    rather than as a step stuck in ``processing``).
    """

    kind: StepKind
    request_payload: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)

    def __attrs_post_init__(self) -> None:
        if self.kind is StepKind.TOOL_CALL:
            name = self.request_payload.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("a tool_call step needs a string 'name' in its payload")
            if not isinstance(self.request_payload.get("call_id"), str):
                raise ValueError("a tool_call step needs a string 'call_id' in its payload")

    @classmethod
    def model_call(cls, body: Mapping[str, Any]) -> StepDescriptor:
        """A call to the upstream model; ``body`` is the exact Chat Completions body."""
        return cls(StepKind.MODEL_CALL, body)

    @classmethod
    def tool_call(
        cls, name: str, call_id: str, arguments: JSON, *, server_label: str | None = None
    ) -> StepDescriptor:
        """A call to server-side tool ``name`` for the model's tool call ``call_id``;
        ``server_label`` (the tool's MCP server, kept in the payload when given) is what
        the Responses wire shows the call ran on."""
        payload: dict[str, Any] = {"name": name, "call_id": call_id, "arguments": arguments}
        if server_label is not None:
            payload["server_label"] = server_label
        return _descriptor_owning(StepKind.TOOL_CALL, payload)

    @classmethod
    def tool_listing(cls, server_label: str) -> StepDescriptor:
        """A listing of the tools of the request-declared MCP server ``server_label``."""
        return _descriptor_owning(StepKind.TOOL_LISTING, {"server_label": server_label})

    @classmethod
    def compaction(cls, body: Mapping[str, Any]) -> StepDescriptor:
        """A summarisation of the conversation by the upstream model; ``body`` is the
        exact Chat Completions body (the conversation, then the summarisation prompt)."""
        return cls(StepKind.COMPACTION, body)

    @property
    def tool_name(self) -> str | None:
        """The tool's name for tool steps, ``None`` for model calls."""
        name = self.request_payload.get("name") if self.kind is StepKind.TOOL_CALL else None
        return name if isinstance(name, str) else None


@attrs.frozen
class RecordedStep:
    """What :meth:`ResponseStore.record_step` returns: the new step's id and sequence."""

    id: str
    sequence: int


@attrs.frozen
class ChainStep:
    """One persisted step as :meth:`ResponseStore.list_chain` returns it.

    ``scope`` is ``None`` for the top level of a response, or the id of the agent step whose
    sub-loop this step belongs to. ``response_payload`` is set only for completed steps and
    ``error`` only for failed (or cancelled) ones.
    """

    id: str
    kind: StepKind
    state: StepState
    sequence: int
    request_payload: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    prev_step_id: str | None = None
    scope: str | None = None
    response_payload: JSON = None
    error: Mapping[str, Any] | None = None

    @property
    def tool_name(self) -> str | None:
        """The tool's name for tool steps, ``None`` for model calls."""
        name = self.request_payload.get("name") if self.is_tool else None
        return name if isinstance(name, str) else None

    @property
    def is_tool(self) -> bool:
        """Whether this is a tool step."""
        return self.kind is StepKind.TOOL_CALL


@attrs.frozen
class AppendSteps:
    """Run these steps next: one is a serial step, several are a concurrent fan-out."""

    steps: Sequence[StepDescriptor] = attrs.field(converter=_descriptors)

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise ValueError("AppendSteps needs at least one step")


@attrs.frozen
class Complete:
    """Stop: the scope finished successfully with ``payload``."""

    payload: JSON = None


@attrs.frozen
class Fail:
    """Stop: the scope failed with ``error`` (``{"type", "code", "message", …}``)."""

    error: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)


NextAction: TypeAlias = AppendSteps | Complete | Fail
"""The transition function's verdict."""


def _descriptor_owning(kind: StepKind, request_payload: dict[str, Any]) -> StepDescriptor:
    """A :class:`StepDescriptor` that takes ``request_payload`` as it is rather than the
    copy its converter makes: for a payload just built, that nobody else holds or changes
    (a transition's new body), so that a step's payload is made once, not twice."""
    descriptor = object.__new__(StepDescriptor)
    object.__setattr__(descriptor, "kind", kind)  # attrs' own way into a frozen instance
    object.__setattr__(descriptor, "request_payload", request_payload)
    descriptor.__attrs_post_init__()
    return descriptor


def _scope_sharing(
    response_id: str, parent_step_id: str | None, depth: int, tools: dict[str, ToolSchema]
) -> Scope:
    """A :class:`Scope` that holds ``tools`` itself rather than a copy: for the loop, which
    builds the mapping for the scope and keeps it unchanged."""
    scope = object.__new__(Scope)
    setattr_ = object.__setattr__
    setattr_(scope, "response_id", response_id)
    setattr_(scope, "parent_step_id", parent_step_id)
    setattr_(scope, "depth", depth)
    setattr_(scope, "tools", tools)
    return scope


def _chain_step_sharing(
    id: str,
    kind: StepKind,
    state: StepState,
    sequence: int,
    request_payload: Mapping[str, Any],
    prev_step_id: str | None,
    scope: str | None,
    response_payload: JSON = None,
    error: Mapping[str, Any] | None = None,
) -> ChainStep:
    """A :class:`ChainStep` that holds ``request_payload`` itself rather than the copy its
    converter makes: for the loop, whose payload is already another step value's own (a
    descriptor's, or the step's before it ended), so that each step in flight holds one
    copy, not three."""
    step = object.__new__(ChainStep)
    setattr_ = object.__setattr__  # attrs' own way into a frozen instance
    setattr_(step, "id", id)
    setattr_(step, "kind", kind)
    setattr_(step, "state", state)
    setattr_(step, "sequence", sequence)
    setattr_(step, "request_payload", request_payload)
    setattr_(step, "prev_step_id", prev_step_id)
    setattr_(step, "scope", scope)
    setattr_(step, "response_payload", response_payload)
    setattr_(step, "error", error)
    return step


@attrs.frozen
class Scope:
    """What the transition function knows about the scope it decides for.

    ``tools`` are the server-side tools available in this scope, by name.
    """

    response_id: str
    parent_step_id: str | None
    depth: int
    tools: Mapping[str, ToolSchema] = attrs.field(converter=_frozen_mapping)


@attrs.frozen
class StepUpdate:
    """One move of a stored step, as :meth:`ResponseStore.update_step` takes it.

    Build it with a named constructor; which moves are legal from which state is
    :data:`responseloop.core.STEP_MOVES`. ``payload`` is the step's result (completed
    only) and ``error`` its error (failed only); every other move clears both.
    """

    state: StepState = attrs.field()
    payload: JSON = None
    error: JSON = None

    @classmethod
    def processing(cls) -> StepUpdate:
        """Start the step (or start it again, when a worker re-fires it)."""
        return cls(StepState.PROCESSING)

    @classmethod
    def completed(cls, payload: JSON) -> StepUpdate:
        """Finish the step with its result ``payload``."""
        return cls(StepState.COMPLETED, payload=payload)

    @classmethod
    def failed(cls, error: JSON) -> StepUpdate:
        """Finish the step with ``error``."""
        return cls(StepState.FAILED, error=error)

    @classmethod
    def cancelled(cls) -> StepUpdate:
        """Give the step up: nothing will run it to its end."""
        return cls(StepState.CANCELLED)

    @state.validator
    def _check(self, attribute: attrs.Attribute[StepState], value: StepState) -> None:
        if value is StepState.PENDING:
            raise ValueError("a step is pending only when recorded; no update moves it back")
        if self.payload is not None and value is not StepState.COMPLETED:
            raise ValueError(f"only a completed step has a payload, not a {value.value} one")
        if self.error is not None and value is not StepState.FAILED:
            raise ValueError(f"only a failed step has an error, not a {value.value} one")
