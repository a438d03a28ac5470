"""What every reliability test checks after a fault: the response ended, nothing is left
in flight, and no task outlived the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from responseloop import (
    HttpxClient,
    InMemoryStore,
    LoopConfig,
    ResponseStatus,
    ResponseStore,
    RetryPolicy,
    StepState,
    ToolExecutor,
    UpstreamTarget,
)
from responseloop.adapters import ResponsesService
from responseloop.tools import StaticToolResolver

# Fast retries: three tries, no computed backoff, and waits recorded instead of slept.
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0)

# The loopback upstream's own tasks (one per connection) end when the client's pool lets
# the connection go, which is the server's business, not the run's.
_SERVER_TASKS = ("tests.upstream.", "anyio.")


class RecordedSleeps:
    """An injected ``sleep``: records each retry wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await anyio.lowlevel.checkpoint()


def task_ids() -> set[int]:
    """The ids of the tasks running now."""
    return {task.id for task in anyio.get_running_tasks()}


def leftover_tasks(before: set[int]) -> list[str]:
    """Tasks started since ``before`` that are still running (the server's aside)."""
    return [
        task.name or "?"
        for task in anyio.get_running_tasks()
        if task.id not in before and not (task.name or "").startswith(_SERVER_TASKS)
    ]


async def unsettled_steps(store: ResponseStore, response_id: str) -> list[tuple[str, str]]:
    """``(step id, state)`` of every step in any scope that is still pending or processing."""
    left: list[tuple[str, str]] = []
    scopes: list[str | None] = [None]
    while scopes:
        for step in await store.list_chain(response_id, scopes.pop()):
            if step.state in (StepState.PENDING, StepState.PROCESSING):
                left.append((step.id, step.state.value))
            scopes.append(step.id)
    return left


async def assert_settled(store: ResponseStore, response_id: str) -> ResponseStatus:
    """The response is terminal in ``store`` and none of its steps is in flight."""
    record = await store.get_response(response_id)
    assert record.status.is_terminal, record.status
    assert await unsettled_steps(store, response_id) == []
    return record.status


@asynccontextmanager
async def service_for(
    url: str,
    *,
    store: ResponseStore | None = None,
    tools: ToolExecutor | None = None,
    config: LoopConfig | None = None,
    sleeps: RecordedSleeps | None = None,
) -> AsyncIterator[ResponsesService]:
    """A :class:`ResponsesService` over a real :class:`HttpxClient` to ``url`` (``…/v1``)."""
    async with HttpxClient(retry=FAST_RETRY, sleep=sleeps or RecordedSleeps()) as http:
        yield ResponsesService(
            store=store if store is not None else InMemoryStore(),
            http_client=http,
            upstream=UpstreamTarget(url, "/chat/completions", "sk-upstream"),
            resolver=StaticToolResolver(tools) if tools is not None else None,
            config=config,
        )


async def wait_until(check: Callable[[], bool], wake: Callable[[], Awaitable[Any]]) -> None:
    """Await ``wake`` until ``check`` holds (an event-driven wait, no time involved)."""
    while not check():
        await wake()
