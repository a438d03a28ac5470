"""What every reliability test checks after a fault: the response ended, nothing is left
in flight, and no task outlived the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel

from responseloop import (
    HttpxClient,
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    ResponsesService,
    RetryPolicy,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import (
    JSON,
    ApprovalStore,
    ChainStep,
    ConversationContents,
    ConversationRecord,
    ConversationStore,
    HttpRequest,
    RecordedStep,
    ResponseStatus,
    ResponseStore,
    ResponseUpdate,
    StepAdvancingStore,
    StepDescriptor,
    StepState,
    StepUpdate,
    ToolExecutor,
    ToolSchema,
)
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel

# Fast retries: three tries, no computed backoff, and waits recorded instead of slept.
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0)

# The loopback upstream's own tasks (one per connection) end when the client's pool lets
# the connection go, which is the server's business, not the run's.
_SERVER_TASKS = ("tests.loopback_upstream.", "anyio.")


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


Hook = Callable[[str], Awaitable[None]]


class HookedStore:
    """Wraps a store and awaits ``hook("<method>:before")`` and ``hook("<method>:after")``
    around every call (``update_step:<state>`` for a step update): where the tests inject
    store failures and cancellations."""

    def __init__(self, inner: ResponseStore, hook: Hook) -> None:
        self.inner = inner
        self.hook = hook

    async def _around(self, method: str, call: Callable[[], Awaitable[Any]]) -> Any:
        await self.hook(f"{method}:before")
        result = await call()
        await self.hook(f"{method}:after")
        return result

    async def create_response(self, record: ResponseRecord) -> None:
        await self._around("create_response", lambda: self.inner.create_response(record))

    async def get_response(self, response_id: str) -> ResponseRecord:
        record: ResponseRecord = await self._around(
            "get_response", lambda: self.inner.get_response(response_id)
        )
        return record

    async def update_response(
        self, response_id: str, update: ResponseUpdate, *, fence: str | None = None
    ) -> None:
        await self._around(
            "update_response", lambda: self.inner.update_response(response_id, update, fence=fence)
        )

    async def delete_response(self, response_id: str) -> None:
        await self._around("delete_response", lambda: self.inner.delete_response(response_id))

    async def claim_response(self, response_id: str, claimant: str, lease_seconds: float) -> bool:
        claimed: bool = await self._around(
            "claim_response",
            lambda: self.inner.claim_response(response_id, claimant, lease_seconds),
        )
        return claimed

    async def release_response(self, response_id: str, claimant: str) -> None:
        await self._around(
            "release_response", lambda: self.inner.release_response(response_id, claimant)
        )

    async def expired_responses(self, limit: int, *, unclaimed_grace: float) -> Sequence[str]:
        found: Sequence[str] = await self._around(
            "expired_responses",
            lambda: self.inner.expired_responses(limit, unclaimed_grace=unclaimed_grace),
        )
        return found

    async def request_cancel(self, response_id: str) -> None:
        await self._around("request_cancel", lambda: self.inner.request_cancel(response_id))

    async def cancels_requested(self, response_ids: Sequence[str]) -> Sequence[str]:
        found: Sequence[str] = await self._around(
            "cancels_requested", lambda: self.inner.cancels_requested(response_ids)
        )
        return found

    async def append_events(
        self,
        response_id: str,
        first_sequence: int,
        events: Sequence[str],
        *,
        fence: str | None = None,
    ) -> None:
        await self._around(
            "append_events",
            lambda: self.inner.append_events(response_id, first_sequence, events, fence=fence),
        )

    async def list_events(
        self, response_id: str, after: int, limit: int
    ) -> Sequence[tuple[int, str]]:
        listed: Sequence[tuple[int, str]] = await self._around(
            "list_events", lambda: self.inner.list_events(response_id, after, limit)
        )
        return listed

    async def record_step(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        step: StepDescriptor,
        *,
        fence: str | None = None,
    ) -> RecordedStep:
        recorded: RecordedStep = await self._around(
            "record_step",
            lambda: self.inner.record_step(response_id, scope, prev_step_id, step, fence=fence),
        )
        return recorded

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, *, fence: str | None = None
    ) -> None:
        # Labelled by the move ("update_step:completed"), so a test can aim at one kind.
        await self._around(
            f"update_step:{update.state.value}",
            lambda: self.inner.update_step(response_id, step_id, update, fence=fence),
        )

    async def list_chain(self, response_id: str, scope: str | None) -> Sequence[ChainStep]:
        chain: Sequence[ChainStep] = await self._around(
            "list_chain", lambda: self.inner.list_chain(response_id, scope)
        )
        return chain

    # The conversation calls, passed on (the inner store must keep conversations).

    @property
    def _kept(self) -> ConversationStore:
        assert isinstance(self.inner, ConversationStore)
        return self.inner

    async def create_conversation(
        self, record: ConversationRecord, items: Sequence[Mapping[str, Any]]
    ) -> None:
        await self._around(
            "create_conversation", lambda: self._kept.create_conversation(record, items)
        )

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        record: ConversationRecord = await self._around(
            "get_conversation", lambda: self._kept.get_conversation(conversation_id)
        )
        return record

    async def update_conversation(
        self, conversation_id: str, metadata: Mapping[str, str]
    ) -> ConversationRecord:
        record: ConversationRecord = await self._around(
            "update_conversation",
            lambda: self._kept.update_conversation(conversation_id, metadata),
        )
        return record

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._around(
            "delete_conversation", lambda: self._kept.delete_conversation(conversation_id)
        )

    async def list_conversation(self, conversation_id: str) -> ConversationContents:
        contents: ConversationContents = await self._around(
            "list_conversation", lambda: self._kept.list_conversation(conversation_id)
        )
        return contents

    async def add_conversation_items(
        self, conversation_id: str, items: Sequence[Mapping[str, Any]]
    ) -> int:
        first: int = await self._around(
            "add_conversation_items",
            lambda: self._kept.add_conversation_items(conversation_id, items),
        )
        return first

    async def begin_conversation_turn(
        self, conversation_id: str, response_id: str, *, expected_position: int
    ) -> None:
        await self._around(
            "begin_conversation_turn",
            lambda: self._kept.begin_conversation_turn(
                conversation_id, response_id, expected_position=expected_position
            ),
        )

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> None:
        await self._around(
            "delete_conversation_item",
            lambda: self._kept.delete_conversation_item(conversation_id, item_id),
        )

    async def claim_approvals(
        self, caller: str | None, approval_request_ids: Sequence[str], response_id: str
    ) -> Mapping[str, str]:
        inner = self.inner
        assert isinstance(inner, ApprovalStore)
        owners: Mapping[str, str] = await self._around(
            "claim_approvals",
            lambda: inner.claim_approvals(caller, approval_request_ids, response_id),
        )
        return owners


# A scripted multi-step conversation: ROUNDS rounds of two parallel calls of an idempotent
# server tool, then a text answer. The model answers from the request alone, so a resumed
# run gets the same answers as the run it continues.
ROUNDS = 2
LOOKUP = ToolSchema("lookup", "Look a word up.", idempotent=True)


def conversation_reply(request: HttpRequest) -> ChatReply:
    """The model's answer to ``request`` in the scripted conversation."""
    assert isinstance(request.json, Mapping)
    messages = request.json["messages"]
    done = sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
    if done >= ROUNDS:
        return ChatReply.text("All done.")
    return ChatReply.calls(
        ("lookup", {"q": f"{done}a"}, f"call_{done}_a"),
        ("lookup", {"q": f"{done}b"}, f"call_{done}_b"),
    )


