"""Compaction in the pure layers: sealing, parsing, translation, transition decisions and
assembly. The loop, the service and the clients are tested elsewhere."""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import LoopConfig
from responseloop.abc import AppendSteps, Complete, Fail, StepDescriptor, StepKind, StepState
from responseloop.chat import ResponsesTransition
from responseloop.chat._translate import to_chat_messages
from responseloop.core import DEFAULT_COMPACTION_PROMPT, SUMMARY_PREFIX, exceeds_max_iterations
from responseloop.core._resume import may_run_on_resume
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import (
    ResponsesEventMapper,
    WireOptions,
    assemble_response,
    open_compaction_items,
    parse_request,
)
from responseloop.openresponses._assembly import output_items
from responseloop.openresponses._sealing import (
    SealError,
    open_compaction,
    open_reasoning,
    seal_compaction,
    seal_reasoning,
)
from tests.chains import ModelError, completion, drive, model_step, scope_with
from tests.wire_checks import check_emitted_response, check_emitted_stream

KEY = b"the operator's secret"
WIRE = WireOptions(reasoning_key=KEY)
BIG = {"prompt_tokens": 9000, "completion_tokens": 100, "total_tokens": 9100}


# -- sealing ------------------------------------------------------------------------------


@given(summary=st.text(), secret=st.binary(min_size=1), item_id=st.text())
def test_a_sealed_summary_opens_to_itself_and_seals_the_same_way_again(
    summary: str, secret: bytes, item_id: str
) -> None:
    blob = seal_compaction(summary, secret, item_id=item_id)
    assert open_compaction(blob, secret) == summary
    assert seal_compaction(summary, secret, item_id=item_id) == blob


@given(summary=st.text(min_size=1), data=st.data())
def test_any_altered_byte_makes_a_compaction_not_open(summary: str, data: st.DataObject) -> None:
    raw = bytearray(base64.urlsafe_b64decode(seal_compaction(summary, KEY)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SealError):
        open_compaction(base64.urlsafe_b64encode(bytes(raw)).decode(), KEY)


def test_a_reasoning_blob_never_opens_as_a_compaction_nor_the_other_way_round() -> None:
    text = json.dumps({"summary": "s"})  # even a reasoning text shaped like a payload
    with pytest.raises(SealError):
        open_compaction(seal_reasoning(text, KEY, item_id="x"), KEY)
    with pytest.raises(SealError):
        open_reasoning(seal_compaction("s", KEY, item_id="x"), KEY)


def test_a_compaction_of_another_key_does_not_open() -> None:
    with pytest.raises(SealError, match="another key"):
        open_compaction(seal_compaction("s", b"another secret"), KEY)


def test_opened_compaction_items_carry_their_summary() -> None:
    blob = seal_compaction("the story so far", KEY, item_id="cmp_1")
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "hi"},
            {"type": "compaction", "encrypted_content": blob},
        ],
    }
    opened = open_compaction_items(parse_request(body), KEY)
    assert opened.input[1]["summary"] == "the story so far"


@pytest.mark.parametrize("secret", [KEY, b"another secret", None])
def test_a_tampered_or_foreign_compaction_is_a_400_naming_its_blob(secret: bytes | None) -> None:
    good = seal_compaction("s", KEY)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    blob = forged if secret == KEY else good
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "hi"},
            {"type": "compaction", "encrypted_content": blob},
        ],
    }
    with pytest.raises(InvalidRequestError) as caught:
        open_compaction_items(parse_request(body), secret)
    assert caught.value.param == "input[1].encrypted_content"


# -- parsing ------------------------------------------------------------------------------


def test_a_compaction_trigger_is_taken_off_the_input_and_flags_the_request() -> None:
    request = parse_request({"model": "m", "input": ["hi", {"type": "compaction_trigger"}][1:]})
    assert request.compaction_trigger
    assert request.input == ()
    body = {
        "model": "m",
        "input": [{"role": "user", "content": "a"}, {"type": "compaction_trigger"}],
    }
    request = parse_request(body)
    assert request.compaction_trigger
    assert [i["type"] for i in request.input] == ["message"]


def test_a_compaction_trigger_that_is_not_last_is_refused_by_index() -> None:
    body = {
        "model": "m",
        "input": [{"type": "compaction_trigger"}, {"role": "user", "content": "a"}],
    }
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(body)
    assert caught.value.param == "input[0].type"


