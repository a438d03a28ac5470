"""The default Open Responses transition, rule by rule of DESIGN §6."""

from __future__ import annotations

import json
from typing import Any

import pytest

from responseloop import ChatTransition, LoopConfig
from responseloop.abc import (
    AgentSpec,
    AppendSteps,
    Complete,
    Fail,
    StepDescriptor,
    StepKind,
    StepState,
    ToolKind,
    ToolSchema,
)
from responseloop.chat import ResponsesTransition
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import parse_request
from tests.chains import ModelError, completion, drive, model_step, scope_with, tool_step

CLIENT_TOOL = {"type": "function", "name": "ask_user", "parameters": {"type": "object"}}


def transition(**fields: Any) -> ResponsesTransition:
    return ResponsesTransition(parse_request({"model": "m", "input": "q", **fields}))


def test_an_empty_chain_makes_one_model_call_with_server_tools_offered() -> None:
    action = transition(instructions="sys").decide([], scope_with("search"), LoopConfig())
    assert action == AppendSteps(
        [
            StepDescriptor.model_call(
                {
                    "model": "m",
                    "messages": [
                        {"role": "system", "content": "sys"},
                        {"role": "user", "content": "q"},
                    ],
                    "tools": [
                        {
                            "type": "function",
                            "function": {
                                "name": "search",
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
    reply = completion("the answer")
    chain = [model_step(1, reply)]
    assert transition().decide(chain, scope_with(), LoopConfig()) == Complete(reply)


def test_server_side_calls_fan_out_in_call_order() -> None:
    reply = completion(calls=[("c1", "search", {"q": "a"}), ("c2", "fetch", '{"u": 1}')])
    action = transition().decide(
        [model_step(1, reply)], scope_with("search", "fetch"), LoopConfig()
    )
    assert action == AppendSteps(
        [
            StepDescriptor.tool_call("search", "c1", {"q": "a"}),
            StepDescriptor.tool_call("fetch", "c2", {"u": 1}),
        ]
    )


def test_the_follow_up_answers_every_call_under_its_own_call_id() -> None:
    reply = completion(calls=[("c1", "search", {"q": "a"}), ("c2", "search", {"q": "b"})])
    chain = [
        model_step(1, reply),
        tool_step(2, "search", "c1", {"hits": 1}),
        tool_step(3, "search", "c2", "plain text"),
    ]
    action = transition().decide(chain, scope_with("search"), LoopConfig())
    assert isinstance(action, AppendSteps)
    (step,) = action.steps
    assert step.kind is StepKind.MODEL_CALL
    assert step.request_payload["messages"] == [
        {"role": "user", "content": "q"},
        reply["choices"][0]["message"],
        {"role": "tool", "tool_call_id": "c1", "content": '{"hits": 1}'},
        {"role": "tool", "tool_call_id": "c2", "content": "plain text"},
    ]


def test_client_calls_complete_after_the_server_calls_of_the_same_turn() -> None:
    reply = completion(calls=[("c1", "ask_user", {}), ("c2", "search", {})])
    t = transition(tools=[CLIENT_TOOL])
    scope = scope_with("search")
    first = t.decide([model_step(1, reply)], scope, LoopConfig())
    assert first == AppendSteps([StepDescriptor.tool_call("search", "c2", {})])
    done = t.decide([model_step(1, reply), tool_step(2, "search", "c2", 1)], scope, LoopConfig())
    assert done == Complete(reply)


def test_only_client_calls_complete_at_once() -> None:
    reply = completion(calls=[("c1", "ask_user", {})])
    t = transition(tools=[CLIENT_TOOL])
    assert t.decide([model_step(1, reply)], scope_with("search"), LoopConfig()) == Complete(reply)


def test_a_tool_the_caller_may_not_use_is_never_run_and_is_answered_as_an_error() -> None:
    reply = completion(calls=[("c1", "rm_rf", {}), ("c2", "search", {})])
    chain, outcome = drive(transition(), [reply], scope=scope_with("search"))
    assert [s.tool_name for s in chain if s.is_tool] == ["search"]
    follow_up = chain[-1].request_payload["messages"]
    assert {
        "role": "tool",
        "tool_call_id": "c1",
        "content": json.dumps({"error": "tool 'rm_rf' is not available"}),
    } in follow_up
    assert isinstance(outcome, Complete)


def test_an_unknown_tool_fails_the_response_when_configured() -> None:
    reply = completion(calls=[("c1", "rm_rf", {})])
    outcome = transition().decide(
        [model_step(1, reply)], scope_with("search"), LoopConfig(unknown_tools="fail")
    )
    assert isinstance(outcome, Fail)
    assert outcome.error["code"] == "server_error"
    assert "rm_rf" in outcome.error["message"]


def boom(arguments: Any) -> Any:
    raise RuntimeError("disk on fire")


def test_a_tool_error_is_fed_back_to_the_model_by_default() -> None:
    reply = completion(calls=[("c1", "search", {})])
    chain, outcome = drive(
        transition(), [reply], scope=scope_with("search"), tools={"search": boom}
    )
    assert chain[1].state is StepState.FAILED
    assert chain[2].request_payload["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": json.dumps({"error": "disk on fire"}),
    }
    assert isinstance(outcome, Complete)


def test_a_tool_error_fails_the_response_when_configured() -> None:
    reply = completion(calls=[("c1", "search", {}), ("c2", "search", {})])
    calls = iter([{"ok": 1}])

    def first_ok_then_boom(arguments: Any) -> Any:
        return next(calls)  # the second call raises StopIteration

    _, outcome = drive(
        transition(),
        [reply],
        scope=scope_with("search"),
        tools={"search": first_ok_then_boom},
        config=LoopConfig(tool_errors="fail"),
    )
    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "tool_error"
    assert outcome.error["code"] == "server_error"


def test_a_failed_model_call_fails_with_its_error() -> None:
    error = {"type": "upstream_error", "code": "server_error", "message": "HTTP 500", "status": 500}
    _, outcome = drive(transition(), [ModelError(error)], scope=scope_with())
    assert outcome == Fail(error)


def test_an_abandoned_step_fails_with_a_stable_code() -> None:
    abandoned = {"type": "step_abandoned", "code": "server_error", "message": "worker died"}
    chain = [model_step(1, None, state=StepState.FAILED, error=abandoned)]
    assert transition().decide(chain, scope_with(), LoopConfig()) == Fail(abandoned)


def test_a_cancelled_model_call_without_error_still_fails_with_an_sdk_code() -> None:
    chain = [model_step(1, None, state=StepState.CANCELLED)]
    outcome = transition().decide(chain, scope_with(), LoopConfig())
    assert isinstance(outcome, Fail)
    assert outcome.error["code"] == "server_error"
    assert outcome.error["type"] == "step_failed"


def test_a_forced_tool_choice_binds_only_the_first_model_call() -> None:
    t = transition(tool_choice={"type": "function", "name": "search"})
    reply = completion(calls=[("c1", "search", {})])
    chain, _ = drive(t, [reply], scope=scope_with("search"))
    assert chain[0].request_payload["tool_choice"] == {
        "type": "function",
        "function": {"name": "search"},
    }
    assert chain[2].request_payload["tool_choice"] == "auto"


def test_required_tool_choice_binds_only_the_first_model_call() -> None:
    reply = completion(calls=[("c1", "search", {})])
    chain, _ = drive(transition(tool_choice="required"), [reply], scope=scope_with("search"))
    assert [s.request_payload.get("tool_choice") for s in chain if not s.is_tool] == [
        "required",
        "auto",
    ]


def test_calls_past_max_tool_calls_are_answered_as_skipped() -> None:
    replies = [
        completion(calls=[("c1", "search", {}), ("c2", "search", {}), ("c3", "search", {})]),
        completion(calls=[("c4", "search", {})]),
        completion("final"),
    ]
    chain, outcome = drive(transition(max_tool_calls=2), replies, scope=scope_with("search"))
    assert [s.request_payload["call_id"] for s in chain if s.is_tool] == ["c1", "c2"]
    assert [s.kind for s in chain] == [
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.TOOL_CALL,
        StepKind.MODEL_CALL,  # c3 was skipped: straight back to the model
        StepKind.MODEL_CALL,  # c4 too: the budget is spent
    ]
    skipped = json.dumps(
        {
            "error": "not run: this response may make at most 2 tool calls "
            "(max_tool_calls); answer without this call"
        }
    )
    last_messages = chain[-1].request_payload["messages"]
    tool_messages = [m for m in last_messages if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"] == skipped) for m in tool_messages] == [
        ("c1", False),
        ("c2", False),
        ("c3", True),
        ("c4", True),
    ]
    assert outcome == Complete(replies[-1])


def test_a_client_tool_named_like_a_server_tool_fails_naming_the_field() -> None:
    t = transition(tools=[{"type": "function", "name": "search"}])
    outcome = t.decide([], scope_with("search"), LoopConfig())
    assert isinstance(outcome, Fail)
    assert outcome.error["param"] == "tools[0].name"
    assert outcome.error["type"] == "invalid_request_error"


def test_an_untranslatable_request_is_rejected_when_the_transition_is_built() -> None:
    request = parse_request(
        {"model": "m", "input": [{"type": "function_call_output", "call_id": "x", "output": ""}]}
    )
    with pytest.raises(InvalidRequestError) as caught:
        ResponsesTransition(request)
    assert caught.value.param == "input[0].call_id"


def test_sub_agents_get_a_chat_transition_of_their_own() -> None:
    tool = ToolSchema(
        "researcher",
        kind=ToolKind.AGENT,
        agent=AgentSpec(instructions="dig deep", model="small"),
    )
    step = tool_step(2, "researcher", "c1", arguments={"input": "find x"})
    sub = transition(stream=True).sub_agent(step, tool)
    expected: dict[str, Any] = {
        "model": "small",
        "messages": [
            {"role": "system", "content": "dig deep"},
            {"role": "user", "content": "find x"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert sub == ChatTransition(expected, result_text=True)


def test_decisions_depend_on_the_chain_alone() -> None:
    reply = completion(calls=[("c1", "search", {})])
    chain = [model_step(1, reply), tool_step(2, "search", "c1", 1)]
    t = transition()
    assert t.decide(chain, scope_with("search"), LoopConfig()) == t.decide(
        list(chain), scope_with("search"), LoopConfig()
    )


def test_tool_settings_are_left_out_when_no_tool_is_offered_at_all() -> None:
    t = transition(tool_choice="required", parallel_tool_calls=False)
    action = t.decide([], scope_with(), LoopConfig())
    assert isinstance(action, AppendSteps)
    assert action.steps[0].request_payload == {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
    }
    with_server_tool = t.decide([], scope_with("search"), LoopConfig())
    assert isinstance(with_server_tool, AppendSteps)
    payload = with_server_tool.steps[0].request_payload
    assert (payload["tool_choice"], payload["parallel_tool_calls"]) == ("required", False)


def test_a_fan_out_recorded_in_part_is_completed_not_repeated() -> None:
    reply = completion(calls=[("c1", "search", {"q": 1}), ("c2", "search", {"q": 2})])
    chain = [model_step(1, reply), tool_step(2, "search", "c1", "r1")]
    action = transition().decide(chain, scope_with("search"), LoopConfig())
    assert action == AppendSteps([StepDescriptor.tool_call("search", "c2", {"q": 2})])


def test_a_call_id_repeated_within_a_turn_still_pairs_one_to_one() -> None:
    reply = completion(calls=[("dup", "search", {"n": 1}), ("dup", "search", {"n": 2})])
    chain, _ = drive(
        transition(), [reply], scope=scope_with("search"), tools={"search": lambda a: a}
    )
    assert [s.request_payload["arguments"] for s in chain if s.is_tool] == [{"n": 1}, {"n": 2}]
    tool_messages = [m for m in chain[-1].request_payload["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ['{"n": 1}', '{"n": 2}']
