"""What the Codex CLI sends (tests/data/codex: real bodies of Codex 0.171.0) parses and
translates: its namespace tool flattened for the upstream, its hosted web_search skipped
(or refused when the operator says so), its custom tools and their calls round-tripped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.abc import Complete
from responseloop.chat import ResponsesTransition, to_chat_body
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import (
    HOSTED_TOOL_TYPES,
    assemble_response,
    continue_request,
    parse_request,
)
from responseloop.openresponses._assembly import custom_input
from tests.chains import completion, drive, scope_with
from tests.wire_checks import check_emitted_response

CODEX = Path(__file__).parents[1] / "data" / "codex"
BODIES = sorted(path.stem for path in CODEX.glob("*.json"))

PATCH_TOOL: dict[str, Any] = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'},
}


def validate_custom_response(response: dict[str, Any]) -> None:
    """The SDK's ``Response`` declares custom_tool_call output items without ``status``,
    so they have none (unlike other items); the rest is as for every Response."""
    for item in response["output"]:
        if item["type"] == "custom_tool_call":
            assert "status" not in item
    check_emitted_response(response)


def codex_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((CODEX / f"{name}.json").read_text())
    return body


def test_the_captured_bodies_are_there() -> None:
    assert BODIES == [
        "namespace_result",
        "patch_call",
        "patch_result",
        "plain",
        "resume",
        "tool_call",
        "tool_result",
    ]


def offered_names(body: dict[str, Any]) -> list[str]:
    """The names the upstream should be offered for a Codex body's tools: functions and
    custom tools by name, a namespace's functions joined to it, hosted tools none."""
    names = []
    for tool in body["tools"]:
        if tool["type"] in ("function", "custom"):
            names.append(tool["name"])
        elif tool["type"] == "namespace":
            names += [f"{tool['name']}__{member['name']}" for member in tool["tools"]]
        else:
            assert tool["type"] in HOSTED_TOOL_TYPES
    return names


@pytest.mark.parametrize("name", BODIES)
def test_a_codex_body_parses_and_translates_with_its_namespace_flattened(name: str) -> None:
    body = codex_body(name)
    request = parse_request(body)
    chat = to_chat_body(request)
    names = [tool["function"]["name"] for tool in chat["tools"]]
    assert names == offered_names(body)
    assert all(tool["type"] == "function" for tool in chat["tools"])
    # Codex's instructions come as developer messages, kept as such.
    assert [m["role"] for m in chat["messages"][:2]] == ["developer", "developer"]
    assert chat["prompt_cache_key"] == body["prompt_cache_key"]
    assert chat["stream"] is True
    # The model is offered functions only: web_search is not among them.
    assert [tool["type"] for tool in request.tools] == ["function"] * len(request.tools)


def test_the_captured_bodies_hold_every_tool_kind_codex_sends() -> None:
    kinds = {tool["type"] for name in BODIES for tool in codex_body(name)["tools"]}
    assert kinds == {"function", "namespace", "custom", "web_search", "tool_search"}


def test_codex_replays_its_apply_patch_call_as_a_custom_tool_call() -> None:
    body = codex_body("patch_result")
    call, output = body["input"][-2:]
    messages = to_chat_body(parse_request(body))["messages"]
    assert messages[-2]["tool_calls"] == [
        {
            "id": "call_p1",
            "type": "function",
            "function": {
                "name": "apply_patch",
                "arguments": json.dumps({"input": call["input"]}, separators=(",", ":")),
            },
        }
    ]
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_p1", "content": output["output"]}


def test_the_replayed_codex_tool_call_reaches_the_upstream_as_a_chat_tool_call() -> None:
    chat = to_chat_body(parse_request(codex_body("tool_result")))
    call, result = chat["messages"][-2:]
    assert call["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "exec_command", "arguments": '{"cmd":"echo hi"}'},
        }
    ]
    assert result["role"] == "tool"
    assert result["tool_call_id"] == "call_1"


