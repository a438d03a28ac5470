"""ResponseLoopTransport's routes, driven by the official openai client and raw httpx2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import openai
import pytest

from responseloop import (
    HttpxClient,
    InMemoryStore,
    ResponseLoopTransport,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.chat._translate import upstream_call_id
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.openai_shapes import validate_response

BASE = "http://responseloop.test/v1"


def transport(
    model: ScriptedChatModel, store: InMemoryStore | None = None
) -> ResponseLoopTransport:
    service = ResponsesService(
        store=store or InMemoryStore(),
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
        resolver=StaticToolResolver(None),
    )
    return ResponseLoopTransport(service)


@pytest.fixture
def model() -> ScriptedChatModel:
    return ScriptedChatModel()


@pytest.fixture
async def client(model: ScriptedChatModel) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=BASE,
        api_key="key-a",
        http_client=httpx2.AsyncClient(transport=transport(model)),
        max_retries=0,
    ) as client:
        yield client


async def test_create_then_retrieve_input_items_and_delete(
    client: openai.AsyncOpenAI, model: ScriptedChatModel
) -> None:
    model.add(ChatReply.text("Hello!"))

    created = await client.responses.create(model="m", input="Hi", metadata={"k": "v"})

    validate_response(created.model_dump(mode="json"))
    assert created.output_text == "Hello!"
    assert created.metadata == {"k": "v"}
    retrieved = await client.responses.retrieve(created.id)
    assert retrieved == created
    items = [item async for item in client.responses.input_items.list(created.id)]
    assert [(i.type, i.role) for i in items] == [("message", "user")]  # type: ignore[union-attr]
    await client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)


async def test_store_false_responses_are_not_retrievable(
    client: openai.AsyncOpenAI, model: ScriptedChatModel
) -> None:
    model.add(ChatReply.text("ephemeral"))
    created = await client.responses.create(model="m", input="Hi", store=False)
    assert created.output_text == "ephemeral"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)


async def test_previous_response_id_continues_the_conversation(
    client: openai.AsyncOpenAI, model: ScriptedChatModel
) -> None:
    model.add(ChatReply.text("Nice to meet you, Ada."), ChatReply.text("Your name is Ada."))

    first = await client.responses.create(
        model="m", input="My name is Ada.", instructions="Be brief."
    )
    second = await client.responses.create(
        model="m", input="What is my name?", previous_response_id=first.id
    )

    assert second.output_text == "Your name is Ada."
    assert second.previous_response_id == first.id
    messages = model.requests[1].json["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]  # the first turn's instructions are not carried over


async def test_a_client_function_call_round_trip(
    client: openai.AsyncOpenAI, model: ScriptedChatModel
) -> None:
    tool: Any = {
        "type": "function",
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        "strict": False,
    }
    model.add(ChatReply.tool_call("lookup", {"q": "x"}, call_id="call_1"), ChatReply.text("x=1"))

    first = await client.responses.create(model="m", input="Find x", tools=[tool])
    call = first.output[0]
    assert call.type == "function_call"
    assert call.call_id == "call_" + first.id.removeprefix("resp_") + "_1_0"

    second = await client.responses.create(
        model="m",
        previous_response_id=first.id,
        tools=[tool],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"x": 1}'}],
    )

    assert second.output_text == "x=1"
    answer = model.requests[1].json["messages"][-1]
    assert answer == {
        "role": "tool",
        "tool_call_id": upstream_call_id(call.call_id),
        "content": '{"x": 1}',
    }


async def test_another_callers_responses_are_invisible(model: ScriptedChatModel) -> None:
    model.add(ChatReply.text("private"))
    shared = transport(model)
    http = httpx2.AsyncClient(transport=shared)
    async with openai.AsyncOpenAI(base_url=BASE, api_key="key-a", http_client=http) as a:
        created = await a.responses.create(model="m", input="secret")
    http = httpx2.AsyncClient(transport=shared)
    async with openai.AsyncOpenAI(
        base_url=BASE, api_key="key-b", http_client=http, max_retries=0
    ) as b:
        with pytest.raises(openai.NotFoundError):
            await b.responses.retrieve(created.id)
        with pytest.raises(openai.BadRequestError):
            await b.responses.create(model="m", input="x", previous_response_id=created.id)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/files", 404, "unknown_route"),
        ("POST", "/v1/models", 405, "method_not_allowed"),
        ("GET", "/v1/responses", 405, "method_not_allowed"),
        ("PUT", "/v1/responses/resp_x", 405, "method_not_allowed"),
        ("GET", "/v1/responses/resp_missing", 404, "response_not_found"),
        ("POST", "/v1/responses/resp_missing/cancel", 404, "response_not_found"),
        ("DELETE", "/v1/responses/resp_missing", 404, "response_not_found"),
    ],
)
async def test_unknown_routes_methods_and_ids_get_openai_style_errors(
    method: str, path: str, status: int, code: str
) -> None:
    async with httpx2.AsyncClient(
        transport=transport(ScriptedChatModel()), base_url="http://t"
    ) as http:
        answer = await http.request(method, path, headers={"Authorization": "Bearer k"})
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code
    assert set(error) >= {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("content", "param"),
    [(b"not json", None), (b"[1, 2]", None), (b'{"input": "x"}', "model")],
)
async def test_bad_bodies_get_400_without_calling_upstream(
    content: bytes, param: str | None
) -> None:
    model = ScriptedChatModel()
    async with httpx2.AsyncClient(transport=transport(model), base_url="http://t") as http:
        answer = await http.post("/v1/responses", content=content)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert model.requests == []


async def test_closing_a_stream_early_cancels_the_loop_and_stores_it_cancelled() -> None:
    model = ScriptedChatModel([ChatReply.text("never", delay=float("inf"))])
    store = InMemoryStore()
    shared = transport(model, store)
    request = httpx2.Request(
        "POST", "http://t/v1/responses", json={"model": "m", "input": "hi", "stream": True}
    )

    answer = await shared.handle_async_request(request)
    assert isinstance(answer.stream, httpx2.AsyncByteStream)
    events = answer.stream.__aiter__()
    first = await anext(events)
    assert first.startswith(b"event: response.created\n")
    while not model.requests:
        await anyio.lowlevel.checkpoint()
    (response_id,) = shared.service.running
    await answer.aclose()  # the reader leaves mid-stream

    assert shared.service.running == frozenset()
    record = await store.get_response(response_id)
    assert record.status.value == "cancelled"
    chain = await store.list_chain(response_id, None)
    assert [step.state.value for step in chain] == ["cancelled"]


async def test_a_stream_for_a_response_another_worker_runs_ends_with_an_error_event() -> None:
    store = InMemoryStore()
    shared = transport(ScriptedChatModel([ChatReply.text("unused")]), store)

    class Busy(InMemoryStore):
        async def claim_response(self, response_id: str, claimant: str, seconds: float) -> bool:
            return False

    shared.service.store = Busy()
    async with httpx2.AsyncClient(transport=shared, base_url="http://t") as http:
        body = {"model": "m", "input": "hi", "stream": True}
        answer = await http.post("/v1/responses", json=body)
    events = [
        json.loads(line[6:])
        for line in answer.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["code"] == "response_already_running"
    assert events[0]["sequence_number"] == 0


async def test_the_upstream_client_a_transport_creates_closes_with_it() -> None:
    created = ResponseLoopTransport.to_upstream("http://127.0.0.1:9/v1")
    http_client = created.service.http_client
    assert isinstance(http_client, HttpxClient)
    async with httpx2.AsyncClient(transport=created):
        assert not http_client.client.is_closed
    assert http_client.client.is_closed

    borrowed = HttpxClient.create()
    passed_in = ResponseLoopTransport.to_upstream("http://127.0.0.1:9/v1", http_client=borrowed)
    async with httpx2.AsyncClient(transport=passed_in):
        pass
    assert not borrowed.client.is_closed
    await borrowed.aclose()


async def test_background_responses_are_refused_before_anything_is_stored(
    model: ScriptedChatModel,
) -> None:
    store = InMemoryStore()
    async with httpx2.AsyncClient(transport=transport(model, store)) as http:
        answer = await http.post(
            f"{BASE}/responses", json={"model": "m", "input": "x", "background": True}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "background"
    assert model.requests == []


async def test_closing_a_stream_unread_stores_the_response_cancelled() -> None:
    model = ScriptedChatModel([ChatReply.text("never sent")])
    store = InMemoryStore()
    service = ResponsesService(
        store=store,
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
        new_response_id=lambda: "resp_unread",
    )
    request = httpx2.Request(
        "POST", "http://t/v1/responses", json={"model": "m", "input": "hi", "stream": True}
    )

    answer = await ResponseLoopTransport(service).handle_async_request(request)
    await answer.aclose()  # the caller never reads the body

    record = await store.get_response("resp_unread")
    assert record.status.value == "cancelled"
    assert model.requests == []
