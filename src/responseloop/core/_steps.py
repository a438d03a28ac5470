"""The step-state move table: which state a stored step may move to from which.

Every store checks its moves here, and the store conformance suite generates its
legal- and illegal-move checks from it, so the rule is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ..abc._steps import StepState
from ..exceptions import StepStateError

__all__ = ["STEP_MOVES", "check_step_move", "refused_step_move", "step_move_sources"]

_PENDING, _PROCESSING = StepState.PENDING, StepState.PROCESSING

STEP_MOVES: Final[Mapping[StepState, frozenset[StepState]]] = MappingProxyType(
    {
        # A worker starts a pending step; one that resumes a response re-fires a step a dead
        # worker left processing, or one a cancelled run gave up.
        StepState.PROCESSING: frozenset({_PENDING, _PROCESSING, StepState.CANCELLED}),
        StepState.COMPLETED: frozenset({_PENDING, _PROCESSING}),
        StepState.FAILED: frozenset({_PENDING, _PROCESSING}),
        StepState.CANCELLED: frozenset({_PENDING, _PROCESSING}),
    }
)
"""For each state a step may be moved to, the states it may be moved from. Nothing moves a
step to ``pending`` (it is recorded so), and ``completed`` and ``failed`` are final."""


def step_move_sources(target: StepState) -> tuple[StepState, ...]:
    """The states a step may move to ``target`` from, in declaration order (what an SQL
    store puts in its ``state IN (...)`` guard)."""
    allowed = STEP_MOVES.get(target, frozenset())
    return tuple(state for state in StepState if state in allowed)


def refused_step_move(step_id: str, current: StepState | str, target: StepState) -> StepStateError:
    """The error for refusing to move step ``step_id`` from ``current`` to ``target``: one
    message for every store."""
    return StepStateError(
        f"step {step_id} is {StepState(current).value}, cannot move it to {target.value}"
    )


def check_step_move(step_id: str, current: StepState, target: StepState) -> None:
    """Allow moving step ``step_id`` from ``current`` to ``target``, or raise.

    Raises:
        StepStateError: :data:`STEP_MOVES` does not allow the move.
    """
    if current not in STEP_MOVES.get(target, frozenset()):
        raise refused_step_move(step_id, current, target)
