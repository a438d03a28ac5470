"""Tool resolvers: which server-side tools a caller may use (the tenant boundary)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from ..abc._config import RequestContext
from ..abc._json import JSON
from ..abc._protocols import AgentToolExecutor, ToolExecutor
from ..abc._tools import ToolSchema
from ..exceptions import ToolNotFound
from ._composite import known_tool_names

__all__ = ["MappingToolResolver", "ResolvedTools", "StaticToolResolver"]


def _names(value: Iterable[str] | None) -> frozenset[str] | None:
    if isinstance(value, str):
        raise TypeError("only= takes a collection of tool names, not one string")
    return frozenset(value) if value is not None else None


@attrs.frozen
class ResolvedTools:
    """The server-side tools resolved for one caller: ``executor``, narrowed to the tools
    named in ``only`` when it is set.

    It is itself a :class:`~responseloop.abc.ToolExecutor`. It lists only the allowed tools
    and refuses to execute any other, even one ``executor`` has, so a caller never runs a
    tool outside its subset whatever the model asks for.
    """

    executor: ToolExecutor
    only: frozenset[str] | None = attrs.field(default=None, converter=_names)

    @classmethod
    def subset(cls, executor: ToolExecutor, names: Iterable[str]) -> ResolvedTools:
        """The tools of ``executor`` named in ``names`` (names it lacks are not offered)."""
        return cls(executor, frozenset(names))

    @property
    def tool_names(self) -> frozenset[str] | None:
        """The allowed names the executor has, or ``None`` when it cannot tell yet."""
        names = known_tool_names(self.executor)
        if names is None:
            return None
        return names if self.only is None else names & self.only

    def allows(self, name: str) -> bool:
        """Whether ``name`` is inside the subset."""
        return self.only is None or name in self.only

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """The executor's tools inside the subset."""
        return [schema for schema in await self.executor.tools(ctx) if self.allows(schema.name)]

    async def sub_agent_tools(self, name: str, ctx: RequestContext) -> ToolExecutor | None:
        """The executor's tools for sub-agent ``name`` if the subset allows the agent."""
        if not self.allows(name) or not isinstance(self.executor, AgentToolExecutor):
            return None
        return await self.executor.sub_agent_tools(name, ctx)

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """Run ``name`` if the subset allows it.

        Raises:
            ToolNotFound: ``name`` is outside the subset.
        """
        if not self.allows(name):
            raise ToolNotFound(name)
        return await self.executor.execute(name, call_id, arguments, ctx)


class StaticToolResolver:
    """A :class:`~responseloop.abc.ToolResolver` giving every caller the same tools
    (for a single-tenant deployment)."""

    def __init__(self, tools: ToolExecutor | None) -> None:
        self.tools = tools

    async def resolve(self, api_key: str | None, model: str) -> ToolExecutor | None:
        """The same tools for every key and model."""
        return self.tools

    async def resolve_caller(self, caller: str | None, model: str) -> ToolExecutor | None:
        """The same tools for every caller (a :class:`~responseloop.abc.CallerToolResolver`,
        so a response whose worker died is resumed with them)."""
        return self.tools


class MappingToolResolver:
    """A :class:`~responseloop.abc.ToolResolver` choosing tools by the caller's API key.

    Args:
        by_key: the tools of each API key (use :meth:`ResolvedTools.subset` to give a key
            part of a shared executor).
        default: the tools of a key not in the mapping, and of a call without a key
            (default: none).
        models: when set, tools are resolved only for these models; any other model gets
            none.

    The keys never appear in ``repr``.
    """

    def __init__(
        self,
        by_key: Mapping[str, ToolExecutor],
        *,
        default: ToolExecutor | None = None,
        models: Iterable[str] | None = None,
    ) -> None:
        if isinstance(models, str):
            raise TypeError("models= takes a collection of model names, not one string")
        self._by_key = dict(by_key)
        self.default = default
        self.models = frozenset(models) if models is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._by_key)} keys>, models={self.models!r})"

    async def resolve(self, api_key: str | None, model: str) -> ToolExecutor | None:
        """The tools of ``api_key``, or the default."""
        if self.models is not None and model not in self.models:
            return None
        if api_key is None:
            return self.default
        return self._by_key.get(api_key, self.default)
