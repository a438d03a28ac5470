"""The event-stream decoder (spec grammar, any split) and the SSE encoder."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responseloop._sse import SSEDecoder, encode_sse
from responseloop.abc import ServerSentEvent
from responseloop.exceptions import UpstreamProtocolError


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_the_spec_grammar() -> None:
    stream = (
        b": a comment, then an event\n"
        b"event: custom\n"
        b"id: 7\n"
        b"retry: 1000\n"
        b"data:  two spaces keep one\n"
        b"data\n"
        b"data:last\n"
        b"unknown: ignored\n"
        b"\n"
        b"data: next\n\n"
    )
    assert decode(stream) == [
        ServerSentEvent(" two spaces keep one\n\nlast", "custom", "7"),
        ServerSentEvent("next", "message", "7"),  # the last id sticks, the name does not
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r", b"\r\n"])
def test_every_line_break_of_the_spec(newline: bytes) -> None:
    stream = b"data: a" + newline + b"data: b" + newline + newline
    assert decode(stream) == [ServerSentEvent("a\nb")]


def test_a_crlf_split_between_chunks_is_one_line_break() -> None:
    assert decode(b"data: a\r", b"\n", b"\r", b"\n") == [ServerSentEvent("a")]


def test_a_leading_bom_is_skipped_and_utf8_may_be_split() -> None:
    raw = "\ufeffdata: smørbrød ✓\n\n".encode()
    assert decode(*(raw[i : i + 1] for i in range(len(raw)))) == [ServerSentEvent("smørbrød ✓")]


def test_events_without_data_are_not_dispatched_but_empty_data_is() -> None:
    assert decode(b"event: ping\n\n:keepalive\n\ndata:\n\n") == [ServerSentEvent("")]


def test_an_event_left_open_at_the_end_is_discarded() -> None:
    assert decode(b"data: whole\n\ndata: half") == [ServerSentEvent("whole")]


def test_an_id_with_nul_is_ignored() -> None:
    assert decode(b"id: a\x00b\ndata: x\n\n") == [ServerSentEvent("x")]


def test_invalid_utf8_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError, match="UTF-8"):
        decode(b"data: \xff\xfe\n\n")


def test_an_endless_line_is_cut_off() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(UpstreamProtocolError, match="exceeds 64 bytes"):
        decoder.feed(b"x" * 50)


def test_an_endless_event_is_cut_off() -> None:
    decoder = SSEDecoder(max_event_bytes=60)
    for _ in range(3):
        decoder.feed(b"data: 0123456789\n")  # 3 x 16 bytes: within the bound
    with pytest.raises(UpstreamProtocolError, match="exceeds"):
        decoder.feed(b"data: 0123456789\n")


def test_keepalive_comments_do_not_count_toward_the_limit() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    for _ in range(100):
        assert decoder.feed(b": keep-alive\n") == []
    assert decoder.feed(b"data: ok\n\n") == [ServerSentEvent("ok")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
payloads = st.dictionaries(st.text(), json_values, max_size=4).map(
    lambda d: {**d, "type": "response.output_text.delta"}
)


@given(st.lists(payloads, min_size=1, max_size=5), st.data())
def test_encoded_events_decode_to_themselves_however_the_bytes_are_split(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = b"".join(encode_sse(event) for event in events)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    decoded = decode(*chunks)
    assert [(e.event, json.loads(e.data)) for e in decoded] == [
        ("response.output_text.delta", event) for event in events
    ]


def test_encode_names_the_event_after_its_type() -> None:
    encoded = encode_sse({"type": "response.created", "text": "line\nbreak"})
    assert encoded == (
        b'event: response.created\ndata: {"type":"response.created","text":"line\\nbreak"}\n\n'
    )
    assert encode_sse({"x": 1}, event="custom").startswith(b"event: custom\n")


@pytest.mark.parametrize("bad", [{"x": 1}, {"type": ""}, {"type": "a\nb"}, {"type": 3}])
def test_encode_refuses_events_without_a_clean_name(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="name"):
        encode_sse(bad)
