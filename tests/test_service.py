"""ResponsesService sequences store calls around the pure Open Responses policy."""

from __future__ import annotations

from typing import Any

import pytest

from responseloop import (
    InMemoryStore,
    ResponseRecord,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import ResponseStatus, ResponseStore, ResponseUpdate
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import MAX_CONVERSATION_TURNS, Conversation, stored_request
from responseloop.testing import (
    ChatReply,
    RecordingStore,
    RecordingToolExecutor,
    ScriptedChatModel,
)

UPSTREAM = UpstreamTarget("http://upstream.invalid/v1", "/chat/completions")


class ReadsById(RecordingStore):
    """A :class:`RecordingStore` that also keeps which response each read asked for."""

    def __init__(self, inner: ResponseStore) -> None:
        super().__init__(inner)
        self.read_ids: list[str] = []

    async def get_response(self, response_id: str) -> ResponseRecord:
        self.read_ids.append(response_id)
        return await super().get_response(response_id)


def service(store: ResponseStore, model: ScriptedChatModel) -> ResponsesService:
    return ResponsesService(store=store, http_client=model, upstream=UPSTREAM)


async def test_each_turn_of_a_ten_turn_conversation_reads_one_previous_record() -> None:
    store = ReadsById(InMemoryStore())
    model = ScriptedChatModel([ChatReply.text(f"a{n}") for n in range(10)])
    svc = service(store, model)
    previous: str | None = None
    for n in range(10):
        body: dict[str, Any] = {"model": "m", "input": f"q{n}"}
        if previous is not None:
            body["previous_response_id"] = previous
        store.reset()
        store.read_ids.clear()
        result = await svc.run(await svc.prepare(body, api_key=None, response_id=f"resp_{n}"))
        earlier = [i for i in store.read_ids if i != f"resp_{n}"]
        assert earlier == ([] if previous is None else [previous])
        # Its own record: once to find a retry, once as the run starts.
        assert store.counts["get_response"] == 2 + len(earlier)
        previous = str(result.response["id"])
    last_call = model.requests[-1].json
    assert last_call is not None
    texts = [m["content"] for m in last_call["messages"]]
    assert texts == [t for n in range(10) for t in (f"q{n}", f"a{n}")][:-1]


async def test_a_conversation_stored_without_its_history_is_read_back_whole() -> None:
    # Turns stored by an earlier responseloop kept only the body: each is read in turn.
    store = ReadsById(InMemoryStore())
    for n in range(3):
        body: dict[str, Any] = {"model": "m", "input": f"q{n}"}
        if n:
            body["previous_response_id"] = f"resp_{n - 1}"
        output = [
            {
                "type": "message",
                "id": f"msg_{n}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": f"a{n}", "annotations": []}],
            }
        ]
        await store.create_response(ResponseRecord(f"resp_{n}", body))
        await store.update_response(
            f"resp_{n}", ResponseUpdate.finished(ResponseStatus.COMPLETED, {"output": output})
        )
    model = ScriptedChatModel([ChatReply.text("a3")])
    svc = service(store, model)
    store.read_ids.clear()
    body = {"model": "m", "input": "q3", "previous_response_id": "resp_2"}
    await svc.run(await svc.prepare(body, api_key=None, response_id="resp_3"))
    assert [i for i in store.read_ids if i != "resp_3"] == ["resp_2", "resp_1", "resp_0"]
    assert model.requests[0].json is not None
    texts = [m["content"] for m in model.requests[0].json["messages"]]
    assert texts == ["q0", "a0", "q1", "a1", "q2", "a2", "q3"]
    # The turn stored now carries the conversation: the next one reads it alone.
    model.add(ChatReply.text("a4"))
    store.read_ids.clear()
    body = {"model": "m", "input": "q4", "previous_response_id": "resp_3"}
    await svc.run(await svc.prepare(body, api_key=None, response_id="resp_4"))
    assert [i for i in store.read_ids if i != "resp_4"] == ["resp_3"]


async def test_a_conversation_past_the_turn_cap_is_a_400_that_stores_nothing() -> None:
    store = InMemoryStore()
    body = {"model": "m", "input": "q", "previous_response_id": "resp_before"}
    at_cap = Conversation((), MAX_CONVERSATION_TURNS)
    await store.create_response(ResponseRecord("resp_last", stored_request(body, at_cap)))
    await store.update_response(
        "resp_last", ResponseUpdate.finished(ResponseStatus.COMPLETED, {"output": []})
    )
    svc = service(store, ScriptedChatModel())
    next_turn = {"model": "m", "input": "q", "previous_response_id": "resp_last"}
    with pytest.raises(InvalidRequestError, match="too long") as caught:
        await svc.prepare(next_turn, api_key=None, response_id="resp_next")
    assert caught.value.param == "previous_response_id"
    assert list(store._responses) == ["resp_last"]


def test_every_to_upstream_takes_the_same_keywords_and_refuses_others() -> None:
    from responseloop import ResponseLoopTransport
    from responseloop.asgi import app_to_upstream
    from responseloop.service import UpstreamOptions

    store = InMemoryStore()
    model = ScriptedChatModel()
    options: UpstreamOptions = {"api_key": "sk-up", "store": store, "http_client": model}
    built = [
        ResponsesService.to_upstream("http://up/v1", **options)[0],
        ResponseLoopTransport.to_upstream("http://up/v1", **options).service,
        app_to_upstream("http://up/v1", **options).service,
    ]
    for svc in built:
        assert (svc.store, svc.http_client) == (store, model)
        assert svc.upstream == UpstreamTarget("http://up/v1", "/chat/completions", "sk-up")
    wrong: Any = {"api_keys": "sk-up"}
    for to_upstream in (
        ResponsesService.to_upstream,
        ResponseLoopTransport.to_upstream,
        app_to_upstream,
    ):
        with pytest.raises(TypeError, match="api_keys"):
            to_upstream("http://up/v1", **wrong)
    tools = RecordingToolExecutor()
    with pytest.raises(ValueError, match="not both"):
        ResponsesService.to_upstream(
            "http://up/v1", tools=tools, resolver=StaticToolResolver(tools), http_client=model
        )


async def test_a_turn_keeps_the_conversation_it_continued_when_an_earlier_turn_is_deleted() -> None:
    # Each continued turn stores the conversation before it, so continuing reads one
    # record; deleting an earlier turn therefore leaves later turns whole (documented).
    store = InMemoryStore()
    model = ScriptedChatModel([ChatReply.text("a0"), ChatReply.text("a1"), ChatReply.text("a2")])
    svc = service(store, model)
    await svc.run(await svc.prepare({"model": "m", "input": "q0"}, api_key=None, response_id="r0"))
    second = {"model": "m", "input": "q1", "previous_response_id": "r0"}
    await svc.run(await svc.prepare(second, api_key=None, response_id="r1"))
    await svc.delete("r0")
    third = {"model": "m", "input": "q2", "previous_response_id": "r1"}
    result = await svc.run(await svc.prepare(third, api_key=None, response_id="r2"))
    assert result.response["status"] == "completed"
    assert model.requests[-1].json is not None
    texts = [m["content"] for m in model.requests[-1].json["messages"]]
    assert texts == ["q0", "a0", "q1", "a1", "q2"]
    # The deleted turn itself is gone, and continuing from it is refused as before.
    with pytest.raises(InvalidRequestError, match="not found"):
        await svc.prepare({**second, "input": "again"}, api_key=None, response_id="r3")