def test_codex_replays_a_namespace_call_with_its_namespace_and_the_upstream_gets_it_joined() -> (
    None
):
    chat = to_chat_body(parse_request(codex_body("namespace_result")))
    call, result = chat["messages"][-2:]
    assert call["tool_calls"][0]["function"]["name"] == "multi_agent_v1__close_agent"
    assert result["tool_call_id"] == call["tool_calls"][0]["id"] == "call_ns1"


def test_hosted_tools_are_refused_by_name_when_the_operator_says_so() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(codex_body("plain"), hosted_tools="refuse")
    web_search = [t["type"] for t in codex_body("plain")["tools"]].index("web_search")
    assert caught.value.param == f"tools[{web_search}].type"


@pytest.mark.parametrize("kind", sorted(HOSTED_TOOL_TYPES))
def test_every_hosted_tool_is_skipped_by_default(kind: str) -> None:
    request = parse_request({"model": "m", "input": "x", "tools": [{"type": kind}]})
    assert request.tools == ()
    assert "tools" not in to_chat_body(request)


def test_a_namespace_call_comes_back_as_a_function_call_with_its_namespace() -> None:
    body = codex_body("plain")
    request = parse_request(body)
    chain, outcome = drive(
        ResponsesTransition(request),
        [completion("", calls=[("c1", "multi_agent_v1__spawn_agent", {"message": "go"})])],
        scope=scope_with(),
    )
    assert isinstance(outcome, Complete)
    response = assemble_response(
        chain, request, response_id="resp_n", created_at=0, outcome=outcome
    )
    check_emitted_response(response)
    (call,) = [item for item in response["output"] if item["type"] == "function_call"]
    assert (call["name"], call["namespace"], call["call_id"]) == (
        "spawn_agent",
        "multi_agent_v1",
        "call_n_1_0",
    )
    # Sent back (Codex replays it with store: false), it reaches the upstream by the joined name.
    replay = {
        **body,
        "input": [
            *body["input"],
            {k: call[k] for k in ("type", "call_id", "name", "namespace", "arguments")},
            {"type": "function_call_output", "call_id": "call_n_1_0", "output": "spawned"},
        ],
    }
    chat = to_chat_body(parse_request(replay))
    assert chat["messages"][-2]["tool_calls"][0]["function"]["name"] == (
        "multi_agent_v1__spawn_agent"
    )


def test_a_custom_tool_is_a_one_string_function_upstream_and_a_custom_tool_call_back() -> None:
    body = {"model": "m", "input": "patch it", "store": False, "tools": [PATCH_TOOL]}
    request = parse_request(body)
    (offered,) = to_chat_body(request)["tools"]
    function = offered["function"]
    assert function["name"] == "apply_patch"
    assert function["parameters"]["required"] == ["input"]
    assert "*** Begin Patch" in function["description"]  # the grammar, told in words
    patch = "*** Begin Patch\n*** End Patch"
    chain, outcome = drive(
        ResponsesTransition(request),
        [completion("", calls=[("p1", "apply_patch", {"input": patch})])],
        scope=scope_with(),
    )
    assert isinstance(outcome, Complete)
    response = assemble_response(
        chain, request, response_id="resp_c", created_at=0, outcome=outcome
    )
    validate_custom_response(response)
    (listed,) = response["tools"]  # the function the model was offered
    assert (listed["type"], listed["name"]) == ("function", "apply_patch")
    (call,) = response["output"]
    assert call == {
        "id": "ctc_c_1_0",
        "type": "custom_tool_call",
        "call_id": "call_c_1_0",
        "name": "apply_patch",
        "input": patch,
    }
    replay = {
        **body,
        "input": [
            {"role": "user", "content": "patch it"},
            call,
            {"type": "custom_tool_call_output", "call_id": "call_c_1_0", "output": "Done!"},
        ],
    }
    messages = to_chat_body(parse_request(replay))["messages"]
    assert messages[-2]["tool_calls"][0]["function"] == {
        "name": "apply_patch",
        "arguments": json.dumps({"input": patch}, separators=(",", ":")),
    }
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_c_1_0", "content": "Done!"}


