"""The wire as the routes speak it: ``[DONE]`` ends every stream, the reasoning event names
follow ``WireOptions.event_names``, a background response is ``queued`` until it runs,
and the suite-wide emission checks (tests/wire_capture.py) do catch a broken object."""

from __future__ import annotations

import json
from typing import Any

import attrs
import httpx2
import pytest

from responseloop import InMemoryStore, ResponseLoopTransport, ResponsesService, UpstreamTarget
from responseloop.abc import ResponseStatus
from responseloop.openresponses import WireOptions
from responseloop.testing import ChatReply, ScriptedChatModel
from tests.wire_capture import checking_emissions

UPSTREAM = UpstreamTarget("http://upstream.invalid/v1", "/chat/completions")


def service_of(model: ScriptedChatModel, wire: WireOptions | None = None) -> ResponsesService:
    return ResponsesService(store=InMemoryStore(), http_client=model, upstream=UPSTREAM, wire=wire)


async def raw_stream(service: ResponsesService, body: dict[str, Any]) -> list[str]:
    """The ``data:`` lines of a streamed POST, as sent."""
    transport = ResponseLoopTransport(service)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
        answer = await http.post("/v1/responses", json={**body, "stream": True})
    return [line for line in answer.text.splitlines() if line.startswith("data: ")]


async def test_a_stream_ends_with_done_after_its_terminal_event() -> None:
    model = ScriptedChatModel([ChatReply.text("Hi there.")])
    lines = await raw_stream(service_of(model), {"model": "m", "input": "hi"})
    assert lines[-1] == "data: [DONE]"
    assert lines.count("data: [DONE]") == 1
    assert json.loads(lines[-2].removeprefix("data: "))["type"] == "response.completed"


@pytest.mark.parametrize(
    ("event_names", "prefix"),
    [("openai", "response.reasoning_text."), ("openresponses", "response.reasoning.")],
)
async def test_reasoning_events_are_named_as_the_wire_options_say(
    event_names: Any, prefix: str
) -> None:
    model = ScriptedChatModel([ChatReply.text("42.", reasoning="Think hard.")])
    service = service_of(model, WireOptions(event_names=event_names))
    lines = await raw_stream(service, {"model": "m", "input": "q"})
    types = [json.loads(line[6:])["type"] for line in lines if line != "data: [DONE]"]
    reasoning = [t for t in types if t.startswith("response.reasoning")]
    assert reasoning, types
    assert all(t.startswith(prefix) for t in reasoning), reasoning
    assert reasoning[-1] == prefix + "done"


async def test_a_background_response_is_queued_until_it_runs() -> None:
    model = ScriptedChatModel([ChatReply.text("Later.")])
    service = service_of(model)
    body = {"model": "m", "input": "hi", "background": True}
    prepared = await service.prepare(body, api_key=None)
    assert (await service.store.get_response(prepared.response_id)).status is (
        ResponseStatus.QUEUED
    )
    queued = await service.retrieve(prepared.response_id)
    assert (queued["status"], queued["completed_at"]) == ("queued", None)
    result = await service.run(prepared)
    assert result.response["status"] == "completed"
    assert isinstance(result.response["completed_at"], int)


@pytest.mark.wire_unchecked  # the checks are applied by hand below, to a broken route
async def test_the_emission_checks_catch_a_broken_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = ScriptedChatModel([ChatReply.text("Hi.")])
    service = service_of(model)
    real_run = ResponsesService.run

    async def broken_run(self: ResponsesService, *args: Any, **kwargs: Any) -> Any:
        result = await real_run(self, *args, **kwargs)
        return attrs.evolve(result, response={**result.response, "presence_penalty": None})

    monkeypatch.setattr(ResponsesService, "run", broken_run)
    with checking_emissions(monkeypatch):
        transport = ResponseLoopTransport(service)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            with pytest.raises(AssertionError, match=r"at '\.presence_penalty'"):
                await http.post("/v1/responses", json={"model": "m", "input": "hi"})
