"""Parsing and validation of /v1/responses bodies into ResponsesRequest."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming

from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import ResponsesRequest, parse_request


def test_a_string_input_becomes_one_user_message() -> None:
    body: ResponseCreateParamsNonStreaming = {"model": "m", "input": "hello"}
    request = parse_request(body)
    assert request.input == (
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
    )
    assert request.model == "m"
    assert request.history == ()


def test_every_setting_is_understood() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [{"role": "user", "content": "hi"}],
        "instructions": "be brief",
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": "look it up",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            }
        ],
        "tool_choice": {"type": "function", "name": "lookup"},
        "parallel_tool_calls": False,
        "max_output_tokens": 100,
        "max_tool_calls": 3,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_logprobs": 2,
        "user": "u-1",
        "safety_identifier": "s-1",
        "service_tier": "flex",
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
        "reasoning": {"effort": "high", "summary": "auto"},
        "metadata": {"team": "a"},
        "store": False,
        "background": True,
        "truncation": "auto",
        "include": ["reasoning.encrypted_content"],
        "previous_response_id": "resp_1",
    }
    request = parse_request(body)
    assert request.instructions == "be brief"
    assert request.tools == (
        {
            "type": "function",
            "name": "lookup",
            "description": "look it up",
            "parameters": {"type": "object", "properties": {}},
            "strict": True,
        },
    )
    assert request.tool_names == frozenset({"lookup"})
    assert request.tool_choice == {"type": "function", "name": "lookup"}
    assert request.parallel_tool_calls is False
    assert (request.max_output_tokens, request.max_tool_calls) == (100, 3)
    assert (request.temperature, request.top_p, request.top_logprobs) == (0.5, 0.9, 2)
    assert (request.user, request.safety_identifier) == ("u-1", "s-1")
    assert (request.service_tier, request.prompt_cache_key) == ("flex", "k")
    assert request.prompt_cache_retention == "24h"
    assert request.text == {"format": {"type": "json_object"}, "verbosity": "low"}
    assert request.reasoning == {"effort": "high", "summary": "auto"}
    assert request.metadata == {"team": "a"}
    assert (request.store, request.background, request.truncation) == (False, True, "auto")
    assert request.include == ("reasoning.encrypted_content",)
    assert request.previous_response_id == "resp_1"
    assert request.body["instructions"] == "be brief"


def test_defaults_of_a_minimal_request() -> None:
    request = parse_request({"model": "m", "input": "x"})
    assert (request.store, request.background, request.stream) == (True, False, False)
    assert request.truncation == "disabled"
    assert request.tools == ()
    assert request.tool_choice is None


def test_the_value_is_frozen() -> None:
    request = parse_request({"model": "m", "input": "x"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.model = "other"  # type: ignore[misc]


def test_items_are_normalised() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {"type": "message", "role": "assistant", "content": "earlier answer"},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "f",
                "arguments": "{}",
                "id": "fc_1",
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "item_reference", "id": "msg_1"},
        ],
    }
    request = parse_request(body)
    assert request.input == (
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "earlier answer"}],
        },
        {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {"id": "rs_1", "type": "reasoning", "summary": []},
        {"type": "item_reference", "id": "msg_1"},
    )


def test_input_may_be_omitted_when_continuing() -> None:
    request = parse_request({"model": "m", "previous_response_id": "resp_1"})
    assert request.input == ()


MESSAGE: dict[str, Any] = {"type": "message", "role": "user", "content": "hi"}

BAD_BODIES: list[tuple[Any, str | None, str]] = [
    ([1, 2], None, "JSON object"),
    ("text", None, "JSON object"),
    ({"input": "x"}, "model", "'model' is required"),
    ({"model": 3, "input": "x"}, "model", "'model' is required"),
    ({"model": "m"}, "input", "'input' is required"),
    ({"model": "m", "input": 5}, "input", "string or an array"),
    ({"model": "m", "input": {"role": "user"}}, "input", "string or an array"),
    ({"model": "m", "input": ["bare"]}, "input[0]", "JSON object"),
    ({"model": "m", "input": [{"content": "x"}]}, "input[0].type", "missing its 'type'"),
    (
        {"model": "m", "input": [MESSAGE, {"type": "web_search_call"}]},
        "input[1].type",
        "not supported",
    ),
    ({"model": "m", "input": [{"type": "message", "content": "x"}]}, "input[0].role", "role"),
    (
        {"model": "m", "input": [{"type": "message", "role": "tool", "content": "x"}]},
        "input[0].role",
        "role",
    ),
    ({"model": "m", "input": [{"role": "user", "content": 3}]}, "input[0].content", "content"),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "audio"}]}]},
        "input[0].content[0].type",
        "not supported",
    ),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        "input[0].content[0].text",
        "'text'",
    ),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        "input[0].content[0].image_url",
        "image_url",
    ),
    (
        {
            "model": "m",
            "input": [
                {"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}
            ],
        },
        "input[0].content[0].type",
        "only supported in user messages",
    ),
    (
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
        "input[0].content[0].file_data",
        "file_data",
    ),
    (
        {
            "model": "m",
            "input": [
                MESSAGE,
                MESSAGE,
                {"type": "function_call", "name": "f", "arguments": "{}"},
            ],
        },
        "input[2].call_id",
        "'call_id'",
    ),
    (
        {"model": "m", "input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
        "input[0].name",
        "'name'",
    ),
    (
        {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
        "input[0].arguments",
        "'arguments'",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
        "input[0].call_id",
        "'call_id'",
    ),
    (
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]},
        "input[0].output",
        "'output'",
    ),
    ({"model": "m", "input": [{"type": "item_reference"}]}, "input[0].id", "'id'"),
    ({"model": "m", "input": "x", "tools": {}}, "tools", "array"),
    ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "name"),
    (
        {"model": "m", "input": "x", "tools": [{"type": "function", "name": "a b"}]},
        "tools[0].name",
        "name",
    ),
    (
        {
            "model": "m",
            "input": "x",
            "tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "a"}],
        },
        "tools[1].name",
        "two tools are named 'a'",
    ),
    (
        {"model": "m", "input": "x", "tools": [{"type": "tool_of_the_future"}]},
        "tools[0].type",
        "not supported",
    ),
    (
        {"model": "m", "input": "x", "tools": [{"type": "function", "name": "a", "parameters": 1}]},
        "tools[0].parameters",
        "JSON Schema",
    ),
    ({"model": "m", "input": "x", "temperature": "hot"}, "temperature", "must be a number"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature", "between 0 and 2"),
    ({"model": "m", "input": "x", "temperature": True}, "temperature", "must be a number"),
    ({"model": "m", "input": "x", "top_p": 1.5}, "top_p", "between 0 and 1"),
    ({"model": "m", "input": "x", "max_output_tokens": 1.5}, "max_output_tokens", "integer"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens", ">= 1"),
    ({"model": "m", "input": "x", "max_tool_calls": "2"}, "max_tool_calls", "integer"),
    ({"model": "m", "input": "x", "top_logprobs": 21}, "top_logprobs", "<= 20"),
    ({"model": "m", "input": "x", "parallel_tool_calls": "yes"}, "parallel_tool_calls", "boolean"),
    ({"model": "m", "input": "x", "stream": 1}, "stream", "boolean"),
    ({"model": "m", "input": "x", "tool_choice": "always"}, "tool_choice", "tool_choice"),
    ({"model": "m", "input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name", "name"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type", "xml"),
    (
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
        "text.format.name",
        "name",
    ),
    (
        {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}},
        "text.format.schema",
        "schema",
    ),
    ({"model": "m", "input": "x", "reasoning": {"effort": "huge"}}, "reasoning.effort", "effort"),
    ({"model": "m", "input": "x", "metadata": {"k": 1}}, "metadata.k", "512"),
    ({"model": "m", "input": "x", "truncation": "sometimes"}, "truncation", "truncation"),
    ({"model": "m", "input": "x", "service_tier": "gold"}, "service_tier", "service_tier"),
    ({"model": "m", "input": "x", "instructions": ["a"]}, "instructions", "string"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation", "not supported"),
]


@pytest.mark.parametrize(("body", "param", "message"), BAD_BODIES)
def test_malformed_bodies_name_the_field(body: Any, param: str | None, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(body)
    assert caught.value.param == param
    assert message in caught.value.message
    error = caught.value.to_error()
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert caught.value.http_status == 400


def test_unknown_top_level_fields_are_ignored() -> None:
    request = parse_request({"model": "m", "input": "x", "some_future_field": {"a": 1}})
    assert isinstance(request, ResponsesRequest)
    assert request.body["some_future_field"] == {"a": 1}
