"""StepUpdate and ResponseUpdate: the typed updates a store takes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.abc import ResponseStatus, ResponseUpdate, StepState, StepUpdate

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


@given(json_values, json_values)
def test_each_constructor_names_its_state_and_carries_only_its_value(
    payload: object, error: object
) -> None:
    assert StepUpdate.processing() == StepUpdate(StepState.PROCESSING)
    assert StepUpdate.cancelled() == StepUpdate(StepState.CANCELLED)
    completed, failed = StepUpdate.completed(payload), StepUpdate.failed(error)
    assert (completed.state, completed.payload, completed.error) == (
        StepState.COMPLETED,
        payload,
        None,
    )
    assert (failed.state, failed.payload, failed.error) == (StepState.FAILED, None, error)


def test_a_step_update_refuses_what_no_move_stores() -> None:
    with pytest.raises(ValueError, match="pending"):
        StepUpdate(StepState.PENDING)
    with pytest.raises(ValueError, match="payload"):
        StepUpdate(StepState.FAILED, payload={"x": 1})
    with pytest.raises(ValueError, match="error"):
        StepUpdate(StepState.COMPLETED, error={"message": "boom"})


@pytest.mark.parametrize("status", [s for s in ResponseStatus if s.is_terminal])
def test_finished_takes_a_terminal_status_and_finishes(status: ResponseStatus) -> None:
    update = ResponseUpdate.finished(status, {"id": "resp_1"})
    assert (update.status, update.response, update.finishes) == (status, {"id": "resp_1"}, True)


@pytest.mark.parametrize("status", [ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS])
def test_finished_refuses_a_status_that_is_not_terminal(status: ResponseStatus) -> None:
    with pytest.raises(ValueError, match="terminal"):
        ResponseUpdate.finished(status, None)


def test_reopened_is_in_progress_without_json_and_does_not_finish() -> None:
    update = ResponseUpdate.reopened()
    assert (update.status, update.response, update.finishes) == (
        ResponseStatus.IN_PROGRESS,
        None,
        False,
    )
    with pytest.raises(ValueError, match="reopened"):
        ResponseUpdate(ResponseStatus.IN_PROGRESS, {"id": "resp_1"})
    with pytest.raises(ValueError, match="reopened"):
        ResponseUpdate(ResponseStatus.QUEUED)
