"""A small MCP server for the MCP executor tests.

``python mcp_server.py`` serves over stdio; ``python mcp_server.py http PORT`` serves
streamable HTTP on 127.0.0.1:PORT and answers 401 without ``Authorization: Bearer sk-mcp``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("responseloop-test")


@server.tool(annotations=ToolAnnotations(idempotent_hint=True))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(structured_output=False)
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@server.tool()
def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


@server.tool()
def sleepy(seconds: float) -> str:
    """Sleeps (blocking the server's worker thread)."""
    time.sleep(seconds)
    return "awake"


def _guarded(app: Any) -> Any:
    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != b"Bearer sk-mcp":
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorised"})
                return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        import uvicorn

        uvicorn.run(
            _guarded(server.streamable_http_app()),
            host="127.0.0.1",
            port=int(sys.argv[2]),
            log_level="warning",
        )
    else:
        server.run()
