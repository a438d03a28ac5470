"""Assembly of the Response object from a chain (DESIGN §7), checked against the SDK."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from responseloop import LoopConfig
from responseloop.abc import ChainStep, Complete, Fail, ResponseStatus, StepState
from responseloop.chat import ResponsesTransition
from responseloop.exceptions import MaxIterationsExceeded, UpstreamStatusError
from responseloop.openresponses import (
    ResponsesRequest,
    WireOptions,
    parse_request,
)
from responseloop.openresponses import (
    assemble_response as _assemble_response,
)
from responseloop.openresponses._sealing import open_reasoning
from tests.chains import ModelError, completion, drive, model_step, scope_with, tool_step
from tests.wire_checks import check_emitted_response

# These tests are about the 0.1 shape of server-side calls (function_call +
# function_call_output); tests/openresponses/test_server_tool_items.py covers mcp_call.
FUNCTION_CALL_ITEMS = WireOptions(server_tool_items="function_call")


def assemble_response(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return _assemble_response(*args, **{"wire": FUNCTION_CALL_ITEMS, **kwargs})


CREATED = 1_750_000_000


def assemble(
    chain: Sequence[ChainStep],
    outcome: Complete | Fail | ResponseStatus,
    request: ResponsesRequest | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = assemble_response(
        chain,
        request or parse_request({"model": "m", "input": "q"}),
        response_id="resp_abc",
        created_at=CREATED,
        outcome=outcome,
        **fields,
    )
    check_emitted_response(response)
    return response


def test_a_text_answer() -> None:
    reply = completion("Hello!")
    response = assemble([model_step(1, reply)], Complete(reply), completed_at=CREATED + 2)
    assert response["output"] == [
        {
            "id": "msg_abc_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
        }
    ]
    parsed = check_emitted_response(response)
    assert parsed.output_text == "Hello!"
    assert (parsed.id, parsed.object, parsed.status) == ("resp_abc", "response", "completed")
    assert (parsed.created_at, parsed.completed_at) == (CREATED, CREATED + 2)
    assert parsed.error is None
    assert parsed.incomplete_details is None


def test_server_tool_outputs_follow_their_calls() -> None:
    first = completion(calls=[("call_1", "weather", {"city": "Paris"})])
    final = completion("It's 72 in Paris")
    chain, outcome = drive(
        ResponsesTransition(parse_request({"model": "m", "input": "q"})),
        [first, final],
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {"temp": 72}},
    )
    response = assemble(chain, outcome)
    assert response["output"] == [
        {
            "id": "fc_abc_1_0",
            "type": "function_call",
            "call_id": "call_abc_1_0",
            "name": "weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {
            "id": "fco_abc_2",
            "type": "function_call_output",
            "call_id": "call_abc_1_0",
            "output": '{"temp": 72}',
            "status": "completed",
        },
        {
            "id": "msg_abc_3",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "It's 72 in Paris", "annotations": []}],
        },
    ]


def test_parallel_tools_keep_call_order_and_text_before_calls() -> None:
    first = completion(
        "Checking both.", calls=[("a", "weather", {"c": 1}), ("b", "weather", {"c": 2})]
    )
    chain, outcome = drive(
        ResponsesTransition(parse_request({"model": "m", "input": "q"})),
        [first, completion("done")],
        scope=scope_with("weather"),
    )
    response = assemble(chain, outcome)
    assert [(item["type"], item.get("call_id")) for item in response["output"]] == [
        ("message", None),
        ("function_call", "call_abc_1_0"),
        ("function_call", "call_abc_1_1"),
        ("function_call_output", "call_abc_1_0"),
        ("function_call_output", "call_abc_1_1"),
        ("message", None),
    ]
    assert [item["id"] for item in response["output"]] == [
        "msg_abc_1",
        "fc_abc_1_0",
        "fc_abc_1_1",
        "fco_abc_2",
        "fco_abc_3",
        "msg_abc_4",
    ]


def test_client_calls_are_pending_function_calls_without_outputs() -> None:
    request = parse_request(
        {"model": "m", "input": "q", "tools": [{"type": "function", "name": "ask_user"}]}
    )
    reply = completion(calls=[("c1", "ask_user", {"question": "which?"}), ("c2", "search", {})])
    chain, outcome = drive(ResponsesTransition(request), [reply], scope=scope_with("search"))
    response = assemble(chain, outcome, request)
    assert [(item["type"], item["call_id"]) for item in response["output"]] == [
        ("function_call", "call_abc_1_0"),
        ("function_call", "call_abc_1_1"),
        ("function_call_output", "call_abc_1_1"),
    ]
    assert response["status"] == "completed"
    assert response["tools"] == [
        {
            "type": "function",
            "name": "ask_user",
            "description": None,
            "parameters": None,
            "strict": None,
        }
    ]


def test_calls_not_run_are_shown_with_what_the_model_was_told() -> None:
    request = parse_request({"model": "m", "input": "q", "max_tool_calls": 1})
    first = completion(calls=[("c1", "search", {}), ("c2", "search", {}), ("c3", "rm", {})])
    chain, outcome = drive(
        ResponsesTransition(request), [first, completion("ok")], scope=scope_with("search")
    )
    response = assemble(chain, outcome, request)
    outputs = {
        item["call_id"]: json.loads(item["output"])
        for item in response["output"]
        if item["type"] == "function_call_output"
    }
    assert outputs["call_abc_1_0"] == {"ok": True}
    assert "max_tool_calls" in outputs["call_abc_1_1"]["error"]
    assert outputs["call_abc_1_2"] == {"error": "tool 'rm' is not available"}
    assert response["max_tool_calls"] == 1


def test_a_failed_tool_output_is_incomplete_and_carries_the_error() -> None:
    reply = completion(calls=[("c1", "search", {})])
    error = {"type": "tool_error", "code": "server_error", "message": "boom"}
    chain = [
        model_step(1, reply),
        tool_step(2, "search", "c1", state=StepState.FAILED, error=error),
        model_step(3, completion("sorry")),
    ]
    response = assemble(chain, Complete(chain[-1].response_payload))
    output = response["output"][1]
    assert output["status"] == "incomplete"
    assert json.loads(output["output"]) == {"error": "boom"}


def test_reasoning_becomes_a_reasoning_item() -> None:
    reply = completion("42", reasoning_content="6 times 7")
    response = assemble([model_step(1, reply)], Complete(reply))
    assert response["output"][0] == {
        "id": "rs_abc_1",
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "6 times 7"}],
        "status": "completed",
    }
    other = completion("42", reasoning="via the reasoning field")
    response = assemble([model_step(1, other)], Complete(other))
    assert response["output"][0]["content"][0]["text"] == "via the reasoning field"


@pytest.mark.parametrize("summary", ["auto", "concise", "detailed"])
def test_asked_for_a_summary_the_reasoning_is_the_summary_and_sealed_when_included(
    summary: str,
) -> None:
    reply = completion("42", reasoning_content="6 times 7")
    body = {"model": "m", "input": "q", "reasoning": {"summary": summary}}
    response = assemble([model_step(1, reply)], Complete(reply), parse_request(body))
    assert response["output"][0] == {
        "id": "rs_abc_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "6 times 7"}],
        "status": "completed",
    }
    assert response["reasoning"]["summary"] == summary
    sealed_request = parse_request({**body, "include": ["reasoning.encrypted_content"]})
    wire = WireOptions(reasoning_key=b"key")
    sealed = assemble([model_step(1, reply)], Complete(reply), sealed_request, wire=wire)
    item = sealed["output"][0]
    assert open_reasoning(item["encrypted_content"], b"key") == "6 times 7"
    again = assemble([model_step(1, reply)], Complete(reply), sealed_request, wire=wire)
    assert again == sealed  # the same chain always assembles to the same JSON
    # Included but with no key configured: left out, and the response still completes.
    unsealed = assemble([model_step(1, reply)], Complete(reply), sealed_request)
    assert "encrypted_content" not in unsealed["output"][0]
    assert unsealed["status"] == "completed"


def test_a_refusal() -> None:
    reply = completion(None, refusal="I can't help with that.")
    response = assemble([model_step(1, reply)], Complete(reply))
    assert response["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I can't help with that."}
    ]
    assert check_emitted_response(response).output_text == ""


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_stopping_early_is_incomplete(finish_reason: str, reason: str) -> None:
    reply = completion("partial ans", finish_reason=finish_reason)
    response = assemble([model_step(1, reply)], Complete(reply), completed_at=CREATED)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    assert response["output"][0]["status"] == "incomplete"
    assert response["completed_at"] is None


def test_a_failure_carries_an_sdk_code_and_our_finer_type() -> None:
    error = UpstreamStatusError(503, "").to_error()
    chain, outcome = drive(
        ResponsesTransition(parse_request({"model": "m", "input": "q"})),
        [ModelError(error)],
        scope=scope_with(),
    )
    response = assemble(chain, outcome)
    assert response["status"] == "failed"
    assert response["error"] == {
        "code": "server_error",
        "message": "upstream answered HTTP 503",
        "type": "upstream_error",
    }
    assert response["output"] == []


def test_codes_outside_the_sdk_set_become_server_error() -> None:
    outcome = Fail({"type": "max_iterations_exceeded", "code": "loop_cap", "message": "too many"})
    response = assemble([], outcome)
    assert response["error"]["code"] == "server_error"
    assert response["error"]["type"] == "max_iterations_exceeded"
    capped = assemble([], Fail(MaxIterationsExceeded("10 model calls").to_error()))
    assert capped["error"] == {
        "code": "server_error",
        "message": "10 model calls",
        "type": "max_iterations_exceeded",
    }


def test_usage_sums_every_model_call_including_sub_agents() -> None:
    first = completion(
        calls=[("c1", "search", {})],
        usage={
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
    )
    second = completion(
        "done",
        usage={
            "prompt_tokens": 5,
            "completion_tokens": 15,
            "total_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 1},
        },
    )
    sub_agent_call = model_step(
        3, completion("sub", usage={"prompt_tokens": 1, "completion_tokens": 1}), scope="step-2"
    )
    chain = [
        model_step(1, first),
        tool_step(2, "search", "c1", 1),
        sub_agent_call,
        model_step(4, second),
    ]
    response = assemble(chain, Complete(second))
    assert response["usage"] == {
        "input_tokens": 16,
        "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 0},
        "output_tokens": 36,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 52,
    }
    assert [item["type"] for item in response["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]


def test_no_usage_reported_means_no_usage() -> None:
    reply = completion("x", usage=None)
    assert assemble([model_step(1, reply)], Complete(reply))["usage"] is None


def test_request_settings_are_echoed() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": "q",
            "instructions": "be brief",
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "temperature": 0.3,
            "top_p": 0.8,
            "max_output_tokens": 50,
            "max_tool_calls": 4,
            "metadata": {"k": "v"},
            "previous_response_id": "resp_prev",
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
            "reasoning": {"effort": "low"},
            "store": False,
            "truncation": "disabled",
            "user": "u1",
            "background": True,
            "service_tier": "default",
            "top_logprobs": 2,
        }
    )
    reply = completion("{}")
    response = assemble([model_step(1, reply)], Complete(reply), request)
    parsed = check_emitted_response(response)
    assert parsed.instructions == "be brief"
    assert response["tools"] == [
        {
            "type": "function",
            "name": "f",
            "parameters": {"type": "object"},
            "description": None,
            "strict": None,
        }
    ]
    assert response["tool_choice"] == {"type": "function", "name": "f"}
    assert parsed.parallel_tool_calls is False
    assert (parsed.temperature, parsed.top_p, parsed.top_logprobs) == (0.3, 0.8, 2)
    assert (parsed.max_output_tokens, parsed.max_tool_calls) == (50, 4)
    assert parsed.metadata == {"k": "v"}
    assert parsed.previous_response_id == "resp_prev"
    assert response["text"] == {
        "format": {
            "type": "json_schema",
            "name": "s",
            "schema": {"type": "object"},
            "description": None,
            "strict": False,
        }
    }
    assert response["reasoning"] == {"effort": "low", "summary": None}
    assert (parsed.truncation, parsed.user, parsed.background) == ("disabled", "u1", True)
    assert parsed.service_tier == "default"
    assert parsed.model == "m"


def test_defaults_are_echoed_for_a_minimal_request() -> None:
    response = assemble([], ResponseStatus.IN_PROGRESS)
    assert response["tool_choice"] == "auto"
    assert response["parallel_tool_calls"] is True
    assert response["text"] == {"format": {"type": "text"}}
    assert response["truncation"] == "disabled"
    assert response["status"] == "in_progress"
    assert response["output"] == []


@pytest.mark.parametrize(
    "status", [ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS, ResponseStatus.CANCELLED]
)
def test_unfinished_and_cancelled_responses(status: ResponseStatus) -> None:
    reply = completion(calls=[("c1", "search", {})])
    chain = [model_step(1, reply), tool_step(2, "search", "c1", state=StepState.PROCESSING)]
    response = assemble(chain, status)
    assert response["status"] == status.value
    # The call in flight has no output yet.
    assert [item["type"] for item in response["output"]] == ["function_call"]


def test_the_same_chain_assembles_to_the_same_json() -> None:
    first = completion("a", calls=[("c1", "search", {}), ("c2", "search", {})])
    chain, outcome = drive(
        ResponsesTransition(parse_request({"model": "m", "input": "q"})),
        [first, completion("b")],
        scope=scope_with("search"),
    )
    request = parse_request({"model": "m", "input": "q"})
    one = assemble(chain, outcome, request)
    two = assemble(list(reversed(chain)), outcome, request)  # order of listing does not matter
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    ids = [item["id"] for item in one["output"]]
    assert len(ids) == len(set(ids))


def test_a_failed_model_call_gives_no_items_but_earlier_ones_stay() -> None:
    reply = completion(calls=[("c1", "search", {})])
    error = {"type": "upstream_error", "code": "rate_limit_exceeded", "message": "429"}
    chain = [
        model_step(1, reply),
        tool_step(2, "search", "c1", 1),
        model_step(3, None, state=StepState.FAILED, error=error),
    ]
    response = assemble(chain, Fail(error))
    assert [item["type"] for item in response["output"]] == [
        "function_call",
        "function_call_output",
    ]
    assert response["error"]["code"] == "rate_limit_exceeded"


def test_a_final_message_with_empty_content_still_gives_a_message() -> None:
    reply = completion("")
    response = assemble([model_step(1, reply)], Complete(reply))
    assert response["output"][0]["content"] == [
        {"type": "output_text", "text": "", "annotations": []}
    ]


def test_array_content_from_the_upstream_is_read_as_text() -> None:
    reply = completion(None)
    reply["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b"},
    ]
    response = assemble([model_step(1, reply)], Complete(reply))
    assert check_emitted_response(response).output_text == "ab"


def test_failure_with_tool_errors_fail_lists_the_calls_made() -> None:
    reply = completion(calls=[("c1", "search", {})])

    def boom(arguments: Any) -> Any:
        raise RuntimeError("boom")

    chain, outcome = drive(
        ResponsesTransition(parse_request({"model": "m", "input": "q"})),
        [reply],
        scope=scope_with("search"),
        tools={"search": boom},
        config=LoopConfig(tool_errors="fail"),
    )
    response = assemble(chain, outcome)
    assert response["status"] == "failed"
    assert response["error"]["type"] == "tool_error"
    assert [item["status"] for item in response["output"]] == ["completed", "incomplete"]


def test_a_call_id_repeated_within_a_turn_gets_distinct_items() -> None:
    reply = completion(calls=[("dup", "search", {"n": 1}), ("dup", "search", {"n": 2})])
    chain, outcome = drive(
        ResponsesTransition(parse_request({"model": "m", "input": "q"})),
        [reply],
        scope=scope_with("search"),
        tools={"search": lambda arguments: arguments},
    )
    response = assemble(chain, outcome)
    outputs = [i for i in response["output"] if i["type"] == "function_call_output"]
    assert [(i["id"], i["output"]) for i in outputs] == [
        ("fco_abc_2", '{"n": 1}'),
        ("fco_abc_3", '{"n": 2}'),
    ]
