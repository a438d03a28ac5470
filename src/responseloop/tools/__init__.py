"""Server-side tools: Python functions, HTTP endpoints, sub-agents and MCP servers, plus
the resolvers that decide which caller may use which (the tenant boundary).

``McpToolExecutor`` and its server configs need the ``mcp`` extra only when connected;
schemas from type hints need the ``pydantic`` extra.
"""

from __future__ import annotations

from ._agent import AgentTool
from ._composite import CompositeToolExecutor, KnownToolNames
from ._function import FunctionTools
from ._http import HttpTool, HttpToolError, HttpToolExecutor
from ._mcp import McpHttpServer, McpStdioServer, McpToolExecutor
from ._resolvers import MappingToolResolver, ResolvedTools, StaticToolResolver

__all__ = [
    "AgentTool",
    "CompositeToolExecutor",
    "FunctionTools",
    "HttpTool",
    "HttpToolError",
    "HttpToolExecutor",
    "KnownToolNames",
    "MappingToolResolver",
    "McpHttpServer",
    "McpStdioServer",
    "McpToolExecutor",
    "ResolvedTools",
    "StaticToolResolver",
]
