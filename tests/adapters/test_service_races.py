"""Races and failure paths of ResponsesService and the transport, found in review: every
one of them once left a step or a response in flight, leaked an error, or lost a cancel."""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

import anyio
import httpx2
import openai
import pytest

from responseloop import (
    InMemoryStore,
    LoopConfig,
    LoopRequest,
    ResponseLoopHttpClient,
    ResponseLoopTransport,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import (
    Fail,
    HttpRequest,
    HttpResponse,
    LoopEvent,
    LoopEventKind,
    StepDescriptor,
    StepState,
    StepUpdate,
    ToolSchema,
)
from responseloop.testing import ChatReply, RecordingToolExecutor, ScriptedChatModel
from responseloop.tools import AgentTool
from tests.in_process import post_responses_scope
from tests.loop_helpers import RESPONSE_ID, chat_body, new_response, run

UPSTREAM = UpstreamTarget("http://upstream.invalid/v1", "/chat/completions", "sk-upstream")
BODY = {"model": "m", "input": "hi"}


class GatedModel(ScriptedChatModel):
    """Holds every model call until released."""

    def __init__(self, replies: list[ChatReply]) -> None:
        super().__init__(replies)
        self.release = anyio.Event()

    async def execute(self, request: HttpRequest) -> HttpResponse:
        await self.release.wait()
        return await super().execute(request)


async def test_a_duplicate_delivery_while_running_gets_409_and_the_first_run_completes() -> None:
    model = GatedModel([ChatReply.text("done")])
    service = ResponsesService(store=InMemoryStore(), http_client=model, upstream=UPSTREAM)
    seam = ResponseLoopHttpClient(service)
    job = LoopRequest("resp_dup", BODY, caller="u")
    first: list[HttpResponse] = []

    async def deliver() -> None:
        first.append(await seam.execute(job))

    async with anyio.create_task_group() as group:
        group.start_soon(deliver)
        await anyio.wait_all_tasks_blocked()
        assert (await seam.execute(job)).status == 409
        assert service.running == {"resp_dup"}  # the duplicate did not unregister the run
        cancelled = await service.cancel("resp_dup", caller="u")
        model.release.set()

    assert cancelled["status"] == "cancelled"
    assert first[0].status == 499
    assert (await service.store.get_response("resp_dup")).status.value == "cancelled"


class BlockingSink:
    """A bounded channel whose reader never comes back."""

    async def emit(self, event: LoopEvent) -> None:
        if event.kind is LoopEventKind.STEP_STARTED:
            await anyio.sleep_forever()


async def test_a_cancel_while_the_sink_blocks_leaves_no_step_processing() -> None:
    store = InMemoryStore()
    service = ResponsesService(
        store=store, http_client=ScriptedChatModel([ChatReply.text("x")]), upstream=UPSTREAM
    )
    prepared = await service.prepare(BODY, api_key=None, caller="u")

    async with anyio.create_task_group() as group:

        async def running() -> None:
            await service.run(prepared, events=BlockingSink())

        group.start_soon(running)
        await anyio.wait_all_tasks_blocked()
        answered = await service.cancel(prepared.response_id, caller="u")

    assert answered["status"] == "cancelled"
    chain = await store.list_chain(prepared.response_id, None)
    assert [s.state for s in chain] == [StepState.CANCELLED]


class AwaitingStore(InMemoryStore):
    """Writes that await, as every durable store's do."""

    async def record_step(self, *args: Any, **fence: Any) -> Any:
        await anyio.sleep(0.01)
        return await super().record_step(*args, **fence)

    async def update_response(self, *args: Any, **fence: Any) -> None:
        await anyio.sleep(0.02)
        await super().update_response(*args, **fence)


async def test_a_cancel_while_recording_a_fan_out_leaves_nothing_pending() -> None:
    tools = RecordingToolExecutor()
    tools.add("a")
    tools.add("b")

    class Recording(AwaitingStore):
        second_step = anyio.Event()
        # One step at a time, as a store that is no StepStartingStore records a fan-out.
        record_started_steps = None  # type: ignore[assignment]

        async def record_step(self, *args: Any, **fence: Any) -> Any:
            recorded = await super().record_step(*args, **fence)
            if recorded.sequence == 2:
                self.second_step.set()
            return recorded

    store = Recording()
    model = ScriptedChatModel([ChatReply.calls(("a", {}, "c1"), ("b", {}, "c2"))])
    service = ResponsesService(
        store=store, http_client=model, upstream=UPSTREAM, resolver=StaticToolResolver(tools)
    )
    prepared = await service.prepare(BODY, api_key=None, caller="u")

    async with anyio.create_task_group() as group:
        group.start_soon(service.run, prepared)
        await store.second_step.wait()
        await service.cancel(prepared.response_id, caller="u")

    states = {s.state for s in await store.list_chain(prepared.response_id, None)}
    assert states.isdisjoint({StepState.PENDING, StepState.PROCESSING})
    assert tools.calls == []


class BrokenClient(ScriptedChatModel):
    """A host's HttpClient breaking its contract."""

    async def execute(self, request: HttpRequest) -> HttpResponse:
        raise RuntimeError("bug in the host's client")


async def test_an_unexpected_exception_still_ends_the_step_and_the_response() -> None:
    store = InMemoryStore()
    service = ResponsesService(store=store, http_client=BrokenClient(), upstream=UPSTREAM)
    prepared = await service.prepare(BODY, api_key=None, caller="u")

    with pytest.raises(RuntimeError):
        await service.run(prepared)

    chain = await store.list_chain(prepared.response_id, None)
    record = await store.get_response(prepared.response_id)
    assert (chain[0].state, record.status.value) == (StepState.FAILED, "failed")
    answer = await ResponseLoopHttpClient(service).execute(
        LoopRequest("resp_other", BODY, caller="u")
    )
    assert answer.status == 500
    assert answer.json()["error"]["code"] == "internal_error"


async def test_an_unexpected_exception_ends_a_stream_with_an_error_event() -> None:
    service = ResponsesService(store=InMemoryStore(), http_client=BrokenClient(), upstream=UPSTREAM)
    async with httpx2.AsyncClient(
        transport=ResponseLoopTransport(service), base_url="http://t"
    ) as http:
        answer = await http.post("/v1/responses", json={**BODY, "stream": True})
    kinds = [line.removeprefix("event: ") for line in answer.text.splitlines() if "event:" in line]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "error"


async def test_a_terminal_stream_event_comes_after_the_response_is_stored() -> None:
    model = ScriptedChatModel([ChatReply.text("first"), ChatReply.text("second")])
    service = ResponsesService(store=AwaitingStore(), http_client=model, upstream=UPSTREAM)
    http = httpx2.AsyncClient(transport=ResponseLoopTransport(service))
    async with openai.AsyncOpenAI(base_url="http://t/v1", api_key="k", http_client=http) as client:
        stream = await client.responses.create(model="m", input="hi", stream=True)
        async for event in stream:
            if event.type == "response.completed":
                follow = await client.responses.create(
                    model="m", input="and?", previous_response_id=event.response.id
                )
                assert follow.output_text == "second"
                stored = await client.responses.retrieve(event.response.id)
                assert stored.model_dump() == event.response.model_dump()
        await stream.close()


async def test_a_stream_closed_unread_is_stored_cancelled() -> None:
    store = InMemoryStore()
    service = ResponsesService(
        store=store, http_client=ScriptedChatModel([ChatReply.text("x")]), upstream=UPSTREAM
    )
    http = httpx2.AsyncClient(transport=ResponseLoopTransport(service))
    async with openai.AsyncOpenAI(base_url="http://t/v1", api_key="k", http_client=http) as client:
        stream = await client.responses.create(model="m", input="hi", stream=True)
        await stream.close()
        listing = await http.get("http://t/v1/responses/none")  # the transport still serves
    assert listing.status_code == 404
    (record,) = [await store.get_response(i) for i in list(store._responses)]
    assert record.status.value == "cancelled"


# asyncio only: it is asyncio's async-generator finaliser that once closed the body twice;
# on trio, breaking out leaves httpx2's own byte iterators to the garbage collector.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_breaking_out_of_a_raw_stream_cancels_cleanly(anyio_backend: str) -> None:
    store = InMemoryStore()
    model = ScriptedChatModel([ChatReply.text("x", delay=float("inf"))])
    service = ResponsesService(store=store, http_client=model, upstream=UPSTREAM)
    async with (
        httpx2.AsyncClient(transport=ResponseLoopTransport(service), base_url="http://t") as http,
        http.stream("POST", "/v1/responses", json={**BODY, "stream": True}) as answer,
    ):
        async for _ in answer.aiter_bytes():
            break
    assert service.running == frozenset()
    (record,) = [await store.get_response(i) for i in list(store._responses)]
    assert record.status.value == "cancelled"


async def test_resume_never_leaves_a_refireable_sibling_processing() -> None:
    store = InMemoryStore()
    await new_response(store)
    body = chat_body()
    reply = ChatReply.calls(("idem", {}, "c1"), ("plain", {}, "c2"))
    model_step = await store.record_step(RESPONSE_ID, None, None, StepDescriptor.model_call(body))
    await store.update_step(RESPONSE_ID, model_step.id, StepUpdate.processing())
    await store.update_step(
        RESPONSE_ID,
        model_step.id,
        StepUpdate.completed(reply.completion(HttpRequest("u", body), 1)),
    )
    idem = await store.record_step(
        RESPONSE_ID, None, model_step.id, StepDescriptor.tool_call("idem", "c1", {})
    )
    plain = await store.record_step(
        RESPONSE_ID, None, idem.id, StepDescriptor.tool_call("plain", "c2", {})
    )
    for step in (idem, plain):
        await store.update_step(RESPONSE_ID, step.id, StepUpdate.processing())
    tools = RecordingToolExecutor()
    tools.add(ToolSchema("idem", idempotent=True))
    tools.add("plain")

    outcome = await run(
        ScriptedChatModel(),
        store=store,
        tools=tools,
        body=body,
        create=False,
        config=LoopConfig(refire_idempotent_tools=True),
    )

    assert isinstance(outcome, Fail)
    assert outcome.error["type"] == "step_abandoned"
    states = {s.id: s.state for s in await store.list_chain(RESPONSE_ID, None)}
    assert states[idem.id] is StepState.CANCELLED
    assert states[plain.id] is StepState.FAILED
    assert tools.calls == []


async def test_usage_counts_the_model_calls_of_nested_sub_agents() -> None:
    inner = AgentTool("inner", "level 2")
    outer = AgentTool("outer", "level 1", tools=inner)
    model = ScriptedChatModel(
        [
            ChatReply.tool_call("outer", {"input": "a"}),
            ChatReply.tool_call("inner", {"input": "b"}),
            ChatReply.text("inner done"),
            ChatReply.text("outer done"),
            ChatReply.text("final"),
        ]
    )
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=model,
        upstream=UPSTREAM,
        resolver=StaticToolResolver(outer),
    )
    result = await service.run(await service.prepare(BODY, api_key=None, caller="u"))
    assert len(model.requests) == 5
    assert result.response["usage"]["total_tokens"] == 5 * 15


