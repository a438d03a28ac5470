"""Checks of a Responses event stream: the SDK's types, the spec's grammar, and rebuilding.

``check_stream(events, expected)`` fails unless the events are a well-formed stream whose
terminal Response is ``expected`` and from which both our own accumulation and the
official SDK's stream accumulation rebuild exactly ``expected``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs
import pydantic
from openai._types import omit
from openai.lib._parsing._responses import parse_response
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import (
    ParsedResponse,
    Response,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseStreamEvent,
)

from tests.openai_shapes import sdk_view_of_event
from tests.wire_checks import check_emitted_event

__all__ = ["STREAM_EVENT", "TERMINAL_TYPES", "check_stream", "sdk_rebuild"]

STREAM_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
TERMINAL_TYPES = ("response.completed", "response.incomplete", "response.failed")
_TERMINAL_OF_STATUS = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}
_DELTA_PARTS = {
    "response.output_text.delta": ("output_text", "text"),
    "response.refusal.delta": ("refusal", "refusal"),
    "response.reasoning_text.delta": ("reasoning_text", "text"),
}
_ARGUMENT_DELTAS = {
    "response.function_call_arguments.delta": "function_call",
    "response.mcp_call_arguments.delta": "mcp_call",
}
_ARGUMENT_DONES = {
    "response.function_call_arguments.done": "function_call",
    "response.mcp_call_arguments.done": "mcp_call",
}
_DONE_PARTS = {
    "response.output_text.done": ("output_text", "text"),
    "response.refusal.done": ("refusal", "refusal"),
    "response.reasoning_text.done": ("reasoning_text", "text"),
}
_HEAD = (("response.created", "in_progress"), ("response.in_progress", "in_progress"))
_QUEUED_HEAD = (
    ("response.created", "queued"),
    ("response.queued", "queued"),
    ("response.in_progress", "in_progress"),
)


@attrs.define
class _Part:
    type: str
    text: str = ""
    done_text: str | None = None
    closed: dict[str, Any] | None = None


@attrs.define
class _Item:
    id: str
    type: str
    parts: dict[int, _Part] = attrs.Factory(dict)
    summary: dict[int, _Part] = attrs.Factory(dict)
    arguments: str = ""
    arguments_done: str | None = None
    run: list[str] = attrs.Factory(list)  # an mcp_call's in_progress and end events
    done: dict[str, Any] | None = None


def check_stream(
    events: Sequence[dict[str, Any]], expected: dict[str, Any], *, exact_items: bool = True
) -> list[Any]:
    """Fail unless ``events`` is a well-formed stream ending with Response ``expected``.

    With ``exact_items`` (every stream of a normal run) the item events alone must
    rebuild ``expected["output"]``, in order, at its indexes; without it (hand-made
    streams whose chunks came out of the usual order, or a streamed call that failed)
    only the grammar and the terminal Response are checked, and that the SDK follows.

    Returns the events parsed by the SDK's ``ResponseStreamEvent`` union.
    """
    parsed = []
    for event in events:
        check_emitted_event(event)  # the SDK's types and the spec's schema, as emitted
        model = STREAM_EVENT.validate_python(sdk_view_of_event(event))
        assert model.type == event["type"]
        parsed.append(model)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    types = [event["type"] for event in events]
    # A background response was queued before it ran: created (queued), queued, in_progress.
    head = _QUEUED_HEAD if types[1:2] == ["response.queued"] else _HEAD
    assert types[: len(head)] == [kind for kind, _status in head], types
    assert [t for t in types if t in TERMINAL_TYPES] == [types[-1]], types
    assert types[-1] == _TERMINAL_OF_STATUS[expected["status"]]
    assert events[-1]["response"] == expected
    for event, (_kind, status) in zip(events, head, strict=False):
        assert event["response"]["id"] == expected["id"]
        assert event["response"]["status"] == status
        assert event["response"]["output"] == []
    items = _check_grammar(events[len(head) : -1], exact_items=exact_items)
    if exact_items:
        _check_rebuilt(items, expected)
        assert_sdk_rebuilds(parsed, expected)
    else:
        state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
        for event in parsed:
            state.handle_event(event)  # raises on a stream it cannot follow
    return parsed


def _check_grammar(events: Sequence[dict[str, Any]], *, exact_items: bool) -> list[_Item]:
    """The item and content-part lifecycle of the spec, with texts that add up. Without
    ``exact_items`` a done item may list its parts in another order than they were opened
    (an upstream that streamed its refusal before its text)."""
    items: list[_Item] = []
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert event["output_index"] == len(items), "output indexes are dense, in order"
            item = event["item"]
            assert item["status"] == "in_progress"
            items.append(_Item(item["id"], item["type"]))
            continue
        item_state = items[event["output_index"]]
        assert item_state.done is None, f"{kind} after its item was done"
        if "item_id" in event:
            assert event["item_id"] == item_state.id
        if kind == "response.content_part.added":
            index = event["content_index"]
            assert index not in item_state.parts
            part = event["part"]
            assert part.get("text", part.get("refusal")) == ""
            item_state.parts[index] = _Part(part["type"])
        elif kind in _DELTA_PARTS:
            part_type, _field = _DELTA_PARTS[kind]
            part_state = item_state.parts[event["content_index"]]
            assert part_state.type == part_type
            assert part_state.done_text is None
            assert event["delta"], "no empty deltas"
            part_state.text += event["delta"]
        elif kind in _DONE_PARTS:
            part_type, field = _DONE_PARTS[kind]
            part_state = item_state.parts[event["content_index"]]
            assert part_state.type == part_type
            assert part_state.done_text is None
            assert event[field] == part_state.text, "deltas concatenate to the .done text"
            part_state.done_text = event[field]
        elif kind == "response.content_part.done":
            part_state = item_state.parts[event["content_index"]]
            assert part_state.done_text is not None
            assert part_state.closed is None
            field = "refusal" if part_state.type == "refusal" else "text"
            assert event["part"][field] == part_state.done_text
            part_state.closed = event["part"]
        elif kind == "response.reasoning_summary_part.added":
            assert item_state.type == "reasoning"
            index = event["summary_index"]
            assert index not in item_state.summary
            assert event["part"] == {"type": "summary_text", "text": ""}
            item_state.summary[index] = _Part("summary_text")
        elif kind == "response.reasoning_summary_text.delta":
            part_state = item_state.summary[event["summary_index"]]
            assert part_state.done_text is None
            assert event["delta"], "no empty deltas"
            part_state.text += event["delta"]
        elif kind == "response.reasoning_summary_text.done":
            part_state = item_state.summary[event["summary_index"]]
            assert part_state.done_text is None
            assert event["text"] == part_state.text, "deltas concatenate to the .done text"
            part_state.done_text = event["text"]
        elif kind == "response.reasoning_summary_part.done":
            part_state = item_state.summary[event["summary_index"]]
            assert part_state.done_text is not None
            assert part_state.closed is None
            assert event["part"] == {"type": "summary_text", "text": part_state.done_text}
            part_state.closed = event["part"]
        elif kind in _ARGUMENT_DELTAS:
            assert item_state.type == _ARGUMENT_DELTAS[kind]
            assert item_state.arguments_done is None
            assert event["delta"]
            item_state.arguments += event["delta"]
        elif kind in _ARGUMENT_DONES:
            assert item_state.type == _ARGUMENT_DONES[kind]
            assert item_state.arguments_done is None
            assert event["arguments"] == item_state.arguments
            item_state.arguments_done = event["arguments"]
        elif kind.startswith("response.mcp_call."):
            # in_progress once the arguments are done, then completed or failed.
            assert item_state.type == "mcp_call"
            assert item_state.arguments_done is not None
            assert item_state.run == ([] if kind.endswith(".in_progress") else ["in_progress"])
            item_state.run.append(kind.rsplit(".", 1)[1])
        elif kind == "response.output_item.done":
            _check_item_done(item_state, event["item"], exact_items=exact_items)
            item_state.done = event["item"]
        else:
            raise AssertionError(f"unexpected event {kind}")
    for item_state in items:
        assert item_state.done is not None, f"item {item_state.id} never done"
    return items


def _check_item_done(state: _Item, item: dict[str, Any], *, exact_items: bool) -> None:
    assert (item["id"], item["type"]) == (state.id, state.type)
    if state.type in ("message", "reasoning"):
        assert all(part.closed is not None for part in state.parts.values())
        closed = [state.parts[i].closed for i in sorted(state.parts)]
        if exact_items:
            assert closed == item.get("content", [])
        else:
            key = json.dumps
            assert sorted(map(key, closed)) == sorted(map(key, item.get("content", [])))
    if state.type == "reasoning":
        assert all(part.closed is not None for part in state.summary.values())
        assert [state.summary[i].closed for i in sorted(state.summary)] == item["summary"]
    if state.type == "function_call":
        assert state.arguments_done == item["arguments"]
    if state.type == "mcp_call":
        assert state.arguments_done == item["arguments"]
        ended = "failed" if item["error"] is not None else "completed"
        assert state.run == ["in_progress", ended]


def _check_rebuilt(items: Sequence[_Item], expected: dict[str, Any]) -> None:
    """Items the Response holds come in its order at its indexes; any other item (opened
    by chunks of a call that then failed) ended ``incomplete``."""
    final_ids = {item["id"] for item in expected["output"]}
    kept = [item.done for item in items if item.id in final_ids]
    assert kept == expected["output"]
    for item in items:
        if item.id not in final_ids:
            assert item.done is not None
            assert item.done["status"] == "incomplete"


def sdk_rebuild(parsed: Sequence[Any], *, drop_final_output: bool) -> ParsedResponse[Any]:
    """The Response the SDK's own stream accumulation rebuilds from ``parsed`` events.

    With ``drop_final_output`` the terminal event's Response loses its ``output``, so the
    SDK must rebuild the output from the item events alone (its "recover finalized
    items" path)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in parsed:
        if drop_final_output and event.type in TERMINAL_TYPES:
            response = event.response.model_copy(update={"output": None})
            event = event.model_copy(update={"response": response})
        state.handle_event(event)
    rebuilt = state._completed_response
    assert rebuilt is not None, "the SDK saw no response.completed"
    return rebuilt


def assert_sdk_rebuilds(parsed: Sequence[Any], expected: dict[str, Any]) -> None:
    """The SDK's accumulation follows the events and rebuilds exactly ``expected``, also
    from the item events alone (the terminal Response's ``output`` dropped)."""
    want = parse_response(
        text_format=omit, response=Response.model_validate(expected), input_tools=[]
    ).model_dump(mode="json")
    if expected["status"] == "completed":
        assert sdk_rebuild(parsed, drop_final_output=False).model_dump(mode="json") == want
        assert sdk_rebuild(parsed, drop_final_output=True).model_dump(mode="json") == want
        return
    # An incomplete or failed response is not "completed" to the SDK: it hands the
    # terminal event on, filling a missing output from the items it accumulated.
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in parsed[:-1]:
        state.handle_event(event)
    terminal = parsed[-1]
    stripped = terminal.model_copy(
        update={"response": terminal.response.model_copy(update={"output": None})}
    )
    (handed_on,) = state.handle_event(stripped)
    assert isinstance(handed_on, ResponseIncompleteEvent | ResponseFailedEvent)
    rebuilt = handed_on.response.model_dump(mode="json")
    assert rebuilt["output"] == Response.model_validate(expected).model_dump(mode="json")["output"]
