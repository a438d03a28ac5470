"""Continuing a conversation with previous_response_id."""

from __future__ import annotations

from typing import Any

import pytest

from responseloop.abc import Complete
from responseloop.chat import ResponsesTransition, to_chat_body
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import (
    assemble_response,
    continue_request,
    output_as_input,
    parse_request,
)
from tests.chains import completion, drive, scope_with
from tests.openai_shapes import validate_response


def previous_turn() -> tuple[Any, dict[str, Any]]:
    request = parse_request(
        {
            "model": "m",
            "instructions": "old instructions",
            "input": "What's the weather in Paris?",
            "tools": [{"type": "function", "name": "get_weather"}],
        }
    )
    reply = completion("Let me check.", calls=[("call_1", "get_weather", {"city": "Paris"})])
    chain, outcome = drive(ResponsesTransition(request), [reply], scope=scope_with())
    assert outcome == Complete(reply)
    response = assemble_response(
        chain, request, response_id="resp_1", created_at=1, outcome=outcome
    )
    validate_response(response)
    return request, response


def test_the_conversation_is_previous_input_then_output_then_new_input() -> None:
    previous_request, previous_response = previous_turn()
    request = parse_request(
        {
            "model": "m",
            "previous_response_id": "resp_1",
            "instructions": "new instructions",
            "tools": [{"type": "function", "name": "get_weather"}],
            "input": [{"type": "function_call_output", "call_id": "call_1_1_0", "output": "18C"}],
        }
    )
    continued = continue_request(previous_request, previous_response, request)
    assert continued.input == request.input
    assert to_chat_body(continued)["messages"] == [
        {"role": "system", "content": "new instructions"},
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1_1_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1_1_0", "content": "18C"},
    ]


def test_previous_instructions_are_not_carried_over() -> None:
    previous_request, previous_response = previous_turn()
    request = parse_request({"model": "m", "previous_response_id": "resp_1", "input": "thanks"})
    messages = to_chat_body(continue_request(previous_request, previous_response, request))[
        "messages"
    ]
    assert all(message["role"] != "system" for message in messages)


def test_continuations_chain_across_turns() -> None:
    previous_request, previous_response = previous_turn()
    second = continue_request(
        previous_request,
        previous_response,
        parse_request(
            {
                "model": "m",
                "previous_response_id": "resp_1",
                "input": [
                    {"type": "function_call_output", "call_id": "call_1_1_0", "output": "18C"}
                ],
            }
        ),
    )
    reply = completion("It is 18C.")
    chain, outcome = drive(ResponsesTransition(second), [reply], scope=scope_with())
    second_response = assemble_response(
        chain, second, response_id="resp_2", created_at=2, outcome=outcome
    )
    third = continue_request(
        second,
        second_response,
        parse_request({"model": "m", "previous_response_id": "resp_2", "input": "and Rome?"}),
    )
    roles = [message["role"] for message in to_chat_body(third)["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]


def test_item_references_resolve_against_the_previous_turn() -> None:
    previous_request, previous_response = previous_turn()
    message_id = previous_response["output"][0]["id"]
    request = parse_request(
        {
            "model": "m",
            "previous_response_id": "resp_1",
            "input": [
                {"type": "function_call_output", "call_id": "call_1_1_0", "output": "18C"},
                {"type": "item_reference", "id": message_id},
            ],
        }
    )
    continued = continue_request(previous_request, previous_response, request)
    assert continued.input[1]["type"] == "message"
    assert continued.input[1]["id"] == message_id


def test_errors_in_new_input_name_the_new_index() -> None:
    previous_request, previous_response = previous_turn()
    request = parse_request(
        {
            "model": "m",
            "previous_response_id": "resp_1",
            "input": [
                {"type": "function_call_output", "call_id": "call_1_1_0", "output": "ok"},
                {"type": "function_call_output", "call_id": "call_404", "output": "?"},
            ],
        }
    )
    with pytest.raises(InvalidRequestError) as caught:
        to_chat_body(continue_request(previous_request, previous_response, request))
    assert caught.value.param == "input[1].call_id"


def test_a_previous_response_that_cannot_be_replayed_is_a_400() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        output_as_input({"output": [{"type": "web_search_call", "id": "ws_1"}]})
    assert caught.value.param == "previous_response_id"
    with pytest.raises(InvalidRequestError):
        output_as_input({"id": "resp_1"})
