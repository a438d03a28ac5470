"""Shared test setup: every async test runs on asyncio and on trio; ``upstream`` is the
loopback chat-completions server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.loopback_upstream import Upstream, running_upstream


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """The loopback upstream, served in the test's own event loop."""
    async with running_upstream() as server:
        yield server


def require_service(name: str, reachable: bool, detail: str) -> None:
    """Skip when a local service is missing, or fail when the run demands services
    (``RESPONSELOOP_REQUIRE_SERVICES=1``, which ``.ci/run`` sets)."""
    if reachable:
        return
    message = f"{name} is not reachable ({detail})"
    if os.environ.get("RESPONSELOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; RESPONSELOOP_REQUIRE_SERVICES=1 demands it")
    pytest.skip(f"{message}; set it up or run .ci/run to test against it")
