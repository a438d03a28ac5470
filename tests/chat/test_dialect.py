"""The Chat Completions dialect: replies validated, streams reassembled from their events,
and what a payload or a chunk says read into the dialect-neutral values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop.abc import (
    HttpRequest,
    HttpResponse,
    ModelTurn,
    ServerSentEvent,
    StreamDelta,
    ToolCall,
    ToolCallDelta,
    UpstreamDialect,
)
from responseloop.chat import CHAT_COMPLETIONS, ChatCompletionsDialect, assemble_chat_completion
from responseloop.exceptions import UpstreamProtocolError
from responseloop.stores._codec import decode, encode
from responseloop.testing import ChatReply

STREAMED = HttpRequest(
    "http://upstream.invalid",
    json={"model": "m", "stream": True, "stream_options": {"include_usage": True}},
)


def completion(message: dict[str, Any], finish: str = "stop", **top: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        **top,
    }


def events_of(reply: ChatReply) -> list[ServerSentEvent]:
    chunks = reply.chunks(STREAMED, 1)
    return [ServerSentEvent(json.dumps(chunk)) for chunk in chunks] + [ServerSentEvent("[DONE]")]


def test_the_chat_dialect_is_an_upstream_dialect() -> None:
    dialect: UpstreamDialect = CHAT_COMPLETIONS
    assert isinstance(dialect, ChatCompletionsDialect)
    assert repr(dialect) == "CHAT_COMPLETIONS"


def test_an_unstreamed_reply_is_its_completion() -> None:
    body = completion({"role": "assistant", "content": "hi"})
    assert CHAT_COMPLETIONS.model_reply(HttpResponse.from_json(200, body)) == body


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"choices": []}', r"no choices\[0\]\.message"),
        (b'{"choices": [{"message": "hi"}]}', r"no choices\[0\]\.message"),
        (b"[]", r"no choices\[0\]\.message"),
    ],
)
def test_a_reply_without_a_message_is_a_protocol_error(content: bytes, message: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=message):
        CHAT_COMPLETIONS.model_reply(HttpResponse(200, content))


def test_a_stream_is_reassembled_from_its_events_and_ends_at_done() -> None:
    reply = ChatReply.calls(("weather", {"city": "Oslo"}, "c1"), content="Looking", reasoning="r")
    reassembler = CHAT_COMPLETIONS.stream_reassembler()
    handed_on = []
    for event in events_of(reply):
        assert not reassembler.done
        handed_on.append(reassembler.feed(event))
    assert reassembler.done
    assert handed_on[-1] is None  # [DONE] carries no chunk
    assert handed_on[:-1] == reply.chunks(STREAMED, 1)
    assert reassembler.result() == reply.completion(STREAMED, 1)


def test_an_error_event_is_a_protocol_error() -> None:
    reassembler = CHAT_COMPLETIONS.stream_reassembler()
    with pytest.raises(UpstreamProtocolError, match="error event"):
        reassembler.feed(ServerSentEvent('{"message": "overloaded"}', event="error"))


def test_a_named_event_is_handed_on_but_is_no_part_of_the_completion() -> None:
    reassembler = CHAT_COMPLETIONS.stream_reassembler()
    assert reassembler.feed(ServerSentEvent('{"note": 1}', event="ping")) == {"note": 1}
    assert reassembler.feed(ServerSentEvent("not json", event="ping")) is None
    for event in events_of(ChatReply.text("hi")):
        reassembler.feed(event)
    assert reassembler.result() == ChatReply.text("hi").completion(STREAMED, 1)


def test_a_stream_without_choices_has_no_message() -> None:
    reassembler = CHAT_COMPLETIONS.stream_reassembler()
    reassembler.feed(ServerSentEvent(json.dumps({"id": "c", "choices": [], "usage": {}})))
    reassembler.feed(ServerSentEvent("[DONE]"))
    with pytest.raises(UpstreamProtocolError, match="no choices"):
        reassembler.result()


def test_anything_after_done_is_a_protocol_error() -> None:
    reassembler = CHAT_COMPLETIONS.stream_reassembler()
    for event in events_of(ChatReply.text("hi")):
        reassembler.feed(event)
    with pytest.raises(UpstreamProtocolError, match="after"):
        reassembler.feed(ServerSentEvent("{}"))


def test_a_turn_reads_the_first_choice() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    body = completion(
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Hel"}, {"type": "image"}, {"text": "lo"}],
            "refusal": "no",
            "reasoning": "thought",
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        finish="length",
        usage=usage,
    )
    assert CHAT_COMPLETIONS.turn(body) == ModelTurn(
        text="Hel",
        refusal="no",
        reasoning="thought",
        tool_calls=[ToolCall("c1", "f", '{"a":1}')],
        incomplete_reason="max_output_tokens",
        usage=usage,
    )


@pytest.mark.parametrize("payload", [None, "text", [], {}, {"choices": "x"}, {"usage": 3}])
def test_a_payload_that_says_nothing_is_the_empty_turn(payload: Any) -> None:
    assert CHAT_COMPLETIONS.turn(payload) == ModelTurn()


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", None),
        ("tool_calls", None),
        ("length", "max_output_tokens"),
        ("content_filter", "content_filter"),
        (None, None),
    ],
)
def test_only_a_turn_cut_short_is_incomplete(finish: str | None, reason: str | None) -> None:
    body = completion({"role": "assistant", "content": "x"})
    body["choices"][0]["finish_reason"] = finish
    assert CHAT_COMPLETIONS.turn(body).incomplete_reason == reason


def test_a_chunk_delta_reads_texts_and_call_pieces() -> None:
    chunk = {
        "choices": [
            {"index": 1, "delta": {"content": "other choice"}},
            {
                "index": 0,
                "delta": {
                    "reasoning_content": "",
                    "reasoning": "why",
                    "content": "Hi",
                    "refusal": 3,
                    "tool_calls": [
                        {"index": 2, "id": "c", "function": {"name": "f", "arguments": "{"}},
                        {"function": {"name": "", "arguments": None}},
                        "junk",
                    ],
                },
            },
        ]
    }
    assert CHAT_COMPLETIONS.stream_delta(chunk) == StreamDelta(
        reasoning="why",
        text="Hi",
        tool_calls=[ToolCallDelta(2, "c", "f", "{"), ToolCallDelta()],
    )


@pytest.mark.parametrize(
    "chunk", [None, {}, {"choices": []}, {"choices": [{"index": 0, "delta": "x"}]}]
)
def test_a_chunk_without_a_delta_adds_nothing(chunk: Any) -> None:
    assert CHAT_COMPLETIONS.stream_delta(chunk) == StreamDelta()


def test_told_tool_outputs_are_the_tool_messages_the_last_one_winning() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "c1", "content": "first"},
            {"role": "tool", "tool_call_id": "c2", "content": ["not", "text"]},
            {"role": "tool", "tool_call_id": "c1", "content": "second"},
        ]
    }
    assert CHAT_COMPLETIONS.told_tool_outputs(request) == {"c1": "second"}
    assert CHAT_COMPLETIONS.told_tool_outputs({"messages": "x"}) == {}


short = st.text(max_size=8)


@given(
    content=st.none() | short,
    reasoning=st.none() | short,
    refusal=st.none() | short,
    names=st.lists(st.sampled_from(["a", "b"]), max_size=3),
    include_usage=st.booleans(),
)
def test_a_streamed_reply_reassembles_to_the_unstreamed_one_and_says_the_same(
    content: str | None,
    reasoning: str | None,
    refusal: str | None,
    names: list[str],
    include_usage: bool,
) -> None:
    reply = ChatReply(
        content=content,
        reasoning=reasoning,
        refusal=refusal,
        tool_calls=[(f"call_{i}", name, f'{{"i": {i}}}') for i, name in enumerate(names)],
    )
    request = HttpRequest(
        "http://upstream.invalid",
        json={"stream": True, "stream_options": {"include_usage": include_usage}},
    )
    reassembler = CHAT_COMPLETIONS.stream_reassembler()
    for chunk in reply.chunks(request, 1):
        reassembler.feed(ServerSentEvent(json.dumps(chunk)))
    reassembled = reassembler.result()
    unstreamed = reply.completion(request, 1)
    if not include_usage:
        unstreamed.pop("usage")
    if content == "" and names:
        # The reassembly's rule: an empty content next to tool calls is null, as unstreamed.
        unstreamed["choices"][0]["message"]["content"] = None
    assert reassembled == unstreamed == assemble_chat_completion(reply.chunks(request, 1))
    turn = CHAT_COMPLETIONS.turn(reassembled)
    assert (turn.text, turn.refusal, turn.reasoning) == (
        content or "",
        refusal or "",
        reasoning or "",
    )
    assert [(c.call_id, c.name) for c in turn.tool_calls] == [
        (f"call_{i}", name) for i, name in enumerate(names)
    ]
    # The deltas of its chunks add up to the same texts.
    deltas = [CHAT_COMPLETIONS.stream_delta(chunk) for chunk in reply.chunks(request, 1)]
    assert "".join(d.text for d in deltas) == turn.text
    assert "".join(d.reasoning for d in deltas) == turn.reasoning
    assert "".join(d.refusal for d in deltas) == turn.refusal


def test_the_text_logprobs_are_read_in_the_responses_shape() -> None:
    tokens = [
        {"token": "Hé", "logprob": -0.5, "bytes": None, "top_logprobs": [
            {"token": "Hé", "logprob": -0.5, "bytes": [72, 195, 169]},
            {"token": "Ho", "logprob": -1, "bytes": None},
        ]},
        {"token": "!", "logprob": "?", "bytes": [33]},  # not a logprob: skipped
    ]  # fmt: skip
    payload = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hé"},
                "finish_reason": "stop",
                "logprobs": {"content": tokens, "refusal": None},
            }
        ]
    }
    expected = [
        {
            "token": "Hé",
            "logprob": -0.5,
            "bytes": [72, 195, 169],  # chat's null bytes become the token's UTF-8
            "top_logprobs": [
                {"token": "Hé", "logprob": -0.5, "bytes": [72, 195, 169]},
                {"token": "Ho", "logprob": -1.0, "bytes": [72, 111]},
            ],
        }
    ]
    assert CHAT_COMPLETIONS.turn(payload).logprobs == tuple(expected)
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hé"}, "logprobs": {"content": tokens}}]}
    assert CHAT_COMPLETIONS.stream_delta(chunk).logprobs == tuple(expected)
    assert (
        CHAT_COMPLETIONS.turn({**payload, "choices": [{"index": 0, "message": {}}]}).logprobs == ()
    )


def test_an_unstreamed_reply_is_stored_as_the_text_it_arrived_in() -> None:
    content = b'{"id": "c",\n "choices": [{"index": 0, "message": {"content": "\\u00e9"}}]}'
    payload = CHAT_COMPLETIONS.model_reply(HttpResponse(200, content))
    assert encode(payload) == content.decode()  # the store does not encode it again
    assert decode(encode(payload)) == payload


@pytest.mark.parametrize(
    "content",
    [
        '{"choices": [{"message": {"content": "hi"}}]}'.encode("utf-16"),
        b"\xef\xbb\xbf" + b'{"choices": [{"message": {"content": "hi"}}]}',
    ],
    ids=["utf-16", "utf-8 with a byte-order mark"],
)
def test_a_reply_in_another_encoding_still_parses_and_is_encoded_by_the_store(
    content: bytes,
) -> None:
    payload = CHAT_COMPLETIONS.model_reply(HttpResponse(200, content))
    assert payload == {"choices": [{"message": {"content": "hi"}}]}
    assert encode(payload) == '{"choices": [{"message": {"content": "hi"}}]}'


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_reply_with_a_number_json_cannot_carry_is_a_protocol_error(constant: str) -> None:
    content = f'{{"choices": [{{"message": {{"content": "x"}}}}], "score": {constant}}}'
    with pytest.raises(UpstreamProtocolError, match=f"not JSON: {constant} is not a JSON value"):
        CHAT_COMPLETIONS.model_reply(HttpResponse(200, content.encode()))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_stream_chunk_with_a_number_json_cannot_carry_is_a_protocol_error(
    constant: str,
) -> None:
    reassembler = CHAT_COMPLETIONS.stream_reassembler()
    chunk = f'{{"object": "chat.completion.chunk", "choices": [], "score": {constant}}}'
    with pytest.raises(UpstreamProtocolError, match=f"not JSON: {constant} is not a JSON value"):
        reassembler.feed(ServerSentEvent(chunk))