def test_additional_tools_items_offer_their_tools_to_the_model() -> None:
    extra = {"type": "function", "name": "later_tool", "parameters": {"type": "object"}}
    request = parse_request(
        {
            "model": "m",
            "input": [
                {"type": "additional_tools", "role": "developer", "tools": [extra]},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    chat = to_chat_body(request)
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["later_tool"]
    assert chat["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]},
            "tools[0].tools[0].type",
        ),
        ({"tools": [{"type": "namespace", "name": "n"}]}, "tools[0].tools"),
        (
            {
                "tools": [
                    {"type": "function", "name": "n__f"},
                    {
                        "type": "namespace",
                        "name": "n",
                        "tools": [{"type": "function", "name": "f"}],
                    },
                ]
            },
            "tools[1].tools[0].name",
        ),
        ({"tools": [{"type": "custom", "name": "c", "format": {"type": "x"}}]}, "tools[0].format"),
        ({"input": [{"type": "custom_tool_call", "call_id": "c", "name": "n"}]}, "input[0].input"),
        ({"input": [{"type": "additional_tools", "tools": 1}]}, "input[0].tools"),
        ({"client_metadata": "x"}, "client_metadata"),
    ],
)
def test_malformed_codex_shapes_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": "x", **body})
    assert caught.value.param == param


def test_codex_fields_that_others_own_are_accepted() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": "x",
            "include": ["reasoning.encrypted_content"],
            "reasoning": {"summary": "auto"},
            "store": False,
            "stream": True,
            "client_metadata": {"x-codex-turn-metadata": "{}"},
        }
    )
    assert request.include == ("reasoning.encrypted_content",)
    assert not request.store


@given(st.text())
def test_custom_input_is_the_input_argument_or_else_the_raw_arguments(text: str) -> None:
    assert custom_input(json.dumps({"input": text})) == text
    assert custom_input(text) == text or json.loads(text)["input"] == custom_input(text)


def test_an_image_tool_output_is_shown_after_the_tool_messages() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    body = codex_body("plain")
    body["input"] = [
        *body["input"],
        {"type": "function_call", "call_id": "v1", "name": "view_image", "arguments": "{}"},
        {"type": "function_call", "call_id": "e1", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "v1", "output": [image]},
        {"type": "function_call_output", "call_id": "e1", "output": "ok"},
        {"role": "user", "content": "what is in it?"},
    ]
    messages = to_chat_body(parse_request(body))["messages"]
    assert [m["role"] for m in messages[-5:]] == ["assistant", "tool", "tool", "user", "user"]
    assert messages[-4]["content"] == "(the image is in the next message)"
    assert messages[-2]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    ]


def test_additional_tools_of_an_earlier_turn_stay_offered() -> None:
    extra = {"type": "function", "name": "later_tool", "parameters": {"type": "object"}}
    first = parse_request(
        {
            "model": "m",
            "input": [
                {"type": "additional_tools", "role": "developer", "tools": [extra]},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    answered = {"output": [{"type": "message", "role": "assistant", "content": "hello"}]}
    again = {"type": "function", "name": "later_tool", "description": "declared again"}
    second = continue_request(
        first,
        answered,
        parse_request(
            {"model": "m", "input": "more", "previous_response_id": "resp_1", "tools": [again]}
        ),
    )
    assert [tool["name"] for tool in second.tools] == ["later_tool"]
    assert second.tools[0]["description"] == "declared again"  # the new request's wins
    alone = continue_request(
        first, answered, parse_request({"model": "m", "input": "more", "previous_response_id": "r"})
    )
    chat = to_chat_body(alone)
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["later_tool"]
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user"]
