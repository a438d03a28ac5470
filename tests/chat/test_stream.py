"""Reassembly of streamed chat completions: exact bodies, any split, and malformed streams."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from responseloop.chat import ChatStreamAssembler, assemble_chat_completion
from responseloop.exceptions import UpstreamProtocolError

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**HEAD, "choices": list(choices), **top}


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


def test_text_reasoning_and_usage_reassemble_exactly() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    body = assemble_chat_completion(
        [
            chunk(delta(role="assistant", content="")),
            chunk(delta(reasoning_content="think")),
            chunk(delta(reasoning_content="ing")),
            chunk(delta(content="Hel")),
            chunk(delta(content="lo")),
            chunk(delta(finish="stop")),
            chunk(usage=usage),
        ]
    )
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "reasoning_content": "thinking",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def test_parallel_tool_calls_merge_by_index_with_interleaved_fragments() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"index": index, **fields}

    body = assemble_chat_completion(
        [
            chunk(delta(role="assistant", content="")),
            chunk(
                delta(
                    tool_calls=[
                        call(
                            0,
                            id="call_a",
                            type="function",
                            function={"name": "get", "arguments": ""},
                        )
                    ]
                )
            ),
            chunk(
                delta(
                    tool_calls=[
                        call(
                            1,
                            id="call_b",
                            type="function",
                            function={"name": "put", "arguments": '{"k'},
                        ),
                        call(0, function={"arguments": '{"city":'}),
                    ]
                )
            ),
            chunk(delta(tool_calls=[call(1, function={"arguments": '":1}'})])),
            chunk(delta(tool_calls=[call(0, function={"arguments": '"Oslo"}'})])),
            chunk(delta(finish="tool_calls")),
        ]
    )
    message = body["choices"][0]["message"]
    # Only tool calls: the stream's opening empty content is null, as unstreamed.
    assert message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get", "arguments": '{"city":"Oslo"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "put", "arguments": '{"k":1}'},
            },
        ],
    }
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" not in body


def test_several_choices_reassemble_by_their_index() -> None:
    body = assemble_chat_completion(
        [
            chunk(delta(1, content="b"), delta(0, content="a")),
            chunk(delta(0, "stop", content="!"), delta(1, "length")),
        ]
    )
    assert [c["message"]["content"] for c in body["choices"]] == ["a!", "b"]
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "length"]


def test_reasoning_field_and_refusal_are_kept_under_their_own_names() -> None:
    body = assemble_chat_completion(
        [chunk(delta(reasoning="r1")), chunk(delta(reasoning="r2", refusal="no", finish="stop"))]
    )
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": None, "reasoning": "r1r2", "refusal": "no"}


def test_logprobs_concatenate_when_the_chunks_carry_them() -> None:
    first = {**delta(content="a"), "logprobs": {"content": [{"token": "a"}]}}
    last = {**delta(content="b", finish="stop"), "logprobs": {"content": [{"token": "b"}]}}
    body = assemble_chat_completion([chunk(first), chunk(last)])
    assert body["choices"][0]["logprobs"] == {"content": [{"token": "a"}, {"token": "b"}]}


def test_system_fingerprint_and_service_tier_are_kept() -> None:
    body = assemble_chat_completion(
        [chunk(delta(content="x", finish="stop"), system_fingerprint="fp", service_tier="default")]
    )
    assert body["system_fingerprint"] == "fp"
    assert body["service_tier"] == "default"


def test_azure_content_filter_chunks_are_skipped() -> None:
    body = assemble_chat_completion(
        [
            {"id": "", "object": "", "created": 0, "model": "", "choices": []},
            chunk(delta(content="ok", finish="stop")),
        ]
    )
    assert body["id"] == "chatcmpl-1"
    assert body["choices"][0]["message"]["content"] == "ok"


def test_done_marks_the_end_and_nothing_may_follow() -> None:
    assembler = ChatStreamAssembler()
    assert assembler.add_data(json.dumps(chunk(delta(content="hi")))) is not None
    assert not assembler.finished
    assert assembler.add_data("[DONE]") is None
    assert assembler.done
    assert assembler.finished
    assert assembler.result()["choices"][0]["message"]["content"] == "hi"
    with pytest.raises(UpstreamProtocolError, match="after"):
        assembler.add_data(json.dumps(chunk(delta(content="more"))))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"error": {"type": "server_error", "message": "sk-secret"}}', "type=server_error"),
        (json.dumps(chunk(delta(content=5))), "delta.content"),
        (json.dumps({**HEAD, "choices": {"index": 0}}), "choices is not a list"),
        (json.dumps(chunk({"index": "0", "delta": {}})), "valid index"),
        (json.dumps(chunk({"index": 0, "delta": "x"})), "delta is not an object"),
        (json.dumps(chunk(delta(tool_calls=[{"function": {}}]))), "valid index"),
        (json.dumps(chunk(delta(tool_calls={"index": 0}))), "not a list"),
        (json.dumps(chunk(delta(tool_calls=[{"index": 0, "function": "f"}]))), "not an object"),
        (json.dumps({**HEAD, "choices": [], "usage": 3}), "usage"),
    ],
)
def test_malformed_chunks_are_protocol_errors(data: str, match: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=match) as caught:
        ChatStreamAssembler().add_data(data)
    assert "sk-secret" not in str(caught.value)


def test_a_stream_cut_before_the_finish_is_a_protocol_error_not_a_half_body() -> None:
    with pytest.raises(UpstreamProtocolError, match="ended before"):
        assemble_chat_completion([chunk(delta(content="half"))])


def test_a_stream_without_chunks_is_a_protocol_error() -> None:
    assembler = ChatStreamAssembler()
    assembler.add_data("[DONE]")
    with pytest.raises(UpstreamProtocolError, match="no chat-completion chunk"):
        assembler.result()


# --- property: any split of any reply reassembles to the same body -------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@st.composite
def fragments(draw: st.DrawFn, text: str) -> list[str]:
    """``text`` cut at arbitrary points (empty fragments included, as upstreams send them)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def streamed_replies(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    content = draw(st.none() | texts)
    reasoning = draw(st.none() | texts)
    calls = draw(
        st.lists(st.tuples(names, st.text(max_size=30)), max_size=3).map(
            lambda pairs: [(f"call_{i}", name, args) for i, (name, args) in enumerate(pairs)]
        )
    )
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length", "content_filter"]))
    usage = draw(
        st.none()
        | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(
            lambda t: {"prompt_tokens": t[0], "completion_tokens": t[1], "total_tokens": sum(t)}
        )
    )

    message: dict[str, Any] = {"role": "assistant"}
    message["content"] = None if (content == "" and calls) else content
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in calls
        ]
    expected: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        expected["usage"] = usage

    deltas: list[dict[str, Any]] = [{"role": "assistant"}]
    if reasoning is not None:
        deltas += [{"reasoning_content": part} for part in draw(fragments(reasoning))]
    if content is not None:
        deltas += [{"content": part} for part in draw(fragments(content))]
    # Fragments of parallel calls interleave in any order that keeps each call's own order.
    per_call: list[list[dict[str, Any]]] = []
    for index, (cid, name, args) in enumerate(calls):
        parts = draw(fragments(args))
        opening = {"index": index, "id": cid, "type": "function"}
        opening["function"] = {"name": name, "arguments": parts[0]}
        per_call.append(
            [opening, *({"index": index, "function": {"arguments": p}} for p in parts[1:])]
        )
    while any(per_call):
        pending = [queue for queue in per_call if queue]
        queue = draw(st.sampled_from(pending))
        deltas.append({"tool_calls": [queue.pop(0)]})
    chunks = [chunk(delta(**d)) for d in deltas]
    chunks.append(chunk(delta(finish=finish)))
    if usage is not None:
        chunks.append(chunk(usage=usage))
    return expected, chunks


@given(streamed_replies())
def test_any_split_reassembles_to_the_unstreamed_body(
    case: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    expected, chunks = case
    assert assemble_chat_completion(chunks) == expected


@given(streamed_replies())
def test_feeding_event_data_equals_feeding_parsed_chunks(
    case: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    expected, chunks = case
    assembler = ChatStreamAssembler()
    for item in chunks:
        assert assembler.add_data(json.dumps(item)) == item
    assembler.add_data("[DONE]")
    assert assembler.result() == expected


@given(streamed_replies())
def test_chunks_and_reassembled_body_fit_the_official_sdk_types(
    case: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _expected, chunks = case
    for item in chunks:
        ChatCompletionChunk.model_validate(item)
    body = assemble_chat_completion(chunks)
    completion = ChatCompletion.model_validate(body)
    assert completion.model_dump(exclude_unset=True) == body
