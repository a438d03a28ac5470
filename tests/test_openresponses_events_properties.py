"""Hypothesis properties of the Responses event stream over scripted loop runs.

Any mix of reasoning, text, refusals, server-side, client, failing, unknown and agent
tool calls, upstream errors and caps, streamed or not: the stream always validates
against the SDK, keeps the spec's grammar, ends with exactly one terminal event carrying
the non-streamed Response, and rebuilds that Response through the SDK's accumulation.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responseloop import AgentSpec, HttpRequest, LoopConfig, ToolKind, ToolSchema
from responseloop.testing import ChatReply, RecordingToolExecutor

from .test_openresponses_events import CONFIRM, run_stream

TOOL_NAMES = ["ok", "broken", "unknown", "agent", "confirm"]
short_text = st.text(max_size=8)


@st.composite
def replies(draw: st.DrawFn) -> ChatReply:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([ChatReply.error(500), ChatReply.unreachable()]))
    names = draw(st.lists(st.sampled_from(TOOL_NAMES), max_size=3))
    return ChatReply(
        content=draw(st.none() | short_text),
        reasoning=draw(st.none() | short_text),
        refusal=draw(st.none() | st.just("no") | short_text),
        # Call ids are filled in per model call (see ``numbered``).
        tool_calls=[("", name, f'{{"i": {i}}}') for i, name in enumerate(names)],
        finish_reason=draw(st.sampled_from([None, None, None, "length", "content_filter"])),
    )


configs = st.builds(
    LoopConfig,
    max_iterations=st.integers(1, 4),
    max_depth=st.integers(0, 1),
    max_tool_calls=st.none() | st.integers(0, 4),
    tool_errors=st.sampled_from(["feed_back", "fail"]),
    unknown_tools=st.sampled_from(["feed_back", "fail"]),
)


def broken(arguments: Any) -> Any:
    raise ValueError("broken tool")


def executor() -> RecordingToolExecutor:
    tools = RecordingToolExecutor()
    tools.add("ok")
    tools.add("broken", broken)
    tools.add(ToolSchema("agent", kind=ToolKind.AGENT, agent=AgentSpec(tools=tools)))
    return tools


async def run_script(script: list[ChatReply], config: LoopConfig, stream: bool) -> None:
    answers = iter(script)
    numbers = itertools.count()

    def numbered(request: HttpRequest) -> ChatReply:
        # Unique call ids across the response: the SDK's accumulation identifies a
        # function call by its call id alone.
        reply = next(answers, ChatReply.text("final"))
        number = next(numbers)
        calls = [(f"call_{number}_{i}", n, a) for i, (_c, n, a) in enumerate(reply.tool_calls)]
        return ChatReply(
            content=reply.content,
            reasoning=reply.reasoning,
            refusal=reply.refusal,
            tool_calls=calls,
            finish_reason=reply.finish_reason,
            status=reply.status,
            error_body=reply.error_body,
            connection_error=reply.connection_error,
        )

    await run_stream(
        [numbered] * 100, stream=stream, tools=executor(), body={"tools": [CONFIRM]}, config=config
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(replies(), max_size=6), config=configs, stream=st.booleans())
def test_the_event_grammar_always_holds(
    backend: str, script: list[ChatReply], config: LoopConfig, stream: bool
) -> None:
    anyio.run(partial(run_script, script, config, stream), backend=backend)
