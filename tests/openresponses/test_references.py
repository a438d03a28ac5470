"""The pure half of item_reference resolution: which response an item id names, and what a
stored response offers to be referenced."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import ResponseRecord
from responseloop.abc import ResponseStatus
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import parse_request
from responseloop.openresponses._item_kinds import OUTPUT_ITEM_KINDS, item_id
from responseloop.openresponses._references import (
    model_turns,
    referable_items,
    replayed_ids,
    resolve_references,
    responses_to_read,
    restore_replayed,
)
from responseloop.openresponses._request import ResponsesRequest, parse_input_item

# What the default response ids hold after resp_ (uuid hex), and what custom ones may.
bases = st.text("0123456789abcdef", min_size=1, max_size=32).filter(lambda b: not b.isdigit())
places = st.lists(st.integers(0, 10_000), min_size=1, max_size=2)


@given(st.sampled_from(sorted(OUTPUT_ITEM_KINDS)), bases, places)
def test_an_output_items_response_is_among_those_read_off_its_id(
    kind: str, base: str, place: list[int]
) -> None:
    candidates = responses_to_read(item_id(kind, base, *place))
    assert f"resp_{base}" in candidates
    assert len(candidates) <= 2


@given(st.sampled_from(["message", "reasoning"]), bases, st.integers(0, 10_000))
def test_one_place_kinds_need_one_read(kind: str, base: str, seq: int) -> None:
    assert responses_to_read(item_id(kind, base, seq))[0] == f"resp_{base}"


@given(st.sampled_from(["function_call", "function_call_output"]), bases, places)
def test_call_items_with_default_ids_need_one_read(kind: str, base: str, place: list[int]) -> None:
    if len(place) == 2:
        assert responses_to_read(item_id(kind, base, *place))[0] == f"resp_{base}"


def test_input_item_ids_name_their_response() -> None:
    assert responses_to_read("msg_abc_in3") == ("resp_abc",)
    assert responses_to_read("fc_a_b_in0") == ("resp_a_b",)


def test_ids_no_response_made_name_none() -> None:
    assert responses_to_read("x") == ()
    assert responses_to_read("msg_abc") == ()
    assert responses_to_read("_abc_1") == ()


def _record(caller: str | None = "alice", store: bool = True) -> ResponseRecord:
    return ResponseRecord(
        id="resp_abc",
        request={"model": "m", "input": "hi"},
        model="m",
        caller=caller,
        status=ResponseStatus.COMPLETED,
        created_at=0,
        store=store,
        response={
            "output": [
                {
                    "id": "msg_abc_0",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "yo", "annotations": []}],
                }
            ]
        },
    )


def test_a_record_offers_its_input_and_output_items() -> None:
    items = referable_items(_record(), "alice")
    assert sorted(items) == ["msg_abc_0", "msg_abc_in0"]
    assert items["msg_abc_in0"][0]["content"] == [{"type": "input_text", "text": "hi"}]


def test_nothing_of_another_callers_or_an_unstored_record() -> None:
    assert referable_items(_record(caller="bob"), "alice") == {}
    assert referable_items(_record(store=False), "alice") == {}
    assert referable_items(None, "alice") == {}


def test_an_unknown_reference_names_its_input_item() -> None:
    request = parse_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "item_reference", "id": "msg_zzz_0"},
            ],
        }
    )
    with pytest.raises(InvalidRequestError, match="msg_zzz_0") as raised:
        resolve_references(request, referable_items(_record(), "alice"))
    assert raised.value.param == "input[1].id"


# --- restoring what a replaying client left out ---------------------------------------------


def _mcp(base: str, seq: int, index: int, output: str | None = "sunny") -> dict[str, Any]:
    return {
        "id": item_id("mcp_call", base, seq, index),
        "type": "mcp_call",
        "server_label": "responseloop",
        "name": f"server_{index}",
        "arguments": "{}",
        "output": output,
        "error": None,
        "status": "completed",
    }


def _call(base: str, seq: int, index: int) -> dict[str, Any]:
    return {
        "id": item_id("function_call", base, seq, index),
        "type": "function_call",
        "call_id": f"call_{seq}_{index}",
        "name": f"client_{index}",
        "arguments": "{}",
        "status": "completed",
    }


def _turn_record(
    output: list[dict[str, Any]], caller: str | None = "alice", store: bool = True
) -> ResponseRecord:
    return attrs.evolve(_record(caller, store), response={"output": output})


def _replay(items: list[dict[str, Any]]) -> ResponsesRequest:
    return parse_request({"model": "m", "input": [{"role": "user", "content": "hi"}, *items]})


def _restored(request: ResponsesRequest, record: ResponseRecord) -> ResponsesRequest:
    return restore_replayed(request, referable_items(record, "alice"), model_turns(record, "alice"))


def _ids(request: ResponsesRequest) -> list[str | None]:
    return [item.get("id") for item in request.input]


# One model turn: each call is the server's (an mcp_call) or the client's (a function_call).
turns = st.lists(st.booleans(), min_size=1, max_size=6)


@given(turns, st.data())
def test_a_partly_replayed_turn_gets_its_mcp_calls_back_in_their_place(
    server_calls: list[bool], data: st.DataObject
) -> None:
    output = [
        _mcp("abc", 1, i) if server else _call("abc", 1, i) for i, server in enumerate(server_calls)
    ]
    kept = data.draw(st.lists(st.sampled_from(range(len(output))), min_size=1, unique=True))
    replayed = [output[i] for i in sorted(kept)]
    restored = _restored(_replay(replayed), _turn_record(output))
    expected = [item["id"] for i, item in enumerate(output) if i in kept or server_calls[i]]
    assert _ids(restored)[1:] == expected
    assert _restored(restored, _turn_record(output)) == restored  # nothing more to restore


@given(turns)
def test_a_turn_replayed_whole_is_left_as_sent(server_calls: list[bool]) -> None:
    output = [
        _mcp("abc", 1, i) if server else _call("abc", 1, i) for i, server in enumerate(server_calls)
    ]
    request = _replay(output)
    assert _restored(request, _turn_record(output)) is request


@given(st.lists(st.sampled_from(["x", "fc_zzz_1_0", "mcp_abc", "msg_abc_9", "fc_abc_7_0"])))
def test_items_with_no_stored_id_of_ours_are_left_as_sent(ids: list[str]) -> None:
    replayed = [{**_call("abc", 1, 1), "id": i} for i in ids]
    replayed += [{k: v for k, v in _call("abc", 1, 1).items() if k != "id"}]
    request = _replay(replayed)
    record = _turn_record([_mcp("abc", 1, 0), _call("abc", 1, 1)])
    assert _restored(request, record) is request


def test_only_the_turn_of_a_replayed_item_is_restored() -> None:
    output = [_mcp("abc", 1, 0), _call("abc", 1, 1), _mcp("abc", 3, 0), _call("abc", 3, 1)]
    restored = _restored(_replay([_call("abc", 3, 1)]), _turn_record(output))
    assert _ids(restored)[1:] == ["mcp_abc_3_0", "fc_abc_3_1"]


def test_a_call_after_the_last_replayed_item_follows_it() -> None:
    output = [_call("abc", 1, 0), _mcp("abc", 1, 1)]
    answer = {"type": "function_call_output", "call_id": "call_1_0", "output": "ok"}
    restored = _restored(_replay([_call("abc", 1, 0), answer]), _turn_record(output))
    assert [item["type"] for item in restored.input] == [
        "message", "function_call", "mcp_call", "function_call_output",
    ]  # fmt: skip


def test_an_mcp_call_already_in_the_conversation_is_not_repeated() -> None:
    output = [_mcp("abc", 1, 0), _call("abc", 1, 1)]
    request = attrs.evolve(
        _replay([_call("abc", 1, 1)]), history=(parse_input_item(output[0], "x"),)
    )
    assert _restored(request, _turn_record(output)) is request


@pytest.mark.parametrize("left_out", [{"output": None}, {}], ids=["null", "absent"])
def test_an_mcp_calls_missing_output_comes_from_the_stored_item(left_out: dict[str, Any]) -> None:
    sent = {k: v for k, v in _mcp("abc", 1, 0).items() if k not in ("output", "error")}
    restored = _restored(_replay([{**sent, **left_out}]), _turn_record([_mcp("abc", 1, 0)]))
    assert restored.input[1]["output"] == "sunny"


def test_fields_the_client_sends_are_kept_even_when_edited() -> None:
    edited = {**_mcp("abc", 1, 0), "output": "rainy", "arguments": '{"city": "Oslo"}'}
    request = _replay([edited])
    assert _restored(request, _turn_record([_mcp("abc", 1, 0)])) is request


def test_an_item_of_another_type_under_a_stored_id_is_left_as_sent() -> None:
    posing = {**_call("abc", 1, 0), "id": "mcp_abc_1_0"}
    request = _replay([posing])
    assert _restored(request, _turn_record([_mcp("abc", 1, 0)])).input[1] == request.input[1]


def test_nothing_is_restored_from_another_callers_or_an_unstored_turn() -> None:
    output = [_mcp("abc", 1, 0), _call("abc", 1, 1)]
    request = _replay([_call("abc", 1, 1), {**_mcp("abc", 1, 0), "output": None}][::-1])
    for record in (_turn_record(output, caller="bob"), _turn_record(output, store=False)):
        assert _restored(request, record) is request
    assert model_turns(None, "alice") == {}


def test_replayed_ids_are_read_last_sent_first() -> None:
    reference = {"type": "item_reference", "id": "msg_q_1"}
    request = _replay([_call("abc", 1, 0), reference, _call("abc", 3, 1)])
    assert replayed_ids(request) == ("fc_abc_3_1", "fc_abc_1_0")
