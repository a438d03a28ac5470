"""The conformance suite fails stores that break the contract (a suite that cannot fail
would prove nothing)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from responseloop import InMemoryStore
from responseloop.abc import JSON, ResponseStatus, ResponseStore
from responseloop.testing import StoreConformance


class SortsKeys(InMemoryStore):
    """Normalises payloads the way jsonb does: keys come back reordered."""

    async def complete_step(self, response_id: str, step_id: str, payload: JSON) -> None:
        await super().complete_step(
            response_id, step_id, json.loads(json.dumps(payload, sort_keys=True))
        )


class CompletesTwice(InMemoryStore):
    """Lets a completed step be completed again."""

    async def complete_step(self, response_id: str, step_id: str, payload: JSON) -> None:
        with contextlib.suppress(Exception):
            await super().cancel_step(response_id, step_id)
        await super().mark_step_processing(response_id, step_id)
        await super().complete_step(response_id, step_id, payload)


class SharedLease(InMemoryStore):
    """Grants every claim."""

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        await super().get_response(response_id)
        return True


class KeepsUnstored(InMemoryStore):
    """Ignores ``store=False``."""

    async def finalize_response(
        self, response_id: str, status: ResponseStatus, response: JSON
    ) -> None:
        entry: Any = self._responses[response_id]  # reaching in is the point of this fake
        entry.record = entry.record.__class__(
            entry.record.id, entry.record.request, status=status, response=response
        )


def suite_for(make: Callable[..., ResponseStore]) -> StoreConformance:
    class Suite(StoreConformance):
        @contextlib.asynccontextmanager
        async def open_store(self, clock: Callable[[], float]) -> AsyncIterator[ResponseStore]:
            yield make(clock=clock)

    return Suite()


@pytest.mark.parametrize(
    ("store", "check", "complaint"),
    [
        (SortsKeys, "test_payloads_round_trip_exactly", "did not round-trip"),
        (CompletesTwice, "test_illegal_transitions_are_step_state_errors", "StepStateError"),
        (SharedLease, "test_lease_is_exclusive_and_renewable", "excludes b"),
        (SharedLease, "test_concurrent_claims_have_one_winner", "winners"),
        (KeepsUnstored, "test_store_false_is_deleted_when_finalised", "ResponseNotFound"),
    ],
)
async def test_the_suite_fails_a_broken_store(
    store: Callable[..., ResponseStore], check: str, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        await getattr(suite_for(store), check)()
