"""The response's lease, renewed while the loop drives the response: by a task of the run's
own, or by a :class:`LeaseKeeper` that renews every lease of a worker from one task."""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable
from types import TracebackType

import anyio
import anyio.abc
import attrs

from ..abc._protocols import ResponseStore
from ..exceptions import LeaseLost, StoreError
from ._concurrency import first_error
from ._scope import Run

__all__ = ["LeaseKeeper", "renewing_lease"]

logger = logging.getLogger("responseloop.loop")

# How many leases a keeper renews at once: enough that thousands of leases on a store a
# round trip away are renewed well within a third of their lease, few enough not to crowd
# the store's connections.
_RENEWALS_AT_ONCE = 16


@contextlib.asynccontextmanager
async def renewing_lease(run: Run, claimant: str) -> AsyncIterator[None]:
    """Renew the run's lease from a task of its own while inside (a run with no
    :class:`LeaseKeeper`); the inside is stopped at once if the lease was lost, and
    :class:`LeaseLost` raised."""
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
                yield
            finally:
                finished.set()
                if renewing:
                    group.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    if run.lease_lost:
        raise LeaseLost(run.response_id)


@attrs.define(eq=False)
class _Hold:
    store: ResponseStore
    response_id: str
    claimant: str
    lease_seconds: float
    due: float
    on_lost: list[Callable[[], None]] = attrs.field(factory=list)

    @property
    def key(self) -> tuple[int, str, str]:
        return id(self.store), self.response_id, self.claimant