def test_a_compaction_item_needs_its_encrypted_content() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": [{"type": "compaction", "id": "cmp_1"}]})
    assert caught.value.param == "input[0].encrypted_content"


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ({"type": "compaction"}, "context_management"),
        ([{"type": "truncation"}], "context_management[0].type"),
        ([{"type": "compaction"}], "context_management[0].compact_threshold"),
        (
            [{"type": "compaction", "compact_threshold": 0}],
            "context_management[0].compact_threshold",
        ),
        (
            [{"type": "compaction", "compact_threshold": "9"}],
            "context_management[0].compact_threshold",
        ),
        ([{"type": "compaction", "compact_threshold": 5}] * 2, "context_management[1]"),
    ],
)
def test_bad_context_management_is_refused_by_name(value: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_request({"model": "m", "input": "x", "context_management": value})
    assert caught.value.param == param


def test_context_management_gives_the_threshold() -> None:
    body = {
        "model": "m",
        "input": "x",
        "context_management": [{"type": "compaction", "compact_threshold": 5000}],
    }
    assert parse_request(body).compact_threshold == 5000


# -- translation --------------------------------------------------------------------------


def test_an_opened_compaction_reaches_the_upstream_as_a_user_summary_message() -> None:
    blob = seal_compaction("we fixed the bug", KEY)
    body = {
        "model": "m",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": "fix it"},
            {"type": "compaction", "encrypted_content": blob},
            {"role": "user", "content": "now test it"},
        ],
    }
    messages = to_chat_messages(open_compaction_items(parse_request(body), KEY))
    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "fix it"},
        {"role": "user", "content": SUMMARY_PREFIX + "we fixed the bug"},
        {"role": "user", "content": "now test it"},
    ]


def test_what_a_compaction_item_summarised_is_not_sent_again() -> None:
    blob = seal_compaction("we fixed the bug", KEY)
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "fix it"},
            {"type": "function_call", "call_id": "c1", "name": "edit", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a long diff"},
            {"role": "assistant", "content": "fixed, at length"},
            {"role": "user", "content": SUMMARY_PREFIX + "an older summary"},
            {"type": "compaction", "encrypted_content": blob},
            {"role": "assistant", "content": "what next?"},
        ],
    }
    messages = to_chat_messages(open_compaction_items(parse_request(body), KEY))
    # The model's turns, the tool's output and the older summary are what it replaces.
    assert messages == [
        {"role": "user", "content": "fix it"},
        {"role": "user", "content": SUMMARY_PREFIX + "we fixed the bug"},
        {"role": "assistant", "content": "what next?"},
    ]


def test_an_unopened_compaction_is_not_translated() -> None:
    body = {"model": "m", "input": [{"type": "compaction", "encrypted_content": "x"}]}
    with pytest.raises(InvalidRequestError) as caught:
        to_chat_messages(parse_request(body))
    assert caught.value.param == "input[0].encrypted_content"


# -- the transition -----------------------------------------------------------------------


def _trigger_request() -> dict[str, Any]:
    return {
        "model": "m",
        "input": [
            {"role": "user", "content": "write a poem"},
            {"role": "assistant", "content": "roses"},
            {"type": "compaction_trigger"},
        ],
    }


def test_a_compaction_trigger_runs_one_compaction_of_the_conversation_and_completes() -> None:
    transition = ResponsesTransition(parse_request(_trigger_request()))
    chain, outcome = drive(transition, [completion("the user wants a poem")], scope=scope_with())
    assert [step.kind for step in chain] == [StepKind.COMPACTION]
    messages = chain[0].request_payload["messages"]
    assert messages[:2] == [
        {"role": "user", "content": "write a poem"},
        {"role": "assistant", "content": "roses"},
    ]
    assert messages[-1] == {"role": "user", "content": DEFAULT_COMPACTION_PROMPT}
    assert isinstance(outcome, Complete)


def test_the_operator_prompt_is_what_a_compaction_asks() -> None:
    transition = ResponsesTransition(parse_request(_trigger_request()), compaction_prompt="TL;DR?")
    action = transition.decide([], scope_with(), LoopConfig())
    assert isinstance(action, AppendSteps)
    assert action.steps[0].request_payload["messages"][-1]["content"] == "TL;DR?"


