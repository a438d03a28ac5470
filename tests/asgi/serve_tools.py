"""Server-side tools for the ``responseloop serve`` subprocess in the server tests
(``--tools tests.asgi.serve_tools:resolver``).

``hang`` marks in the file named by ``$RESPONSELOOP_TEST_MARKS`` that it started, then waits
until it is cancelled and marks that too, so a test sees a tool cancelled in another process.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from responseloop import FunctionTools
from responseloop.tools import MappingToolResolver

CALLER_KEY = "sk-caller-a"

tools = FunctionTools()
_barrier: dict[str, Any] = {"count": 0}


def mark(text: str) -> None:
    """Append a line to the marks file."""
    with open(os.environ["RESPONSELOOP_TEST_MARKS"], "a", encoding="utf-8") as marks:
        marks.write(text + "\n")


@tools.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
def get_weather(city: str) -> dict[str, Any]:
    """Weather in a city."""
    mark(f"get_weather {city}")
    return {"city": city, "temperature_c": 18}


@tools.tool(parameters={"type": "object", "properties": {"n": {"type": "integer"}}})
async def together(n: int) -> dict[str, Any]:
    """Waits until three calls run at once: proof of concurrency, not timing."""
    all_arrived: anyio.Event = _barrier.setdefault("event", anyio.Event())
    _barrier["count"] += 1
    mark(f"start {n}")
    if _barrier["count"] >= 3:
        all_arrived.set()
    with anyio.fail_after(10):
        await all_arrived.wait()
    await anyio.sleep(0.01 * (3 - n))  # finish in reverse order
    mark(f"end {n}")
    return {"n": n}


@tools.tool(parameters={"type": "object", "properties": {}})
async def hang() -> str:
    """Runs until cancelled."""
    mark("hang started")
    try:
        await anyio.sleep_forever()
    finally:
        mark("hang cancelled")
    return "never"


resolver = MappingToolResolver({CALLER_KEY: tools})
