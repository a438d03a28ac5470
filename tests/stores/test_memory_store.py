"""InMemoryStore passes the store conformance suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from responseloop import InMemoryStore
from responseloop.abc import ResponseStore
from responseloop.testing import (
    ApprovalStoreConformance,
    ConversationStoreConformance,
    StepAdvancingStoreConformance,
    StepStartingStoreConformance,
    StoreConformance,
)


class TestInMemoryStore(
    StoreConformance,
    ConversationStoreConformance,
    ApprovalStoreConformance,
    StepAdvancingStoreConformance,
    StepStartingStoreConformance,
):
    @contextlib.asynccontextmanager
    async def open_store(self, clock: Callable[[], float]) -> AsyncIterator[ResponseStore]:
        yield InMemoryStore(clock=clock)