def test_a_failed_compaction_fails_the_scope() -> None:
    transition = ResponsesTransition(parse_request(_trigger_request()))
    error = {"type": "upstream_error", "code": "server_error", "message": "boom"}
    _chain, outcome = drive(transition, [ModelError(error)], scope=scope_with())
    assert isinstance(outcome, Fail)
    assert outcome.error["message"] == "boom"


def _threshold_request(threshold: int, **more: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "instructions": "sys",
        "input": "weather in Paris and then Rome?",
        "context_management": [{"type": "compaction", "compact_threshold": threshold}],
        **more,
    }


def _weather_replies(usage: dict[str, int]) -> list[Any]:
    return [
        completion(None, calls=[("c1", "weather", {"city": "Paris"})], usage=usage),
        completion(None, calls=[("c2", "weather", {"city": "Rome"})], usage=usage),
        completion("sunny in both"),
    ]


def test_past_the_threshold_a_compaction_runs_and_the_next_call_gets_the_compacted_window() -> None:
    transition = ResponsesTransition(parse_request(_threshold_request(5000)))
    replies = _weather_replies(BIG)
    replies.insert(1, completion("Paris is sunny so far"))  # the first summary
    replies.insert(3, completion("Paris and Rome are sunny"))  # the second
    chain, outcome = drive(
        transition,
        replies,
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {"sky": "sunny"}},
    )
    assert isinstance(outcome, Complete)
    kinds = [step.kind for step in chain]
    assert kinds == [
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.COMPACTION,
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.COMPACTION,
        StepKind.MODEL_CALL,
    ]
    # The compaction is sent what the next call would have been, then the prompt.
    first_compaction = chain[2].request_payload
    assert [m["role"] for m in first_compaction["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "user",
    ]
    assert first_compaction["tool_choice"] == "none"
    # After it: instructions, the user's message, the summary, then the new round.
    second = chain[3].request_payload["messages"]
    assert second == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "weather in Paris and then Rome?"},
        {"role": "user", "content": SUMMARY_PREFIX + "Paris is sunny so far"},
    ]
    third = chain[6].request_payload["messages"]
    assert third == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "weather in Paris and then Rome?"},
        {"role": "user", "content": SUMMARY_PREFIX + "Paris and Rome are sunny"},
    ]


def test_under_the_threshold_no_compaction_runs() -> None:
    transition = ResponsesTransition(parse_request(_threshold_request(10_000)))
    chain, _outcome = drive(
        transition,
        _weather_replies(BIG),
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {"sky": "sunny"}},
    )
    assert StepKind.COMPACTION not in [step.kind for step in chain]


def test_without_usage_the_context_is_estimated_from_the_characters_sent() -> None:
    long_input = "x" * 4000  # about a thousand tokens
    body = _threshold_request(900, input=long_input)
    replies = [completion(None, calls=[("c1", "weather", {})], usage=None), completion("s")]
    chain, _ = drive(
        ResponsesTransition(parse_request(body)),
        replies,
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {}},
    )
    assert [step.kind for step in chain][:3] == [
        StepKind.MODEL_CALL,
        StepKind.TOOL_CALL,
        StepKind.COMPACTION,
    ]
    body = _threshold_request(2000, input=long_input)
    chain, _ = drive(
        ResponsesTransition(parse_request(body)),
        replies,
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {}},
    )
    assert StepKind.COMPACTION not in [step.kind for step in chain]


def test_a_compaction_left_in_flight_is_always_refired_and_is_no_model_call_for_the_cap() -> None:
    step = attrs_evolve_kind(model_step(1, None, state=StepState.PROCESSING))
    config = LoopConfig(refire_model_calls=False, max_iterations=1)
    assert may_run_on_resume(step, None, config)
    planned = [StepDescriptor.compaction({"model": "m", "messages": []})]
    assert not exceeds_max_iterations([model_step(1, completion("a"))], planned, config)


def attrs_evolve_kind(step: Any) -> Any:
    return attrs.evolve(step, kind=StepKind.COMPACTION)


