"""Server-side tool calls as ``mcp_call`` items (the default ``WireOptions``), in the pure
assembly, the event mapper and the input side; tests/openresponses/test_assembly.py and
test_events.py cover 0.1's ``function_call`` + ``function_call_output`` shape."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.abc import (
    ChainStep,
    Complete,
    LoopEvent,
    LoopEventKind,
    ResponseStatus,
    StepState,
)
from responseloop.adapters._background import replayed_events
from responseloop.chat import to_chat_body
from responseloop.exceptions import InvalidRequestError
from responseloop.openresponses import (
    ResponsesEventMapper,
    WireOptions,
    assemble_response,
    parse_request,
)
from responseloop.openresponses._assembly import output_items
from responseloop.openresponses._items import input_items
from responseloop.testing import ChatReply, RecordingToolExecutor
from tests.chains import completion, model_step, tool_step
from tests.openresponses.test_events import (
    COMPLETED_AT,
    CONFIRM,
    CREATED_AT,
    RESPONSE_ID,
    run_stream,
)
from tests.stream_checks import check_stream
from tests.wire_checks import check_emitted_response

CLIENT_TOOL = {"type": "function", "name": "confirm", "parameters": {"type": "object"}}
PLAIN = parse_request({"model": "m", "input": "q"})
WITH_CLIENT_TOOL = parse_request({"model": "m", "input": "q", "tools": [CLIENT_TOOL]})


def assemble(chain: list[ChainStep], outcome: Any, request: Any = PLAIN, **wire: Any) -> Any:
    response = assemble_response(
        chain,
        request,
        response_id="resp_abc",
        created_at=0,
        outcome=outcome,
        wire=WireOptions(**wire),
    )
    check_emitted_response(response)
    return response


def test_a_completed_call_is_one_mcp_call_with_its_output() -> None:
    chain = [
        model_step(1, completion(calls=[("c1", "weather", {"city": "Paris"})])),
        tool_step(2, "weather", "c1", {"temp": 72}),
        model_step(3, completion("72 in Paris")),
    ]
    output = assemble(chain, Complete(None))["output"]
    assert output[0] == {
        "id": "mcp_abc_1_0",
        "type": "mcp_call",
        "server_label": "responseloop",
        "name": "weather",
        "arguments": '{"city": "Paris"}',
        "output": '{"temp": 72}',
        "error": None,
        "status": "completed",
    }
    assert [item["type"] for item in output] == ["mcp_call", "message"]


def test_the_label_is_the_wire_options_unless_the_tool_step_names_its_server() -> None:
    plain = tool_step(2, "weather", "c1", "sunny")
    labelled = attrs.evolve(
        tool_step(3, "weather", "c2", "rainy"),
        request_payload={"name": "weather", "call_id": "c2", "server_label": "forecasts"},
    )
    reply = completion(calls=[("c1", "weather", {}), ("c2", "weather", {})])
    chain = [model_step(1, reply), plain, labelled]
    output = assemble(chain, ResponseStatus.IN_PROGRESS, server_label="ops")["output"]
    assert [item["server_label"] for item in output] == ["ops", "forecasts"]


def test_a_failed_tool_is_a_failed_mcp_call_whose_error_is_what_the_model_was_told() -> None:
    error = {"type": "tool_error", "code": "server_error", "message": "boom"}
    chain = [
        model_step(1, completion(calls=[("c1", "search", {})])),
        tool_step(2, "search", "c1", state=StepState.FAILED, error=error),
        model_step(3, completion("sorry")),
    ]
    call = assemble(chain, Complete(None))["output"][0]
    assert call["status"] == "failed"
    assert json.loads(call["output"]) == {"error": "boom"}
    assert call["error"] == {
        "type": "mcp_tool_execution_error",
        "content": [{"type": "text", "text": call["output"]}],
    }


def test_a_cancelled_or_never_run_call_is_incomplete() -> None:
    chain = [
        model_step(1, completion(calls=[("c1", "search", {}), ("c2", "search", {})])),
        tool_step(2, "search", "c1", state=StepState.CANCELLED),
    ]
    output = assemble(chain, ResponseStatus.CANCELLED)["output"]
    assert [(item["status"], item["error"] is not None) for item in output] == [
        ("incomplete", True),
        ("incomplete", True),
    ]


def test_a_running_call_shows_in_progress_in_a_response_that_has_not_ended() -> None:
    chain = [
        model_step(1, completion(calls=[("c1", "search", {})])),
        tool_step(2, "search", "c1", state=StepState.PROCESSING),
    ]
    call = assemble(chain, ResponseStatus.IN_PROGRESS)["output"][0]
    assert (call["status"], call["output"], call["error"]) == ("in_progress", None, None)


def test_a_mixed_turn_gives_the_mcp_call_and_the_client_function_call() -> None:
    reply = completion(calls=[("s1", "search", {}), ("d1", "confirm", {"ok": True})])
    chain = [model_step(1, reply), tool_step(2, "search", "s1", "found")]
    output = assemble(chain, Complete(None), WITH_CLIENT_TOOL)["output"]
    assert [(item["type"], item["id"]) for item in output] == [
        ("mcp_call", "mcp_abc_1_0"),
        ("function_call", "fc_abc_1_1"),
    ]
    assert output[1]["call_id"] == "call_abc_1_1"


@given(
    st.lists(
        st.tuples(st.booleans(), st.text("abcdefgh_0123456789", min_size=1, max_size=8)),
        min_size=1,
        max_size=6,
        unique_by=lambda call: call[1],
    ),
    st.sampled_from(["mcp_call", "function_call"]),
)
def test_the_call_ids_shown_are_ours_whatever_the_upstream_called_its_calls(
    calls: list[tuple[bool, str]], server_tool_items: str
) -> None:
    """Each call item's call_id is ``call_<base>_<seq>_<idx>``, and a 0.1-style output is
    under its call's; the upstream's own ids (``upstream``) never reach the wire."""
    reply = completion(
        calls=[(upstream, "confirm" if client else "search", {}) for client, upstream in calls]
    )
    chain = [model_step(1, reply)]
    chain += [
        tool_step(2 + i, "search", upstream, "found")
        for i, (client, upstream) in enumerate(calls)
        if not client
    ]
    output = assemble(chain, Complete(None), WITH_CLIENT_TOOL, server_tool_items=server_tool_items)[
        "output"
    ]
    by_call = {item["call_id"]: item for item in output if item["type"] == "function_call"}
    for index, (client, _upstream) in enumerate(calls):
        if client or server_tool_items == "function_call":
            assert by_call[f"call_abc_1_{index}"]["id"] == f"fc_abc_1_{index}"
    answered = [item["call_id"] for item in output if item["type"] == "function_call_output"]
    assert set(answered) <= set(by_call)
    assert all(item["call_id"].startswith("call_abc_1_") for item in output if "call_id" in item)


def test_function_call_items_keep_the_pair() -> None:
    chain = [
        model_step(1, completion(calls=[("c1", "weather", {})])),
        tool_step(2, "weather", "c1", "sunny"),
    ]
    output = assemble(chain, Complete(None), server_tool_items="function_call")["output"]
    assert [(item["type"], item["id"]) for item in output] == [
        ("function_call", "fc_abc_1_0"),
        ("function_call_output", "fco_abc_2"),
    ]


# -- the settled prefix ------------------------------------------------------------------

states = st.sampled_from(
    [None, StepState.PROCESSING, StepState.COMPLETED, StepState.FAILED, StepState.CANCELLED]
)


@given(
    first=states,
    second=states,
    client_first=st.booleans(),
    wire=st.sampled_from(["mcp_call", "function_call"]),
)
def test_running_items_are_a_prefix_of_the_finished_ones(
    first: StepState | None, second: StepState | None, client_first: bool, wire: Any
) -> None:
    """Whatever state each server-side call's step is in, the items of the running
    response are exactly the first items of the response once every step has ended."""
    calls = [("s1", "search", {"n": 1}), ("s2", "search", {"n": 2})]
    calls.insert(0 if client_first else 2, ("d1", "confirm", {}))
    chain = [model_step(1, completion(calls=calls))]
    ended = list(chain)
    for sequence, (call_id, state) in enumerate([("s1", first), ("s2", second)], start=2):
        if state is None:
            continue  # not recorded yet
        chain.append(tool_step(sequence, "search", call_id, "r", state=state))
        final = state if state.is_terminal else StepState.COMPLETED
        ended.append(tool_step(sequence, "search", call_id, "r", state=final))
    for call_id, sequence in (("s1", 2), ("s2", 3)):
        if not any(step.request_payload.get("call_id") == call_id for step in ended):
            ended.append(tool_step(sequence, "search", call_id, "r"))
    options = WireOptions(server_tool_items=wire)
    running = output_items(chain, WITH_CLIENT_TOOL, response_id="resp_abc", wire=options)
    finished = assemble(
        sorted(ended, key=lambda step: step.sequence),
        Complete(None),
        WITH_CLIENT_TOOL,
        server_tool_items=wire,
    )["output"]
    assert running == finished[: len(running)]
    if wire == "mcp_call":
        assert all(item["status"] != "in_progress" for item in running)


# -- input -------------------------------------------------------------------------------


def test_an_mcp_call_sent_back_is_a_tool_call_and_its_result_upstream() -> None:
    item = {
        "id": "mcp_abc_1_0",
        "type": "mcp_call",
        "server_label": "responseloop",
        "name": "weather",
        "arguments": "{}",
        "output": "sunny",
        "error": None,
        "status": "completed",
    }
    request = parse_request({"model": "m", "input": [{"role": "user", "content": "q"}, item]})
    messages = to_chat_body(request)["messages"]
    assert messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "mcp_abc_1_0",
                    "type": "function",
                    "function": {"name": "weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "mcp_abc_1_0", "content": "sunny"},
    ]
    listed = input_items(request, "resp_x")[1]
    assert listed == item


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("arguments", None, "input[0].arguments"),
        ("output", 3, "input[0].output"),
        ("server_label", "", "input[0].server_label"),
        ("error", 3, "input[0].error"),
    ],
)
def test_a_bad_mcp_call_names_its_field(field: str, value: Any, param: str) -> None:
    item = {"id": "m1", "type": "mcp_call", "server_label": "s", "name": "n", "arguments": "{}"}
    with pytest.raises(InvalidRequestError) as raised:
        parse_request({"model": "m", "input": [{**item, field: value}]})
    assert raised.value.param == param


# -- streams: live, resumed and replayed agree ---------------------------------------------


@pytest.mark.parametrize("split_after", [1, 2])
@pytest.mark.parametrize("stream", [True, False])
async def test_resumed_and_replayed_streams_of_mcp_calls_agree(
    split_after: int, stream: bool
) -> None:
    """The live stream, a stream resumed by a new mapper after the first steps (``prior``),
    and the stream replayed from the stored chain all check and end with one Response."""
    tools = RecordingToolExecutor()
    tools.add("lookup")
    run = await run_stream(
        [
            ChatReply.calls(("lookup", {"q": 1}, "c1"), ("confirm", {}, "d1")),
        ],
        stream=stream,
        tools=tools,
        body={"tools": [CONFIRM]},
        wire=WireOptions(),
    )
    assert [item["type"] for item in run.expected["output"]] == ["mcp_call", "function_call"]
    assert "response.mcp_call.completed" in [event["type"] for event in run.events]
    ended = [
        i for i, event in enumerate(run.loop_events) if event.kind is LoopEventKind.STEP_COMPLETED
    ]
    split = ended[split_after - 1] + 1
    request = parse_request({"model": "m", "input": "hi", "stream": stream, "tools": [CONFIRM]})
    first = ResponsesEventMapper(request, response_id=RESPONSE_ID, created_at=CREATED_AT)
    for event in run.loop_events[:split]:
        first.feed(event)
    resumed = ResponsesEventMapper(
        request,
        response_id=RESPONSE_ID,
        created_at=CREATED_AT,
        clock=lambda: COMPLETED_AT,
        prior=first.chain,
    )
    rest = [LoopEvent(LoopEventKind.RESPONSE_STARTED, RESPONSE_ID), *run.loop_events[split:]]
    resumed_events = [wire for event in rest for wire in resumed.feed(event)]
    check_stream(resumed_events, run.expected)
    replayed = replayed_events(
        RESPONSE_ID,
        {"model": "m", "input": "hi", "tools": [CONFIRM]},
        CREATED_AT,
        ResponseStatus.COMPLETED,
        run.expected,
        [step for step in run.chain if step.scope is None],
    )
    check_stream(replayed, run.expected)
    items = [e["item"] for e in replayed if e["type"] == "response.output_item.done"]
    assert items == run.expected["output"]
    # The client call shows our call id (not the upstream's d1) in all three streams.
    ours = "call_" + RESPONSE_ID.removeprefix("resp_") + "_1_1"
    for events in (run.events, resumed_events, replayed):
        shown = [e["item"] for e in events if "item" in e]
        assert {i["call_id"] for i in shown if i["type"] == "function_call"} == {ours}
