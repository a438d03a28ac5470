"""The wire checks catch what they exist to catch (tests/wire_checks.py): each broken
object here must fail with the path that is wrong, and the good ones pass."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from responseloop.abc import Complete
from responseloop.openresponses import WireOptions, assemble_response, parse_request
from tests.wire_checks import check_emitted_event, check_emitted_response, check_emitted_stream

RESPONSE = assemble_response(
    [],
    parse_request({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}]}),
    response_id="resp_abc",
    created_at=1,
    outcome=Complete({}),
    completed_at=2,
)
MESSAGE: dict[str, Any] = {
    "id": "msg_abc_1",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}],
}
MCP_CALL: dict[str, Any] = {
    "id": "mcp_abc_1_0",
    "type": "mcp_call",
    "server_label": "responseloop",
    "name": "weather",
    "arguments": "{}",
    "output": "sunny",
    "error": None,
    "status": "completed",
}


def stream(output: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A well-formed stream of one message "Hi", said in two deltas."""
    final = {**RESPONSE, "output": [MESSAGE] if output is None else output}
    start = {**RESPONSE, "status": "in_progress", "completed_at": None}
    added = {**MESSAGE, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    at = {"item_id": "msg_abc_1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.content_part.added", "part": part, **at},
        {"type": "response.output_text.delta", "delta": "H", "logprobs": [], **at},
        {"type": "response.output_text.delta", "delta": "i", "logprobs": [], **at},
        {"type": "response.output_text.done", "text": "Hi", "logprobs": [], **at},
        {"type": "response.content_part.done", "part": MESSAGE["content"][0], **at},
        {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE},
        {"type": "response.completed", "response": final},
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def test_a_response_we_assemble_passes() -> None:
    check_emitted_response(RESPONSE)
    check_emitted_response({**RESPONSE, "output": [MESSAGE]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("presence_penalty"), "'presence_penalty' is a required property"),
        (lambda r: r.pop("completed_at"), "'completed_at' is a required property"),
        (lambda r: r.update(temperature=None), "at '.temperature'"),
        (lambda r: r.update(invented=1), "fields the SDK does not know: ['invented']"),
        (lambda r: r["tools"][0].pop("strict"), "at '.tools[0]'"),
        (lambda r: r.update(output=[{**MESSAGE, "colour": "red"}]), "output[0].colour"),
    ],
)
def test_a_broken_response_fails_naming_the_path(change: Any, message: str) -> None:
    broken = copy.deepcopy(RESPONSE)
    change(broken)
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_emitted_response(broken)


def test_an_extension_item_is_held_to_the_sdk_and_the_generic_fields() -> None:
    check_emitted_response({**RESPONSE, "output": [MCP_CALL]})
    without_status = {key: value for key, value in MCP_CALL.items() if key != "status"}
    with pytest.raises(AssertionError, match=r"at '\.output\[0\]'"):
        check_emitted_response({**RESPONSE, "output": [without_status]})
    with pytest.raises(AssertionError, match="SDK"):
        check_emitted_response({**RESPONSE, "output": [{**MCP_CALL, "output": 3}]})


def test_a_well_formed_stream_passes() -> None:
    check_emitted_stream(stream(), ended_with_done=True)


def test_both_profiles_of_reasoning_events_pass_and_are_held_to_both_schemas() -> None:
    at = {"item_id": "rs_1", "output_index": 0, "content_index": 0, "sequence_number": 3}
    for name in ("response.reasoning_text.delta", "response.reasoning.delta"):
        check_emitted_event({"type": name, "delta": "x", **at})
        with pytest.raises(AssertionError):
            check_emitted_event({"type": name, "delta": 1, **at})


def test_the_error_event_carries_both_shapes() -> None:
    flat = {"code": "c", "message": "m", "param": None}
    error = {"type": "error", "sequence_number": 0, **flat}
    with pytest.raises(AssertionError, match="'error' is a required property"):
        check_emitted_event(error)
    check_emitted_event({**error, "error": {"type": "server_error", **flat}})


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda s: s.pop(0), "events\\[0\\] is response.in_progress"),
        (lambda s: s.insert(3, {**s[-1], "sequence_number": 2}), "exactly one terminal"),
        (lambda s: s[5].update(sequence_number=4), "does not increase"),
        (lambda s: s[6].update(text="Ho"), "concatenation of its deltas"),
        (lambda s: s.insert(9, {**s[4], "sequence_number": 8}), "after its item was done"),
        (lambda s: s.pop(2), "before its output_item.added"),
        (lambda s: s[-1]["response"]["output"][0].update(id="msg_other"), None),
    ],
)
def test_a_broken_stream_fails(breakage: Any, message: str | None) -> None:
    events = copy.deepcopy(stream())
    breakage(events)
    if message != "does not increase":
        events = [{**event, "sequence_number": n} for n, event in enumerate(events)]
    with pytest.raises(AssertionError, match=message):
        check_emitted_stream(events, ended_with_done=True)


def test_a_stream_without_done_fails() -> None:
    with pytest.raises(AssertionError, match=r"\[DONE\]"):
        check_emitted_stream(stream(), ended_with_done=False)


def test_the_terminal_response_must_hold_the_done_items() -> None:
    changed = {**MESSAGE, "content": [{**MESSAGE["content"][0], "text": "Ho"}]}
    with pytest.raises(AssertionError, match=r"is not its output_item\.done item"):
        check_emitted_stream(stream(output=[changed]), ended_with_done=True)


def test_a_resumed_stream_may_start_anywhere() -> None:
    check_emitted_stream(stream()[5:], ended_with_done=True, resumed=True)
    with pytest.raises(AssertionError, match=r"response\.created"):
        check_emitted_stream(stream()[5:], ended_with_done=True)


def test_wire_options_choose_the_reasoning_event_names() -> None:
    assert WireOptions().event_names == "openai"
    assert WireOptions(event_names="openresponses").event_names == "openresponses"
