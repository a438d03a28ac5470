"""Parsing and validation of /v1/responses bodies into ResponsesRequest."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
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
        "truncation": "disabled",
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
    assert (request.store, request.background, request.truncation) == (False, True, "disabled")
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
        {"model": "m", "input": [{"role": "user", "content": [{"type": ["input_text"]}]}]},
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
    (
        {"model": "m", "input": "x", "conversation": "conv_1", "previous_response_id": "resp_1"},
        "conversation",
        "Mutually exclusive",
    ),
    ({"model": "m", "input": "x", "conversation": 5}, "conversation", "conversation id"),
    ({"model": "m", "input": "x", "conversation": {"id": ""}}, "conversation.id", "its 'id'"),
    ({"model": "m", "input": "x", "conversation": "conv_1", "store": False}, "store", "stored"),
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


ALLOWED: dict[str, Any] = {
    "type": "allowed_tools",
    "mode": "required",
    "tools": [{"type": "function", "name": "a"}, {"type": "custom", "name": "b"}],
}


def test_an_allowed_tools_choice_is_kept_as_sent_with_its_names() -> None:
    request = parse_request({"model": "m", "input": "x", "tool_choice": ALLOWED})
    assert request.tool_choice == ALLOWED
    assert request.allowed_tool_names == ("a", "b")
    plain = parse_request({"model": "m", "input": "x", "tool_choice": "auto"})
    assert plain.allowed_tool_names is None


def test_allowed_tools_narrow_the_callable_client_tools() -> None:
    tools = [{"type": "function", "name": n} for n in ("a", "c")]
    request = parse_request({"model": "m", "input": "x", "tools": tools, "tool_choice": ALLOWED})
    assert request.tool_names == {"a", "c"}
    assert request.callable_client_tool_names == {"a"}


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({**ALLOWED, "mode": "sometimes"}, "tool_choice.mode"),
        ({**ALLOWED, "tools": []}, "tool_choice.tools"),
        ({**ALLOWED, "tools": "a"}, "tool_choice.tools"),
        ({**ALLOWED, "tools": ["a"]}, "tool_choice.tools[0]"),
        ({**ALLOWED, "tools": [{"type": "web_search"}]}, "tool_choice.tools[0].type"),
        ({**ALLOWED, "tools": [{"type": "function"}]}, "tool_choice.tools[0].name"),
        ({**ALLOWED, "tools": [{"type": "function", "name": ""}]}, "tool_choice.tools[0].name"),
        ({**ALLOWED, "tools": [{"type": "function", "name": "a"}] * 129}, "tool_choice.tools"),
    ],
)
def test_malformed_allowed_tools_name_the_field(choice: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": "x", "tool_choice": choice})
    assert caught.value.param == param


def test_supported_include_values_are_kept() -> None:
    include = ["message.output_text.logprobs", "reasoning.encrypted_content"]
    request = parse_request({"model": "m", "input": "x", "include": include})
    assert request.include == tuple(include)
    assert request.wants_logprobs
    assert not parse_request({"model": "m", "input": "x"}).wants_logprobs


@pytest.mark.parametrize(
    "value",
    [
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "something.new",
    ],
)
def test_each_unsupported_include_value_is_refused_by_its_index(value: str) -> None:
    body = {"model": "m", "input": "x", "include": ["message.output_text.logprobs", value]}
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(body)
    assert caught.value.param == "include[1]"
    assert value in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("moderation", {"model": "omni-moderation-latest"}),
        ("prompt_cache_options", {"mode": "explicit", "ttl": "30m"}),
        ("background_options", {"completion_window": "2h"}),
        ("image", {"context_compression": "auto"}),
        ("prompt", {"id": "pmpt_1"}),
        ("truncation", "auto"),
    ],
)
def test_fields_that_would_change_the_result_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": "x", field: value})
    assert caught.value.param == field


def test_conversation_is_an_id_or_an_object_with_one() -> None:
    assert parse_request(
        {"model": "m", "input": "x", "conversation": "conv_1"}
    ).conversation_id == ("conv_1")
    body = {"model": "m", "conversation": {"id": "conv_2"}}  # its items may be the input
    assert parse_request(body).conversation_id == "conv_2"
    assert parse_request({"model": "m", "input": "x"}).conversation_id is None


def test_stream_options_are_validated_and_kept() -> None:
    body = {"model": "m", "input": "x", "stream_options": {"include_obfuscation": False}}
    assert parse_request(body).stream_options == {"include_obfuscation": False}
    for bad, param in (
        ("yes", "stream_options"),
        ({"include_obfuscation": "no"}, "stream_options.include_obfuscation"),
    ):
        with pytest.raises(InvalidRequestError) as caught:
            parse_request({"model": "m", "input": "x", "stream_options": bad})
        assert caught.value.param == param


SUPPORTED = ["message.output_text.logprobs", "reasoning.encrypted_content"]
include_lists = st.lists(
    st.sampled_from([*SUPPORTED, "file_search_call.results", "code_interpreter_call.outputs"])
    | st.text(max_size=12),
    max_size=5,
)


@given(include_lists)
def test_an_include_list_is_kept_whole_or_refused_at_its_first_unsupported_value(
    include: list[str],
) -> None:
    body = {"model": "m", "input": "x", "include": include}
    unsupported = [index for index, value in enumerate(include) if value not in SUPPORTED]
    if not unsupported:
        request = parse_request(body)
        assert request.include == tuple(include)
        assert request.wants_logprobs == ("message.output_text.logprobs" in include)
        return
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(body)
    assert caught.value.param == f"include[{unsupported[0]}]"
