"""The step move table: the rule every store and the conformance suite share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.abc import StepState
from responseloop.core import STEP_MOVES, check_step_move, refused_step_move, step_move_sources
from responseloop.exceptions import StepStateError, StoreError

PENDING, PROCESSING = StepState.PENDING, StepState.PROCESSING
COMPLETED, FAILED, CANCELLED = StepState.COMPLETED, StepState.FAILED, StepState.CANCELLED

# The moves the stores allowed before the table existed, written out pair by pair.
LEGAL = {
    (PENDING, PROCESSING),
    (PROCESSING, PROCESSING),  # a re-fire of a step a dead worker left in flight
    (CANCELLED, PROCESSING),  # a re-fire of a step a cancelled run gave up
    (PENDING, COMPLETED),
    (PROCESSING, COMPLETED),
    (PENDING, FAILED),
    (PROCESSING, FAILED),
    (PENDING, CANCELLED),
    (PROCESSING, CANCELLED),
}


def test_the_table_holds_exactly_the_legal_moves() -> None:
    table = {(source, target) for target, sources in STEP_MOVES.items() for source in sources}
    assert table == LEGAL


def test_nothing_moves_a_step_back_to_pending_or_out_of_completed_or_failed() -> None:
    assert PENDING not in STEP_MOVES
    for sources in STEP_MOVES.values():
        assert COMPLETED not in sources
        assert FAILED not in sources


@given(st.sampled_from(StepState), st.sampled_from(StepState))
def test_check_allows_a_move_exactly_when_the_table_holds_it(
    current: StepState, target: StepState
) -> None:
    if (current, target) in LEGAL:
        check_step_move("step_1", current, target)
    else:
        with pytest.raises(StepStateError) as raised:
            check_step_move("step_1", current, target)
        assert str(raised.value) == (
            f"step step_1 is {current.value}, cannot move it to {target.value}"
        )


@pytest.mark.parametrize("target", list(StepState))
def test_sources_are_the_table_in_declaration_order(target: StepState) -> None:
    sources = step_move_sources(target)
    assert set(sources) == {s for s, t in LEGAL if t is target}
    assert list(sources) == [state for state in StepState if state in sources]


def test_a_refusal_reads_a_state_as_stored_text() -> None:
    error = refused_step_move("step_9", "completed", CANCELLED)
    assert isinstance(error, StoreError)
    assert str(error) == "step step_9 is completed, cannot move it to cancelled"
