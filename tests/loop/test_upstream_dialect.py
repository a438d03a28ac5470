"""A second upstream dialect plugs in through ``UpstreamDialect`` alone: the loop stores
what it validates or reassembles, and the Responses assembly and stream event mapper read
its payloads and chunks through it, with no Chat Completions format anywhere."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest

from responseloop import (
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import (
    JSON,
    AppendSteps,
    ChainStep,
    Complete,
    HttpRequest,
    HttpResponse,
    LoopEventKind,
    ModelTurn,
    NextAction,
    OnServerSentEvent,
    Scope,
    ServerSentEvent,
    StepDescriptor,
    StreamDelta,
    ToolCall,
    ToolCallDelta,
    ToolSchema,
)
from responseloop.exceptions import UpstreamProtocolError
from responseloop.openresponses import ResponsesEventMapper, assemble_response, parse_request
from responseloop.testing import RecordingEventSink

# The toy upstream's reply: {"say": text, "call": [id, name, arguments] or null}; streamed
# as named events "say" (a piece of text), "call" (the call as JSON) and "end".


class _Reassembler:
    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.call: JSON = None
        self.done = False

    def feed(self, event: ServerSentEvent) -> JSON | None:
        if self.done:
            raise UpstreamProtocolError("the toy stream went on after its end")
        if event.event == "end":
            self.done = True
            return None
        if event.event == "say":
            self.pieces.append(event.data)
            return {"say": event.data}
        if event.event == "call":
            self.call = json.loads(event.data)
            return {"call": self.call}
        raise UpstreamProtocolError(f"the toy stream sent {event.event!r}")

    def result(self) -> JSON:
        if not self.done:
            raise UpstreamProtocolError("the toy stream ended early")
        return {"say": "".join(self.pieces), "call": self.call}


class ToyDialect:
    def model_reply(self, response: HttpResponse) -> JSON:
        reply = response.json()
        if not isinstance(reply, Mapping) or not isinstance(reply.get("say"), str):
            raise UpstreamProtocolError("the toy reply says nothing")
        return reply

    def stream_reassembler(self) -> _Reassembler:
        return _Reassembler()

    def turn(self, payload: JSON) -> ModelTurn:
        call = payload.get("call") if isinstance(payload, Mapping) else None
        return ModelTurn(
            text=payload["say"] if isinstance(payload, Mapping) else "",
            tool_calls=[ToolCall(*call)] if call else [],
        )

    def stream_delta(self, chunk: JSON) -> StreamDelta:
        if not isinstance(chunk, Mapping):
            return StreamDelta()
        call = chunk.get("call")
        if call:
            return StreamDelta(tool_calls=[ToolCallDelta(0, call[0], call[1], call[2])])
        return StreamDelta(text=str(chunk.get("say", "")))

    def told_tool_outputs(self, request: Mapping[str, Any]) -> Mapping[str, str]:
        return {}


TOY = ToyDialect()


class ToyUpstream:
    """An HttpClient speaking the toy format; it records whether the loop stopped it."""

    def __init__(self, reply: Mapping[str, Any]) -> None:
        self.reply = reply
        self.stopped_by_caller = False

    async def execute(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse.from_json(200, dict(self.reply))

    async def stream(self, request: HttpRequest, on_event: OnServerSentEvent) -> HttpResponse:
        text = str(self.reply["say"])
        events = [ServerSentEvent(text[:2], "say"), ServerSentEvent(text[2:], "say")]
        if self.reply.get("call"):
            events.append(ServerSentEvent(json.dumps(self.reply["call"]), "call"))
        for event in [*events, ServerSentEvent("", "end"), ServerSentEvent("junk", "after")]:
            if await on_event(event):
                self.stopped_by_caller = True
                break
        return HttpResponse(200, b"", {"content-type": "text/event-stream"})


@attrs.frozen
class OneCall:
    """Makes one model call and completes with its payload."""

    stream: bool

    def decide(self, chain: Sequence[ChainStep], scope: Scope, config: LoopConfig) -> NextAction:
        if not chain:
            return AppendSteps([StepDescriptor.model_call({"stream": self.stream})])
        return Complete(chain[-1].response_payload)

    def sub_agent(self, step: ChainStep, tool: ToolSchema) -> OneCall:
        return self


REQUEST = parse_request({"model": "m", "input": "hi", "tools": [{"name": "lookup"}]})


@pytest.mark.parametrize("stream", [False, True])
async def test_a_second_dialect_runs_assembles_and_streams_through_the_seam(stream: bool) -> None:
    reply = {"say": "Hello", "call": ["c1", "lookup", '{"q": 1}']}
    upstream = ToyUpstream(reply)
    store = InMemoryStore()
    sink = RecordingEventSink()
    await store.create_response(ResponseRecord("resp_toy", {"model": "m"}, model="m"))
    outcome = await run_response_loop(
        "resp_toy",
        store=store,
        http_client=upstream,
        upstream=UpstreamTarget("http://toy.invalid"),
        transition=OneCall(stream),
        events=sink,
        dialect=TOY,
    )
    assert outcome == Complete(reply)
    assert upstream.stopped_by_caller is stream
    chain = await store.list_chain("resp_toy", None)
    assert chain[0].response_payload == reply
    chunks = [event.data for event in sink.of_kind(LoopEventKind.MODEL_CHUNK)]
    assert chunks == ([{"say": "He"}, {"say": "llo"}, {"call": reply["call"]}] if stream else [])

    response = assemble_response(
        chain, REQUEST, response_id="resp_toy", created_at=0, outcome=outcome, dialect=TOY
    )
    assert [(item["type"], item.get("call_id")) for item in response["output"]] == [
        ("message", None),
        ("function_call", "call_toy_1_0"),  # ours, not the dialect's c1
    ]
    assert response["output"][0]["content"][0]["text"] == "Hello"

    mapper = ResponsesEventMapper(REQUEST, response_id="resp_toy", created_at=0, dialect=TOY)
    wire = [wire for event in sink.events for wire in mapper.feed(event)]
    assert mapper.response == response
    deltas = [e["delta"] for e in wire if e["type"] == "response.output_text.delta"]
    assert deltas == (["He", "llo"] if stream else ["Hello"])


async def test_the_dialect_refuses_a_reply_and_the_step_fails() -> None:
    store = InMemoryStore()
    await store.create_response(ResponseRecord("resp_bad", {"model": "m"}, model="m"))
    outcome = await run_response_loop(
        "resp_bad",
        store=store,
        http_client=ToyUpstream({"said": "nothing"}),
        upstream=UpstreamTarget("http://toy.invalid"),
        transition=OneCall(False),
        dialect=TOY,
    )
    [step] = await store.list_chain("resp_bad", None)
    assert step.error is not None
    assert step.error["message"] == "the toy reply says nothing"
    assert isinstance(outcome, Complete)  # OneCall completes with what the chain holds
