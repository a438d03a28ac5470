"""Request-declared MCP tools in the pure layers: the declaration, the transition's
listings, pauses and approved calls, and the items the assembly makes of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.abc import Complete, Fail, Scope, StepKind, ToolSchema
from responseloop.chat import ResponsesTransition
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import WireOptions, assemble_response, parse_request
from responseloop.openresponses._mcp import (
    approval_refusal,
    approved_calls,
    conversation_listings,
    needs_approval,
    parse_mcp_declaration,
    redact_mcp_secrets,
    tool_allowed,
    withheld_secrets,
)
from tests.chains import completion, drive
from tests.wire_checks import check_emitted_response

LISTED = {
    "tools": [
        {"name": "add", "input_schema": {"type": "object"}, "annotations": {"readOnlyHint": True}},
        {"name": "book", "input_schema": {"type": "object"}, "description": "Books a room."},
    ]
}


def _mcp(**fields: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "rooms", "server_url": "https://mcp.test/mcp", **fields}


def _scope(*tools: ToolSchema) -> Scope:
    return Scope("resp_test", None, 0, {tool.name: tool for tool in tools})


ADD = ToolSchema("add", server_label="rooms")
BOOK = ToolSchema("book", server_label="rooms", requires_approval=True)


def _assembled(chain: Any, body: dict[str, Any], outcome: Any) -> dict[str, Any]:
    response = assemble_response(
        chain, parse_request(body), response_id="resp_abc", created_at=0, outcome=outcome
    )
    check_emitted_response(response)
    return response


def test_a_declaration_keeps_its_secrets_out_of_repr_equality_and_echo() -> None:
    declared = parse_mcp_declaration(
        _mcp(headers={"X-Key": "h-secret"}, authorization="a-secret"), "tools[0]"
    )
    assert declared.headers == {"X-Key": "h-secret", "Authorization": "Bearer a-secret"}
    assert "secret" not in repr(declared)
    assert declared == parse_mcp_declaration(_mcp(), "tools[0]")
    stored = redact_mcp_secrets({"model": "m", "tools": [_mcp(authorization="a-secret")]})
    assert "a-secret" not in json.dumps(stored)
    assert withheld_secrets(stored)
    assert not withheld_secrets(redact_mcp_secrets({"model": "m", "tools": [_mcp()]}))


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("server_label", "has space", "tools[0].server_label"),
        ("connector_id", "connector_gmail", "tools[0].connector_id"),
        ("tunnel_id", "t1", "tools[0].tunnel_id"),
        ("defer_loading", True, "tools[0].defer_loading"),
        ("allowed_tools", "add", "tools[0].allowed_tools"),
        ("allowed_tools", {"read_only": "yes"}, "tools[0].allowed_tools.read_only"),
        ("require_approval", "sometimes", "tools[0].require_approval"),
        ("headers", {"X": 1}, "tools[0].headers"),
        ("authorization", "", "tools[0].authorization"),
        ("allowed_callers", ["programmatic"], "tools[0].allowed_callers"),
    ],
)
def test_a_malformed_declaration_is_refused_naming_its_field(
    field: str, value: Any, param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": "q", "tools": [_mcp(**{field: value})]})
    assert caught.value.param == param


def test_two_declarations_of_one_label_and_an_mcp_tool_choice_of_none_are_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": "q", "tools": [_mcp(), _mcp()]})
    assert caught.value.param == "tools[1].server_label"
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(
            {"model": "m", "input": "q", "tool_choice": {"type": "mcp", "server_label": "x"}}
        )
    assert caught.value.param == "tool_choice.server_label"


def test_allowed_tools_and_require_approval_filters() -> None:
    add, book = LISTED["tools"]
    by_name = parse_mcp_declaration(_mcp(allowed_tools=["book"]), "tools[0]")
    assert (tool_allowed(by_name, add), tool_allowed(by_name, book)) == (False, True)
    read_only = parse_mcp_declaration(_mcp(allowed_tools={"read_only": True}), "tools[0]")
    assert (tool_allowed(read_only, add), tool_allowed(read_only, book)) == (True, False)
    default = parse_mcp_declaration(_mcp(), "tools[0]")
    assert needs_approval(default, add)
    assert needs_approval(default, book)
    never = parse_mcp_declaration(_mcp(require_approval="never"), "tools[0]")
    assert not needs_approval(never, book)
    split = parse_mcp_declaration(
        _mcp(require_approval={"never": {"read_only": True}, "always": {"tool_names": ["book"]}}),
        "tools[0]",
    )
    assert (needs_approval(split, add), needs_approval(split, book)) == (False, True)


@given(st.lists(st.sampled_from(["add", "book", "other"]), max_size=3), st.booleans())
def test_a_name_filter_allows_exactly_its_names(names: list[str], read_only: bool) -> None:
    declared = parse_mcp_declaration(_mcp(allowed_tools=names), "tools[0]")
    for tool in LISTED["tools"]:
        assert tool_allowed(declared, tool) == (tool["name"] in names)


def test_the_server_is_listed_first_and_its_listing_is_the_first_item() -> None:
    body = {"model": "m", "input": "add 2 and 3", "tools": [_mcp(require_approval="never")]}
    transition = ResponsesTransition(parse_request(body))
    chain, outcome = drive(
        transition,
        [completion(None, calls=[("c1", "add", {"a": 2, "b": 3})]), completion("5")],
        scope=_scope(ToolSchema("add", server_label="rooms")),
        tools={"add": lambda arguments: 5},
        listings={"rooms": LISTED},
    )
    assert isinstance(outcome, Complete)
    assert [step.kind for step in chain] == [
        StepKind.TOOL_LISTING,
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,
    ]
    assert chain[2].request_payload["server_label"] == "rooms"
    response = _assembled(chain, body, outcome)
    kinds = [item["type"] for item in response["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "message"]
    listing, call = response["output"][0], response["output"][1]
    assert listing["server_label"] == "rooms"
    assert [tool["name"] for tool in listing["tools"]] == ["add", "book"]
    assert (call["server_label"], call["output"], call["status"]) == ("rooms", "5", "completed")
    # No mcp tool is echoed: the spec's Response lists function tools only.
    assert response["tools"] == []


def test_a_failed_listing_fails_the_response_with_a_listing_item_that_says_why() -> None:
    body = {"model": "m", "input": "q", "tools": [_mcp()]}
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)),
        [],
        scope=_scope(),
        listings={"rooms": RuntimeError("401 Unauthorized")},
    )
    assert isinstance(outcome, Fail)
    assert [step.kind for step in chain] == [StepKind.TOOL_LISTING]
    response = _assembled(chain, body, outcome)
    assert response["status"] == "failed"
    assert response["output"][0]["type"] == "mcp_list_tools"
    assert "401" in response["output"][0]["error"]


def test_a_call_that_needs_approval_is_never_run_and_ends_the_response() -> None:
    rules = {"never": {"tool_names": ["add"]}, "always": {"tool_names": ["book"]}}
    body = {"model": "m", "input": "book it", "tools": [_mcp(require_approval=rules)]}
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)),
        [completion(None, calls=[("c1", "add", {"a": 1}), ("c2", "book", {"room": 7})])],
        scope=_scope(ADD, BOOK),
        listings={"rooms": LISTED},
    )
    assert isinstance(outcome, Complete)
    assert [s.tool_name for s in chain if s.kind is StepKind.TOOL_CALL] == ["add"]
    response = _assembled(chain, body, outcome)
    kinds = [item["type"] for item in response["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "mcp_approval_request"]
    request = response["output"][2]
    assert (request["name"], request["server_label"], json.loads(request["arguments"])) == (
        "book",
        "rooms",
        {"room": 7},
    )
    assert request["id"].startswith("mcpr_abc_")


def _history(decision: bool | None, reason: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": "book it"},
        {"type": "mcp_list_tools", "id": "mcpl_x_1", "server_label": "rooms", **LISTED},
        {
            "type": "mcp_approval_request",
            "id": "mcpr_x_2_0",
            "server_label": "rooms",
            "name": "book",
            "arguments": '{"room": 7}',
        },
    ]
    if decision is not None:
        answer: dict[str, Any] = {
            "type": "mcp_approval_response",
            "approval_request_id": "mcpr_x_2_0",
            "approve": decision,
        }
        if reason:
            answer["reason"] = reason
        items.append(answer)
    return items


def test_an_approved_call_runs_before_the_model_which_sees_its_result() -> None:
    body = {"model": "m", "input": _history(True), "tools": [_mcp()]}
    request = parse_request(body)
    assert [c.name for c in approved_calls(request.conversation)] == ["book"]
    assert conversation_listings(request.conversation)["rooms"][1]["name"] == "book"
    chain, outcome = drive(
        ResponsesTransition(request),
        [completion("Booked room 7.")],
        scope=_scope(ADD, BOOK),
        tools={"book": lambda arguments: {"booked": 7}},
    )
    assert isinstance(outcome, Complete)
    # Listed earlier in the conversation: not listed again.
    assert [step.kind for step in chain] == [StepKind.TOOL_CALL, StepKind.MODEL_CALL]
    messages = chain[1].request_payload["messages"]
    call_message = next(m for m in messages if m.get("tool_calls"))
    answer = messages[messages.index(call_message) + 1]
    assert call_message["tool_calls"][0]["id"] == answer["tool_call_id"] == "mcpr_x_2_0"
    assert json.loads(answer["content"]) == {"booked": 7}
    response = _assembled(chain, body, outcome)
    call = response["output"][0]
    assert (call["type"], call["approval_request_id"], call["name"]) == (
        "mcp_call",
        "mcpr_x_2_0",
        "book",
    )
    assert json.loads(call["output"]) == {"booked": 7}
    assert call["arguments"] == '{"room": 7}'


def test_a_refused_call_is_not_run_and_the_model_is_told_why() -> None:
    body = {"model": "m", "input": _history(False, "too dear"), "tools": [_mcp()]}
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)),
        [completion("Not booked.")],
        scope=_scope(ADD, BOOK),
    )
    assert isinstance(outcome, Complete)
    assert [step.kind for step in chain] == [StepKind.MODEL_CALL]
    told = [m for m in chain[0].request_payload["messages"] if m["role"] == "tool"]
    assert json.loads(told[0]["content"]) == {
        "error": "the user refused this call",
        "reason": "too dear",
    }


def test_an_approved_call_whose_mcp_call_is_in_the_history_never_runs_again() -> None:
    ran = {
        "type": "mcp_call",
        "id": "mcp_y_1",
        "server_label": "rooms",
        "name": "book",
        "arguments": '{"room": 7}',
        "output": '{"booked": 7}',
        "approval_request_id": "mcpr_x_2_0",
    }
    items = [*_history(True), ran, {"type": "message", "role": "user", "content": "thanks"}]
    request = parse_request({"model": "m", "input": items, "tools": [_mcp()]})
    assert approved_calls(request.conversation) == []
    chain, outcome = drive(
        ResponsesTransition(request), [completion("You're welcome.")], scope=_scope(ADD, BOOK)
    )
    assert isinstance(outcome, Complete)
    assert [step.kind for step in chain] == [StepKind.MODEL_CALL]
    messages = chain[0].request_payload["messages"]
    assert sum(len(m.get("tool_calls") or []) for m in messages) == 1  # the mcp_call alone


def test_an_approval_must_answer_a_request_of_a_declared_server() -> None:
    items = _history(True)
    request = parse_request({"model": "m", "input": items})
    refusal = approval_refusal(request.conversation, frozenset(), request.input_param)
    assert refusal is not None
    assert refusal.param == "input[3].approval_request_id"
    orphan = [items[0], items[3]]
    request = parse_request({"model": "m", "input": orphan, "tools": [_mcp()]})
    refusal = approval_refusal(request.conversation, frozenset({"rooms"}), request.input_param)
    assert refusal is not None
    assert "no mcp_approval_request" in str(refusal)


def test_an_mcp_tool_choice_forces_the_named_tool_on_the_first_call_and_echoes_as_function() -> (
    None
):
    body = {
        "model": "m",
        "input": "q",
        "tools": [_mcp(require_approval="never")],
        "tool_choice": {"type": "mcp", "server_label": "rooms", "name": "add"},
    }
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)),
        [completion(None, calls=[("c1", "add", {})]), completion("ok")],
        scope=_scope(ToolSchema("add", server_label="rooms")),
        listings={"rooms": LISTED},
    )
    model_calls = [s for s in chain if s.kind is StepKind.MODEL_CALL]
    assert model_calls[0].request_payload["tool_choice"] == {
        "type": "function",
        "function": {"name": "add"},
    }
    assert model_calls[1].request_payload["tool_choice"] == "auto"
    response = _assembled(chain, body, outcome)
    assert response["tool_choice"] == {"type": "function", "name": "add"}


def test_function_call_wire_still_shows_an_approval_request() -> None:
    body = {"model": "m", "input": "book it", "tools": [_mcp()]}
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)),
        [completion(None, calls=[("c2", "book", {"room": 7})])],
        scope=_scope(BOOK),
        listings={"rooms": LISTED},
    )
    response = assemble_response(
        chain,
        parse_request(body),
        response_id="resp_abc",
        created_at=0,
        outcome=outcome,
        wire=WireOptions(server_tool_items="function_call"),
    )
    check_emitted_response(response)
    assert [item["type"] for item in response["output"]] == [
        "mcp_list_tools",
        "mcp_approval_request",
    ]


def test_the_mcp_input_items_are_listed_in_the_sdk_shapes() -> None:
    import pydantic
    from openai.types.responses import ResponseItem

    from responseloop.openresponses._items import input_items
    from tests.openai_shapes import assert_no_unknown_fields

    request = parse_request({"model": "m", "input": _history(True, "fine"), "tools": [_mcp()]})
    listed = input_items(request, "resp_x")
    assert [item["type"] for item in listed] == [
        "message",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
    ]
    assert listed[3]["id"] == "mcpa_x_in3"
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseItem)
    for item in listed:
        assert_no_unknown_fields(adapter.validate_python(item))


def test_a_listing_is_no_tool_call_for_max_tool_calls_but_an_approved_call_is() -> None:
    body = {
        "model": "m",
        "input": "add twice",
        "tools": [_mcp(require_approval="never")],
        "max_tool_calls": 1,
    }
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)),
        [completion(None, calls=[("c1", "add", {}), ("c2", "add", {})]), completion("ok")],
        scope=_scope(ADD),
        tools={"add": lambda arguments: 1},
        listings={"rooms": LISTED},
    )
    assert isinstance(outcome, Complete)
    assert [s.kind for s in chain].count(StepKind.TOOL_CALL) == 1  # the listing did not count
    approved = {"model": "m", "input": _history(True), "tools": [_mcp()], "max_tool_calls": 1}
    chain, outcome = drive(
        ResponsesTransition(parse_request(approved)),
        [completion(None, calls=[("c3", "add", {})]), completion("ok")],
        scope=_scope(ToolSchema("add", server_label="rooms"), BOOK),
        tools={"book": lambda arguments: 1, "add": lambda arguments: 1},
    )
    # The approved call used the budget: the model's later call is answered as skipped.
    assert [s.tool_name for s in chain if s.kind is StepKind.TOOL_CALL] == ["book"]
    told = [m for m in chain[-1].request_payload["messages"] if m["role"] == "tool"]
    assert "max_tool_calls" in told[-1]["content"]


def test_a_listing_left_in_flight_is_always_run_again_on_resume() -> None:
    from responseloop import LoopConfig
    from responseloop.abc import ChainStep, StepState
    from responseloop.core import may_run_on_resume

    listing = ChainStep(
        id="s1",
        kind=StepKind.TOOL_LISTING,
        state=StepState.PROCESSING,
        sequence=1,
        request_payload={"server_label": "rooms"},
    )
    assert may_run_on_resume(listing, None, LoopConfig(refire_idempotent_tools=False))


def _approvals(*names_and_labels: tuple[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"type": "mcp_list_tools", "id": "mcpl_x_1", "server_label": "rooms", **LISTED}
    ]
    for number, (name, label) in enumerate(names_and_labels):
        request_id = f"mcpr_x_2_{number}"
        items.append(
            {
                "type": "mcp_approval_request",
                "id": request_id,
                "server_label": label,
                "name": name,
                "arguments": "{}",
            }
        )
        items.append(
            {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": True}
        )
    return items


def test_only_approvals_of_a_waiting_tool_of_the_named_server_run() -> None:
    other = ToolSchema("book_elsewhere", server_label="hotels", requires_approval=True)
    items = _approvals(("add", "rooms"), ("book_elsewhere", "rooms"), ("book", "rooms"))
    body = {"model": "m", "input": items, "tools": [_mcp(), _mcp(server_label="hotels")]}
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)),
        [completion("ok")],
        scope=_scope(ADD, BOOK, other),
        listings={"hotels": {"tools": [{"name": "book_elsewhere", "input_schema": {}}]}},
    )
    assert isinstance(outcome, Complete)
    # "add" waits for no approval, "book_elsewhere" is not a tool of "rooms": neither runs.
    assert [s.tool_name for s in chain if s.kind is StepKind.TOOL_CALL] == ["book"]


def test_approved_calls_past_max_tool_calls_do_not_run() -> None:
    items = _approvals(("book", "rooms"), ("book", "rooms"))
    body = {"model": "m", "input": items, "tools": [_mcp()], "max_tool_calls": 1}
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)), [completion("ok")], scope=_scope(ADD, BOOK)
    )
    assert isinstance(outcome, Complete)
    assert [s.kind for s in chain].count(StepKind.TOOL_CALL) == 1
    told = [m for m in chain[-1].request_payload["messages"] if m["role"] == "tool"]
    assert "did not run" in told[1]["content"]
