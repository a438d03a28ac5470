"""Server-side tools: HTTP endpoints, sub-agents and composition, plus the resolvers that
decide which caller may use which (the tenant boundary).

:class:`~responseloop.FunctionTools` and :class:`~responseloop.StaticToolResolver` are
imported from :mod:`responseloop`; MCP servers from :mod:`responseloop.tools.mcp` (extra
``mcp``). Schemas from type hints need the ``pydantic`` extra.
"""

from __future__ import annotations

from ._agent import AgentTool
from ._composite import CompositeToolExecutor, KnownToolNames
from ._http import HttpTool, HttpToolError, HttpToolExecutor
from ._resolvers import MappingToolResolver, ResolvedTools

__all__ = [
    "AgentTool",
    "CompositeToolExecutor",
    "HttpTool",
    "HttpToolError",
    "HttpToolExecutor",
    "KnownToolNames",
    "MappingToolResolver",
    "ResolvedTools",
]
