"""The table of output item kinds: every item the assembly makes is of a kind in it, named
with its prefix, and announced in progress the way the table says."""

from __future__ import annotations

from typing import Any

from responseloop.abc import Complete, Scope, ToolSchema
from responseloop.chat import ResponsesTransition
from responseloop.openresponses import WireOptions, assemble_response, parse_request
from responseloop.openresponses._item_kinds import OUTPUT_ITEM_KINDS, in_progress, item_id
from tests.chains import completion, drive, scope_with


def test_ids_join_the_prefix_the_response_and_the_place() -> None:
    assert item_id("message", "abc", 3) == "msg_abc_3"
    assert item_id("function_call", "abc", 1, 0) == "fc_abc_1_0"
    assert item_id("function_call_output", "abc", 2) == "fco_abc_2"
    assert item_id("reasoning", "abc", 1) == "rs_abc_1"
    assert item_id("mcp_call", "abc", 1, 0) == "mcp_abc_1_0"


def test_every_assembled_item_is_of_a_known_kind_and_named_by_it() -> None:
    first = completion("Checking.", calls=[("c1", "weather", {"c": 1})], reasoning_content="think")
    chain, outcome = drive(
        ResponsesTransition(parse_request({"model": "m", "input": "q"})),
        [first, completion("Done.")],
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {"t": 1}},
    )
    assert isinstance(outcome, Complete)
    output = [
        item
        for server_tool_items in ("mcp_call", "function_call")
        for item in assemble_response(
            chain,
            parse_request({"model": "m", "input": "q"}),
            response_id="resp_abc",
            created_at=0,
            outcome=outcome,
            wire=WireOptions(server_tool_items=server_tool_items),
        )["output"]
    ]
    patch = {"model": "m", "input": "q", "tools": [{"type": "custom", "name": "apply_patch"}]}
    custom_chain, custom_outcome = drive(
        ResponsesTransition(parse_request(patch)),
        [completion("", calls=[("c2", "apply_patch", {"input": "*** Begin Patch"})])],
        scope=scope_with(),
    )
    custom = assemble_response(
        custom_chain,
        parse_request(patch),
        response_id="resp_abc",
        created_at=0,
        outcome=custom_outcome,
    )
    output += custom["output"]
    output += _declared_mcp_items()
    output += _compaction_items()
    kinds = [item["type"] for item in output]
    assert set(kinds) == set(OUTPUT_ITEM_KINDS)
    for item in output:
        assert item["id"].startswith(OUTPUT_ITEM_KINDS[item["type"]].id_prefix + "_abc_")
        shown = in_progress(item)
        # custom_tool_call items have no status (the SDK's Response declares none).
        assert (shown["id"], shown["type"], shown.get("status", "in_progress")) == (
            item["id"],
            item["type"],
            "in_progress",
        )


def _compaction_items() -> list[dict[str, Any]]:
    """The item of a compaction (a ``compaction_trigger`` request)."""
    body: dict[str, Any] = {
        "model": "m",
        "input": [{"role": "user", "content": "q"}, {"type": "compaction_trigger"}],
    }
    chain, outcome = drive(
        ResponsesTransition(parse_request(body)), [completion("summary")], scope=scope_with()
    )
    return list(
        assemble_response(
            chain,
            parse_request(body),
            response_id="resp_abc",
            created_at=0,
            outcome=outcome,
            wire=WireOptions(reasoning_key=b"k"),
        )["output"]
    )


def _declared_mcp_items() -> list[dict[str, Any]]:
    """The items of request-declared MCP: a listing, an approval request, and (next turn)
    the approved call."""
    listed = {"tools": [{"name": "book", "input_schema": {"type": "object"}}]}
    mcp = {"type": "mcp", "server_label": "rooms", "server_url": "https://mcp.test"}
    scope = Scope("resp_abc", None, 0, {"book": ToolSchema("book", requires_approval=True)})
    first = {"model": "m", "input": "book", "tools": [mcp]}
    chain, outcome = drive(
        ResponsesTransition(parse_request(first)),
        [completion(None, calls=[("c1", "book", {})])],
        scope=scope,
        listings={"rooms": listed},
    )
    paused = assemble_response(
        chain, parse_request(first), response_id="resp_abc", created_at=0, outcome=outcome
    )["output"]
    answer = {"type": "mcp_approval_response", "approval_request_id": paused[1]["id"]}
    second = {"model": "m", "input": [*paused, {**answer, "approve": True}], "tools": [mcp]}
    chain, outcome = drive(ResponsesTransition(parse_request(second)), [], scope=scope)
    approved = assemble_response(
        chain, parse_request(second), response_id="resp_abc", created_at=0, outcome=outcome
    )["output"]
    return [*paused, *approved]


def test_a_kind_outside_the_table_is_shown_whole_in_progress() -> None:
    item = {"id": "x_1", "type": "something_new", "status": "completed", "summary": "s"}
    assert in_progress(item) == {**item, "status": "in_progress"}
