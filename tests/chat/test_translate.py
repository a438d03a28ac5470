"""Translation of Responses requests into Chat Completions bodies, row by row of DESIGN §5."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses.response_create_params import (
    ResponseCreateParamsNonStreaming,
    ResponseCreateParamsStreaming,
)

from responseloop.abc import ToolSchema
from responseloop.chat import ResponsesTransition, to_chat_body
from responseloop.chat._translate import MAX_UPSTREAM_CALL_ID, upstream_call_id
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import parse_request
from tests.chains import completion, drive, scope_with


def chat(body: Any, server_tools: list[ToolSchema] | None = None) -> dict[str, Any]:
    return to_chat_body(parse_request(body), server_tools or [])


def test_model_and_string_input() -> None:
    body: ResponseCreateParamsNonStreaming = {"model": "m", "input": "hello"}
    assert chat(body) == {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def test_instructions_become_the_first_system_message() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "instructions": "be brief",
        "input": [{"role": "system", "content": "ctx"}, {"role": "user", "content": "q"}],
    }
    assert chat(body)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "ctx"},
        {"role": "user", "content": "q"},
    ]


def test_message_roles_are_kept() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {"type": "message", "role": "developer", "content": "dev"},
            {"type": "message", "role": "system", "content": "sys"},
            {"type": "message", "role": "user", "content": "usr"},
            {"type": "message", "role": "assistant", "content": "ast"},
        ],
    }
    assert chat(body)["messages"] == [
        {"role": "developer", "content": "dev"},
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "usr"},
        {"role": "assistant", "content": "ast"},
    ]


def test_content_parts_become_chat_parts() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look at "},
                    {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,AA==",
                        "filename": "a.pdf",
                    },
                    {"type": "input_file", "file_id": "file-1"},
                ],
            }
        ],
    }
    assert chat(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at "},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,AA=="},
                },
                {"type": "file", "file": {"file_id": "file-1"}},
            ],
        }
    ]


def test_text_only_parts_join_into_string_content() -> None:
    # An assistant item in the output shape (with annotations), as clients replay it.
    body: dict[str, Any] = {
        "model": "m",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "c", "annotations": []}],
            },
        ],
    }
    assert chat(body)["messages"] == [
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "c"},
    ]


def test_assistant_refusal_parts_become_the_refusal_field() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "input": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "no"}],
            }
        ],
    }
    assert chat(body)["messages"] == [{"role": "assistant", "content": None, "refusal": "no"}]


def test_function_calls_merge_into_one_assistant_message() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"A"}'},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"B"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": "rain"},
        ],
    }
    assert chat(body)["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"city":"A"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"city":"B"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ]


def test_an_assistant_text_message_directly_before_absorbs_the_calls() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {"role": "assistant", "content": "let me check"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": "ok2"},
        ],
    }
    assert chat(body)["messages"] == [
        {
            "role": "assistant",
            "content": "let me check",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "ok2"},
    ]


def test_function_call_output_parts_become_text() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            },
        ],
    }
    assert chat(body)["messages"][1] == {"role": "tool", "tool_call_id": "c1", "content": "ab"}


def test_reasoning_items_reach_the_assistant_message_after_them() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {"role": "user", "content": "q"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "t"}]},
            {"role": "assistant", "content": "a"},
        ],
    }
    assert chat(body)["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "t"},
    ]


def test_replayed_reasoning_goes_in_the_chosen_field_or_nowhere() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "q"},
                {
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "think"}],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "x"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "lost"}]},
                {"role": "user", "content": "again"},
            ],
        }
    )
    messages = to_chat_body(request, replay_reasoning_as="reasoning")["messages"]
    assert messages[1]["reasoning"] == "think"
    assert messages[1]["tool_calls"][0]["id"] == "c1"
    # A reasoning item no assistant message follows has no place in chat.
    assert all("reasoning" not in m for m in messages[2:])
    bare = to_chat_body(request, replay_reasoning_as=None)["messages"]
    assert all("reasoning" not in m and "reasoning_content" not in m for m in bare)


def test_an_output_without_its_call_is_a_400() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [
            {"role": "user", "content": "q"},
            {"type": "function_call_output", "call_id": "c9", "output": "x"},
        ],
    }
    with pytest.raises(InvalidRequestError) as caught:
        chat(body)
    assert caught.value.param == "input[1].call_id"


def test_an_unresolved_item_reference_is_a_400_naming_the_item() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": [{"role": "user", "content": "q"}, {"type": "item_reference", "id": "msg_9"}],
    }
    with pytest.raises(InvalidRequestError) as caught:
        chat(body)
    assert caught.value.param == "input[1].id"
    assert "msg_9" in caught.value.message


def test_tools_are_wrapped_and_merged_with_server_tools() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": "q",
        "tools": [
            {
                "type": "function",
                "name": "client_fn",
                "description": "d",
                "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                "strict": True,
            }
        ],
    }
    server = ToolSchema("search", "find things", {"type": "object", "properties": {}})
    assert chat(body, [server])["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "client_fn",
                "description": "d",
                "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "find things",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]


def test_a_tool_name_clash_with_a_server_tool_is_a_400() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": "q",
        "tools": [
            {"type": "function", "name": "a", "parameters": None, "strict": None},
            {"type": "function", "name": "search", "parameters": None, "strict": None},
        ],
    }
    with pytest.raises(InvalidRequestError) as caught:
        chat(body, [ToolSchema("search")])
    assert caught.value.param == "tools[1].name"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    body = {
        "model": "m",
        "input": "q",
        "tools": [{"type": "function", "name": "f"}],
        "tool_choice": choice,
        "parallel_tool_calls": False,
    }
    translated = chat(body)
    assert translated["tool_choice"] == expected
    assert translated["parallel_tool_calls"] is False


def test_tool_settings_are_left_out_without_tools() -> None:
    body: ResponseCreateParamsNonStreaming = {
        "model": "m",
        "input": "q",
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }
    assert chat(body) == {"model": "m", "messages": [{"role": "user", "content": "q"}]}


def test_settings_pass_through() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "input": "q",
        "max_output_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.5,
        "top_logprobs": 3,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.1,
        "seed": 7,
        "user": "u",
        "safety_identifier": "s",
        "service_tier": "priority",
        "prompt_cache_key": "pk",
        "prompt_cache_retention": "in_memory",
        "reasoning": {"effort": "minimal"},
        "text": {"verbosity": "high"},
        "metadata": {"a": "b"},
        "store": False,
        "background": False,
        "truncation": "disabled",
        "include": [],
        "max_tool_calls": 2,
    }
    assert chat(body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.5,
        "logprobs": True,
        "top_logprobs": 3,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.1,
        "seed": 7,
        "user": "u",
        "safety_identifier": "s",
        "service_tier": "priority",
        "prompt_cache_key": "pk",
        "prompt_cache_retention": "in_memory",
        "reasoning_effort": "minimal",
        "verbosity": "high",
    }


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, {"type": "text"}),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {
                "type": "json_schema",
                "name": "answer",
                "schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
                "strict": True,
                "description": "the answer",
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
                    "description": "the answer",
                    "strict": True,
                },
            },
        ),
    ],
)
def test_text_format_becomes_response_format(fmt: Any, expected: Any) -> None:
    body = {"model": "m", "input": "q", "text": {"format": fmt}}
    assert chat(body)["response_format"] == expected


def test_stream_asks_the_upstream_for_usage() -> None:
    body: ResponseCreateParamsStreaming = {"model": "m", "input": "q", "stream": True}
    translated = chat(body)
    assert translated["stream"] is True
    assert translated["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("replay", "kept"), [("reasoning_content", True), (None, False)], ids=["kept", "none"]
)
def test_the_models_own_reasoning_goes_back_to_its_later_calls_unless_replay_is_off(
    replay: str | None, kept: bool
) -> None:
    request = parse_request({"model": "m", "input": "q"})
    first = completion(calls=[("c1", "search", {})], reasoning_content="look it up")
    chain, _outcome = drive(
        ResponsesTransition(request, replay_reasoning_as=replay),
        [first, completion("found")],
        scope=scope_with("search"),
    )
    later = chain[-1].request_payload["messages"]
    assistant = next(m for m in later if m["role"] == "assistant")
    assert ("reasoning_content" in assistant) is kept


def test_reasoning_before_a_replayed_mcp_call_goes_on_its_assistant_message() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "weather?"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "ask it"}]},
                {
                    "type": "mcp_call",
                    "id": "mcp_1",
                    "server_label": "responseloop",
                    "name": "get_weather",
                    "arguments": "{}",
                    "output": "sunny",
                },
            ],
        }
    )
    assistant = to_chat_body(request)["messages"][1]
    assert assistant["reasoning_content"] == "ask it"
    assert assistant["tool_calls"][0]["id"] == "mcp_1"


def test_allowed_tools_offer_the_subset_with_the_mode_as_tool_choice() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": "x",
            "tools": [{"type": "function", "name": n} for n in ("a", "b")],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "b"}],
            },
        }
    )
    body = to_chat_body(request)
    assert [tool["function"]["name"] for tool in body["tools"]] == ["b"]
    assert body["tool_choice"] == "required"


def test_the_logprobs_include_asks_the_upstream_for_logprobs() -> None:
    include = {"model": "m", "input": "x", "include": ["message.output_text.logprobs"]}
    assert to_chat_body(parse_request(include))["logprobs"] is True
    assert "logprobs" not in to_chat_body(parse_request({"model": "m", "input": "x"}))


@given(st.text(min_size=1, max_size=120), st.text(min_size=1, max_size=120))
def test_history_call_ids_reach_the_upstream_within_its_limit(first: str, second: str) -> None:
    for call_id in (first, second):
        shown = upstream_call_id(call_id)
        assert len(shown) <= MAX_UPSTREAM_CALL_ID
        assert shown == call_id or len(call_id) > MAX_UPSTREAM_CALL_ID
    if first != second:
        assert upstream_call_id(first) != upstream_call_id(second)


def test_a_long_call_id_and_its_answer_agree_upstream() -> None:
    """Our call ids (``call_<response>_<turn>_<call>``) may pass 40 characters: the call and
    its answer are shown the upstream under one id that fits."""
    ours = "call_" + "f" * 32 + "_12_0"
    request = parse_request(
        {
            "model": "m",
            "input": [
                {"type": "function_call", "call_id": ours, "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": ours, "output": "ok"},
            ],
        }
    )
    called, answered = to_chat_body(request)["messages"]
    assert called["tool_calls"][0]["id"] == answered["tool_call_id"] == upstream_call_id(ours)
    assert len(answered["tool_call_id"]) <= MAX_UPSTREAM_CALL_ID
