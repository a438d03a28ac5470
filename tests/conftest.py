"""Shared test setup: every async test runs on asyncio and on trio."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def require_service(name: str, reachable: bool, detail: str) -> None:
    """Skip when a local service is missing, or fail when the run demands services
    (``RESPONSELOOP_REQUIRE_SERVICES=1``, which ``.ci/run`` sets)."""
    if reachable:
        return
    message = f"{name} is not reachable ({detail})"
    if os.environ.get("RESPONSELOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; RESPONSELOOP_REQUIRE_SERVICES=1 demands it")
    pytest.skip(f"{message}; set it up or run .ci/run to test against it")
