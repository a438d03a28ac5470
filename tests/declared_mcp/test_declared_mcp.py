"""Request-declared MCP servers through the official openai client, created and streamed:
listing, ``allowed_tools``, calls with and without approval, refusals, a later turn
reusing the listing, and a client replaying the whole history (``store: false``)."""

from __future__ import annotations

import json

import pytest

from tests.declared_mcp import model
from tests.declared_mcp.conftest import SERVERS, STREAMED, Stack, as_input, create

ALL_TOOLS = ["add", "explode", "peek", "record", "shout", "sleepy"]
EVERY = "Offered: " + ",".join(ALL_TOOLS)


@SERVERS
@STREAMED
async def test_a_declared_server_lists_its_tools_first(
    stack: Stack, label: str, streamed: bool
) -> None:
    tool = stack.declare(label, require_approval="never")
    answer = await create(stack.client, streamed, model="m", input="hello", tools=[tool])
    assert answer.kinds == ["mcp_list_tools", "message"]
    listing = answer.output[0]
    assert listing["server_label"] == label
    assert listing.get("error") is None
    listed = {t["name"]: t for t in listing["tools"]}
    assert sorted(listed) == ALL_TOOLS
    assert listed["add"]["input_schema"]["required"] == ["a", "b"]
    assert listed["peek"]["annotations"]["readOnlyHint"] is True
    assert answer.text == EVERY  # the model was offered every tool
    assert stack.log(label).count("list") == 1
    if streamed:
        listed_events = [e for e in answer.events if e.startswith("response.mcp_list_tools")]
        assert listed_events == [
            "response.mcp_list_tools.in_progress",
            "response.mcp_list_tools.completed",
        ]
        assert answer.events.index("response.mcp_list_tools.completed") < answer.events.index(
            "response.output_text.delta"
        )


@STREAMED
@pytest.mark.parametrize(
    ("allowed", "seen"),
    [
        (["add", "peek"], ["add", "peek"]),
        ({"tool_names": ["shout"]}, ["shout"]),
        ({"read_only": True}, ["peek"]),
        ({"tool_names": ["add", "peek"], "read_only": True}, ["peek"]),
    ],
    ids=["names", "filter_names", "read_only", "names_and_read_only"],
)
async def test_allowed_tools_limit_what_the_model_sees(
    stack: Stack, streamed: bool, allowed: object, seen: list[str]
) -> None:
    # Over HTTP: no server process to start per test.
    tool = stack.declare("remote", require_approval="never", allowed_tools=allowed)
    answer = await create(stack.client, streamed, model="m", input="hello", tools=[tool])
    assert answer.text == "Offered: " + ",".join(seen)
    assert model.offered(stack.upstream.bodies[-1]) == seen
    assert answer.kinds == ["mcp_list_tools", "message"]
    # The listing shows what the model may call, as OpenAI's does.
    assert [t["name"] for t in answer.output[0]["tools"]] == seen


@STREAMED
async def test_a_tool_not_allowed_is_never_run(stack: Stack, streamed: bool) -> None:
    # The model calls a tool it was not offered: the call is answered with an error.
    tool = stack.declare("ops", require_approval="never", allowed_tools=["add"])
    await create(
        stack.client, streamed, model="m", input='force call record {"note": "x"}', tools=[tool]
    )
    assert stack.stdio_log.count("record x") == 0
    assert "error" in model.tool_results(stack.upstream.bodies[-1])[0]


@SERVERS
@STREAMED
async def test_a_call_needing_no_approval_runs(stack: Stack, label: str, streamed: bool) -> None:
    tool = stack.declare(label, require_approval="never")
    answer = await create(
        stack.client,
        streamed,
        model="m",
        input='call add {"a": 2, "b": 3} and call record {"note": "n1"}',
        tools=[tool],
    )
    assert answer.kinds == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    add, record = answer.items("mcp_call")
    assert (add["name"], add["server_label"], add["status"]) == ("add", label, "completed")
    assert json.loads(add["arguments"]) == {"a": 2, "b": 3}
    assert "5" in add["output"]
    assert add.get("error") is None
    assert record["output"] == "recorded n1"
    assert add.get("approval_request_id") is None
    assert stack.log(label).count("record n1") == 1
    # The upstream was told both results, and answered from them.
    told = model.tool_results(stack.upstream.bodies[-1])
    assert len(told) == 2
    assert "5" in told[0]
    assert told[1] == "recorded n1"
    assert answer.text == "Result: " + " | ".join(told)
    if streamed:
        assert answer.events.count("response.mcp_call.completed") == 2
        assert answer.events.count("response.mcp_call.failed") == 0


@STREAMED
async def test_a_failing_call_is_an_mcp_call_with_an_error_and_the_model_is_told(
    stack: Stack, streamed: bool
) -> None:
    tool = stack.declare("ops", require_approval="never")
    answer = await create(
        stack.client, streamed, model="m", input='call explode {"reason": "boom"}', tools=[tool]
    )
    assert answer.kinds == ["mcp_list_tools", "mcp_call", "message"]
    (call,) = answer.items("mcp_call")
    assert call["status"] == "failed"
    assert call["error"]
    assert "explode" in json.dumps(call["error"])
    (told,) = model.tool_results(stack.upstream.bodies[-1])
    assert "error" in told
    assert "explode" in told
    assert answer.text == f"Result: {told}"
    if streamed:
        assert "response.mcp_call.failed" in answer.events


