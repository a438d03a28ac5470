"""The response's lease, renewed while the loop drives the response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ..abc._steps import Complete, Fail
from ..exceptions import LeaseLost
from ._concurrency import first_error
from ._scope import Run

__all__ = ["holding_lease"]


async def holding_lease(
    run: Run, claimant: str, work: Callable[[], Awaitable[Complete | Fail]]
) -> Complete | Fail:
    """Do ``work`` (drive the response) while renewing its lease; stop at once if the lease
    was lost."""
    outcome: Complete | Fail | None = None
    # The renewer is told the work is over through an event rather than by cancelling it:
    # cancelling a task costs several trips through the event loop, which is a large share
    # of a fast response's own time. Only a renewal caught mid-claim is cancelled.
    finished = anyio.Event()
    renewing = False

    async def renew(work: anyio.CancelScope) -> None:
        nonlocal renewing
        while True:
            with anyio.move_on_after(run.config.lease_seconds / 3):
                await finished.wait()
                return
            renewing = True
            claimed = await run.store.claim_response(
                run.response_id, claimant, run.config.lease_seconds
            )
            renewing = False
            if not claimed:
                run.lease_lost = True
                work.cancel()
                return

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(renew, group.cancel_scope)
            try:
                outcome = await work()
            finally:
                finished.set()
                if renewing:
                    group.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    if run.lease_lost:
        raise LeaseLost(run.response_id)
    assert outcome is not None
    return outcome
