"""The MCP server of the request-declared MCP tests: :mod:`tests.tools.mcp_server`'s
tools (``add``, ``shout``, ``explode``, ``sleepy``) and two more, ``peek`` (annotated
``readOnlyHint``, for the ``read_only`` filters) and ``record`` (it appends to a file, so a
test counts the calls that really ran, whichever process ran them).

``python mcp_server.py`` serves over stdio; ``python mcp_server.py http PORT`` serves
streamable HTTP on 127.0.0.1:PORT, answering 401 without ``Authorization: Bearer sk-mcp``.
With ``MCP_TEST_LOG`` set, each ``tools/list`` and each ``record`` call appends a line to
that file (``list`` and ``record <note>``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mcp.types import ToolAnnotations

from tests.tools.mcp_server import _guarded, server


def _log(line: str) -> None:
    path = os.environ.get("MCP_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


@server.tool(annotations=ToolAnnotations(read_only_hint=True), structured_output=False)
def peek(key: str) -> str:
    """Read the value of a key (changes nothing)."""
    return f"value-of-{key}"


@server.tool(structured_output=False)
def record(note: str) -> str:
    """Write a note down (a side effect: each call appends a line)."""
    _log(f"record {note}")
    return f"recorded {note}"


_list_tools = server.list_tools


async def _counted_list_tools() -> Any:
    _log("list")
    return await _list_tools()


# The SDK's tools/list handler looks the method up on the instance each time.
server.list_tools = _counted_list_tools  # type: ignore[method-assign]


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
