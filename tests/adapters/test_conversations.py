"""The Conversations API (issue 19) through the official openai client over the in-process
transport: the conversation objects and items as the SDK types them (no unknown fields),
responses continuing a conversation, one turn at a time, and caller isolation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import anyio
import attrs
import httpx2
import openai
import pytest
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItemList,
)
from openai.types.conversations.conversation_item import ConversationItem
from pydantic import TypeAdapter

from responseloop import InMemoryStore, ResponsesService, UpstreamTarget
from responseloop.abc import HttpRequest, HttpResponse
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.in_process import openai_client
from tests.openai_shapes import assert_no_unknown_fields, validate_strict
from tests.wire_checks import check_emitted_response

URL = "http://responseloop.test/v1"
_ITEM = TypeAdapter[Any](ConversationItem)


def check_item(item: Any) -> None:
    """``item`` (JSON) is a ``ConversationItem`` with no field the SDK does not know."""
    parsed = _ITEM.validate_python(item)
    assert_no_unknown_fields(parsed)


def check_list(body: Any) -> None:
    if body["data"]:
        validate_strict(ConversationItemList, body)
    for item in body["data"]:
        check_item(item)


@attrs.define
class World:
    model: ScriptedChatModel
    service: ResponsesService
    http: httpx2.AsyncClient
    alice: openai.AsyncOpenAI
    bob: openai.AsyncOpenAI

    async def call(
        self, method: str, path: str, body: Any = None, key: str = "sk-alice", **params: Any
    ) -> httpx2.Response:
        return await self.http.request(
            method,
            f"{URL}{path}",
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {key}"},
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    model = ScriptedChatModel()
    service = ResponsesService(
        store=InMemoryStore(),
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
    )
    async with (
        openai_client(service, "sk-alice") as (http, alice),
        openai_client(service, "sk-bob") as (_, bob),
    ):
        yield World(model, service, http, alice, bob)


def sent_messages(request: HttpRequest) -> list[tuple[str, str]]:
    """The (role, text) of each message a model call was sent."""
    assert isinstance(request.json, dict)
    return [(m["role"], m.get("content") or "") for m in request.json["messages"]]


async def test_create_retrieve_update_delete(world: World) -> None:
    created = await world.alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Hello"}],
        metadata={"topic": "greetings"},
    )
    assert created.id.startswith("conv_")
    assert created.metadata == {"topic": "greetings"}
    assert_no_unknown_fields(created)
    retrieved = await world.alice.conversations.retrieve(created.id)
    assert retrieved == created
    updated = await world.alice.conversations.update(created.id, metadata={"topic": "tea"})
    assert updated.metadata == {"topic": "tea"}
    assert updated.created_at == created.created_at
    assert (await world.alice.conversations.retrieve(created.id)).metadata == {"topic": "tea"}
    deleted = await world.alice.conversations.delete(created.id)
    assert_no_unknown_fields(deleted)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        created.id,
        True,
        "conversation.deleted",
    )
    with pytest.raises(openai.NotFoundError):
        await world.alice.conversations.retrieve(created.id)


async def test_raw_objects_have_exactly_the_sdk_fields(world: World) -> None:
    answer = await world.call("POST", "/conversations", {"metadata": {"a": "b"}})
    assert answer.status_code == 200
    created = validate_strict(Conversation, answer.json())
    assert set(answer.json()) == {"id", "object", "created_at", "metadata"}
    items = await world.call(
        "POST",
        f"/conversations/{created.id}/items",
        {"items": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    )
    check_list(items.json())
    assert [i["role"] for i in items.json()["data"]] == ["user", "assistant"]
    deleted = await world.call("DELETE", f"/conversations/{created.id}")
    validate_strict(ConversationDeletedResource, deleted.json())


async def test_items_create_list_retrieve_delete(world: World) -> None:
    conversation = await world.alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": "one"}]
    )
    added = await world.alice.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "assistant", "content": "two"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "3"},
        ],
    )
    assert_no_unknown_fields(added)
    assert [item.type for item in added.data] == [
        "message",
        "function_call",
        "function_call_output",
    ]
    assert added.first_id == added.data[0].id
    assert added.last_id == added.data[-1].id
    listed = [item async for item in world.alice.conversations.items.list(conversation.id)]
    # Newest first by default, as OpenAI lists them.
    assert [item.id for item in listed][:3] == [item.id for item in reversed(added.data)]
    assert len(listed) == 4
    ids = [str(item.id) for item in reversed(listed)]
    assert len(set(ids)) == 4  # every item has an id of its own
    one = await world.alice.conversations.items.retrieve(ids[1], conversation_id=conversation.id)
    assert one.id == ids[1]
    assert one.type == "message"
    # Ids are stable: listed again, the same items have the same ids.
    again = [
        item.id async for item in world.alice.conversations.items.list(conversation.id, order="asc")
    ]
    assert again == ids
    answer = await world.alice.conversations.items.delete(ids[1], conversation_id=conversation.id)
    assert answer.id == conversation.id
    assert_no_unknown_fields(answer)
    left = [
        item.id async for item in world.alice.conversations.items.list(conversation.id, order="asc")
    ]
    assert left == [ids[0], *ids[2:]]
    with pytest.raises(openai.NotFoundError):
        await world.alice.conversations.items.retrieve(ids[1], conversation_id=conversation.id)
    with pytest.raises(openai.NotFoundError):
        await world.alice.conversations.items.delete(ids[1], conversation_id=conversation.id)


async def test_pagination(world: World) -> None:
    conversation = await world.alice.conversations.create()
    for batch in range(3):
        await world.alice.conversations.items.create(
            conversation.id,
            items=[
                {"type": "message", "role": "user", "content": f"m{batch * 10 + n}"}
                for n in range(10)
            ],
        )
    page = await world.alice.conversations.items.list(conversation.id, limit=7, order="asc")
    check_list(page.model_dump(mode="json"))
    assert len(page.data) == 7
    assert page.has_more
    texts = []
    async for item in world.alice.conversations.items.list(conversation.id, limit=7, order="asc"):
        assert item.type == "message"
        texts.append(item.content[0].text)  # type: ignore[union-attr]
    assert texts == [f"m{n}" for n in range(30)]
    raw = await world.call(
        "GET",
        f"/conversations/{conversation.id}/items",
        limit="5",
        after=page.data[-1].id,
        order="asc",
    )
    body = raw.json()
    check_list(body)
    assert [i["content"][0]["text"] for i in body["data"]] == [f"m{n}" for n in range(7, 12)]
    assert body["has_more"] is True
    assert body["first_id"] == body["data"][0]["id"]
    last = await world.call(
        "GET",
        f"/conversations/{conversation.id}/items",
        limit="100",
        after=body["last_id"],
        order="asc",
    )
    assert len(last.json()["data"]) == 18
    assert last.json()["has_more"] is False
    desc = await world.alice.conversations.items.list(conversation.id, limit=2)
    assert [i.content[0].text for i in desc.data] == ["m29", "m28"]  # type: ignore[union-attr,index]
    for bad in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"order": "up"}):
        answer = await world.call("GET", f"/conversations/{conversation.id}/items", **bad)
        assert answer.status_code == 400, bad


async def test_bad_bodies_are_400s(world: World) -> None:
    conversation = await world.alice.conversations.create()
    too_many = [{"role": "user", "content": str(n)} for n in range(21)]
    cases = [
        ("POST", "/conversations", {"items": too_many}, "items"),
        ("POST", "/conversations", {"items": "hi"}, "items"),
        ("POST", "/conversations", {"metadata": {"k": 1}}, "metadata.k"),
        ("POST", f"/conversations/{conversation.id}", {}, "metadata"),
        ("POST", f"/conversations/{conversation.id}/items", {"items": too_many}, "items"),
        ("POST", f"/conversations/{conversation.id}/items", {"items": []}, "items"),
        (
            "POST",
            f"/conversations/{conversation.id}/items",
            {"items": [{"type": "item_reference", "id": "msg_1"}]},
            "items[0].type",
        ),
        (
            "POST",
            f"/conversations/{conversation.id}/items",
            {"items": [{"type": "nonsense"}]},
            "items[0].type",
        ),
    ]
    for method, path, body, param in cases:
        answer = await world.call(method, path, body)
        assert answer.status_code == 400, (path, body)
        assert answer.json()["error"]["param"] == param
    wrong = await world.call("PUT", f"/conversations/{conversation.id}")
    assert wrong.status_code == 405
    assert (await world.call("GET", "/conversations")).status_code == 405


async def test_another_callers_conversation_is_not_there(world: World) -> None:
    conversation = await world.alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": "secret"}]
    )
    item = (await world.alice.conversations.items.list(conversation.id)).data[0]
    unknown = "conv_0123456789abcdef0123456789abcdef"
    for conversation_id in (conversation.id, unknown):
        calls: list[Awaitable[Any]] = [
            world.bob.conversations.retrieve(conversation_id),
            world.bob.conversations.update(conversation_id, metadata={"x": "y"}),
            world.bob.conversations.items.list(conversation_id),
            world.bob.conversations.items.create(
                conversation_id, items=[{"type": "message", "role": "user", "content": "x"}]
            ),
            world.bob.conversations.items.retrieve(str(item.id), conversation_id=conversation_id),
            world.bob.conversations.items.delete(str(item.id), conversation_id=conversation_id),
            world.bob.conversations.delete(conversation_id),
        ]
        errors = []
        for call in calls:
            with pytest.raises(openai.NotFoundError) as caught:
                await call
            errors.append(caught.value.body)
        # Bob cannot tell Alice's conversation from one that does not exist.
        assert all(conversation_id in json.dumps(error) for error in errors)
    with pytest.raises(openai.NotFoundError):
        await world.bob.responses.create(model="m", input="hi", conversation=conversation.id)
    # Nothing of Bob's attempts touched it.
    still = await world.alice.conversations.retrieve(conversation.id)
    assert still.metadata == {}
    assert [i.id async for i in world.alice.conversations.items.list(conversation.id)] == [item.id]


async def test_responses_continue_a_conversation(world: World) -> None:
    world.model.add(ChatReply.text("Hi Alice."), ChatReply.text("You are Alice."))
    conversation = await world.alice.conversations.create(
        items=[{"type": "message", "role": "developer", "content": "Be brief."}]
    )
    raw = await world.call(
        "POST",
        "/responses",
        {"model": "m", "input": "I am Alice.", "conversation": conversation.id},
    )
    first = check_emitted_response(raw.json())
    assert first.conversation is not None
    assert first.conversation.id == conversation.id
    second = await world.alice.responses.create(
        model="m", input="Who am I?", conversation={"id": conversation.id}
    )
    assert second.output_text == "You are Alice."
    assert sent_messages(world.model.requests[1]) == [
        ("developer", "Be brief."),
        ("user", "I am Alice."),
        ("assistant", "Hi Alice."),
        ("user", "Who am I?"),
    ]
    items = [i async for i in world.alice.conversations.items.list(conversation.id, order="asc")]
    for item in items:
        check_item(item.model_dump(mode="json", exclude_unset=True))
    assert [(i.type, getattr(i, "role", None)) for i in items] == [
        ("message", "developer"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    # The turns' items are the responses' own, by their ids (a view, not a copy).
    assert items[2].id == first.output[0].id
    assert items[4].id == second.output[0].id
    own_input = [i async for i in world.alice.responses.input_items.list(first.id)]
    assert items[1].id == own_input[0].id
    # What the server emits, raw: the Response on both wires, the items as the SDK types them.
    retrieved = (await world.call("GET", f"/responses/{second.id}")).json()
    check_emitted_response(retrieved)
    assert retrieved["conversation"] == {"id": conversation.id}
    raw_items = await world.call("GET", f"/conversations/{conversation.id}/items", order="asc")
    check_list(raw_items.json())
    assert [i["id"] for i in raw_items.json()["data"]] == [i.id for i in items]


async def test_deleting_items_and_responses_changes_the_history(world: World) -> None:
    world.model.add(ChatReply.text("Noted."), ChatReply.text("Noted again."), ChatReply.text("Ok."))
    conversation = await world.alice.conversations.create()
    first = await world.alice.responses.create(model="m", input="A", conversation=conversation.id)
    second = await world.alice.responses.create(model="m", input="B", conversation=conversation.id)
    await world.alice.conversations.items.delete(
        str(first.output[0].id), conversation_id=conversation.id
    )
    # The item left the conversation, not the response it belongs to.
    assert (await world.alice.responses.retrieve(first.id)).output_text == "Noted."
    await world.alice.responses.delete(second.id)
    await world.alice.responses.create(model="m", input="C", conversation=conversation.id)
    assert sent_messages(world.model.requests[2]) == [("user", "A"), ("user", "C")]


async def test_deleting_a_conversation_keeps_its_responses(world: World) -> None:
    world.model.add(ChatReply.text("Noted."))
    conversation = await world.alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": "x"}]
    )
    response = await world.alice.responses.create(
        model="m", input="A", conversation=conversation.id
    )
    await world.alice.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        await world.alice.conversations.items.list(conversation.id)
    assert (await world.alice.responses.retrieve(response.id)).output_text == "Noted."
    with pytest.raises(openai.NotFoundError):
        await world.alice.responses.create(model="m", input="B", conversation=conversation.id)


async def test_conversation_request_errors(world: World) -> None:
    world.model.add(ChatReply.text("Hi."))
    conversation = await world.alice.conversations.create()
    earlier = await world.alice.responses.create(model="m", input="A")
    with pytest.raises(openai.BadRequestError) as both:
        await world.alice.responses.create(
            model="m", input="B", conversation=conversation.id, previous_response_id=earlier.id
        )
    assert both.value.param == "conversation"
    with pytest.raises(openai.BadRequestError) as unstored:
        await world.alice.responses.create(
            model="m", input="B", conversation=conversation.id, store=False
        )
    assert unstored.value.param == "store"
    answer = await world.call(
        "POST", "/responses", {"model": "m", "input": "B", "conversation": {"nope": 1}}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "conversation.id"
    # Nothing was stored for the refused requests, nor added to the conversation.
    assert [i async for i in world.alice.conversations.items.list(conversation.id)] == []


async def test_a_response_of_a_conversation_is_not_continued_by_previous_response_id(
    world: World,
) -> None:
    world.model.add(ChatReply.text("Hi."))
    conversation = await world.alice.conversations.create()
    turn = await world.alice.responses.create(model="m", input="A", conversation=conversation.id)
    with pytest.raises(openai.BadRequestError) as caught:
        await world.alice.responses.create(model="m", input="B", previous_response_id=turn.id)
    assert caught.value.param == "previous_response_id"


async def test_failed_turns_add_nothing(world: World) -> None:
    world.model.add(ChatReply.text("", status=400), ChatReply.text("Fine."))
    conversation = await world.alice.conversations.create()
    failed = await world.alice.responses.create(model="m", input="A", conversation=conversation.id)
    assert failed.status == "failed"
    await world.alice.responses.create(model="m", input="B", conversation=conversation.id)
    assert sent_messages(world.model.requests[1]) == [("user", "B")]
    items = [i async for i in world.alice.conversations.items.list(conversation.id, order="asc")]
    assert [i.type for i in items] == ["message", "message"]


async def test_one_response_at_a_time_per_conversation(world: World) -> None:
    """A second response while one runs on the conversation is OpenAI's 400
    ``conversation_locked``, and so is adding items: nothing interleaves into the turn."""
    release = anyio.Event()
    started = anyio.Event()
    model = world.model

    class Gated:
        """The scripted model, holding its first answer until released."""

        async def execute(self, request: HttpRequest) -> HttpResponse:
            if not started.is_set():
                started.set()
                await release.wait()
            return await model.execute(request)

        async def stream(self, request: HttpRequest, on_event: Any) -> HttpResponse:
            raise AssertionError("not streamed")

    world.service.http_client = Gated()
    world.model.add(ChatReply.text("First answer."), ChatReply.text("Second answer."))
    conversation = await world.alice.conversations.create()
    results: list[Any] = []

    async def first_turn() -> None:
        results.append(
            await world.alice.responses.create(model="m", input="A", conversation=conversation.id)
        )

    async with anyio.create_task_group() as group:
        group.start_soon(first_turn)
        await started.wait()
        with pytest.raises(openai.BadRequestError) as locked:
            await world.alice.responses.create(model="m", input="B", conversation=conversation.id)
        assert locked.value.code == "conversation_locked"
        assert locked.value.param == "conversation"
        with pytest.raises(openai.BadRequestError) as adding:
            await world.alice.conversations.items.create(
                conversation.id, items=[{"type": "message", "role": "user", "content": "x"}]
            )
        assert adding.value.code == "conversation_locked"
        # Reading is never refused: the running turn shows nothing yet.
        assert [i async for i in world.alice.conversations.items.list(conversation.id)] == []
        release.set()
    second = await world.alice.responses.create(model="m", input="B", conversation=conversation.id)
    assert second.output_text == "Second answer."
    assert sent_messages(world.model.requests[1]) == [
        ("user", "A"),
        ("assistant", "First answer."),
        ("user", "B"),
    ]
    # The refused response was not kept.
    assert len(world.service.store._responses) == 2  # type: ignore[attr-defined]


async def test_streamed_turn_joins_the_conversation(world: World) -> None:
    world.model.add(ChatReply.text("Streamed."))
    conversation = await world.alice.conversations.create()
    stream = await world.alice.responses.create(
        model="m", input="A", conversation=conversation.id, stream=True
    )
    events = [event async for event in stream]
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.conversation is not None
    check_emitted_response(completed.response.model_dump(mode="json", exclude_unset=True))
    items = [i async for i in world.alice.conversations.items.list(conversation.id, order="asc")]
    assert [i.id for i in items][-1] == completed.response.output[0].id
