"""FunctionTools calls: validation, threads, timeouts, results, and through the loop."""

from __future__ import annotations

import dataclasses
import enum
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from responseloop import FunctionTools, LoopConfig, RequestContext
from responseloop.abc import Complete
from responseloop.exceptions import (
    ToolArgumentsError,
    ToolExecutionError,
    ToolNotFound,
    ToolTimeout,
)
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.tools._loop import run_loop, tool_outputs

CTX = RequestContext(response_id="resp_x", model="m")


class Unit(enum.Enum):
    C = "C"
    F = "F"


@dataclasses.dataclass
class Reading:
    city: str
    degrees: float
    unit: Unit


def weather_tools() -> FunctionTools:
    tools = FunctionTools()

    @tools.tool
    def weather(city: str, unit: Unit = Unit.C) -> Reading:
        """Current weather."""
        return Reading(city, 21.5, unit)

    @tools.tool
    async def shout(text: str) -> str:
        """Upper-case text."""
        return text.upper()

    return tools


async def test_sync_and_async_tools_return_json() -> None:
    tools = weather_tools()
    assert await tools.execute("weather", "c1", {"city": "Oslo", "unit": "F"}, CTX) == {
        "city": "Oslo",
        "degrees": 21.5,
        "unit": "F",
    }
    # Strings pass through unchanged rather than being JSON-quoted.
    assert await tools.execute("shout", "c2", {"text": "hi"}, CTX) == "HI"


async def test_invalid_arguments_are_typed_errors_naming_each_problem() -> None:
    tools = weather_tools()
    with pytest.raises(ToolArgumentsError) as caught:
        await tools.execute("weather", "c1", {"unit": "K", "extra": 1}, CTX)
    message = str(caught.value)
    assert "city: Field required" in message
    assert "unit: Input should be 'C' or 'F'" in message
    assert "extra: Extra inputs are not permitted" in message
    with pytest.raises(ToolArgumentsError, match="expected a JSON object, got str"):
        await tools.execute("weather", "c1", "Oslo", CTX)
    with pytest.raises(ToolNotFound):
        await tools.execute("nope", "c1", {}, CTX)


async def test_validation_errors_are_fed_back_to_the_model_and_the_tool_never_runs() -> None:
    tools = FunctionTools()
    calls: list[int] = []

    @tools.tool
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    model = ScriptedChatModel(
        [
            ChatReply.tool_call("square", {"n": "seven"}, call_id="call_bad"),
            ChatReply.tool_call("square", {"n": 7}, call_id="call_good"),
            ChatReply.text("49"),
        ]
    )
    outcome = await run_loop(model, tools)
    assert isinstance(outcome, Complete)
    assert calls == [7]
    [error] = tool_outputs(model, 1)
    assert error == {
        "error": "invalid arguments for tool 'square': n: Input should be a valid integer, "
        "unable to parse string as an integer"
    }
    assert tool_outputs(model, 2)[-1] == 49


async def test_unparsable_argument_text_is_reported_not_run_with_defaults() -> None:
    tools = FunctionTools()

    @tools.tool
    def echo(text: str = "default") -> str:
        return text

    model = ScriptedChatModel(
        [ChatReply.tool_call("echo", "{not json", call_id="c1"), ChatReply.text("ok")]
    )
    await run_loop(model, tools)
    [output] = tool_outputs(model, 1)
    assert output == {"error": "invalid arguments for tool 'echo': expected a JSON object, got str"}


async def test_a_sync_tool_runs_off_the_event_loop() -> None:
    """The sync tool waits for an event only a concurrent task sets: run on the event
    loop's thread it would block that task, and its wait would time out."""
    tools = FunctionTools()
    released = threading.Event()
    started = threading.Event()
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    @tools.tool
    def blocking() -> bool:
        seen["thread"] = threading.get_ident()
        started.set()
        return released.wait(timeout=10)

    async def release_when_started() -> None:
        await anyio.to_thread.run_sync(started.wait, 10)
        released.set()

    async with anyio.create_task_group() as group:
        group.start_soon(release_when_started)
        seen["result"] = await tools.execute("blocking", "c1", {}, CTX)
    assert seen["result"] is True
    assert seen["thread"] != loop_thread


async def test_a_timeout_fails_the_call_with_tool_timeout() -> None:
    tools = FunctionTools()
    never = threading.Event()

    @tools.tool(timeout=0.05)
    async def slow_async() -> None:
        await anyio.sleep_forever()

    @tools.tool(timeout=0.05)
    def slow_sync() -> bool:
        return never.wait(timeout=10)

    with pytest.raises(ToolTimeout, match=r"'slow_async' timed out after 0\.05s"):
        await tools.execute("slow_async", "c1", {}, CTX)
    try:
        with pytest.raises(ToolTimeout, match="'slow_sync' timed out"):
            await tools.execute("slow_sync", "c2", {}, CTX)
    finally:
        never.set()  # let the abandoned thread end


async def test_the_context_parameter_receives_the_calls_context() -> None:
    tools = FunctionTools()

    @tools.tool
    def whoami(ctx: RequestContext, greeting: str) -> str:
        return f"{greeting} {ctx.caller}"

    ctx = RequestContext(response_id="r", caller="alice")
    assert await tools.execute("whoami", "c1", {"greeting": "hi"}, ctx) == "hi alice"


async def test_explicit_schema_is_checked_without_pydantic() -> None:
    tools = FunctionTools()

    def add(a: int, b: int) -> int:
        return a + b

    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    tools.tool(add, parameters=schema)
    assert await tools.execute("add", "c1", {"a": 2, "b": 3}, CTX) == 5
    with pytest.raises(ToolArgumentsError) as caught:
        await tools.execute("add", "c1", {"a": "2", "c": 1}, CTX)
    assert str(caught.value) == (
        "invalid arguments for tool 'add': arguments.b: required; "
        "arguments.a: expected integer, got string; arguments.c: unexpected argument"
    )


async def test_a_result_with_no_json_form_is_a_tool_error() -> None:
    tools = FunctionTools()

    @tools.tool
    def odd() -> object:
        return object()

    with pytest.raises(ToolExecutionError, match="no JSON form"):
        await tools.execute("odd", "c1", {}, CTX)


async def test_exceptions_follow_the_loops_detail_policy() -> None:
    tools = FunctionTools()

    @tools.tool
    def fragile() -> None:
        raise KeyError("db password is hunter2")

    @tools.tool
    def polite() -> None:
        raise ToolExecutionError("no such city; try a capital")

    script = [
        ChatReply.calls(("fragile", {}, "c1"), ("polite", {}, "c2")),
        ChatReply.text("done"),
    ]
    hidden = ScriptedChatModel(script)
    await run_loop(hidden, tools)
    assert tool_outputs(hidden, 1) == [
        {"error": "tool 'fragile' failed: KeyError"},
        {"error": "no such city; try a capital"},
    ]
    shown = ScriptedChatModel(script)
    await run_loop(shown, tools, config=LoopConfig(tool_exception_detail="message"))
    assert tool_outputs(shown, 1)[0] == {
        "error": "tool 'fragile' failed: KeyError: 'db password is hunter2'"
    }


async def test_the_context_parameter_works_with_an_explicit_schema_too() -> None:
    tools = FunctionTools()

    def tagged(label: str, ctx: RequestContext) -> str:
        return f"{label}@{ctx.response_id}"

    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    tools.tool(tagged, parameters=schema)
    ctx = RequestContext(response_id="resp_9")
    assert await tools.execute("tagged", "c1", {"label": "x"}, ctx) == "x@resp_9"
