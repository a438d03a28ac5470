"""ResponseLoopHttpClient: the whole loop as one call, as a queue worker uses it."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from responseloop import (
    InMemoryStore,
    LoopConfig,
    LoopRequest,
    ResponseLoopHttpClient,
    ResponsesService,
    StaticToolResolver,
    UpstreamTarget,
)
from responseloop.abc import ResponseStatus, StepState, StepUpdate, ToolSchema
from responseloop.testing import ChatReply, RecordingStore, RecordingToolExecutor, ScriptedChatModel
from responseloop.tools import MappingToolResolver
from tests.openai_shapes import validate_response

UPSTREAM = UpstreamTarget("http://upstream.invalid/v1", "/chat/completions", "sk-upstream")
CALLER_KEY = "sk-caller-secret"


class Crash(BaseException):
    """A worker dying: nothing in the library catches it."""


def seam(
    model: ScriptedChatModel,
    *,
    store: Any = None,
    tools: RecordingToolExecutor | None = None,
    config: LoopConfig | None = None,
    resolver: Any = None,
) -> tuple[ResponseLoopHttpClient, Any]:
    store = store if store is not None else InMemoryStore()
    if tools is not None:
        resolver = StaticToolResolver(tools)
    service = ResponsesService(
        store=store,
        http_client=model,
        upstream=UPSTREAM,
        resolver=resolver,
        config=config,
        clock=lambda: 1_700_000_000.0,
    )
    return ResponseLoopHttpClient(service), store


def job(body: dict[str, Any] | None = None, response_id: str = "resp_job1") -> LoopRequest:
    return LoopRequest(
        response_id, body or {"model": "m", "input": "What is 2+2?"}, caller="user_1"
    )


def weather_tools() -> RecordingToolExecutor:
    tools = RecordingToolExecutor()
    tools.add("get_weather", lambda args: {"temperature_c": 18})
    return tools


async def test_a_completed_response_answers_200_with_the_stored_response() -> None:
    model = ScriptedChatModel(
        [ChatReply.tool_call("get_weather", {"city": "Paris"}), ChatReply.text("18 °C")]
    )
    client, store = seam(model, tools=weather_tools())

    answer = await client.execute(job(), CALLER_KEY)

    assert answer.status == 200
    body = answer.json()
    validate_response(body)
    assert body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["mcp_call", "message"]
    record = await store.get_response("resp_job1")
    assert record.status is ResponseStatus.COMPLETED
    assert record.response == body
    assert record.caller == "user_1"
    assert client.service.running == frozenset()


async def test_an_invalid_body_answers_400_naming_the_field_and_calls_nothing() -> None:
    model = ScriptedChatModel([ChatReply.text("unused")])
    client, store = seam(model)

    answer = await client.execute(job({"model": "m", "input": 42}), CALLER_KEY)

    assert answer.status == 400
    error = answer.json()["error"]
    assert error["param"] == "input"
    assert error["type"] == "invalid_request_error"
    assert model.requests == []
    with pytest.raises(LookupError):
        await store.get_response("resp_job1")


@pytest.mark.parametrize(
    ("reply", "status", "retryable"),
    [
        (ChatReply.error(400, "bad prompt"), 400, False),
        (ChatReply.error(503, "overloaded"), 503, True),
        (ChatReply.error(429, "slow down"), 429, True),
        (ChatReply.unreachable(), 500, True),
    ],
)
async def test_upstream_failures_answer_with_the_upstream_status_and_retries_resume(
    reply: ChatReply, status: int, retryable: bool
) -> None:
    tools = weather_tools()
    model = ScriptedChatModel([ChatReply.tool_call("get_weather", {}, call_id="w"), reply])
    client, store = seam(model, tools=tools)

    answer = await client.execute(job(), CALLER_KEY)

    assert answer.status == status
    error = answer.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["response_id"] == "resp_job1"
    record = await store.get_response("resp_job1")
    assert record.status is ResponseStatus.FAILED
    validate_response(record.response)

    model.add(ChatReply.text("recovered"))
    again = await client.execute(job(), CALLER_KEY)

    if retryable:
        # The host's retry makes the failed model call again; the tool is not repeated.
        assert again.status == 200
        assert again.json()["output"][-1]["content"][0]["text"] == "recovered"
        assert len(model.requests) == 3
        assert len(tools.calls) == 1
    else:
        # A final failure answers the same again, without calling upstream.
        assert (again.status, again.json()) == (answer.status, answer.json())
        assert len(model.requests) == 2


async def test_a_retry_with_another_body_is_refused() -> None:
    client, _ = seam(ScriptedChatModel([ChatReply.error(503)]))
    assert (await client.execute(job(), CALLER_KEY)).status == 503

    other = job({"model": "m", "input": "Something else entirely"})
    answer = await client.execute(other, CALLER_KEY)

    assert answer.status == 409
    assert answer.json()["error"]["code"] == "response_exists"


async def test_a_cap_answers_500_with_its_code() -> None:
    model = ScriptedChatModel([ChatReply.tool_call("get_weather", {}) for _ in range(5)])
    client, _ = seam(model, tools=weather_tools(), config=LoopConfig(max_iterations=2))

    answer = await client.execute(job(), CALLER_KEY)

    assert answer.status == 500
    assert answer.json()["error"]["code"] == "max_iterations_exceeded"


async def test_nothing_stays_registered_after_cancellation() -> None:
    model = ScriptedChatModel([ChatReply.text("never", delay=float("inf"))])
    client, store = seam(model)

    async with anyio.create_task_group() as group:
        group.start_soon(client.execute, job(), CALLER_KEY)
        while not model.requests:
            await anyio.lowlevel.checkpoint()
        assert client.service.running == {"resp_job1"}
        group.cancel_scope.cancel()

    assert client.service.running == frozenset()
    record = await store.get_response("resp_job1")
    assert record.status is ResponseStatus.CANCELLED
    assert [s.state for s in await store.list_chain("resp_job1", None)] == [StepState.CANCELLED]


class CrashingStore(RecordingStore):
    """Kills the worker when the first tool step completes, leaving it in flight."""

    crashed = False

    async def update_step(
        self, response_id: str, step_id: str, update: StepUpdate, **fence: str | None
    ) -> None:
        completing = update.state is StepState.COMPLETED
        if completing and not self.crashed and self.counts["update_step:completed"] == 1:
            self.crashed = True
            raise Crash()
        await super().update_step(response_id, step_id, update, **fence)


@pytest.mark.parametrize("idempotent", [False, True])
async def test_executing_again_after_a_crash_resumes_the_stored_chain(idempotent: bool) -> None:
    tools = RecordingToolExecutor()
    tools.add(ToolSchema("get_weather", idempotent=idempotent), lambda args: {"temp": 18})
    model = ScriptedChatModel(
        [ChatReply.tool_call("get_weather", {}, call_id="c1"), ChatReply.text("18 °C")]
    )
    store = CrashingStore(InMemoryStore())
    config = LoopConfig(refire_idempotent_tools=True)
    client, _ = seam(model, store=store, tools=tools, config=config)

    with pytest.raises(Crash):
        await client.execute(job(), CALLER_KEY)
    assert len(model.requests) == 1

    answer = await client.execute(job(), CALLER_KEY)

    assert len(model.requests) == (2 if idempotent else 1)  # the first call is not repeated
    if idempotent:
        assert answer.status == 200
        assert len(tools.calls) == 2  # the abandoned tool call was re-fired
    else:
        assert answer.status == 500
        assert answer.json()["error"]["code"] == "step_abandoned"
        assert len(tools.calls) == 1


async def test_the_caller_key_never_goes_upstream_or_into_the_store() -> None:
    model = ScriptedChatModel([ChatReply.tool_call("get_weather", {}), ChatReply.text("18 °C")])
    client, store = seam(model, tools=weather_tools())

    answer = await client.execute(job(), CALLER_KEY)

    assert answer.status == 200
    for request in model.requests:
        assert request.headers["Authorization"] == "Bearer sk-upstream"
        assert CALLER_KEY not in json.dumps(request.json)
    record = await store.get_response("resp_job1")
    chain = await store.list_chain("resp_job1", None)
    stored = json.dumps([record.request, record.response, record.caller]) + repr(chain)
    assert CALLER_KEY not in stored


async def test_tools_are_resolved_per_key_and_a_resolver_error_means_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        async def resolve(self, api_key: str | None, model: str) -> Any:
            raise RuntimeError("registry down")

    model = ScriptedChatModel([ChatReply.tool_call("get_weather", {}), ChatReply.text("no tools")])
    client, _ = seam(model, resolver=Broken())

    with caplog.at_level(logging.WARNING, logger="responseloop"):
        answer = await client.execute(job(), CALLER_KEY)

    assert answer.status == 200
    assert "tools" not in model.requests[0].json
    assert any("tool resolution failed" in r.getMessage() for r in caplog.records)

    tools = weather_tools()
    model = ScriptedChatModel([ChatReply.tool_call("get_weather", {}), ChatReply.text("ok")])
    client, _ = seam(model, resolver=MappingToolResolver({"sk-other": tools}))
    answer = await client.execute(job(), CALLER_KEY)
    assert answer.status == 200
    assert tools.calls == []  # another key's tool is never run for this caller


async def test_a_response_another_worker_runs_answers_409() -> None:
    store = InMemoryStore()
    client, _ = seam(ScriptedChatModel([ChatReply.text("unused")]), store=store)
    await client.service.prepare(job().body, api_key=None, caller="user_1", response_id="resp_job1")
    assert await store.claim_response("resp_job1", "other-worker", 30.0)

    answer = await client.execute(job(), CALLER_KEY)

    assert answer.status == 409
    assert answer.json()["error"]["code"] == "response_already_running"
    assert client.service.running == frozenset()
