"""The pure half of item_reference resolution: which response an item id names, and what a
stored response offers to be referenced."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop import ResponseRecord
from responseloop.abc import ResponseStatus
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import parse_request
from responseloop.openresponses._item_kinds import OUTPUT_ITEM_KINDS, item_id
from responseloop.openresponses._references import (
    referable_items,
    resolve_references,
    responses_to_read,
)

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
