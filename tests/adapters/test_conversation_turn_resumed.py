"""A conversation turn stored but never begun (its worker stopped between storing the
response and beginning its turn) runs only as its conversation's turn: a retry or the
recovery sweep begins it, and refuses (or fails) it while another response runs on the
conversation. Deleting an item is refused while a turn runs, as adding one is."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from responseloop import InMemoryStore, ResponseRecord, ResponsesService, UpstreamTarget
from responseloop.abc import HttpRequest, HttpResponse, ResponseStatus
from responseloop.exceptions import ConversationLocked
from responseloop.testing import ChatReply, ScriptedChatModel

ORPHAN = "resp_orphan"


def service_over(store: InMemoryStore, model: Any) -> ResponsesService:
    return ResponsesService(
        store=store,
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
    )


async def stored_but_not_begun(service: ResponsesService, conversation_id: str) -> dict[str, Any]:
    """The state a worker leaves when it stops right after ``create_response``: the
    response stored ``in_progress``, its conversation without its entry."""
    body = {"model": "m", "input": "A", "conversation": conversation_id}
    await service.store.create_response(
        ResponseRecord(
            ORPHAN,
            dict(body),
            model="m",
            status=ResponseStatus.IN_PROGRESS,
            created_at=service.now(),
        )
    )
    return body


async def entries(service: ResponsesService, conversation_id: str) -> list[str | None]:
    assert isinstance(service.store, InMemoryStore)
    contents = await service.store.list_conversation(conversation_id)
    return [entry.response_id for entry in contents.entries]


async def test_a_retry_begins_the_turn_it_never_began() -> None:
    model = ScriptedChatModel([ChatReply.text("Answered.")])
    service = service_over(InMemoryStore(), model)
    conversation = await service.conversations.create({}, caller=None)
    body = await stored_but_not_begun(service, conversation["id"])

    prepared = await service.prepare(body, api_key=None, response_id=ORPHAN)
    assert await entries(service, conversation["id"]) == [ORPHAN]
    record = await service.store.get_response(ORPHAN)
    assert record.status is ResponseStatus.IN_PROGRESS
    result = await service.run(prepared)
    assert result.status is ResponseStatus.COMPLETED
    listed = await service.conversations.list_items(conversation["id"], {}, caller=None)
    assert [item["type"] for item in listed["data"]] == ["message", "message"]


async def test_a_retry_is_refused_while_another_turn_runs() -> None:
    release, started = anyio.Event(), anyio.Event()
    model = ScriptedChatModel([ChatReply.text("First."), ChatReply.text("Orphan.")])

    class Gated:
        async def execute(self, request: HttpRequest) -> HttpResponse:
            if not started.is_set():
                started.set()
                await release.wait()
            return await model.execute(request)

        async def stream(self, request: HttpRequest, on_event: Any) -> HttpResponse:
            raise AssertionError("not streamed")

    service = service_over(InMemoryStore(), Gated())
    conversation = await service.conversations.create({}, caller=None)
    body = await stored_but_not_begun(service, conversation["id"])
    running = await service.prepare(
        {"model": "m", "input": "B", "conversation": conversation["id"]}, api_key=None
    )
    async with anyio.create_task_group() as group:
        group.start_soon(service.run, running)
        await started.wait()
        with pytest.raises(ConversationLocked):
            await service.prepare(body, api_key=None, response_id=ORPHAN)
        assert await entries(service, conversation["id"]) == [running.response_id]
        release.set()
    # Once that turn ended, the retry begins the orphan's turn after it.
    prepared = await service.prepare(body, api_key=None, response_id=ORPHAN)
    assert await entries(service, conversation["id"]) == [running.response_id, ORPHAN]
    assert (await service.run(prepared)).status is ResponseStatus.COMPLETED


async def test_the_recovery_sweep_begins_the_turn() -> None:
    model = ScriptedChatModel([ChatReply.text("Recovered.")])
    service = service_over(InMemoryStore(), model)
    conversation = await service.conversations.create({}, caller=None)
    await stored_but_not_begun(service, conversation["id"])

    assert await service.recover_expired(unclaimed_grace=0) == [ORPHAN]
    assert await entries(service, conversation["id"]) == [ORPHAN]
    record = await service.store.get_response(ORPHAN)
    assert record.status is ResponseStatus.COMPLETED
    listed = await service.conversations.list_items(
        conversation["id"], {"order": "asc"}, caller=None
    )
    assert [item.get("role") for item in listed["data"]] == ["user", "assistant"]


async def test_the_recovery_sweep_fails_a_turn_it_cannot_begin() -> None:
    """Another response took the conversation meanwhile: the orphan ends ``failed`` (the
    conversation is locked) without calling the model, and the conversation keeps only
    the other turn."""
    model = ScriptedChatModel([ChatReply.text("The other turn.")])
    store = InMemoryStore()
    service = service_over(store, model)
    conversation = await service.conversations.create({}, caller=None)
    await stored_but_not_begun(service, conversation["id"])
    other = await service.prepare(
        {"model": "m", "input": "B", "conversation": conversation["id"]}, api_key=None
    )
    # The other turn is live (prepared, not yet run) while the sweep looks at the orphan.
    assert await service.recover_expired(unclaimed_grace=3600) == []
    swept = await service.recoverable(unclaimed_grace=0)
    assert [each.response_id for each in swept] == [other.response_id]
    record = await store.get_response(ORPHAN)
    assert record.status is ResponseStatus.FAILED
    assert record.response is not None
    assert "operating on this conversation" in record.response["error"]["message"]
    assert len(model.requests) == 0
    assert await entries(service, conversation["id"]) == [other.response_id]


async def test_deleting_an_item_is_refused_while_a_turn_runs() -> None:
    model = ScriptedChatModel([ChatReply.text("Done.")])
    service = service_over(InMemoryStore(), model)
    item = {"type": "message", "role": "user", "content": "kept"}
    conversation = await service.conversations.create({"items": [item]}, caller=None)
    listed = await service.conversations.list_items(conversation["id"], {}, caller=None)
    (item_id,) = [each["id"] for each in listed["data"]]
    running = await service.prepare(
        {"model": "m", "input": "B", "conversation": conversation["id"]}, api_key=None
    )
    with pytest.raises(ConversationLocked):
        await service.conversations.delete_item(conversation["id"], item_id, caller=None)
    await service.run(running)
    await service.conversations.delete_item(conversation["id"], item_id, caller=None)
    listed = await service.conversations.list_items(conversation["id"], {}, caller=None)
    assert item_id not in [each["id"] for each in listed["data"]]
