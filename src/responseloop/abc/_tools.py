"""Server-side tools as the loop sees them.

Every class here is a frozen attrs value: build new ones with :func:`attrs.evolve`.
This module is pure: it imports nothing that does I/O (a test keeps it so).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from typing import Any

import attrs

from ._json import _frozen_mapping

__all__ = ["AgentSpec", "ToolKind", "ToolSchema"]


class ToolKind(enum.StrEnum):
    """How the loop runs a server-side tool.

    ``FUNCTION`` tools are run through :meth:`ToolExecutor.execute`; ``AGENT`` tools make
    the loop recurse into a sub-loop scoped under the calling step.
    """

    FUNCTION = "function"
    AGENT = "agent"


@attrs.frozen
class AgentSpec:
    """What a sub-agent's transition runs with: its own instructions and model.

    ``model=None`` keeps the model of the calling scope. The sub-agent's server-side tools
    are not part of this value: the executor offering the agent tool gives them
    (:class:`~responseloop.abc.AgentToolExecutor`).
    """

    instructions: str | None = None
    model: str | None = None


@attrs.frozen
class ToolSchema:
    """A server-side tool as the model sees it, plus how the loop must run it.

    ``idempotent`` tools may be re-fired when a worker died while running them (only if
    :attr:`LoopConfig.refire_idempotent_tools` allows it). Agent tools carry their
    :class:`AgentSpec`. ``server_label`` names the MCP server a tool comes from: the
    ``server_label`` of its calls' ``mcp_call`` items (``None``: the wire's own label).
    A call of a tool that ``requires_approval`` is never run by the loop: the scope ends
    with the call unanswered, as for a client's call, for the client to approve (a
    request-declared MCP tool under ``require_approval``).
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}, converter=_frozen_mapping
    )
    strict: bool = False
    kind: ToolKind = ToolKind.FUNCTION
    idempotent: bool = False
    agent: AgentSpec | None = None
    server_label: str | None = None
    requires_approval: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.name:
            raise ValueError("a tool needs a non-empty name")
        if self.kind is ToolKind.AGENT and self.agent is None:
            raise ValueError(f"agent tool {self.name!r} needs an AgentSpec")

    def runs_approved_call(self, server_label: object) -> bool:
        """Whether a call the client approved, naming ``server_label``, may run as this
        tool: only a tool that waits for approval, of that server. A client cannot approve
        its way into any other tool (an approval request it made up names what it likes)."""
        return self.requires_approval and self.server_label == server_label

    def to_chat_tool(self) -> dict[str, Any]:
        """The tool in the Chat Completions ``tools`` array shape (a new value each time)."""
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}

    @functools.cached_property
    def _chat_tool(self) -> dict[str, Any]:
        """:meth:`to_chat_tool`, made once and shared by every body that offers the tool:
        the loop's bodies are never modified, and a response's bodies (each model call
        has one, and the store keeps them) would otherwise each hold copies of it."""
        return self.to_chat_tool()
