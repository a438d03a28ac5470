"""The Open Responses policy of stored responses, decided over values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import ResponseRecord
from responseloop.abc import (
    ChainStep,
    Fail,
    ResponseStatus,
    StepDescriptor,
    StepKind,
    StepState,
)
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import (
    MAX_CONVERSATION_TURNS,
    RETRYABLE_UPSTREAM_STATUSES,
    Conversation,
    continue_request,
    continue_turn,
    earlier_turn_to_read,
    is_retryable_failure,
    parse_request,
    previous_turn,
    revival_step,
    stored_outcome,
    stored_request,
    submitted_body,
)

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def upstream_error(status: int | None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "upstream_error", "code": "server_error", "message": "x"}
    if status is not None:
        error["status"] = status
    return error


def step(kind: StepKind, state: StepState, error: dict[str, Any] | None = None) -> ChainStep:
    return ChainStep("s1", kind, state, 1, BODY, error=error)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (upstream_error(None), True),  # the connection was lost
        (upstream_error(429), True),
        (upstream_error(503), True),
        (upstream_error(400), False),
        (upstream_error(401), False),
        ({"type": "tool_error", "code": "server_error", "message": "x"}, False),
        ({}, False),
    ],
)
def test_which_failures_a_retry_may_overcome(error: dict[str, Any], retryable: bool) -> None:
    assert is_retryable_failure(error) is retryable


@given(st.integers(100, 599))
def test_an_upstream_status_is_retryable_exactly_when_listed(status: int) -> None:
    assert is_retryable_failure(upstream_error(status)) is (status in RETRYABLE_UPSTREAM_STATUSES)


def test_a_response_failed_on_a_retryable_model_call_revives_with_the_same_call() -> None:
    last = step(StepKind.MODEL_CALL, StepState.FAILED, upstream_error(503))
    assert revival_step(ResponseStatus.FAILED, last) == StepDescriptor.model_call(BODY)


@given(
    st.sampled_from(ResponseStatus),
    st.none() | st.tuples(st.sampled_from(StepKind), st.sampled_from(StepState)),
    st.none() | st.integers(400, 599),
)
def test_only_a_retryable_failed_model_call_of_a_failed_response_revives(
    status: ResponseStatus,
    last: tuple[StepKind, StepState] | None,
    upstream_status: int | None,
) -> None:
    error = upstream_error(upstream_status)
    last_step = None if last is None else step(*last, error=error)
    revives = (
        status is ResponseStatus.FAILED
        and last == (StepKind.MODEL_CALL, StepState.FAILED)
        and is_retryable_failure(error)
    )
    assert (revival_step(status, last_step) is not None) is revives


def test_a_stored_failure_answers_with_its_failed_model_calls_error() -> None:
    error = upstream_error(400)
    last = step(StepKind.MODEL_CALL, StepState.FAILED, error)
    response = {"error": {"code": "invalid_prompt", "message": "upstream answered HTTP 400"}}
    assert stored_outcome(ResponseStatus.FAILED, response, last) == Fail(error)


def test_a_stored_failure_of_another_kind_answers_with_the_responses_error() -> None:
    response = {"error": {"code": "server_error", "message": "boom"}}
    last = step(StepKind.TOOL_CALL, StepState.FAILED, {"type": "tool_error"})
    assert stored_outcome(ResponseStatus.FAILED, response, last) == Fail(response["error"])
    assert stored_outcome(ResponseStatus.FAILED, {}, None) == Fail({})


@pytest.mark.parametrize("status", [s for s in ResponseStatus if s is not ResponseStatus.FAILED])
def test_any_other_stored_status_is_its_own_outcome(status: ResponseStatus) -> None:
    assert stored_outcome(status, {}, None) is status


def record(
    response_id: str,
    body: dict[str, Any],
    output: list[dict[str, Any]] | None = None,
    *,
    conversation: Conversation | None = None,
    caller: str | None = None,
    status: ResponseStatus = ResponseStatus.COMPLETED,
) -> ResponseRecord:
    response = None if output is None else {"id": response_id, "output": output}
    return ResponseRecord(
        response_id,
        stored_request(body, conversation),
        caller=caller,
        status=status,
        response=response,
    )


def said(text: str, item_id: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def test_only_a_finished_turn_of_the_same_caller_is_continued() -> None:
    done = record("resp_1", {"model": "m", "input": "hi"}, [said("a", "m1")], caller="u")
    assert previous_turn(done, "resp_1", "u") is done
    running = record(
        "resp_1", {"model": "m", "input": "hi"}, caller="u", status=ResponseStatus.IN_PROGRESS
    )
    for found, caller, message in [
        (None, "u", "not found"),
        (done, "someone else", "not found"),
        (running, "u", "has not finished yet"),
    ]:
        with pytest.raises(InvalidRequestError, match=message) as caught:
            previous_turn(found, "resp_1", caller)
        assert caught.value.param == "previous_response_id"


def test_a_request_without_a_previous_turn_continues_nothing() -> None:
    request = parse_request({"model": "m", "input": "hi"})
    assert continue_turn(request, []) == (request, None)


def test_a_stored_body_is_the_body_as_sent() -> None:
    body = {"model": "m", "input": "hi", "previous_response_id": "resp_1"}
    stored = stored_request(body, Conversation((), 1))
    assert stored != body
    assert submitted_body(stored) == body
    assert stored_request(body, None) == body


@given(
    st.dictionaries(
        st.sampled_from(["model", "input", "x", "responseloop_conversation"]), st.text()
    )
)
def test_a_body_sending_the_conversation_key_has_it_dropped(body: dict[str, Any]) -> None:
    assert submitted_body(stored_request(body, None)) == submitted_body(body)
    assert "responseloop_conversation" not in stored_request(body, None)


def conversation_of(turns: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``turns`` (body, output) pairs, each continuing the one before."""
    pairs = []
    for n in range(turns):
        body: dict[str, Any] = {"model": "m", "input": f"q{n}"}
        if n:
            body["previous_response_id"] = f"resp_{n - 1}"
            if n % 2 == 0:
                body["input"] = [{"type": "item_reference", "id": f"msg_{n - 1}"}]
        pairs.append((body, [said(f"a{n}", f"msg_{n}")]))
    return pairs


