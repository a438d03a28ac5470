"""Hypothesis properties of the Open Responses core."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam
from pydantic import TypeAdapter

from responseloop import LoopConfig
from responseloop.abc import Complete, Fail, ResponseStatus, StepKind
from responseloop.chat import ResponsesTransition, to_chat_body
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import assemble_response, parse_request
from tests.chains import ModelError, completion, drive, scope_with
from tests.openai_shapes import validate_response

DATA = Path(__file__).parents[1] / "data"
SPEC_ITEM_TYPES: list[str] = json.loads((DATA / "openresponses_input_item_types.json").read_text())[
    "input_item_types"
]
CHAT_MESSAGE = TypeAdapter(ChatCompletionMessageParam)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
names = st.sampled_from(["search", "fetch", "ask_user", "rm"])
call_ids = st.sampled_from(["c1", "c2", "c3", "call_x"])
text = st.text(max_size=12)

text_parts = st.builds(
    lambda t, k: {"type": k, "text": t}, text, st.sampled_from(["input_text", "output_text"])
)
parts = st.one_of(
    text_parts,
    st.builds(lambda r: {"type": "refusal", "refusal": r}, text),
    st.builds(
        lambda url, detail: {"type": "input_image", "image_url": url, **detail},
        st.sampled_from(["https://x/a.png", "data:image/png;base64,AA==", ""]),
        st.sampled_from([{}, {"detail": "low"}, {"detail": "bogus"}]),
    ),
    st.builds(
        lambda fields: {"type": "input_file", **fields},
        st.sampled_from([{"file_id": "file-1"}, {"file_data": "AA==", "filename": "a"}, {}]),
    ),
    st.builds(lambda kind: {"type": kind}, st.sampled_from(["audio", "input_text"])),
)
valid_parts = st.one_of(
    text_parts,
    st.just({"type": "input_image", "image_url": "https://x/a.png", "detail": "high"}),
    st.just({"type": "input_file", "file_id": "file-1"}),
)
valid_messages = (
    st.builds(
        lambda content: {"type": "message", "role": "user", "content": content},
        text | st.lists(valid_parts, max_size=3),
    )
    | st.builds(
        lambda role, content: {"type": "message", "role": role, "content": content},
        st.sampled_from(["system", "developer"]),
        text | st.lists(text_parts, max_size=2),
    )
    | st.builds(
        lambda content: {"role": "assistant", "content": content},
        text | st.lists(text_parts | st.just({"type": "refusal", "refusal": "no"}), max_size=2),
    )
)
messages = st.builds(
    lambda role, content, typed: {
        **({"type": "message"} if typed else {}),
        "role": role,
        "content": content,
    },
    st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
    text | st.lists(parts, max_size=3) | st.integers(),
    st.booleans(),
)
valid_calls = st.builds(
    lambda call_id, name: {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": "{}",
    },
    call_ids,
    names,
)
valid_outputs = st.builds(
    lambda call_id, output: {"type": "function_call_output", "call_id": call_id, "output": output},
    call_ids,
    text,
)
function_calls = st.builds(
    lambda call_id, name, arguments: {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    },
    call_ids | st.none(),
    names | st.none(),
    st.just("{}") | json_values,
)
outputs = st.builds(
    lambda call_id, output: {"type": "function_call_output", "call_id": call_id, "output": output},
    call_ids | st.none(),
    text | st.lists(text_parts, max_size=2) | json_values,
)
other_items = st.sampled_from(SPEC_ITEM_TYPES).map(lambda kind: {"type": kind, "id": "x_1"})
junk = st.one_of(json_values, st.just({"summary": []}), messages, function_calls, outputs)
# Mostly valid items, so that most requests get through to translation; a few of any kind
# the spec defines, and a few malformed ones.
items = st.one_of(
    valid_messages,
    valid_messages,
    valid_calls,
    valid_calls,
    valid_outputs,
    st.just({"type": "reasoning", "summary": []}),
    other_items,
    junk,
)
tools = st.lists(
    st.fixed_dictionaries({"type": st.just("function"), "name": names})
    | st.fixed_dictionaries({"type": st.just("function"), "name": names})
    | st.fixed_dictionaries({"type": st.just("function"), "name": names})
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "web_search"]), "name": st.just("bad name")}
    ),
    max_size=2,
)
settings_values = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(0, 2) | st.floats(-1, 3, allow_nan=False) | text,
        "max_output_tokens": st.integers(-2, 100) | st.floats(0, 5),
        "tool_choice": st.sampled_from(["auto", "none", "required", "sometimes"])
        | st.fixed_dictionaries({"type": st.just("function"), "name": names}),
        "text": st.sampled_from(
            [
                {"format": {"type": "text"}},
                {"format": {"type": "json_object"}},
                {"format": {"type": "json_schema", "name": "n", "schema": {}}},
                {"format": {"type": "json_schema"}},
            ]
        ),
        "reasoning": st.sampled_from([{"effort": "low"}, {"effort": "galactic"}, {}]),
        "instructions": text | st.none(),
        "stream": st.booleans(),
        "max_tool_calls": st.integers(-1, 4),
    },
)
bodies = st.builds(
    lambda model, input_, tools_, extra: {
        "model": model,
        "input": input_,
        "tools": tools_,
        **extra,
    },
    st.sampled_from(["m"] * 18 + ["", None]),
    st.lists(items, max_size=6) | st.lists(items, max_size=6) | text | json_values,
    tools,
    settings_values,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(bodies, st.lists(names, max_size=2, unique=True))
def test_any_request_translates_or_is_a_400(body: dict[str, Any], server: list[str]) -> None:
    rejected: InvalidRequestError | None = None
    try:
        request = parse_request(body)
        chat = to_chat_body(request, scope_with(*server).tools.values())
    except InvalidRequestError as exc:
        rejected = exc
    if rejected is not None:
        event("rejected")
        assert rejected.to_error()["type"] == "invalid_request_error"
        return
    event(f"translated, {len(chat['messages'])} messages")
    json.dumps(chat)  # the body is plain JSON
    for message in chat["messages"]:
        CHAT_MESSAGE.validate_python(message)


@st.composite
def paired_conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid conversations: user turns, and batches of calls each answered later on."""
    conversation: list[dict[str, Any]] = []
    counter = 0
    for _ in range(draw(st.integers(0, 4))):
        conversation.append(draw(valid_messages))
        if draw(st.booleans()):
            conversation.append({"type": "message", "role": "assistant", "content": draw(text)})
        batch = []
        for _ in range(draw(st.integers(0, 3))):
            counter += 1
            batch.append(f"call_{counter}")
            conversation.append(
                {
                    "type": "function_call",
                    "call_id": batch[-1],
                    "name": draw(names),
                    "arguments": "{}",
                }
            )
        if draw(st.booleans()):
            conversation.append({"type": "reasoning", "summary": []})
        for call_id in draw(st.permutations(batch)):
            conversation.append(
                {"type": "function_call_output", "call_id": call_id, "output": f"out {call_id}"}
            )
    return conversation


