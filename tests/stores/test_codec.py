"""The store codec: a request's text joined from its messages' known texts is exactly what
encoding it whole gives, and a text noted for a value is taken instead of encoding it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responseloop.abc import _known_texts
from responseloop.abc._known_texts import remember_text, take_text
from responseloop.exceptions import StoreError
from responseloop.stores import _codec
from responseloop.stores._codec import decode, encode

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
messages = st.dictionaries(st.text(max_size=8), values, max_size=4)
requests = st.fixed_dictionaries(
    {"model": st.text(max_size=8), "messages": st.lists(messages, min_size=0, max_size=20)},
    optional={"tools": values, "stream": st.booleans()},
)


def whole(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if _codec._SURROGATE.search(text):
        text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text


@settings(max_examples=300)
@given(requests)
def test_a_request_encodes_to_the_same_text_whatever_the_codec_knew(request: Any) -> None:
    first = encode(request)
    assert first == whole(request)
    # The next call's request: the same message objects and one more.
    extended = {**request, "messages": [*request["messages"], {"role": "user", "content": "x"}]}
    assert encode(extended) == whole(extended)
    assert decode(encode(extended)) == json.loads(whole(extended))


def test_a_lone_surrogate_in_a_known_message_is_kept_escaped() -> None:
    odd = {"role": "user", "content": "\ud800"}
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 9 + [odd]}
    text = encode(request)
    assert "\\ud800" in text
    assert decode(text) == request
    assert encode(request) == text  # the second time, from the known texts


def test_a_message_json_cannot_carry_is_refused() -> None:
    request = {"model": "m", "messages": [{"role": "user"}] * 9 + [{"content": float("nan")}]}
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        encode(request)


def test_the_known_texts_are_bounded() -> None:
    for _ in range(3):
        encode({"model": "m", "messages": [{"n": n} for n in range(3000)]})
    assert len(_codec._MESSAGE_TEXTS) <= _codec._MESSAGE_TEXTS_LIMIT


def test_a_text_noted_for_a_value_is_what_it_encodes_to_once() -> None:
    reply = {"id": "c1", "choices": [{"message": {"content": "é"}}]}
    noted = '{"id":"c1",  "choices":[{"message":{"content":"\\u00e9"}}]}'
    remember_text(reply, noted)
    assert encode({"id": "c1", "choices": [{"message": {"content": "é"}}]}) == whole(reply)
    assert encode(reply) == noted  # this very object: its noted text, not encoded again
    assert decode(noted) == reply
    assert encode(reply) == whole(reply)  # taken once: the next encode is the codec's own


def test_a_noted_text_with_a_lone_surrogate_is_encoded_escaped_instead() -> None:
    result = {"text": "\ud800"}
    remember_text(result, json.dumps(result, ensure_ascii=False))
    text = encode(result)
    assert text == '{"text": "\\ud800"}'
    assert decode(text) == result


def test_the_noted_texts_are_bounded_and_forget_the_oldest() -> None:
    values = [{"n": n} for n in range(_known_texts._LIMIT + 10)]
    for value in values:
        remember_text(value, "noted")
    assert len(_known_texts._TEXTS) <= _known_texts._LIMIT
    assert take_text(values[0]) is None
    assert take_text(values[-1]) == "noted"