def replayed(pairs: list[tuple[dict[str, Any], list[dict[str, Any]]]], request: Any) -> Any:
    """``request`` continued the way it was before: every earlier turn replayed."""
    previous = None
    for body, output in pairs:
        turn = parse_request(body)
        if previous is not None:
            turn = continue_request(previous[0], {"output": previous[1]}, turn)
        previous = (turn, output)
    assert previous is not None
    return continue_request(previous[0], {"output": previous[1]}, request)


@given(st.integers(1, 8), st.data())
def test_one_stored_turn_continues_as_replaying_every_turn(turns: int, data: st.DataObject) -> None:
    # Stored the way the service stores turns now: each with its conversation.
    pairs = conversation_of(turns)
    stored: list[ResponseRecord] = []
    for n, (body, output) in enumerate(pairs):
        _, conversation = continue_turn(parse_request(body), stored[-1:])
        stored.append(record(f"resp_{n}", body, output, conversation=conversation))
    # Some of the oldest may have been stored before turns carried their conversation.
    legacy = data.draw(st.integers(0, turns))
    read_order = [
        record(f"resp_{n}", body, output) if n < legacy else stored[n]
        for n, (body, output) in enumerate(pairs)
    ][::-1]
    request = parse_request(
        {"model": "m", "input": "next", "previous_response_id": f"resp_{turns - 1}"}
    )

    read = [read_order[0]]
    while (earlier := earlier_turn_to_read(read)) is not None:
        assert earlier == read_order[len(read)].id
        read.append(read_order[len(read)])
    continued, conversation = continue_turn(request, read)

    assert len(read) == (1 if legacy < turns else turns)
    assert continued == replayed(pairs, request)
    assert conversation == Conversation(continued.conversation, turns)


def test_a_conversation_longer_than_the_cap_is_refused() -> None:
    body = {"model": "m", "input": "q", "previous_response_id": "resp_0"}
    at_cap = record(
        "resp_1", body, [said("a", "m1")], conversation=Conversation((), MAX_CONVERSATION_TURNS)
    )
    below = record(
        "resp_1", body, [said("a", "m1")], conversation=Conversation((), MAX_CONVERSATION_TURNS - 1)
    )
    request = parse_request({"model": "m", "input": "q", "previous_response_id": "resp_1"})
    assert continue_turn(request, [below])[1] == Conversation(
        continue_turn(request, [below])[0].conversation, MAX_CONVERSATION_TURNS
    )
    with pytest.raises(InvalidRequestError, match="too long") as caught:
        continue_turn(request, [at_cap])
    assert caught.value.param == "previous_response_id"


def test_reading_turns_stored_without_their_conversation_stops_at_the_cap() -> None:
    body = {"model": "m", "input": "q", "previous_response_id": "resp_x"}
    legacy = record("resp_y", body, [said("a", "m1")])
    assert earlier_turn_to_read([legacy]) == "resp_x"
    with pytest.raises(InvalidRequestError, match="too long"):
        earlier_turn_to_read([legacy] * MAX_CONVERSATION_TURNS)