@settings(max_examples=200)
@given(paired_conversations())
def test_translation_never_loses_a_call_id_pairing(conversation: list[dict[str, Any]]) -> None:
    chat = to_chat_body(parse_request({"model": "m", "input": conversation}))
    for message in chat["messages"]:
        CHAT_MESSAGE.validate_python(message)
    called: list[str] = []
    answered: list[str] = []
    for message in chat["messages"]:
        if message["role"] == "assistant":
            called += [call["id"] for call in message.get("tool_calls", [])]
        if message["role"] == "tool":
            assert message["tool_call_id"] in called, "an answer before its call"
            assert message["content"] == f"out {message['tool_call_id']}"
            answered.append(message["tool_call_id"])
    expected_calls = [i["call_id"] for i in conversation if i.get("type") == "function_call"]
    assert called == expected_calls
    assert Counter(answered) == Counter(expected_calls)


model_error = st.just(
    ModelError({"type": "upstream_error", "code": "server_error", "message": "500"})
)
answers = st.builds(
    lambda content, calls, finish, extra, usage: completion(
        content, calls=calls, finish_reason=finish, usage=usage, **extra
    ),
    text | st.none(),
    st.lists(
        st.tuples(call_ids, names, st.just({}) | json_values),
        max_size=3,
        unique_by=lambda c: c[0],
    ),
    st.sampled_from([None, "stop", "length", "content_filter"]),
    st.sampled_from([{}, {"reasoning_content": "thinking"}, {"reasoning": "r"}, {"refusal": "no"}]),
    st.none()
    | st.fixed_dictionaries(
        {"prompt_tokens": st.integers(0, 50), "completion_tokens": st.integers(0, 50)},
        optional={"prompt_tokens_details": st.just({"cached_tokens": 1})},
    ),
)
with_calls = answers.filter(lambda reply: "tool_calls" in reply["choices"][0]["message"])
replies = st.one_of(with_calls, with_calls, with_calls, answers, model_error)