def test_the_incremental_translation_matches_a_fresh_one_after_a_compaction() -> None:
    transition = ResponsesTransition(parse_request(_threshold_request(5000)))
    replies = _weather_replies(BIG)
    replies.insert(1, completion("summary one"))
    replies.insert(3, completion("summary two"))
    chain, _ = drive(
        transition,
        replies,
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {"sky": "sunny"}},
    )
    # Each recorded request is what a decision on copies of the steps (which nothing
    # translated earlier can be reused for) gives.
    config = LoopConfig()
    for index, step in enumerate(chain):
        copies = [attrs.evolve(earlier) for earlier in chain[:index]]
        decided = transition.decide(copies, scope_with("weather"), config)
        assert isinstance(decided, AppendSteps)
        assert decided.steps[0].request_payload == step.request_payload, index


# -- assembly and events ------------------------------------------------------------------


def test_a_trigger_response_holds_exactly_one_compaction_item_that_opens_to_the_summary() -> None:
    request = parse_request(_trigger_request())
    chain, outcome = drive(
        ResponsesTransition(request),
        [completion("the user wants a poem", usage=BIG)],
        scope=scope_with(),
    )
    response = assemble_response(
        chain, request, response_id="resp_abc", created_at=0, outcome=outcome, wire=WIRE
    )
    check_emitted_response(response)
    assert response["status"] == "completed"
    [item] = response["output"]
    assert item["type"] == "compaction"
    assert item["id"] == "cmp_abc_1"
    assert open_compaction(item["encrypted_content"], KEY) == "the user wants a poem"
    assert response["usage"]["input_tokens"] == 9000  # the compaction's tokens count
    again = assemble_response(
        chain, request, response_id="resp_abc", created_at=0, outcome=outcome, wire=WIRE
    )
    assert again == response  # deterministic: the same chain, the same blob


def test_a_mid_response_compaction_item_sits_between_the_rounds_it_separates() -> None:
    request = parse_request(_threshold_request(5000))
    replies = _weather_replies(BIG)
    replies.insert(1, completion("summary one"))
    replies.insert(3, completion("summary two"))
    chain, outcome = drive(
        ResponsesTransition(request),
        replies,
        scope=scope_with("weather"),
        tools={"weather": lambda arguments: {"sky": "sunny"}},
    )
    response = assemble_response(
        chain, request, response_id="resp_abc", created_at=0, outcome=outcome, wire=WIRE
    )
    check_emitted_response(response)
    assert [item["type"] for item in response["output"]] == [
        "mcp_call",
        "compaction",
        "mcp_call",
        "compaction",
        "message",
    ]
    # The tool's output is what the model was told, though the call after the
    # compaction was only sent the summary.
    assert json.loads(response["output"][0]["output"]) == {"sky": "sunny"}
    # Every settled prefix of the chain is a prefix of the final output.
    final = response["output"]
    for end in range(len(chain) + 1):
        settled = output_items(chain[:end], request, response_id="resp_abc", wire=WIRE)
        assert settled == final[: len(settled)], end


def test_the_stream_announces_the_compaction_item_and_its_compacting_event() -> None:
    from responseloop.abc import LoopEvent, LoopEventKind

    request = parse_request(_trigger_request())
    chain, outcome = drive(
        ResponsesTransition(request), [completion("summary")], scope=scope_with()
    )
    mapper = ResponsesEventMapper(request, response_id="resp_abc", created_at=0, wire=WIRE)
    step = chain[0]
    events: list[dict[str, Any]] = []
    for kind, data in (
        (LoopEventKind.STEP_STARTED, dict(step.request_payload)),
        (LoopEventKind.STEP_COMPLETED, step.response_payload),
        (LoopEventKind.RESPONSE_COMPLETED, step.response_payload),
    ):
        event = LoopEvent(
            kind,
            "resp_abc",
            data,
            step_id=step.id if kind is not LoopEventKind.RESPONSE_COMPLETED else None,
            step_kind=step.kind if kind is not LoopEventKind.RESPONSE_COMPLETED else None,
            sequence=step.sequence,
        )
        events += mapper.feed(event)
    assert isinstance(outcome, Complete)
    check_emitted_stream(events, ended_with_done=True)
    types = [event["type"] for event in events]
    assert types[2:] == [
        "response.output_item.added",
        "response.compaction.compacting",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-1]["response"]["output"] == [events[-2]["item"]]
