"""The conformance suite fails stores that break the contract (a suite that cannot fail
would prove nothing)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest

from responseloop import InMemoryStore
from responseloop.abc import (
    JSON,
    RecordedStep,
    ResponseStore,
    ResponseUpdate,
    StepDescriptor,
    StepState,
    StepUpdate,
)
from responseloop.exceptions import StepStateError
from responseloop.testing import (
    ApprovalStoreConformance,
    StepAdvancingStoreConformance,
    StoreConformance,
)


class SortsKeys(InMemoryStore):
    """Normalises payloads the way jsonb does: keys come back reordered."""

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, **fence: str | None
    ) -> None:
        if update.state is StepState.COMPLETED:
            update = StepUpdate.completed(json.loads(json.dumps(update.payload, sort_keys=True)))
        await super().update_step(response_id, step_id, update, **fence)


class CompletesTwice(InMemoryStore):
    """Lets a completed step be completed again."""

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, **fence: str | None
    ) -> None:
        if update.state is StepState.COMPLETED:
            with contextlib.suppress(Exception):
                await super().update_step(response_id, step_id, StepUpdate.cancelled(), **fence)
            await super().update_step(response_id, step_id, StepUpdate.processing(), **fence)
        await super().update_step(response_id, step_id, update, **fence)


class RestartsFinishedSteps(InMemoryStore):
    """Lets any step be started again, even a completed or failed one."""

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, **fence: str | None
    ) -> None:
        if update.state is StepState.PROCESSING:
            entry: Any = self._steps[step_id]  # reaching in is the point of this fake
            entry.state = StepState.CANCELLED
        await super().update_step(response_id, step_id, update, **fence)


class RefusesRefire(InMemoryStore):
    """Refuses to start a cancelled step again (a resume's re-fire)."""

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, **fence: str | None
    ) -> None:
        states = {s.id: s.state for s in await self.list_chain(response_id, None)}
        if update.state is StepState.PROCESSING and states.get(step_id) is StepState.CANCELLED:
            raise StepStateError(f"step {step_id} is cancelled, cannot move it to processing")
        await super().update_step(response_id, step_id, update, **fence)


class SharedLease(InMemoryStore):
    """Grants every claim."""

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        await super().get_response(response_id)
        return True


class KeepsUnstored(InMemoryStore):
    """Ignores ``store=False``."""

    async def update_response(
        self, response_id: str, update: ResponseUpdate, **fence: str | None
    ) -> None:
        entry: Any = self._responses[response_id]  # reaching in is the point of this fake
        entry.record = entry.record.__class__(
            entry.record.id, entry.record.request, status=update.status, response=update.response
        )


class ClaimsPiecemeal(InMemoryStore):
    """Claims each approval on its own: a refused claim keeps what it claimed first."""

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        owners: dict[str, str] = {}
        for each in approval_request_ids:
            owners.update(await super().claim_approvals(caller, [each], response_id))
        return owners


class ClaimsForAnyCaller(InMemoryStore):
    """Keys its claims by the approval alone, forgetting the caller."""

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        return await super().claim_approvals(None, approval_request_ids, response_id)


class AdvancesPiecemeal(InMemoryStore):
    """Completes the step in one write and starts the next ones in another, so a lost
    lease leaves the completion written."""

    async def complete_and_start_steps(
        self,
        response_id: str,
        scope: str | None,
        completed_step_id: str,
        payload: JSON,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        await self.update_step(response_id, completed_step_id, StepUpdate.completed(payload))
        return await self.record_started_steps(
            response_id, scope, completed_step_id, steps, fence=fence
        )


class AdvancesWithoutCompleting(InMemoryStore):
    """Starts the next steps but leaves the step before them as it was."""

    async def complete_and_start_steps(
        self,
        response_id: str,
        scope: str | None,
        completed_step_id: str,
        payload: JSON,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        return await self.record_started_steps(
            response_id, scope, completed_step_id, steps, fence=fence
        )


def suite_for(make: Callable[..., ResponseStore]) -> Any:
    class Suite(StoreConformance, ApprovalStoreConformance, StepAdvancingStoreConformance):
        @contextlib.asynccontextmanager
        async def open_store(self, clock: Callable[[], float]) -> AsyncIterator[ResponseStore]:
            yield make(clock=clock)

    return Suite()


@pytest.mark.parametrize(
    ("store", "check", "complaint"),
    [
        (SortsKeys, "test_payloads_round_trip_exactly", "did not round-trip"),
        (CompletesTwice, "test_illegal_transitions_are_step_state_errors", "StepStateError"),
        (CompletesTwice, "test_every_step_move_follows_the_move_table", "forbids it"),
        (RestartsFinishedSteps, "test_every_step_move_follows_the_move_table", "forbids it"),
        (RefusesRefire, "test_every_step_move_follows_the_move_table", "allows it"),
        (SharedLease, "test_lease_is_exclusive_and_renewable", "excludes b"),
        (SharedLease, "test_concurrent_claims_have_one_winner", "winners"),
        (KeepsUnstored, "test_store_false_is_deleted_when_finalised", "ResponseNotFound"),
        (ClaimsPiecemeal, "test_claims_are_all_or_nothing", "a claim meeting"),
        (ClaimsForAnyCaller, "test_callers_never_share_a_claim", "caller ''"),
        (
            AdvancesPiecemeal,
            "test_advancing_under_a_lost_lease_or_a_missing_response_stores_nothing",
            "after the fenced-off write",
        ),
        (
            AdvancesWithoutCompleting,
            "test_the_step_is_completed_and_the_next_ones_started_after_it",
            "the completed step's state",
        ),
        (
            AdvancesWithoutCompleting,
            "test_advancing_from_a_step_that_cannot_complete_stores_nothing",
            "StepStateError",
        ),
    ],
)
async def test_the_suite_fails_a_broken_store(
    store: Callable[..., ResponseStore], check: str, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        await getattr(suite_for(store), check)()