async def test_a_failing_resolver_never_logs_the_key_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-caller-very-secret"

    class Strict:
        async def resolve(self, api_key: str | None, model: str) -> Any:
            by_key: dict[str | None, Any] = {}
            return by_key[api_key]  # KeyError(api_key)

    service = ResponsesService(
        store=InMemoryStore(),
        upstream=UPSTREAM,
        http_client=ScriptedChatModel([ChatReply.text("ok")]),
        resolver=Strict(),
    )
    with caplog.at_level(logging.DEBUG, logger="responseloop"):
        await service.run(await service.prepare(BODY, api_key=secret, caller="u"))
    visible = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert any("tool resolution failed (KeyError)" in r.getMessage() for r in visible)
    assert all(secret not in logging.Formatter().format(r) for r in visible)


async def test_a_client_tool_named_like_a_server_tool_is_a_400_and_stores_nothing() -> None:
    tools = RecordingToolExecutor()
    tools.add("lookup")
    store = InMemoryStore()
    service = ResponsesService(
        store=store,
        http_client=ScriptedChatModel(),
        upstream=UPSTREAM,
        resolver=StaticToolResolver(tools),
    )
    body = {**BODY, "tools": [{"type": "function", "name": "lookup", "parameters": {}}]}

    answer = await ResponseLoopHttpClient(service).execute(LoopRequest("resp_x", body))

    assert answer.status == 400
    assert answer.json()["error"]["param"] == "tools[0].name"
    assert list(store._responses) == []


