"""CompositeToolExecutor: several executors offered as one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from ..abc._config import RequestContext
from ..abc._json import JSON
from ..abc._protocols import AgentToolExecutor, ToolExecutor, ToolListingExecutor
from ..abc._tools import ToolSchema
from ..exceptions import ToolExecutionError, ToolNotFound

__all__ = ["CompositeToolExecutor", "KnownToolNames", "known_tool_names"]


@runtime_checkable
class KnownToolNames(Protocol):
    """An executor that can name its tools without a request context.

    ``tool_names`` is ``None`` while the names are not known yet (an MCP executor before
    it connects). The executors of :mod:`responseloop.tools` implement it, which lets a
    :class:`CompositeToolExecutor` reject clashing names when it is built.
    """

    @property
    def tool_names(self) -> frozenset[str] | None:
        """The names of the tools, or ``None`` when not known yet."""
        ...


def known_tool_names(executor: object) -> frozenset[str] | None:
    """``executor``'s tool names when it can tell them up front, else ``None``."""
    return executor.tool_names if isinstance(executor, KnownToolNames) else None


def _duplicates(groups: Iterable[Iterable[str]]) -> list[str]:
    seen: set[str] = set()
    duplicates: set[str] = set()
    for names in groups:
        for name in names:
            (duplicates if name in seen else seen).add(name)
    return sorted(duplicates)


class CompositeToolExecutor:
    """A :class:`~responseloop.abc.ToolExecutor` merging several executors.

    Tool names must be unique across the executors: a clash is a :class:`ValueError` when
    the composite is built (for executors that know their names up front) or a
    :class:`~responseloop.exceptions.ToolExecutionError` when the tools are listed (for the others).
    Each call goes to the executor offering that name.
    """

    def __init__(self, *executors: ToolExecutor) -> None:
        known = [names for e in executors if (names := known_tool_names(e)) is not None]
        clash = _duplicates(known)
        if clash:
            raise ValueError(f"tool names offered by more than one executor: {clash}")
        self.executors: tuple[ToolExecutor, ...] = executors

    @property
    def tool_names(self) -> frozenset[str] | None:
        """Every executor's names, or ``None`` if some executor cannot tell yet."""
        names: set[str] = set()
        for executor in self.executors:
            known = known_tool_names(executor)
            if known is None:
                return None
            names |= known
        return frozenset(names)

    async def tools(self, ctx: RequestContext) -> Sequence[ToolSchema]:
        """The tools of every executor, in executor order.

        Raises:
            ToolExecutionError: two executors offer the same name.
        """
        schemas: list[ToolSchema] = []
        groups = []
        for executor in self.executors:
            offered = list(await executor.tools(ctx))
            groups.append([schema.name for schema in offered])
            schemas += offered
        clash = _duplicates(groups)
        if clash:
            raise ToolExecutionError(f"tool names offered by more than one executor: {clash}")
        return schemas

    async def sub_agent_tools(self, name: str, ctx: RequestContext) -> ToolExecutor | None:
        """The tools of sub-agent ``name``, from the executor offering it (``None`` if none
        does, or it gives the sub-agent no tools)."""
        for executor in self.executors:
            names = known_tool_names(executor)
            if names is not None and name not in names:
                continue
            if isinstance(executor, AgentToolExecutor):
                tools = await executor.sub_agent_tools(name, ctx)
                if tools is not None:
                    return tools
        return None

    async def list_server_tools(self, server_label: str, ctx: RequestContext) -> JSON:
        """The tools of the request-declared MCP server ``server_label``, from the first
        executor that lists servers (:class:`~responseloop.abc.ToolListingExecutor`).

        Raises:
            ToolNotFound: no executor lists servers.
        """
        for executor in self.executors:
            if isinstance(executor, ToolListingExecutor):
                return await executor.list_server_tools(server_label, ctx)
        raise ToolNotFound(f"no MCP server {server_label!r} here to list the tools of")

    async def execute(self, name: str, call_id: str, arguments: JSON, ctx: RequestContext) -> JSON:
        """Run ``name`` on the executor offering it.

        Raises:
            ToolNotFound: no executor offers it.
        """
        for executor in self.executors:
            names = known_tool_names(executor)
            if names is None:
                names = frozenset(schema.name for schema in await executor.tools(ctx))
            if name in names:
                return await executor.execute(name, call_id, arguments, ctx)
        raise ToolNotFound(name)