def _tool(outcome: Any) -> Any:
    def run(arguments: Any) -> Any:
        if outcome == "raise":
            raise RuntimeError("tool failed")
        return outcome

    return run


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(replies, min_size=1, max_size=5),
    st.sampled_from(["raise", {"ok": 1}, "text", None, [1, 2]]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from(["feed_back", "fail"]),
    st.booleans(),
)
def test_the_transition_terminates_and_the_chain_assembles(
    script: list[Any],
    tool_result: Any,
    budget: int | None,
    policy: Any,
    forced: bool,
) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "input": "q",
        "tools": [{"type": "function", "name": "ask_user"}],
    }
    if budget is not None:
        body["max_tool_calls"] = budget
    if forced:
        body["tool_choice"] = "required"
    request = parse_request(body)
    scope = scope_with("search", "fetch")
    chain, outcome = drive(
        ResponsesTransition(request),
        script,
        scope=scope,
        tools={"search": _tool(tool_result), "fetch": _tool(tool_result)},
        config=LoopConfig(tool_errors=policy, unknown_tools=policy),
        max_decisions=3 * len(script) + 3,
    )
    model_calls = [step for step in chain if step.kind is StepKind.MODEL_CALL]
    event(f"{len(model_calls)} model calls, {len(chain) - len(model_calls)} tool steps")
    assert len(model_calls) <= len(script) + 1
    if budget is not None:
        assert sum(1 for step in chain if step.is_tool) <= budget
    for later in model_calls[1:]:
        assert later.request_payload.get("tool_choice", "auto") == "auto"
        pending: list[str] = []
        for message in later.request_payload["messages"]:
            assert message["role"] != "tool" or message["tool_call_id"] == pending.pop(0)
            if message["role"] == "assistant":
                assert not pending, "a call was left unanswered"
                pending = [call["id"] for call in message.get("tool_calls", [])]
    response = assemble_response(
        chain, request, response_id="resp_p", created_at=0, outcome=outcome
    )
    validate_response(response)
    expected = {Complete: ("completed", "incomplete"), Fail: ("failed",)}[type(outcome)]
    assert response["status"] in expected


@pytest.mark.parametrize("status", list(ResponseStatus))
def test_every_status_assembles(status: ResponseStatus) -> None:
    request = parse_request({"model": "m", "input": "q"})
    response = assemble_response([], request, response_id="resp_s", created_at=0, outcome=status)
    assert validate_response(response).status == status.value


def test_every_spec_input_item_type_is_understood_or_rejected_by_name() -> None:
    understood = {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
        "item_reference",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "compaction",
    }
    for index, kind in enumerate(SPEC_ITEM_TYPES):
        item = {
            "type": kind,
            "id": "x",
            "call_id": "c",
            "name": "n",
            "arguments": "{}",
            "input": "i",
            "output": "o",
            "role": "user",
            "content": "hi",
            "summary": [],
            "server_label": "s",
            "tools": [],
            "approval_request_id": "x",
            "approve": False,
            "encrypted_content": "blob",
        }
        if kind in understood:
            assert parse_request({"model": "m", "input": [item]}).input[0]["type"] == kind
            continue
        with pytest.raises(InvalidRequestError) as caught:
            parse_request({"model": "m", "input": [{"role": "user", "content": "a"}, item]})
        assert caught.value.param == "input[1].type", (index, kind)


def test_the_spec_example_request_parses() -> None:
    example = json.loads((DATA / "openresponses_example_request.json").read_text())["body"]
    assert example["model"] is None  # the spec example leaves it out; we require it
    with pytest.raises(InvalidRequestError):
        parse_request(example)
    request = parse_request({**example, "model": "m"})
    assert to_chat_body(request)["messages"] == [
        {"role": "user", "content": "What's the weather like in Paris today?"}
    ]
