"""The Responses event stream of real loop runs, checked against the SDK and the spec.

Each scenario runs the real loop (ScriptedChatModel, InMemoryStore, ResponsesTransition,
RecordingEventSink), streamed and not, maps the recorded loop events with
ResponsesEventMapper, and checks the stream with tests.stream_checks against the Response
that assemble_response gives for the stored chain (the non-streamed Response).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import attrs
import httpx2
import openai
import pytest
from openai._types import omit
from openai.lib._parsing._responses import parse_response

from responseloop import (
    InMemoryStore,
    LoopConfig,
    ResponseRecord,
    UpstreamTarget,
    run_response_loop,
)
from responseloop.abc import (
    AgentSpec,
    ChainStep,
    Complete,
    Fail,
    HttpRequest,
    LoopEvent,
    LoopEventKind,
    StepKind,
    ToolKind,
    ToolSchema,
)
from responseloop.chat import ResponsesTransition
from responseloop.openresponses import (
    ResponsesEventMapper as _ResponsesEventMapper,
)
from responseloop.openresponses import (
    WireOptions,
    parse_request,
)
from responseloop.openresponses import (
    assemble_response as _assemble_response,
)
from responseloop.openresponses._sealing import open_reasoning
from responseloop.testing import (
    ChatReply,
    RecordingEventSink,
    RecordingToolExecutor,
    ScriptedChatModel,
    scripted_logprobs,
)
from tests.openai_shapes import validate_response
from tests.stream_checks import check_stream

# These tests are about the 0.1 shape of server-side calls (function_call +
# function_call_output); tests/openresponses/test_server_tool_items.py covers mcp_call.
FUNCTION_CALL_ITEMS = WireOptions(server_tool_items="function_call")


def assemble_response(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return _assemble_response(*args, **{"wire": FUNCTION_CALL_ITEMS, **kwargs})


class ResponsesEventMapper(_ResponsesEventMapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"wire": FUNCTION_CALL_ITEMS, **kwargs})


RESPONSE_ID = "resp_events"
CREATED_AT = 1_700_000_000
COMPLETED_AT = 1_700_000_009
CONFIRM = {
    "type": "function",
    "name": "confirm",
    "parameters": {"type": "object", "properties": {}},
}


@attrs.frozen
class Run:
    """One loop run: its stream events, the non-streamed Response, and what it saw."""

    events: list[dict[str, Any]]
    expected: dict[str, Any]
    loop_events: list[LoopEvent]
    mapper: ResponsesEventMapper
    chain: list[ChainStep]
    model: ScriptedChatModel


async def all_steps(store: InMemoryStore, scope: str | None = None) -> list[ChainStep]:
    """Every stored step of the response, sub-agent scopes included."""
    steps = list(await store.list_chain(RESPONSE_ID, scope))
    for step in list(steps):
        if step.is_tool and step.tool_name is not None:
            steps += await all_steps(store, step.id)
    return sorted(steps, key=lambda step: step.sequence)


async def run_stream(
    script: Sequence[ChatReply | Callable[[HttpRequest], ChatReply]],
    *,
    stream: bool,
    tools: RecordingToolExecutor | None = None,
    body: dict[str, Any] | None = None,
    config: LoopConfig | None = None,
    wire: WireOptions = FUNCTION_CALL_ITEMS,
) -> Run:
    body = {"model": "m", "input": "hi", **(body or {}), "stream": stream}
    request = parse_request(body)
    store = InMemoryStore()
    await store.create_response(ResponseRecord(RESPONSE_ID, body, model=request.model))
    model = ScriptedChatModel(script)
    sink = RecordingEventSink()
    outcome = await run_response_loop(
        RESPONSE_ID,
        store=store,
        http_client=model,
        upstream=UpstreamTarget("http://upstream.invalid"),
        transition=ResponsesTransition(request),
        tools=tools,
        config=config,
        events=sink,
    )
    chain = await all_steps(store)
    expected = assemble_response(
        chain,
        request,
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
        outcome=outcome,
        completed_at=COMPLETED_AT,
        wire=wire,
    )
    validate_response(expected)
    mapper = ResponsesEventMapper(
        request,
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
        clock=lambda: COMPLETED_AT,
        wire=wire,
    )
    events = [wire for event in sink.events for wire in mapper.feed(event)]
    check_stream(events, expected)
    assert mapper.finished
    assert mapper.response == expected
    # The mapper's own chain, rebuilt from the events, is the stored one.
    assert mapper.chain == chain
    if all(isinstance(entry, ChatReply) for entry in script):
        assert model.remaining == 0, "the scenario scripted more replies than the loop used"
    return Run(events, expected, sink.events, mapper, chain, model)


def types(run: Run) -> list[str]:
    return [event["type"] for event in run.events]


STREAMS = pytest.mark.parametrize("stream", [False, True], ids=["unstreamed", "streamed"])


@STREAMS
async def test_text(stream: bool) -> None:
    run = await run_stream([ChatReply.text("Hello there, world")], stream=stream)
    deltas = [e["delta"] for e in run.events if e["type"] == "response.output_text.delta"]
    # Streamed: the chunks' pieces as they came; unstreamed: one delta with the whole text.
    assert deltas == (["Hello the", "re, world"] if stream else ["Hello there, world"])
    assert types(run) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert run.events[-1]["response"]["completed_at"] == COMPLETED_AT


@STREAMS
async def test_one_server_tool_call(stream: bool) -> None:
    tools = RecordingToolExecutor()
    tools.add("lookup", lambda arguments: {"found": arguments})
    run = await run_stream(
        [ChatReply.tool_call("lookup", {"q": "x"}, call_id="c1"), ChatReply.text("x is here")],
        stream=stream,
        tools=tools,
    )
    done = [e["item"] for e in run.events if e["type"] == "response.output_item.done"]
    assert [(item["type"], item["id"]) for item in done] == [
        ("function_call", "fc_events_1_0"),
        ("function_call_output", "fco_events_2"),
        ("message", "msg_events_3"),
    ]
    assert json.loads(done[1]["output"]) == {"found": {"q": "x"}}
    arguments = [
        e["delta"] for e in run.events if e["type"] == "response.function_call_arguments.delta"
    ]
    assert "".join(arguments) == '{"q": "x"}'
    assert len(arguments) == (2 if stream else 1)


async def test_the_tool_output_is_sent_before_the_next_model_call_starts() -> None:
    tools = RecordingToolExecutor()
    tools.add("lookup")
    run = await run_stream(
        [ChatReply.tool_call("lookup", {}, call_id="c1"), ChatReply.text("ok")],
        stream=True,
        tools=tools,
    )
    mapper = ResponsesEventMapper(
        parse_request({"model": "m", "input": "hi", "stream": True}),
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
    )
    tool_done = next(
        i
        for i, event in enumerate(run.loop_events)
        if event.kind is LoopEventKind.STEP_COMPLETED and event.step_kind is StepKind.TOOL_CALL
    )
    sent = [wire for event in run.loop_events[: tool_done + 1] for wire in mapper.feed(event)]
    assert sent[-1]["type"] == "response.output_item.done"
    assert sent[-1]["item"]["type"] == "function_call_output"


@STREAMS
async def test_client_function_call(stream: bool) -> None:
    run = await run_stream(
        [ChatReply.tool_call("confirm", {"ok": True}, call_id="c9")],
        stream=stream,
        body={"tools": [CONFIRM]},
    )
    output = run.expected["output"]
    # Our call id (it names the response, as the item id does), not the upstream's "c9",
    # and the same on every event that shows the item, streamed or not.
    assert [(item["type"], item["call_id"]) for item in output] == [
        ("function_call", "call_events_1_0")
    ]
    shown = [e["item"] for e in run.events if "item" in e] + [
        item for e in run.events if "response" in e for item in e["response"]["output"]
    ]
    assert {item["call_id"] for item in shown} == {"call_events_1_0"}
    assert len(shown) >= 3  # added, done, and the terminal Response
    assert types(run)[-1] == "response.completed"


@STREAMS
async def test_parallel_tool_calls_come_out_in_call_order(stream: bool) -> None:
    second_done = anyio.Event()

    async def slow(arguments: Any) -> str:
        await second_done.wait()  # finishes only after the second call did
        return "first"

    def fast(arguments: Any) -> str:
        second_done.set()
        return "second"

    tools = RecordingToolExecutor()
    tools.add("slow", slow)
    tools.add("fast", fast)
    run = await run_stream(
        [
            ChatReply.calls(("slow", {}, "c1"), ("fast", {}, "c2"), ("confirm", {}, "c3")),
        ],
        stream=stream,
        tools=tools,
        body={"tools": [CONFIRM]},
    )
    finished = [
        event.data
        for event in run.loop_events
        if event.kind is LoopEventKind.STEP_COMPLETED and event.step_kind is StepKind.TOOL_CALL
    ]
    assert finished == ["second", "first"]
    done = [e["item"] for e in run.events if e["type"] == "response.output_item.done"]
    assert [(item["type"], item["call_id"]) for item in done] == [
        ("function_call", "call_events_1_0"),
        ("function_call", "call_events_1_1"),
        ("function_call", "call_events_1_2"),
        ("function_call_output", "call_events_1_0"),
        ("function_call_output", "call_events_1_1"),
    ]


@STREAMS
async def test_reasoning(stream: bool) -> None:
    run = await run_stream(
        [ChatReply.text("The answer is 4.", reasoning="2 and 2 make 4")], stream=stream
    )
    reasoning = [e for e in run.events if e["type"].startswith("response.reasoning_text.")]
    assert "".join(e["delta"] for e in reasoning if e["type"].endswith(".delta")) == (
        "2 and 2 make 4"
    )
    assert [item["type"] for item in run.expected["output"]] == ["reasoning", "message"]


@STREAMS
async def test_reasoning_asked_as_a_summary(stream: bool) -> None:
    run = await run_stream(
        [ChatReply.text("The answer is 4.", reasoning="2 and 2 make 4")],
        stream=stream,
        body={"reasoning": {"summary": "auto"}},
    )
    reasoning = run.expected["output"][0]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "2 and 2 make 4"}]
    assert "content" not in reasoning  # the summary is the reasoning: not sent twice
    assert "encrypted_content" not in reasoning
    summary = [e for e in run.events if e["type"].startswith("response.reasoning_summary")]
    deltas = [e["delta"] for e in summary if e["type"].endswith("_text.delta")]
    assert "".join(deltas) == "2 and 2 make 4"
    assert len(deltas) > 1 if stream else deltas == ["2 and 2 make 4"]
    assert [e["type"] for e in summary if not e["type"].endswith(".delta")] == [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    assert not [e for e in run.events if e["type"].startswith("response.reasoning_text.")]


@STREAMS
async def test_sealed_reasoning_opens_under_the_key(stream: bool) -> None:
    wire = WireOptions(reasoning_key="operator secret")
    run = await run_stream(
        [ChatReply.text("4", reasoning="2 and 2")],
        stream=stream,
        body={"include": ["reasoning.encrypted_content"]},
        wire=wire,
    )
    reasoning = run.expected["output"][0]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "2 and 2"}]
    assert open_reasoning(reasoning["encrypted_content"], b"operator secret") == "2 and 2"


async def test_no_key_leaves_encrypted_content_out() -> None:
    run = await run_stream(
        [ChatReply.text("4", reasoning="2 and 2")],
        stream=True,
        body={"include": ["reasoning.encrypted_content"], "reasoning": {"summary": "detailed"}},
    )
    assert "encrypted_content" not in run.expected["output"][0]


async def test_a_summary_opened_by_chunks_of_a_failed_call_ends_incomplete() -> None:
    """A streamed call that fails after reasoning chunks: the summary part it opened is
    closed and its item ends incomplete."""
    request = parse_request({"model": "m", "input": "hi", "reasoning": {"summary": "auto"}})
    mapper = ResponsesEventMapper(request, response_id=RESPONSE_ID, created_at=CREATED_AT)

    def event(kind: LoopEventKind, data: Any = None) -> LoopEvent:
        return LoopEvent(
            kind=kind,
            response_id=RESPONSE_ID,
            sequence=1,
            step_id="s1",
            step_kind=StepKind.MODEL_CALL,
            data=data,
        )

    chunk = {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}
    events = mapper.feed(event(LoopEventKind.STEP_STARTED, {}))
    events += mapper.feed(event(LoopEventKind.MODEL_CHUNK, chunk))
    events += mapper.feed(event(LoopEventKind.STEP_FAILED, {"message": "boom"}))
    events += mapper.feed(
        LoopEvent(
            kind=LoopEventKind.RESPONSE_FAILED,
            response_id=RESPONSE_ID,
            data={"type": "upstream_error", "message": "boom"},
        )
    )
    assert mapper.response is not None
    check_stream(events, mapper.response, exact_items=False)
    done = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert done["summary"] == [{"type": "summary_text", "text": "hmm"}]
    assert done["status"] == "incomplete"


@STREAMS
async def test_refusal(stream: bool) -> None:
    run = await run_stream([ChatReply(refusal="I can't help with that.")], stream=stream)
    (message,) = run.expected["output"]
    assert message["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    refusal = [e for e in run.events if e["type"].startswith("response.refusal.")]
    assert refusal[-1] == {
        "type": "response.refusal.done",
        "sequence_number": refusal[-1]["sequence_number"],
        "item_id": message["id"],
        "output_index": 0,
        "content_index": 0,
        "refusal": "I can't help with that.",
    }


@STREAMS
async def test_length_ends_incomplete(stream: bool) -> None:
    run = await run_stream(
        [ChatReply.text("It was the best of", finish_reason="length")], stream=stream
    )
    assert types(run)[-1] == "response.incomplete"
    assert run.expected["incomplete_details"] == {"reason": "max_output_tokens"}
    assert run.expected["output"][0]["status"] == "incomplete"


@STREAMS
async def test_upstream_failure_ends_failed(stream: bool) -> None:
    tools = RecordingToolExecutor()
    tools.add("lookup")
    run = await run_stream(
        [ChatReply.tool_call("lookup", {}, call_id="c1"), ChatReply.error(500, "boom")],
        stream=stream,
        tools=tools,
    )
    assert types(run)[-1] == "response.failed"
    assert run.expected["error"]["code"] == "server_error"
    # What happened before the failure is still streamed, item by item.
    assert [item["type"] for item in run.expected["output"]] == [
        "function_call",
        "function_call_output",
    ]


@STREAMS
async def test_unknown_tool_answer_comes_from_the_next_model_call(stream: bool) -> None:
    run = await run_stream(
        [ChatReply.tool_call("nosuch", {}, call_id="c1"), ChatReply.text("sorry")],
        stream=stream,
    )
    output = run.expected["output"][1]
    assert output["type"] == "function_call_output"
    assert "not available" in output["output"]


@STREAMS
async def test_sub_agent_steps_send_nothing_but_count_in_usage(stream: bool) -> None:
    tools = RecordingToolExecutor()
    tools.add(
        ToolSchema(
            "helper", kind=ToolKind.AGENT, agent=AgentSpec(instructions="help", model="small")
        )
    )
    run = await run_stream(
        [
            ChatReply.tool_call("helper", {"task": "t"}, call_id="c1"),
            ChatReply.text("helped"),
            ChatReply.text("done"),
        ],
        stream=stream,
        tools=tools,
    )
    assert any(event.depth == 1 for event in run.loop_events)
    assert run.expected["usage"]["total_tokens"] == 45  # three model calls of 15
    assert [item["type"] for item in run.expected["output"]] == [
        "function_call",
        "function_call_output",
        "message",
    ]


SDK_SCENARIOS = {
    "text": [ChatReply.text("found it")],
    "one tool call": [
        ChatReply.tool_call("lookup", {"q": 1}, call_id="c1"),
        ChatReply.text("found it"),
    ],
    "parallel tool calls": [
        ChatReply.calls(("lookup", {"q": 1}, "c1"), ("lookup", {"q": 2}, "c2")),
        ChatReply.text("found it"),
    ],
    "reasoning": [
        ChatReply.tool_call("lookup", {"q": 1}, call_id="c1", reasoning="let me look"),
        ChatReply.text("found it", reasoning="there it is"),
    ],
}


@STREAMS
@pytest.mark.parametrize("scenario", list(SDK_SCENARIOS))
async def test_the_sdk_stream_helper_gets_the_non_streamed_response(
    scenario: str, stream: bool
) -> None:
    """The official client's ``responses.stream(...)`` over HTTP (a mock transport serving
    our events as SSE) ends with exactly the non-streamed Response."""
    tools = RecordingToolExecutor()
    tools.add("lookup")
    run = await run_stream(SDK_SCENARIOS[scenario], stream=stream, tools=tools)
    body = "".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in run.events
    ).encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://responses.invalid/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client.responses.stream(model="m", input="hi") as sdk_stream:
        seen = [event.type for event in sdk_stream]
        final = sdk_stream.get_final_response()
    assert seen == types(run)
    assert final.output_text == "found it"
    want = parse_response(
        text_format=omit, response=validate_response(run.expected), input_tools=[]
    )
    assert final.model_dump(mode="json") == want.model_dump(mode="json")
    assert [item.model_dump()["id"] for item in final.output] == [
        item["id"] for item in run.expected["output"]
    ]


# -- the mapper on hand-made events -----------------------------------------------------


def mapper_of(body: dict[str, Any] | None = None) -> ResponsesEventMapper:
    request = parse_request(body or {"model": "m", "input": "hi", "stream": True})
    return ResponsesEventMapper(request, response_id=RESPONSE_ID, created_at=CREATED_AT)


def step_event(kind: LoopEventKind, data: Any, *, step: str = "s1", seq: int = 1) -> LoopEvent:
    return LoopEvent(
        kind, RESPONSE_ID, data, step_id=step, step_kind=StepKind.MODEL_CALL, sequence=seq
    )


def chunk(**delta: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


async def test_items_a_failed_streamed_call_opened_end_incomplete() -> None:
    mapper = mapper_of()
    loop_events = [
        LoopEvent(LoopEventKind.RESPONSE_STARTED, RESPONSE_ID),
        step_event(LoopEventKind.STEP_STARTED, {"model": "m", "messages": []}),
        step_event(LoopEventKind.MODEL_CHUNK, chunk(content="Hel")),
        step_event(LoopEventKind.STEP_FAILED, {"type": "upstream_error", "message": "cut"}),
        LoopEvent(
            LoopEventKind.RESPONSE_FAILED,
            RESPONSE_ID,
            {"type": "upstream_error", "message": "cut"},
        ),
    ]
    events = [wire for event in loop_events for wire in mapper.feed(event)]
    expected = assemble_response(
        mapper.chain,
        mapper_request(),
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
        outcome=Fail({"type": "upstream_error", "message": "cut"}),
    )
    assert expected["output"] == []
    check_stream(events, expected, exact_items=False)
    stray = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert stray == [
        {
            "id": "msg_events_1",
            "type": "message",
            "status": "incomplete",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hel", "annotations": []}],
        }
    ]


def mapper_request() -> Any:
    return parse_request({"model": "m", "input": "hi", "stream": True})


async def test_nothing_is_sent_after_the_terminal_event() -> None:
    mapper = mapper_of()
    done = LoopEvent(LoopEventKind.RESPONSE_COMPLETED, RESPONSE_ID, None)
    first = mapper.feed(done)
    assert [e["type"] for e in first] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert mapper.feed(done) == []
    assert mapper.feed(LoopEvent(LoopEventKind.RESPONSE_STARTED, RESPONSE_ID)) == []


async def test_an_event_of_another_response_is_refused() -> None:
    with pytest.raises(ValueError, match="resp_other"):
        mapper_of().feed(LoopEvent(LoopEventKind.RESPONSE_STARTED, "resp_other"))


async def test_chunks_out_of_the_usual_order_still_give_every_item() -> None:
    """Text before reasoning: the late reasoning item takes the next index, and the
    terminal Response is still the assembled one."""
    mapper = mapper_of()
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "reasoning_content": "hm"},
                "finish_reason": "stop",
            }
        ]
    }
    loop_events = [
        LoopEvent(LoopEventKind.RESPONSE_STARTED, RESPONSE_ID),
        step_event(LoopEventKind.STEP_STARTED, {"model": "m", "messages": []}),
        step_event(LoopEventKind.MODEL_CHUNK, chunk(content="Hi")),
        step_event(LoopEventKind.MODEL_CHUNK, chunk(reasoning_content="hm")),
        step_event(LoopEventKind.STEP_COMPLETED, completion),
        LoopEvent(LoopEventKind.RESPONSE_COMPLETED, RESPONSE_ID, None),
    ]
    events = [wire for event in loop_events for wire in mapper.feed(event)]
    added = [(e["output_index"], e["item"]["id"]) for e in events if "item" in e]
    assert added[:2] == [(0, "msg_events_1"), (1, "rs_events_1")]
    response = events[-1]["response"]
    check_stream(events, response, exact_items=False)
    assert [item["id"] for item in response["output"]] == ["rs_events_1", "msg_events_1"]
    assert response == assemble_response(
        mapper.chain,
        mapper_request(),
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
        outcome=Complete(None),
    )


@STREAMS
async def test_an_agent_step_ended_by_the_tool_call_cap_is_streamed_as_failed(
    stream: bool,
) -> None:
    tools = RecordingToolExecutor()
    tools.add("ok")
    tools.add(ToolSchema("helper", kind=ToolKind.AGENT, agent=AgentSpec()), sub_agent_tools=tools)
    run = await run_stream(
        [
            ChatReply.tool_call("helper", {}, call_id="c1"),
            ChatReply.tool_call("ok", {}, call_id="c2"),  # the sub-agent's call: one too many
        ],
        stream=stream,
        tools=tools,
        config=LoopConfig(max_tool_calls=1),
    )
    assert types(run)[-1] == "response.failed"
    output = run.expected["output"][-1]
    assert (output["type"], output["call_id"], output["status"]) == (
        "function_call_output",
        "call_events_1_0",
        "incomplete",
    )


@pytest.mark.parametrize("split_after", [1, 2])
async def test_a_resumed_response_streams_its_prior_items_first(split_after: int) -> None:
    """A mapper given the stored chain of a resumed response (here: the steps before the
    split point of a real run) sends their items first, then the rest as it comes."""
    tools = RecordingToolExecutor()
    tools.add("lookup")
    run = await run_stream(
        [ChatReply.tool_call("lookup", {}, call_id="c1"), ChatReply.text("found")],
        stream=True,
        tools=tools,
    )
    ended = [
        i for i, event in enumerate(run.loop_events) if event.kind is LoopEventKind.STEP_COMPLETED
    ]
    split = ended[split_after - 1] + 1
    first = mapper_of()
    for event in run.loop_events[:split]:
        first.feed(event)
    resumed = ResponsesEventMapper(
        mapper_request(),
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
        clock=lambda: COMPLETED_AT,
        prior=first.chain,
    )
    rest = [LoopEvent(LoopEventKind.RESPONSE_STARTED, RESPONSE_ID), *run.loop_events[split:]]
    events = [wire for event in rest for wire in resumed.feed(event)]
    check_stream(events, run.expected)
    assert resumed.chain == run.chain


@STREAMS
async def test_included_logprobs_ride_on_the_parts_and_the_text_events(stream: bool) -> None:
    body = {"include": ["message.output_text.logprobs"], "top_logprobs": 1}
    run = await run_stream([ChatReply.text("Hello there, world")], stream=stream, body=body)
    tokens = ["Hello the", "re, world"]  # the scripted model's pieces
    part = run.expected["output"][0]["content"][0]
    assert part["logprobs"] == scripted_logprobs(tokens, 1)
    deltas = [e["logprobs"] for e in run.events if e["type"] == "response.output_text.delta"]
    expected = scripted_logprobs(tokens, 1)  # with the bytes the spec requires
    # Streamed: each delta its own token's; unstreamed: one delta with them all.
    assert deltas == ([expected[:1], expected[1:]] if stream else [expected])
    (done,) = [e for e in run.events if e["type"] == "response.output_text.done"]
    assert done["logprobs"] == expected


@STREAMS
async def test_without_the_include_text_events_carry_no_logprobs(stream: bool) -> None:
    run = await run_stream([ChatReply.text("Hello there")], stream=stream)
    assert "logprobs" not in run.expected["output"][0]["content"][0]
    text_events = [e for e in run.events if e["type"].startswith("response.output_text.")]
    assert text_events
    assert all(e["logprobs"] == [] for e in text_events)
