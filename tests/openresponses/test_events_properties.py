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
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responseloop import LoopConfig
from responseloop.abc import Complete, Fail, HttpRequest, LoopEvent, LoopEventKind, StepKind
from responseloop.openresponses import (
    ResponsesEventMapper,
    WireOptions,
    assemble_response,
    parse_request,
)
from responseloop.testing import ChatReply
from tests.loop_helpers import mixed_tools
from tests.openresponses.test_events import CONFIRM, run_stream
from tests.stream_checks import check_stream

# Both shapes of a server-side call: mcp_call items, and 0.1's function_call pairs.
wires = st.sampled_from([WireOptions(), WireOptions(server_tool_items="function_call")])


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


# How reasoning is asked for: as content (the default), as a summary, sealed too.
REASONING_ASKED: dict[str, dict[str, Any]] = {
    "content": {},
    "summary": {"reasoning": {"summary": "auto"}},
    "sealed summary": {
        "reasoning": {"summary": "detailed"},
        "include": ["reasoning.encrypted_content"],
    },
}


async def run_script(
    script: list[ChatReply],
    config: LoopConfig,
    stream: bool,
    wire: WireOptions,
    reasoning: str = "content",
) -> None:
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
        [numbered] * 100,
        stream=stream,
        tools=mixed_tools(),
        body={"tools": [CONFIRM], **REASONING_ASKED[reasoning]},
        config=config,
        wire=attrs.evolve(wire, reasoning_key=b"k"),
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(replies(), max_size=6),
    config=configs,
    stream=st.booleans(),
    wire=wires,
    reasoning=st.sampled_from(sorted(REASONING_ASKED)),
)
def test_the_event_grammar_always_holds(
    backend: str,
    script: list[ChatReply],
    config: LoopConfig,
    stream: bool,
    wire: WireOptions,
    reasoning: str,
) -> None:
    anyio.run(partial(run_script, script, config, stream, wire, reasoning), backend=backend)


# -- the mapper alone, over chunks in any order ----------------------------------------

REQUEST = parse_request({"model": "m", "input": "hi", "stream": True})
SUMMARY_REQUEST = parse_request(
    {"model": "m", "input": "hi", "stream": True, "reasoning": {"summary": "auto"}}
)


def chunk_of(delta: dict[str, Any]) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def chunks_of(reply: ChatReply) -> list[list[dict[str, Any]]]:
    """The chunks of ``reply``, one list per piece of it (reasoning, text, refusal, each
    tool call), each list in its own order."""
    pieces: list[list[dict[str, Any]]] = []
    for field, text in (
        ("reasoning_content", reply.reasoning),
        ("content", reply.content),
        ("refusal", reply.refusal),
    ):
        if text:
            pieces.append([chunk_of({field: text[:1]}), chunk_of({field: text[1:]})])
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        opening = {"index": index, "id": call_id, "function": {"name": name, "arguments": ""}}
        rest = {"index": index, "function": {"arguments": arguments}}
        pieces.append([chunk_of({"tool_calls": [opening]}), chunk_of({"tool_calls": [rest]})])
    return pieces


@st.composite
def interleavings(draw: st.DrawFn, pieces: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The chunks of ``pieces`` merged in any order that keeps each piece's own order."""
    queues = [list(piece) for piece in pieces]
    merged: list[dict[str, Any]] = []
    while any(queues):
        live = [queue for queue in queues if queue]
        merged.append(draw(st.sampled_from(live)).pop(0))
    return merged


@st.composite
def streamed_calls(draw: st.DrawFn) -> tuple[ChatReply, list[dict[str, Any]], bool]:
    names = draw(st.lists(st.sampled_from(["a", "b"]), max_size=3))
    reply = ChatReply(
        content=draw(st.none() | short_text),
        reasoning=draw(st.none() | short_text),
        refusal=draw(st.none() | short_text),
        tool_calls=[(f"call_{i}", name, f'{{"i": {i}}}') for i, name in enumerate(names)],
        finish_reason=draw(st.sampled_from([None, "length"])),
    )
    pieces = chunks_of(reply)
    merged = draw(interleavings(pieces))
    in_order = merged == [chunk for piece in pieces for chunk in piece]
    return reply, merged, in_order


@settings(max_examples=150, deadline=None)
@given(case=streamed_calls(), fails=st.booleans(), wire=wires, summary=st.booleans())
def test_chunks_in_any_order_keep_the_grammar(
    case: tuple[ChatReply, list[dict[str, Any]], bool],
    fails: bool,
    wire: WireOptions,
    summary: bool,
) -> None:
    """Whatever order an upstream streams its pieces in, and whether the call then
    completes or fails, the stream keeps the grammar and ends with the assembled
    Response; in the usual order the items alone rebuild it exactly."""
    reply, chunks, in_order = case
    request_of = SUMMARY_REQUEST if summary else REQUEST
    mapper = ResponsesEventMapper(request_of, response_id="resp_p", created_at=0, wire=wire)

    def step(kind: LoopEventKind, data: Any) -> LoopEvent:
        return LoopEvent(kind, "resp_p", data, step_id="s1", step_kind=StepKind.MODEL_CALL)

    request = HttpRequest("http://upstream.invalid", json={"model": "m"})
    error = {"type": "upstream_error", "message": "cut"}
    loop_events = [
        LoopEvent(LoopEventKind.RESPONSE_STARTED, "resp_p"),
        step(LoopEventKind.STEP_STARTED, {"model": "m", "messages": []}),
        *[step(LoopEventKind.MODEL_CHUNK, chunk) for chunk in chunks],
        step(LoopEventKind.STEP_FAILED, error)
        if fails
        else step(LoopEventKind.STEP_COMPLETED, reply.completion(request, 1)),
        LoopEvent(LoopEventKind.RESPONSE_FAILED, "resp_p", error)
        if fails
        else LoopEvent(LoopEventKind.RESPONSE_COMPLETED, "resp_p", None),
    ]
    events = [wire for event in loop_events for wire in mapper.feed(event)]
    expected = assemble_response(
        mapper.chain,
        request_of,
        response_id="resp_p",
        created_at=0,
        outcome=Fail(error) if fails else Complete(None),
        wire=wire,
    )
    check_stream(events, expected, exact_items=in_order and not fails)
