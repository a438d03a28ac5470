"""ChatTransition: the pure default decision function, tested directly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import ChatTransition, LoopConfig
from responseloop.abc import (
    AppendSteps,
    ChainStep,
    Complete,
    Fail,
    HttpRequest,
    Scope,
    StepDescriptor,
    StepKind,
    StepState,
    ToolSchema,
)
from responseloop.testing import ChatReply

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CONFIG = LoopConfig()


def scope(*tools: str) -> Scope:
    return Scope("resp_1", None, 0, {name: ToolSchema(name) for name in tools})


def model_step(reply: ChatReply, sequence: int = 1) -> ChainStep:
    payload = reply.completion(HttpRequest("http://x", BODY), sequence)
    return ChainStep(
        f"s{sequence}", StepKind.MODEL_CALL, StepState.COMPLETED, sequence, BODY,
        response_payload=payload,
    )  # fmt: skip


def tool_step(call_id: str, sequence: int, output: Any = "ok", failed: bool = False) -> ChainStep:
    payload = StepDescriptor.tool_call("t", call_id, {}).request_payload
    if failed:
        error = {"type": "tool_error", "message": "boom"}
        return ChainStep(
            f"s{sequence}", StepKind.TOOL_CALL, StepState.FAILED, sequence, payload, error=error
        )
    return ChainStep(
        f"s{sequence}", StepKind.TOOL_CALL, StepState.COMPLETED, sequence, payload,
        response_payload=output,
    )  # fmt: skip


def test_an_empty_chain_starts_with_one_model_call_offering_the_server_tools() -> None:
    action = ChatTransition(BODY).decide([], scope("t"), CONFIG)
    assert action == AppendSteps(
        [
            StepDescriptor.model_call(
                {
                    **BODY,
                    "tools": [
                        {
                            "type": "function",
                            "function": {
                                "name": "t",
                                "description": "",
                                "parameters": {"type": "object", "properties": {}},
                            },
                        }
                    ],
                }
            )
        ]
    )


def test_a_final_message_completes_with_the_completion() -> None:
    step = model_step(ChatReply.text("bye"))
    assert ChatTransition(BODY).decide([step], scope(), CONFIG) == Complete(step.response_payload)


def test_server_tool_calls_fan_out_in_call_order_with_parsed_arguments() -> None:
    step = model_step(ChatReply.calls(("t", {"a": 1}, "c1"), ("t", '{"b": 2}', "c2")))
    action = ChatTransition(BODY).decide([step], scope("t"), CONFIG)
    assert action == AppendSteps(
        [
            StepDescriptor.tool_call("t", "c1", {"a": 1}),
            StepDescriptor.tool_call("t", "c2", {"b": 2}),
        ]
    )


def test_arguments_that_are_not_json_reach_the_tool_as_the_raw_text() -> None:
    step = model_step(ChatReply.calls(("t", "{not json", "c1")))
    action = ChatTransition(BODY).decide([step], scope("t"), CONFIG)
    assert action == AppendSteps([StepDescriptor.tool_call("t", "c1", "{not json")])


def test_the_follow_up_answers_every_call_under_its_own_call_id() -> None:
    first = model_step(ChatReply.calls(("t", {}, "c1"), ("t", {}, "c2"), ("nope", {}, "c3")))
    chain = [first, tool_step("c1", 2, {"x": 1}), tool_step("c2", 3, failed=True)]
    action = ChatTransition({**BODY, "tool_choice": "required"}).decide(chain, scope("t"), CONFIG)
    assert isinstance(action, AppendSteps)
    body = action.steps[0].request_payload
    assert body["tool_choice"] == "auto"  # a forced choice binds only the first call
    assert body["messages"][0] == BODY["messages"][0]
    assert body["messages"][1]["tool_calls"][0]["id"] == "c1"
    assert body["messages"][2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": '{"x": 1}'},
        {"role": "tool", "tool_call_id": "c2", "content": '{"error": "boom"}'},
        {
            "role": "tool",
            "tool_call_id": "c3",
            "content": '{"error": "tool \'nope\' is not available"}',
        },
    ]


def test_a_failed_tool_fails_the_scope_when_configured() -> None:
    chain = [model_step(ChatReply.calls(("t", {}, "c1"))), tool_step("c1", 2, failed=True)]
    action = ChatTransition(BODY).decide(chain, scope("t"), LoopConfig(tool_errors="fail"))
    assert action == Fail({"type": "tool_error", "code": "server_error", "message": "boom"})


def test_unknown_tools_fail_the_scope_when_configured() -> None:
    chain = [model_step(ChatReply.calls(("nope", {}, "c1")))]
    action = ChatTransition(BODY).decide(chain, scope("t"), LoopConfig(unknown_tools="fail"))
    assert isinstance(action, Fail)
    assert "nope" in action.error["message"]


def test_a_failed_model_call_fails_with_its_error() -> None:
    error = {"type": "upstream_error", "code": "server_error", "message": "x", "status": 500}
    step = ChainStep("s1", StepKind.MODEL_CALL, StepState.FAILED, 1, BODY, error=error)
    assert ChatTransition(BODY).decide([step], scope(), CONFIG) == Fail(error)


def test_a_client_tool_clashing_with_a_server_tool_is_refused() -> None:
    client = {"type": "function", "function": {"name": "t", "parameters": {}}}
    action = ChatTransition({**BODY, "tools": [client]}).decide([], scope("t"), CONFIG)
    assert isinstance(action, Fail)
    assert action.error["type"] == "invalid_request_error"


def test_the_refusal_is_the_one_decide_fails_with_and_none_without_a_clash() -> None:
    client = {"type": "function", "function": {"name": "t", "parameters": {}}}
    transition = ChatTransition({**BODY, "tools": [client]})
    refusal = transition.refusal(scope("t"))
    assert refusal is not None
    assert refusal.param == "tools[0].name"
    assert transition.decide([], scope("t"), CONFIG) == Fail(refusal.to_error())
    assert transition.refusal(scope("other")) is None
    assert ChatTransition(BODY).refusal(scope("t")) is None


@pytest.mark.parametrize(
    ("arguments", "task"),
    [({"input": "do it"}, "do it"), ({"q": 1}, '{"q": 1}'), ("plain", "plain")],
)
def test_a_sub_agent_gets_its_task_from_the_call_arguments(arguments: Any, task: str) -> None:
    from responseloop.abc import AgentSpec, ToolKind

    tool = ToolSchema("helper", kind=ToolKind.AGENT, agent=AgentSpec(instructions="Be brief."))
    step = ChainStep(
        "s2", StepKind.TOOL_CALL, StepState.PROCESSING, 2,
        StepDescriptor.tool_call("helper", "c1", arguments).request_payload,
    )  # fmt: skip
    sub = ChatTransition(BODY).sub_agent(step, tool)
    assert sub.body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": task},
        ],
    }
    final = model_step(ChatReply.text("short answer"))
    assert sub.decide([final], scope(), CONFIG) == Complete("short answer")


CLIENT_BODY: dict[str, Any] = {
    **BODY,
    "tools": [
        {"type": "function", "function": {"name": "lookup"}},
        {"type": "function", "function": {"name": "send"}},
    ],
    "tool_choice": "required",
}


def test_allowed_tools_narrow_what_every_model_call_is_offered() -> None:
    transition = ChatTransition(CLIENT_BODY, allowed_tools=["lookup", "t"])
    first = transition.decide([], scope("t", "u"), CONFIG)
    assert isinstance(first, AppendSteps)
    offered = [tool["function"]["name"] for tool in first.steps[0].request_payload["tools"]]
    assert offered == ["lookup", "t"]
    chain = [model_step(ChatReply.calls(("t", {}, "c1"))), tool_step("c1", 2)]
    later = transition.decide(chain, scope("t", "u"), CONFIG)
    assert isinstance(later, AppendSteps)
    body = later.steps[0].request_payload
    assert [tool["function"]["name"] for tool in body["tools"]] == ["lookup", "t"]
    assert body["tool_choice"] == "auto"


@pytest.mark.parametrize("name", ["u", "send"])  # a server tool, a client tool
def test_a_call_outside_the_allowed_tools_is_refused_like_an_unknown_tool(name: str) -> None:
    transition = ChatTransition(CLIENT_BODY, allowed_tools=["lookup", "t"])
    chain = [model_step(ChatReply.calls((name, {}, "c1"), ("t", {}, "c2")))]
    action = transition.decide(chain, scope("t", "u"), CONFIG)
    assert action == AppendSteps([StepDescriptor.tool_call("t", "c2", {})])  # never run
    chain += [tool_step("c2", 2)]
    follow_up = transition.decide(chain, scope("t", "u"), CONFIG)
    assert isinstance(follow_up, AppendSteps)  # the loop goes on: no client call pending
    answers = follow_up.steps[0].request_payload["messages"][2:]
    assert answers[0] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": f'{{"error": "tool \'{name}\' is not available"}}',
    }
    failing = transition.decide(chain[:1], scope("t", "u"), LoopConfig(unknown_tools="fail"))
    assert isinstance(failing, Fail)
    assert name in failing.error["message"]


def test_without_allowed_tools_every_tool_may_be_called() -> None:
    chain = [model_step(ChatReply.calls(("send", {}, "c1")))]
    step = chain[0]
    assert ChatTransition(CLIENT_BODY).decide(chain, scope("t"), CONFIG) == Complete(
        step.response_payload
    )


def test_allowed_tools_naming_no_tool_are_refused_with_their_index() -> None:
    transition = ChatTransition(CLIENT_BODY, allowed_tools=["lookup", "t", "ghost"])
    refusal = transition.refusal(scope("t"))
    assert refusal is not None
    assert refusal.param == "tool_choice.tools[2].name"
    assert ChatTransition(CLIENT_BODY, allowed_tools=["send", "t"]).refusal(scope("t")) is None


KNOWN = ["lookup", "send", "t", "u"]  # two client tools, then two server-side ones


@given(st.lists(st.sampled_from(KNOWN), min_size=1, unique=True), st.sampled_from(KNOWN))
def test_any_allowed_subset_is_what_is_offered_and_the_only_thing_run(
    allowed: list[str], called: str
) -> None:
    transition = ChatTransition(CLIENT_BODY, allowed_tools=allowed)
    assert transition.refusal(scope("t", "u")) is None
    first = transition.decide([], scope("t", "u"), CONFIG)
    assert isinstance(first, AppendSteps)
    offered = [tool["function"]["name"] for tool in first.steps[0].request_payload["tools"]]
    assert offered == [name for name in KNOWN if name in allowed]
    action = transition.decide(
        [model_step(ChatReply.calls((called, {}, "c1")))], scope("t", "u"), CONFIG
    )
    if called not in allowed:  # refused like an unknown tool: answered, the loop goes on
        assert isinstance(action, AppendSteps)
        assert action.steps[0].kind is StepKind.MODEL_CALL
    elif called in ("t", "u"):  # an allowed server-side tool runs
        assert action == AppendSteps([StepDescriptor.tool_call(called, "c1", {})])
    else:  # an allowed client tool goes back to the client
        assert isinstance(action, Complete)