@SERVERS
@STREAMED
async def test_an_approved_call_runs_once_in_the_next_response(
    stack: Stack, label: str, streamed: bool
) -> None:
    tools = [stack.declare(label)]  # require_approval defaults to "always", as with OpenAI
    log = stack.log(label)
    first = await create(
        stack.client, streamed, model="m", input='call record {"note": "a1"}', tools=tools
    )
    assert first.response["status"] == "completed"
    assert first.kinds == ["mcp_list_tools", "mcp_approval_request"]
    (request,) = first.items("mcp_approval_request")
    assert (request["name"], request["server_label"]) == ("record", label)
    assert json.loads(request["arguments"]) == {"note": "a1"}
    assert log.count("record a1") == 0  # nothing ran before the approval
    assert len(stack.upstream.received) == 1

    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"]}
    second = await create(
        stack.client,
        streamed,
        model="m",
        previous_response_id=first.id,
        input=[{**approval, "approve": True}],
        tools=tools,
    )
    assert second.kinds == ["mcp_call", "message"]  # listed already: not listed again
    (call,) = second.items("mcp_call")
    assert call["approval_request_id"] == request["id"]
    assert (call["name"], call["output"], call["status"]) == ("record", "recorded a1", "completed")
    assert log.count("record a1") == 1
    assert model.tool_results(stack.upstream.bodies[-1]) == ["recorded a1"]
    assert second.text == "Result: recorded a1"

    assert await stack.listings(second.id) == 0

    # A later turn reuses the listing and never runs the approved call again.
    listed = log.count("list")
    third = await create(
        stack.client,
        streamed,
        model="m",
        previous_response_id=second.id,
        input="what now?",
        tools=tools,
    )
    assert third.kinds == ["message"]
    assert third.text == EVERY
    assert log.count("record a1") == 1
    assert log.count("list") == listed  # the server was not asked again
    assert [await stack.listings(a.id) for a in (first, second, third)] == [1, 0, 0]


@STREAMED
async def test_a_refused_call_never_runs_and_the_model_is_told(
    stack: Stack, streamed: bool
) -> None:
    tools = [stack.declare("remote", require_approval="always")]
    first = await create(
        stack.client, streamed, model="m", input='call record {"note": "r1"}', tools=tools
    )
    (request,) = first.items("mcp_approval_request")
    refusal = {
        "type": "mcp_approval_response",
        "approval_request_id": request["id"],
        "approve": False,
        "reason": "not today",
    }
    second = await create(
        stack.client,
        streamed,
        model="m",
        previous_response_id=first.id,
        input=[refusal],
        tools=tools,
    )
    assert second.kinds == ["message"]
    (told,) = model.tool_results(stack.upstream.bodies[-1])
    assert "refused" in told
    assert "not today" in told
    assert second.text == f"Result: {told}"
    assert stack.http_mcp.log.count("record r1") == 0


@STREAMED
async def test_approval_filters_gate_only_the_tools_they_name(stack: Stack, streamed: bool) -> None:
    # Read-only tools need no approval; anything else waits.
    tools = [stack.declare("remote", require_approval={"never": {"read_only": True}})]
    answer = await create(
        stack.client,
        streamed,
        model="m",
        input='call peek {"key": "k"} and call record {"note": "f1"}',
        tools=tools,
    )
    assert answer.kinds == ["mcp_list_tools", "mcp_call", "mcp_approval_request"]
    (call,) = answer.items("mcp_call")
    assert (call["name"], call["output"]) == ("peek", "value-of-k")
    assert answer.items("mcp_approval_request")[0]["name"] == "record"
    assert stack.http_mcp.log.count("record f1") == 0


@STREAMED
async def test_a_replayed_history_runs_an_approved_call_once(stack: Stack, streamed: bool) -> None:
    tools = [stack.declare("remote")]
    log = stack.log("remote")
    user = {"role": "user", "content": 'call record {"note": "p1"}'}
    first = await create(stack.client, streamed, model="m", store=False, input=[user], tools=tools)
    (request,) = first.items("mcp_approval_request")
    approval = {
        "type": "mcp_approval_response",
        "approval_request_id": request["id"],
        "approve": True,
    }
    history = [user, *as_input(first.output), approval]
    second = await create(
        stack.client, streamed, model="m", store=False, input=history, tools=tools
    )
    assert second.kinds == ["mcp_call", "message"]
    assert second.items("mcp_call")[0]["approval_request_id"] == request["id"]
    assert log.count("record p1") == 1
    assert second.text == "Result: recorded p1"

    # The approval is still in the history, and so is the call it made: not run again.
    history += [*as_input(second.output), {"role": "user", "content": "what now?"}]
    listed = log.count("list")
    third = await create(stack.client, streamed, model="m", store=False, input=history, tools=tools)
    assert third.kinds == ["message"]
    assert third.text == EVERY
    assert log.count("record p1") == 1
    assert log.count("list") == listed  # the replayed mcp_list_tools item is reused
