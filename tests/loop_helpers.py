"""Helpers shared by the loop tests: a stored response and one call to run it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from responseloop import (
    ChatTransition,
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import (
    AgentSpec,
    Complete,
    EventSink,
    Fail,
    HttpClient,
    ResponseStore,
    ToolExecutor,
    ToolKind,
    ToolSchema,
)
from responseloop.observe import LoopObserver
from responseloop.testing import RecordingToolExecutor

UPSTREAM = UpstreamTarget("http://upstream.invalid", api_key="sk-test")
RESPONSE_ID = "resp_test"


def chat_body(text: str = "hi", **settings: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": [{"role": "user", "content": text}], **settings}


async def new_response(store: ResponseStore, response_id: str = RESPONSE_ID) -> str:
    await store.create_response(ResponseRecord(id=response_id, request={"model": "test-model"}))
    return response_id


async def run(
    http_client: HttpClient,
    *,
    store: ResponseStore | None = None,
    tools: ToolExecutor | None = None,
    body: Mapping[str, Any] | None = None,
    config: LoopConfig | None = None,
    events: EventSink | None = None,
    observer: LoopObserver | None = None,
    response_id: str = RESPONSE_ID,
    create: bool = True,
) -> Complete | Fail:
    store = store if store is not None else InMemoryStore()
    if create:
        await new_response(store, response_id)
    return await run_response_loop(
        response_id,
        store=store,
        http_client=http_client,
        upstream=UPSTREAM,
        transition=ChatTransition(body or chat_body()),
        tools=tools,
        config=config,
        events=events,
        observer=observer,
    )


class CountingStore(InMemoryStore):
    """The in-memory store, recording each response read: shows the reads a request costs
    (its references, its restored history)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def get_response(self, response_id: str) -> ResponseRecord:
        self.reads.append(response_id)
        return await super().get_response(response_id)


class Barrier:
    """Lets ``parties`` tasks wait for each other: proof of overlap, no timing involved."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_arrived = anyio.Event()
        self.max_concurrent = 0
        self.running = 0

    async def wait(self) -> None:
        self.arrived += 1
        self.running += 1
        self.max_concurrent = max(self.max_concurrent, self.running)
        if self.arrived >= self.parties:
            self.all_arrived.set()
        # A serial runner would never let the others arrive: fail instead of hanging.
        with anyio.fail_after(10):
            await self.all_arrived.wait()
        self.running -= 1


def broken(arguments: Any) -> Any:
    raise ValueError("broken tool")


def mixed_tools() -> RecordingToolExecutor:
    """A succeeding tool, a failing one, and an agent tool whose sub-loop has all three:
    what the property tests draw tool calls against."""
    tools = RecordingToolExecutor()
    tools.add("ok")
    tools.add("broken", broken)
    tools.add(ToolSchema("agent", kind=ToolKind.AGENT, agent=AgentSpec()), sub_agent_tools=tools)
    return tools