class LeaseKeeper:
    """Renews the leases of every response a worker runs, from one task.

    Without a keeper, each run of the loop renews its own lease from a task of its own,
    under a task group of its own: a few kilobytes and several trips through the event
    loop per response, which a worker running thousands of responses at once pays
    thousands of times. With one, a run only registers its lease here, and the keeper
    renews each lease every third of its ``lease_seconds``.

    Use one per worker (per event loop), open for as long as the worker runs responses::

        async with LeaseKeeper() as keeper:
            await run_response_loop(..., lease_keeper=keeper)

    :class:`~responseloop.ResponsesService` takes one as ``lease_keeper=`` (or opens its
    own in :meth:`~responseloop.ResponsesService.keeping_leases`), and the ASGI app and
    ``responseloop serve`` run one for the whole server.

    A lease found lost (another worker took the response over) is reported to its holder,
    which stops at its next step or store write: every write is fenced by the lease, so
    nothing more of that run is stored, though the one step in flight then is not
    interrupted. A store failing to renew is logged and retried sooner; if it fails until
    the lease expires, the fenced writes tell the run.
    """

    def __init__(self) -> None:
        self._holds: list[tuple[float, int, _Hold]] = []  # a heap, by when each is due
        self._held: dict[tuple[int, str, str], _Hold] = {}
        self._due: collections.deque[_Hold] = collections.deque()  # taken by the renewers
        self._renewers = 0
        self._order = itertools.count()
        self._changed = anyio.Event()
        self._group: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"<LeaseKeeper holding={len(self._held)} running={self._group is not None}>"

    @property
    def running(self) -> bool:
        """Whether the keeper is open (its renewing task runs)."""
        return self._group is not None

    async def __aenter__(self) -> LeaseKeeper:
        if self._group is not None:
            raise RuntimeError("this LeaseKeeper is open already")
        group = anyio.create_task_group()
        await group.__aenter__()
        group.start_soon(self._keep, group)
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        assert group is not None
        group.cancel_scope.cancel()
        await group.__aexit__(exc_type, exc, traceback)

    def hold(
        self,
        store: ResponseStore,
        response_id: str,
        claimant: str,
        lease_seconds: float,
        on_lost: Callable[[], None],
    ) -> contextlib.AbstractContextManager[None]:
        """Keep ``claimant``'s lease on ``response_id`` (claimed already) renewed while
        inside; ``on_lost`` is called, once, if a renewal finds another worker holds it.

        Holding a lease held here already (a service holds it, and the run it starts
        holds it again) renews it once, and tells every holder of its loss.

        Raises :class:`RuntimeError` if the keeper is not open: a lease nobody renews
        would expire under the running response.
        """
        return self._lease_hold(store, response_id, claimant, lease_seconds, on_lost)

    def _lease_hold(
        self,
        store: ResponseStore,
        response_id: str,
        claimant: str,
        lease_seconds: float,
        on_lost: Callable[[], None],
    ) -> _Holding:
        """:meth:`hold`, for the loop: a hold it may also enter with ``async with``."""
        if self._group is None:
            raise RuntimeError("the LeaseKeeper is not open: use `async with LeaseKeeper()`")
        return _Holding(self, store, response_id, claimant, lease_seconds, on_lost)

    def _take(
        self,
        store: ResponseStore,
        response_id: str,
        claimant: str,
        lease_seconds: float,
        on_lost: Callable[[], None],
    ) -> _Hold:
        key = (id(store), response_id, claimant)
        hold = self._held.get(key)
        if hold is None:
            hold = self._held[key] = _Hold(store, response_id, claimant, lease_seconds, 0.0)
            self._schedule(hold, lease_seconds / 3)
        hold.on_lost.append(on_lost)
        return hold

    def _let_go(self, hold: _Hold, on_lost: Callable[[], None]) -> None:
        hold.on_lost.remove(on_lost)
        if not hold.on_lost and self._holding(hold):
            del self._held[hold.key]  # its heap entry is dropped when it comes due

    def _holding(self, hold: _Hold) -> bool:
        """Whether ``hold`` is still kept (not let go, not found lost)."""
        return self._held.get(hold.key) is hold

    async def _keep(self, group: anyio.abc.TaskGroup) -> None:
        while True:
            now = anyio.current_time()
            while self._holds and self._holds[0][0] <= now:
                _, _, hold = heapq.heappop(self._holds)
                if self._holding(hold):
                    self._due.append(hold)
            self._start_renewers(group)
            wait = self._holds[0][0] - now if self._holds else math.inf
            self._changed = anyio.Event()
            with anyio.move_on_after(wait):
                await self._changed.wait()

    def _start_renewers(self, group: anyio.abc.TaskGroup) -> None:
        # A few renewers take the due leases in turn, rather than a task per lease: renewing
        # 10,000 leases costs 16 tasks, not 10,000. The keeper does not wait for them, so
        # a renewal that hangs (a store call stuck on one response) holds up one renewer,
        # never the leases that come due after it.
        wanted = min(len(self._due), _RENEWALS_AT_ONCE - self._renewers)
        for _ in range(wanted):
            self._renewers += 1
            group.start_soon(self._renew_in_turn)

    async def _renew_in_turn(self) -> None:
        try:
            while self._due:
                await self._renew(self._due.popleft())
        finally:
            self._renewers -= 1

    async def _renew(self, hold: _Hold) -> None:
        if not self._holding(hold):
            return
        try:
            claimed = await hold.store.claim_response(
                hold.response_id, hold.claimant, hold.lease_seconds
            )
        except StoreError:
            # Tried again soon; the lease only lapses if the store fails until it ends.
            logger.warning(
                "could not renew the lease of response %s",
                hold.response_id,
                extra={"response_id": hold.response_id},
                exc_info=True,
            )
            self._schedule(hold, min(1.0, hold.lease_seconds / 10))
            return
        if not claimed:
            if self._holding(hold):
                del self._held[hold.key]
            for tell in list(hold.on_lost):
                tell()
        elif self._holding(hold):
            self._schedule(hold, hold.lease_seconds / 3)

    def _schedule(self, hold: _Hold, after: float) -> None:
        hold.due = anyio.current_time() + after
        first = self._holds[0][0] if self._holds else math.inf
        heapq.heappush(self._holds, (hold.due, next(self._order), hold))
        if hold.due < first:
            self._changed.set()  # the keeper sleeps until a later renewal: wake it


class _Holding:
    """One holder's hold on a lease, for as long as it is inside (:meth:`LeaseKeeper.hold`).

    A small class rather than a generator-based context manager: a worker holds one per
    response in flight, and a generator with its frame and its wrapper is several times
    the size.
    """

    __slots__ = (
        "_claimant",
        "_hold",
        "_keeper",
        "_lease_seconds",
        "_on_lost",
        "_response_id",
        "_store",
    )

    def __init__(
        self,
        keeper: LeaseKeeper,
        store: ResponseStore,
        response_id: str,
        claimant: str,
        lease_seconds: float,
        on_lost: Callable[[], None],
    ) -> None:
        self._keeper = keeper
        self._store = store
        self._hold: _Hold | None = None  # while inside
        self._response_id = response_id
        self._claimant = claimant
        self._lease_seconds = lease_seconds
        self._on_lost = on_lost

    def __enter__(self) -> None:
        if self._hold is not None:
            raise RuntimeError("this lease hold is entered already")
        self._hold = self._keeper._take(
            self._store, self._response_id, self._claimant, self._lease_seconds, self._on_lost
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        hold, self._hold = self._hold, None
        if hold is not None:
            self._keeper._let_go(hold, self._on_lost)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)