def conversation_model() -> ScriptedChatModel:
    """A model that plays :func:`conversation_reply` as often as it is called."""
    return ScriptedChatModel([conversation_reply] * 1000)


def conversation_tools(on_call: Hook | None = None) -> RecordingToolExecutor:
    """The ``lookup`` tool, awaiting ``on_call("tool")`` first when given."""

    async def lookup(arguments: JSON) -> JSON:
        if on_call is not None:
            await on_call("tool")
        return {"found": arguments}

    tools = RecordingToolExecutor()
    tools.add(LOOKUP, lookup)
    return tools


CONVERSATION = {"model": "m", "input": "Look things up."}
MODEL_STEPS = ROUNDS + 1
TOOL_STEPS = 2 * ROUNDS


async def every_step(store: ResponseStore, response_id: str) -> list[ChainStep]:
    """Every step of the response, all scopes."""
    steps: list[ChainStep] = []
    scopes: list[str | None] = [None]
    while scopes:
        chain = await store.list_chain(response_id, scopes.pop())
        steps += chain
        scopes += [step.id for step in chain]
    return steps


def local_service(
    store: ResponseStore, model: ScriptedChatModel, tools: ToolExecutor, config: LoopConfig
) -> ResponsesService:
    """A :class:`ResponsesService` over ``model`` (no network), for the loop-level faults."""
    return ResponsesService(
        store=store,
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
        resolver=StaticToolResolver(tools),
        config=config,
    )


class HookedAdvancingStore(HookedStore):
    """A :class:`HookedStore` over a store that starts steps and advances them
    (:class:`~responseloop.abc.StepAdvancingStore`), passing those calls on hooked too, so
    the loop takes its one-write-per-step path."""

    def __init__(self, inner: ResponseStore, hook: Hook) -> None:
        assert isinstance(inner, StepAdvancingStore), inner
        super().__init__(inner, hook)
        self.advancing = inner

    async def record_started_steps(
        self,
        response_id: str,
        scope: str | None,
        prev_step_id: str | None,
        steps: Sequence[StepDescriptor],
        *,
        fence: str | None = None,
    ) -> Sequence[RecordedStep]:
        recorded: Sequence[RecordedStep] = await self._around(
            "record_started_steps",
            lambda: self.advancing.record_started_steps(
                response_id, scope, prev_step_id, steps, fence=fence
            ),
        )
        return recorded

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
        recorded: Sequence[RecordedStep] = await self._around(
            "complete_and_start_steps",
            lambda: self.advancing.complete_and_start_steps(
                response_id, scope, completed_step_id, payload, steps, fence=fence
            ),
        )
        return recorded