def routes_for(service: ResponsesService, runner: Any = None) -> Any:
    from responseloop.adapters import caller_from_key
    from responseloop.adapters._routes import ResponsesRoutes

    return ResponsesRoutes(service, caller_of=caller_from_key, background=runner)


def reader(content: bytes) -> Any:
    async def read(limit: int) -> bytes:
        return content

    return read


async def test_a_body_nested_too_deep_for_the_parser_is_a_400() -> None:
    service = ResponsesService(
        store=InMemoryStore(), http_client=ScriptedChatModel(), upstream=UPSTREAM
    )
    content = b"[" * 100_000 + b"]" * 100_000
    reply = await routes_for(service).handle("POST", "/v1/responses", {}, "k", reader(content))
    assert reply.status == 400


async def test_a_refused_background_request_stores_nothing() -> None:
    from responseloop.adapters import BackgroundResponses

    store = InMemoryStore()
    service = ResponsesService(store=store, http_client=ScriptedChatModel(), upstream=UPSTREAM)
    closed = BackgroundResponses(service)  # its lifespan is not running
    body = json.dumps({**BODY, "background": True}).encode()
    reply = await routes_for(service, closed).handle("POST", "/v1/responses", {}, "k", reader(body))
    assert reply.status == 400
    assert list(store._responses) == []


