"""Server-side tools of all four kinds, run through the response loop offline.

    python examples/tools.py

* a Python function (``FunctionTools``),
* an HTTP tool (``HttpToolExecutor``; here a tiny server on 127.0.0.1 started below),
* a sub-agent (``AgentTool``) with a model and a tool of its own,
* an MCP server's tools (``McpToolExecutor``; this very file, started as a stdio MCP
  server with ``--mcp-server``; skipped when the ``mcp`` extra is not installed),

merged into one executor and handed out per API key by a ``MappingToolResolver``. The
model is scripted (``ScriptedChatModel``), so no network or API key is needed: point
``http_client``/``upstream`` at a real Chat Completions server to use a real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import anyio

from responseloop import (
    ChatTransition,
    FunctionTools,
    InMemoryStore,
    RequestContext,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import Complete, ToolExecutor
from responseloop.testing import ChatReply, ScriptedChatModel
from responseloop.tools import (
    AgentTool,
    CompositeToolExecutor,
    HttpTool,
    HttpToolExecutor,
    MappingToolResolver,
    ResolvedTools,
)
from responseloop.tools.mcp import McpStdioServer, McpToolExecutor

# 1. Python functions: the schema comes from the type hints and the docstring.
functions = FunctionTools()


@functions.tool(idempotent=True)
def convert(celsius: float, to: Literal["F", "K"] = "F") -> float:
    """Convert a temperature from Celsius.

    Args:
        celsius: the temperature in degrees Celsius.
        to: the unit to convert to.
    """
    return celsius * 9 / 5 + 32 if to == "F" else celsius + 273.15


# 3. A sub-agent with its own instructions, model and tools.
summariser_tools = FunctionTools()


@summariser_tools.tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


summariser = AgentTool(
    "summariser",
    "Summarises a text in one sentence.",
    instructions="You summarise texts in one sentence.",
    model="small-model",
    tools=summariser_tools,
)


# 2. An HTTP tool: the operator configures its URL, key and timeout.
class WeatherHandler(BaseHTTPRequestHandler):
    """A stand-in weather service: POST {"city": ...} → JSON."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"city": body["city"], "celsius": 21.0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def weather_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), WeatherHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/weather"
    finally:
        server.shutdown()
        server.server_close()


def weather_tools(url: str) -> HttpToolExecutor:
    return HttpToolExecutor(
        [
            HttpTool(
                name="weather",
                url=url,
                description="Current weather of a city.",
                parameters={
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                api_key="sk-weather-service",
                timeout=10,
            )
        ]
    )


# 4. An MCP server (this file again, over stdio).
def run_mcp_server() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("example")

    @server.tool()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Hello, {name}!"

    server.run()


@contextlib.asynccontextmanager
async def mcp_tools() -> AsyncIterator[McpToolExecutor | None]:
    try:
        import mcp  # noqa: F401
    except ImportError:
        print("(mcp extra not installed: skipping the MCP server)")
        yield None
        return
    # The MCP SDK hands a server only a safe subset of the environment: pass on the
    # import path, so the server finds the same packages as this process.
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else None
    server = McpStdioServer(sys.executable, [__file__, "--mcp-server"], env=env)
    async with McpToolExecutor([server]) as executor:
        yield executor


def scripted_models(with_mcp: bool) -> ScriptedChatModel:
    """What the models "say": call every tool at once, then answer."""
    calls: list[tuple[str, Any, str | None]] = [
        ("convert", {"celsius": 21.0}, "call_convert"),
        ("weather", {"city": "Lisbon"}, "call_weather"),
        ("summariser", {"input": "Lisbon is sunny and mild today."}, "call_summary"),
    ]
    if with_mcp:
        calls.append(("greet", {"name": "Lisbon"}, "call_greet"))

    def route(request: Any) -> ChatReply:
        messages = request.json["messages"]
        if request.json["model"] == "small-model":  # the sub-agent's model
            if messages[-1]["role"] == "tool":
                return ChatReply.text("Sunny, mild Lisbon (6 words).")
            return ChatReply.tool_call("word_count", {"text": messages[-1]["content"]})
        if messages[-1]["role"] == "tool":
            outputs = [m["content"] for m in messages if m["role"] == "tool"]
            return ChatReply.text("Tool outputs: " + " | ".join(outputs))
        return ChatReply.calls(*calls)

    return ScriptedChatModel([route] * 4)


async def main() -> None:
    with weather_service() as url:
        async with weather_tools(url) as http_tools, mcp_tools() as mcp_executor:
            parts: list[ToolExecutor] = [functions, http_tools, summariser]
            if mcp_executor is not None:
                parts.append(mcp_executor)
            everything = CompositeToolExecutor(*parts)
            # The tenant boundary: each API key gets its own tools.
            resolver = MappingToolResolver(
                {
                    "sk-alice": everything,
                    "sk-bob": ResolvedTools.subset(everything, ["convert"]),
                }
            )
            tools = await resolver.resolve("sk-alice", "big-model")
            names = sorted(schema.name for schema in await tools.tools(RequestContext()))
            print("alice may use:", ", ".join(names))
            bob = await resolver.resolve("sk-bob", "big-model")
            assert bob is not None
            print("bob may use:", ", ".join(s.name for s in await bob.tools(RequestContext())))

            store = InMemoryStore()
            request = {
                "model": "big-model",
                "messages": [{"role": "user", "content": "What's it like in Lisbon?"}],
            }
            await store.create_response(ResponseRecord("resp_demo", request, model="big-model"))
            outcome = await run_response_loop(
                "resp_demo",
                store=store,
                http_client=scripted_models(mcp_executor is not None),
                upstream=UpstreamTarget("http://upstream.invalid"),
                transition=ChatTransition(request),
                tools=tools,
                ctx=RequestContext(response_id="resp_demo", model="big-model"),
            )
    assert isinstance(outcome, Complete), outcome
    print(outcome.payload["choices"][0]["message"]["content"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--mcp-server"]:
        run_mcp_server()
    else:
        anyio.run(main)
