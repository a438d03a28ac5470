"""Shared test setup: every async test runs on asyncio and on trio; ``upstream`` is the
loopback chat-completions server; every Response and event a route emits is validated
(``tests/wire_capture.py``; opt out with ``@pytest.mark.wire_unchecked``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.loopback_upstream import Upstream, running_upstream
from tests.wire_capture import checking_emissions


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _wire_checked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every object the server emits in the test is checked against the SDK's types and the
    Open Responses OpenAPI, unless the test is marked ``wire_unchecked`` (it makes the
    server emit broken objects on purpose)."""
    if request.node.get_closest_marker("wire_unchecked") is not None:
        yield
        return
    with checking_emissions(monkeypatch):
        yield


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