async def test_a_stream_cancelled_by_a_cancel_request_ends_with_an_error_event() -> None:
    class Hanging(ScriptedChatModel):
        called = anyio.Event()

        async def stream(self, request: HttpRequest, on_event: Any) -> HttpResponse:
            self.called.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    model = Hanging()
    service = ResponsesService(store=InMemoryStore(), http_client=model, upstream=UPSTREAM)
    async with (
        httpx2.AsyncClient(transport=ResponseLoopTransport(service), base_url="http://t") as http,
        anyio.create_task_group() as group,
    ):

        async def cancel_when_running() -> None:
            await model.called.wait()
            (response_id,) = service.running
            await http.post(f"/v1/responses/{response_id}/cancel")

        group.start_soon(cancel_when_running)
        answer = await http.post("/v1/responses", json={**BODY, "stream": True})
    lines = answer.text.splitlines()
    events = [
        json.loads(line[6:])
        for line in lines
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    assert events[-1]["type"] == "error"
    assert events[-1]["code"] == "response_cancelled"


async def test_an_asgi_client_leaving_mid_stream_cancels_without_scope_errors() -> None:
    from responseloop import create_app

    model = ScriptedChatModel([ChatReply.text("never", delay=float("inf"))])
    store = InMemoryStore()
    service = ResponsesService(store=store, http_client=model, upstream=UPSTREAM)
    app = create_app(service)
    body = json.dumps({**BODY, "stream": True}).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await anyio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            await anyio.sleep_forever()  # a client that stopped reading

    scope = post_responses_scope(spec_version="2.4")
    async with app.lifespan():
        with anyio.fail_after(10):
            await app(scope, receive, send)  # once raised "exit a cancel scope that isn't…"

    (response_id,) = list(store._responses)
    assert (await store.get_response(response_id)).status.value == "cancelled"
    assert service.running == frozenset()
