"""A JSON (not streamed) request whose client disconnects while the loop runs is
cancelled, and its response is stored ``cancelled``, driven through the ASGI interface
itself (``receive`` says ``http.disconnect``), on asyncio and trio."""

from __future__ import annotations

import json
import math
from collections.abc import MutableMapping
from typing import Any

import anyio

from responseloop import InMemoryStore, ResponseRecord, ResponsesService, UpstreamTarget, create_app
from responseloop.abc import ResponseStatus
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.in_process import post_responses_scope


class RecordingStore(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []

    async def create_response(self, record: ResponseRecord) -> None:
        self.created.append(record.id)
        await super().create_response(record)


async def test_a_client_that_leaves_a_json_request_cancels_the_run_and_it_is_stored_so() -> None:
    store = RecordingStore()
    service = ResponsesService(
        store=store,
        http_client=ScriptedChatModel([ChatReply.text("never", delay=math.inf)]),
        upstream=UpstreamTarget("http://upstream.invalid/v1", "/chat/completions"),
    )
    app = create_app(service)
    body = json.dumps({"model": "m", "input": "hi"}).encode()
    leave = anyio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = post_responses_scope((b"content-length", b"%d" % len(body)))
    async with app.lifespan():
        with anyio.fail_after(10):  # a guard against hanging the suite
            async with anyio.create_task_group() as group:
                group.start_soon(app, scope, receive, send)
                while not service.running:  # noqa: ASYNC110 - the run starts in the app
                    await anyio.sleep(0.01)
                leave.set()
        (response_id,) = store.created
        record = await store.get_response(response_id)
    assert record.status is ResponseStatus.CANCELLED
    assert not service.running
