"""AgentTool: a sub-agent offered to the model as a tool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..abc._config import RequestContext
from ..abc._json import JSON
from ..abc._protocols import ToolExecutor
from ..abc._tools import AgentSpec, ToolKind, ToolSchema
from ..exceptions import ToolExecutionError, ToolNotFound

__all__ = ["AgentTool"]

DEFAULT_AGENT_PARAMETERS: Mapping[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The task for the sub-agent."}},
    "required": ["input"],
    "additionalProperties": False,
}


class AgentTool:
    """A :class:`~responseloop.abc.AgentToolExecutor` offering one tool of kind ``agent``.

    When the model calls it, the loop runs a sub-loop scoped under the calling step, with
    this agent's ``instructions``, ``model`` (default: the caller's) and ``tools`` (default:
    none); the sub-loop's final text is the tool's output. The nesting depth is capped by
    :attr:`~responseloop.LoopConfig.max_depth`. The loop never calls :meth:`execute` for
    it: the sub-loop is the execution.

    Args:
        name: the tool's name as the model sees it.
        description: when the model should hand work to this agent.
        instructions: the sub-agent's system prompt.
        model: the sub-agent's model, or ``None`` for the calling scope's.
        tools: the sub-agent's own server-side tools.
        parameters: the arguments' JSON Schema; the default takes one string ``input``,
            which :class:`~responseloop.ChatTransition` sends as the sub-agent's task.
    """

    def __init__(
        self,
        name: str,
        description: str,
        *,
        instructions: str | None = None,
        model: str | None = None,
        tools: ToolExecutor | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.schema = ToolSchema(
            name=name,
            description=description,
            parameters=dict(parameters if parameters is not None else DEFAULT_AGENT_PARAMETERS),
            kind=ToolKind.AGENT,
            agent=AgentSpec(instructions=instructions, model=model),
        )
        self._agent_tools = tools

    @property
    def tool_names(self) -> frozenset[str]:
        """The one name this executor offers."""
        return frozenset({self.schema.name})

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """The agent tool's schema."""
        return [self.schema]

    async def sub_agent_tools(self, name: str, ctx: RequestContext) -> ToolExecutor | None:
        """The sub-agent's own tools (``tools``), or ``None`` when ``name`` is not this agent."""
        return self._agent_tools if name == self.schema.name else None

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """Always raises: an agent tool runs as the loop's sub-loop, not through here.

        Raises:
            ToolNotFound: ``name`` is not this agent.
            ToolExecutionError: always otherwise.
        """
        if name != self.schema.name:
            raise ToolNotFound(name)
        raise ToolExecutionError(
            f"agent tool {name!r} runs as a sub-loop of run_response_loop; "
            "it cannot be executed directly"
        )
